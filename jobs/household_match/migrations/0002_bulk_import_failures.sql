-- An import the file itself made impossible (not a container, a part over the limits,
-- corrupt data) is finished with a short reason code, so the operator sees it failed
-- rather than an import that seems to be still running. A re-run of the same file is
-- refused with the reason until it is started over.
ALTER TABLE bulk_imports
    ADD COLUMN failed_reason TEXT CHECK (failed_reason ~ '^[a-z_]{1,40}$'),
    ADD CONSTRAINT bulk_imports_failed_is_finished
        CHECK (failed_reason IS NULL OR finished_at IS NOT NULL);
