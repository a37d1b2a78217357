-- Reading the log (himaya.v1.Audit/ListDisclosures): newest first within one recipient
-- (an agency's own entries) or one person, as well as within one case (log_case).
CREATE INDEX log_recipient_seq ON log (recipient, seq);
CREATE INDEX log_person_seq ON log (person, seq) WHERE person IS NOT NULL;
