-- The case lifecycle: staff and caseloads, reviews, stored deadlines and escalations.

ALTER TABLE cases ADD COLUMN caseworker_id TEXT;
CREATE INDEX cases_caseworker_open ON cases (caseworker_id) WHERE status = 'registered';

-- Caseworkers and supervisors per agency (staff references, not names).
CREATE TABLE staff (
    staff_id      TEXT PRIMARY KEY,
    agency_id     TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('caseworker', 'supervisor')),
    supervisor_id TEXT REFERENCES staff (staff_id),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((role = 'caseworker') = (supervisor_id IS NOT NULL))
);

CREATE TABLE reviews (
    id          BIGSERIAL PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases (case_id),
    kind        TEXT NOT NULL,
    child_seen  BOOLEAN NOT NULL,
    -- Case notes: never logged, disclosed only as the case_notes category.
    findings    TEXT NOT NULL,
    reviewed_by TEXT NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reviews_case ON reviews (case_id, id);

-- Deadlines are rows, not timers: they survive restarts, and the engine moves each from
-- open to fired in the same transaction as its escalation event, so each fires once.
CREATE TABLE deadlines (
    id       BIGSERIAL PRIMARY KEY,
    case_id  TEXT NOT NULL REFERENCES cases (case_id),
    kind     TEXT NOT NULL,
    due_at   TIMESTAMPTZ NOT NULL,
    state    TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'met', 'fired', 'cancelled')),
    closed_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX deadlines_one_open ON deadlines (case_id, kind) WHERE state = 'open';
CREATE INDEX deadlines_due ON deadlines (due_at) WHERE state = 'open';

CREATE TABLE escalations (
    id            BIGSERIAL PRIMARY KEY,
    deadline_id   BIGINT NOT NULL UNIQUE REFERENCES deadlines (id),
    case_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    due_at        TIMESTAMPTZ NOT NULL,
    supervisor_id TEXT,
    raised_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
