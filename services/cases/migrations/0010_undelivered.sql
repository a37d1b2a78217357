-- A referral that reaches no agency is recorded on the case like an answer: outcome
-- `undelivered` (or `rejected` by the agency's system), with why, as a code. `agency_id`
-- is '' when no agency at all could take it.
ALTER TABLE referral_deliveries ADD COLUMN reason TEXT;
CREATE INDEX referral_deliveries_open ON referral_deliveries (case_id)
    WHERE outcome IN ('undelivered', 'rejected');

-- Escalations that are not missed deadlines say about what and why.
ALTER TABLE escalations ADD COLUMN agency_id TEXT;
ALTER TABLE escalations ADD COLUMN reason TEXT;
