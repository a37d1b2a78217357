-- Withdrawn consents, and the notices sent because of them: one per (consent, agency).
-- A permit logged after the withdrawal (decided just before it) gets its notice too.
CREATE TABLE withdrawals (
    case_id      TEXT NOT NULL,
    consent_id   TEXT NOT NULL,
    categories   TEXT[] NOT NULL,
    withdrawn_at TEXT NOT NULL,
    PRIMARY KEY (case_id, consent_id)
);

CREATE TABLE notices (
    notice_id  TEXT PRIMARY KEY,
    case_id    TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    agency_id  TEXT NOT NULL,
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (case_id, consent_id, agency_id)
);
