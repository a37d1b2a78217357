-- Retention of closed cases (settings `[retention]`, docs/decisions.md "Retention").
-- `closed_at`: when the case was closed, written with the record (change::save) from its
-- closure, NULL while it is not closed. `anonymised_at`: when the retention policy removed
-- its personal data; such a case is never changed again and never re-indexed for the
-- duplicate search.
ALTER TABLE cases ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE cases ADD COLUMN anonymised_at TIMESTAMPTZ;
UPDATE cases SET closed_at = (record #>> '{closure,closed_at}')::timestamptz
 WHERE status = 'closed' AND record #>> '{closure,closed_at}' IS NOT NULL;
-- What the retention run looks for: closed, not yet anonymised, oldest closure first.
CREATE INDEX cases_retention_due ON cases (closed_at)
    WHERE status = 'closed' AND anonymised_at IS NULL;
