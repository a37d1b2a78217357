-- The cash-assistance connector's bulk imports. Schema: connector_cash (search_path).

-- One checkpoint per (file, kind): a re-run of the same file (same SHA-256) resumes after
-- rows_done, with its report cut back to report_bytes, so nothing is counted twice.
CREATE TABLE bulk_imports (
    file_sha256         TEXT NOT NULL,
    kind                TEXT NOT NULL,
    rows_done           BIGINT NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    matches_national_id BIGINT NOT NULL DEFAULT 0 CHECK (matches_national_id >= 0),
    matches_name        BIGINT NOT NULL DEFAULT 0 CHECK (matches_name >= 0),
    bad_rows            BIGINT NOT NULL DEFAULT 0 CHECK (bad_rows >= 0),
    report_bytes        BIGINT NOT NULL DEFAULT 0 CHECK (report_bytes >= 0),
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    PRIMARY KEY (file_sha256, kind)
);
