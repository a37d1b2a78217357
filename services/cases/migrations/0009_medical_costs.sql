-- Medical costs of a health service referral (DOMAIN.md: 100 % at high risk when the
-- caregiver cannot pay at all, partial where the family can pay part). The referrer says
-- what the family can pay; the hub decides the coverage when the referral is made and
-- keeps both, so a later change of the case's risk does not rewrite what was agreed.
-- Both are empty for a service that is not health.
ALTER TABLE service_referrals
    ADD COLUMN ability_to_pay TEXT CHECK (ability_to_pay IN ('none', 'part', 'full')),
    ADD COLUMN medical_coverage TEXT CHECK (medical_coverage IN ('full', 'partial', 'none')),
    ADD CONSTRAINT service_referrals_medical_costs_whole
        CHECK ((ability_to_pay IS NULL) = (medical_coverage IS NULL));
