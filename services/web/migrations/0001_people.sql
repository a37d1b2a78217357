-- The web front's own schema (web): the people who sign in, their sessions and every
-- sign-in attempt. No child's data is kept here: referrals go to the cases service.

-- A person belongs to one agency and holds one or more roles. `login` is what they type
-- (unique across the hub); `person_id` (psn_…) is what every record of their actions names.
CREATE TABLE persons (
    person_id      TEXT PRIMARY KEY,
    agency_id      TEXT NOT NULL,
    login          TEXT NOT NULL UNIQUE,
    -- As given (Arabic script), with an optional Latin transliteration.
    name_ar        TEXT NOT NULL,
    name_latin     TEXT,
    roles          TEXT[] NOT NULL CHECK (cardinality(roles) > 0),
    -- argon2id, PHC string format.
    password_hash  TEXT NOT NULL,
    -- RFC 6238 secret (base32) for the roles that need a second factor.
    totp_secret    TEXT,
    failed_signins INT NOT NULL DEFAULT 0,
    locked_until   TIMESTAMPTZ,
    disabled       BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A session is known by the SHA-256 of its cookie, never by the cookie itself.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_person ON sessions (person_id);

-- Every sign-in and every failure (ids and reasons only).
CREATE TABLE signins (
    id         BIGSERIAL PRIMARY KEY,
    login_hash TEXT NOT NULL,
    person_id  TEXT,
    outcome    TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What people submitted through the web (ids only), so a school sees its referrals.
CREATE TABLE submissions (
    submission_id TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL REFERENCES persons (person_id),
    agency_id     TEXT NOT NULL,
    case_id       TEXT NOT NULL,
    referral_id   TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX submissions_agency ON submissions (agency_id, at DESC);
