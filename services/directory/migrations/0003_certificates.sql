-- The certificates the hub's issuing authority gives agencies (grpc.issuer): one-time
-- enrolment codes (only their SHA-256 kept), every certificate issued, and revocations.
-- A revocation takes a new change number from the agencies' sequence, so every process
-- following the directory sees it within directory.follow_ms.
CREATE TABLE enrolments (
    agency_id  TEXT PRIMARY KEY,
    code_hash  BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);

CREATE TABLE certificates (
    -- SHA-256 of the certificate's DER, in hex.
    fingerprint TEXT PRIMARY KEY,
    agency_id   TEXT NOT NULL,
    serial      TEXT NOT NULL,
    not_before  TIMESTAMPTZ NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    issued_via  TEXT NOT NULL CHECK (issued_via IN ('enrolment', 'renewal')),
    revoked_at  TIMESTAMPTZ,
    revoked_by  TEXT,
    reason      TEXT,
    seq         BIGINT NOT NULL DEFAULT nextval('agency_change_seq')
);
CREATE INDEX certificates_agency ON certificates (agency_id, issued_at DESC);
CREATE INDEX certificates_revoked ON certificates (seq) WHERE revoked_at IS NOT NULL;

-- The contract every process reads: the revoked certificates not expired yet.
CREATE VIEW revoked_certificates_v1 AS
    SELECT fingerprint, seq FROM certificates
     WHERE revoked_at IS NOT NULL AND not_after > now();
