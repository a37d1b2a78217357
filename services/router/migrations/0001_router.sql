-- The router's record of every disclosure decision (schema: router). The consent
-- layer turns this into the hash-chained disclosure log.
CREATE TABLE disclosures (
    id          BIGSERIAL PRIMARY KEY,
    case_id     TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    agency_id   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
    reason      TEXT,
    categories  TEXT[] NOT NULL DEFAULT '{}',
    -- The delivery message that carried the data (permits only).
    message_id  TEXT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX disclosures_case ON disclosures (case_id, id);
