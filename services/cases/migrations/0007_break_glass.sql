-- Break-glass accesses: emergency disclosure without consent, time-boxed and reviewed.
CREATE TABLE break_glass (
    break_glass_id TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES cases (case_id),
    agency_id      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    reason_code    TEXT NOT NULL,
    -- The caller's own words: case notes, never logged.
    justification  TEXT NOT NULL,
    granted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    reads          BIGINT NOT NULL DEFAULT 0,
    reviewed_by    TEXT,
    reviewed_at    TIMESTAMPTZ,
    outcome        TEXT CHECK (outcome IN ('justified', 'unjustified')),
    review_notes   TEXT
);
CREATE INDEX break_glass_open ON break_glass (case_id, agency_id, expires_at);
CREATE INDEX break_glass_unreviewed ON break_glass (granted_at) WHERE reviewed_at IS NULL;
