-- Withdrawal notices addressed to agencies (from the disclosure log's `consent.withdrawal.notice`
-- events): what an agency collects with Cases.ListNotices and acknowledges. Ids only.
CREATE TABLE agency_notices (
    notice_id       TEXT PRIMARY KEY,
    agency_id       TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    consent_id      TEXT NOT NULL,
    categories      TEXT[] NOT NULL,
    withdrawn_at    TEXT NOT NULL,
    issued_at       TIMESTAMPTZ NOT NULL,
    acknowledged_at TIMESTAMPTZ,
    acknowledged_by TEXT
);

CREATE INDEX agency_notices_of ON agency_notices (agency_id, notice_id);

-- Exports find the cases an agency received through these (see access::RECIPIENT_OF_CASE).
CREATE INDEX referral_deliveries_agency ON referral_deliveries (agency_id) WHERE outcome = 'delivered';
