-- Service referrals between agencies (FHIR Task-like): made from a plan action, answered
-- by the receiving agency through its connector or the API. Every change is an event row.
CREATE TABLE service_referrals (
    service_referral_id TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES cases (case_id),
    action_id    TEXT NOT NULL,
    from_agency  TEXT NOT NULL,
    to_agency    TEXT NOT NULL,
    service_type TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('requested', 'received', 'accepted', 'rejected',
                                                'in_progress', 'completed', 'failed', 'cancelled')),
    -- Why it was rejected, failed or cancelled (free text from an agency: never logged).
    reason       TEXT,
    -- The receiving agency's own reference, when its system gave one.
    agency_reference TEXT,
    requested_by TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    answered_at  TIMESTAMPTZ,
    version      BIGINT NOT NULL DEFAULT 1
);
-- One live referral per plan action; a new one may follow an ended one.
CREATE UNIQUE INDEX service_referrals_one_live ON service_referrals (case_id, action_id)
    WHERE state NOT IN ('rejected', 'completed', 'failed', 'cancelled');
CREATE INDEX service_referrals_to ON service_referrals (to_agency, state);

CREATE TABLE service_referral_events (
    id          BIGSERIAL PRIMARY KEY,
    service_referral_id TEXT NOT NULL REFERENCES service_referrals (service_referral_id),
    state       TEXT NOT NULL,
    agency_id   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX service_referral_events_of ON service_referral_events (service_referral_id, id);
