-- Who referred each case (an agency: a school, the emergency line, a clinic), so each
-- change of the case's status can be fed back to it (schema: router).
CREATE TABLE case_referrers (
    case_id     TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    agency_id   TEXT NOT NULL,
    PRIMARY KEY (case_id, referral_id)
);
