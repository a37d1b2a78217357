-- The cases service owns the normalized case record. Schema: cases (search_path).

CREATE TABLE cases (
    case_id     TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    risk_level  TEXT NOT NULL,
    priority    TEXT NOT NULL,
    governorate TEXT NOT NULL,
    -- The whole record in the serde shape of himaya_record::CaseRecord.
    record      JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Idempotency of intake: one row per (submitter, submission id).
CREATE TABLE submissions (
    submitter     TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    case_id       TEXT NOT NULL REFERENCES cases (case_id),
    referral_id   TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (submitter, submission_id)
);

-- Who changed what, when: every change of a case.
CREATE TABLE case_history (
    id         BIGSERIAL PRIMARY KEY,
    case_id    TEXT NOT NULL REFERENCES cases (case_id),
    version    BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX case_history_case ON case_history (case_id, id);

-- What each agency answered to a referral delivered to it.
CREATE TABLE referral_deliveries (
    referral_id      TEXT NOT NULL,
    agency_id        TEXT NOT NULL,
    case_id          TEXT NOT NULL REFERENCES cases (case_id),
    outcome          TEXT NOT NULL,
    http_status      INT NOT NULL,
    agency_reference TEXT,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (referral_id, agency_id)
);
CREATE INDEX referral_deliveries_case ON referral_deliveries (case_id);
