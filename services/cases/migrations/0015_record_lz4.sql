-- A case's record (JSONB, about 3 KB with its referral) is compressed as it is stored.
-- PostgreSQL's own method (pglz) was about half of the 6 % of its CPU that compression
-- took at 1,000 referrals/s; lz4 does it in a fraction of the time for a somewhat
-- larger value. Only the catalogue changes: records stored before keep their method.
-- A server built without lz4 refuses with feature_not_supported; the column then keeps
-- pglz.
DO $$ BEGIN
  ALTER TABLE cases ALTER COLUMN record SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
