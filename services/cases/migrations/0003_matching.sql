-- Duplicate detection: a normalized match key per child, searched by trigram similarity
-- (pg_trgm ships with PostgreSQL) and then scored in Rust (himaya_record::matching).
-- No personal data beyond what `cases.record` already holds, normalized for comparison.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA cases;

CREATE TABLE children (
    case_id          TEXT PRIMARY KEY,
    name_norm        TEXT NOT NULL,
    latin_skeleton   TEXT,
    sex              TEXT NOT NULL,
    birth_year_min   INT NOT NULL,
    birth_year_max   INT NOT NULL,
    date_of_birth    DATE,
    governorate_norm TEXT NOT NULL,
    district_norm    TEXT
);
-- GiST, not GIN: a GiST trigram index answers "the 50 nearest names" (ORDER BY <->
-- LIMIT) by walking the index in distance order, where GIN must collect and sort every
-- name above a similarity threshold (measured: 662 ms vs 1 s for a full scan at 1M).
CREATE INDEX children_name_trgm ON children USING gist (name_norm gist_trgm_ops);

-- A caseworker's judgement that two cases concern the same child (or siblings), kept
-- apart; a merge instead folds one case into the other.
CREATE TABLE case_links (
    case_id        TEXT NOT NULL REFERENCES cases (case_id),
    linked_case_id TEXT NOT NULL REFERENCES cases (case_id),
    kind           TEXT NOT NULL CHECK (kind IN ('same_child', 'sibling')),
    linked_by      TEXT NOT NULL,
    linked_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, linked_case_id),
    CHECK (case_id < linked_case_id)
);
