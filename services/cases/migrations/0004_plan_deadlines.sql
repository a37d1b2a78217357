-- Plan actions each have their own deadline: deadlines gain the id of what they watch.
ALTER TABLE deadlines ADD COLUMN ref_id TEXT;
DROP INDEX deadlines_one_open;
CREATE UNIQUE INDEX deadlines_one_open ON deadlines (case_id, kind, coalesce(ref_id, '')) WHERE state = 'open';
ALTER TABLE escalations ADD COLUMN ref_id TEXT;
