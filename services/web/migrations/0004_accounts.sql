-- Who changed which account, and how: made, disabled, enabled, unlocked, signed out
-- everywhere by an administrator of the same agency (ids only).
CREATE TABLE account_events (
    id         BIGSERIAL PRIMARY KEY,
    agency_id  TEXT NOT NULL,
    person_id  TEXT NOT NULL,
    by_person  TEXT NOT NULL,
    what       TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_events_person ON account_events (person_id, at DESC);
