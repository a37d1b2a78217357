-- The agencies' words are emptied after `retention.agency_words_keep_days`
-- (retention.rs): found by this index, which holds only the rows still holding words.
CREATE INDEX deliveries_reason_kept ON deliveries (recorded_at) WHERE reason IS NOT NULL;
