-- The person who read, when the web front proved them (psn_…). Hashed with the entry
-- only when present, so the entries before this column still verify.
ALTER TABLE log ADD COLUMN person TEXT;
