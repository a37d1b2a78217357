-- A referral routed again (after consent was granted, or an agency connected) goes only
-- to the agencies it was not yet released to: found by referral, among the permits.
CREATE INDEX disclosures_permits ON disclosures (referral_id, agency_id) WHERE decision = 'permit';
