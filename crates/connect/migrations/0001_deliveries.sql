-- What the connectors delivered and what each agency answered (schema: connectors).
CREATE TABLE deliveries (
    message_id       TEXT PRIMARY KEY,
    agency_id        TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    case_id          TEXT NOT NULL,
    referral_id      TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('delivered', 'rejected')),
    http_status      INT NOT NULL,
    agency_reference TEXT,
    -- Why the agency said no, as it said it (its own words, cut to 500 characters).
    reason           TEXT,
    attempts         INT NOT NULL,
    latency_ms       INT NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_referral ON deliveries (referral_id);
