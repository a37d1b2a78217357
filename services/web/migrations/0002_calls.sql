-- An escalation is found again by its call reference (the emergency line's own id).
ALTER TABLE submissions ADD COLUMN call_ref TEXT;
CREATE INDEX submissions_call ON submissions (agency_id, call_ref) WHERE call_ref IS NOT NULL;
