-- The agencies connected to the hub, as data: seeded from the configuration, then changed
-- through the Directory API by the hub's administrators. Every process of the hub follows
-- this table (himaya_store::agencies): `seq` grows with every change, so a follower reads
-- the table again only when its highest `seq` moved. Tokens are never stored: only where
-- each process finds them (`configuration`, `env:NAME` or `file:/path`).
CREATE SEQUENCE agency_change_seq;

CREATE TABLE agencies (
    agency_id          TEXT PRIMARY KEY,
    agency_type        TEXT NOT NULL,
    name_ar            TEXT NOT NULL,
    name_en            TEXT NOT NULL,
    services           TEXT[] NOT NULL DEFAULT '{}',
    governorates       TEXT[] NOT NULL,
    endpoint           TEXT,
    protocol           TEXT NOT NULL,
    inbound_token_ref  TEXT,
    outbound_token_ref TEXT,
    login_user         TEXT,
    login_password_ref TEXT,
    place_codes        JSONB NOT NULL DEFAULT '{}',
    poll_interval_ms   BIGINT,
    status             TEXT NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'suspended', 'removed')),
    version            BIGINT NOT NULL CHECK (version >= 1),
    -- Who wrote the row last: the configuration (refreshed from it at the directory's
    -- start) or the API (left alone by the configuration from then on).
    source             TEXT NOT NULL CHECK (source IN ('configuration', 'api')),
    updated_by         TEXT NOT NULL,
    reason             TEXT,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    seq                BIGINT NOT NULL DEFAULT nextval('agency_change_seq')
);
CREATE INDEX agencies_seq ON agencies (seq);

-- Every version of every agency, as written: who, when, why. Append-only, written by the
-- trigger below so that no change can skip it.
CREATE TABLE agency_changes (
    seq        BIGINT PRIMARY KEY,
    agency_id  TEXT NOT NULL,
    version    BIGINT NOT NULL,
    status     TEXT NOT NULL,
    entry      JSONB NOT NULL,
    updated_by TEXT NOT NULL,
    reason     TEXT,
    at         TIMESTAMPTZ NOT NULL,
    UNIQUE (agency_id, version)
);

-- A row's change number and time are set as it is written; its history row is written
-- after, by the operation that took place (an upsert fires the BEFORE INSERT trigger even
-- when it ends as an update, so the history cannot be written there).
CREATE FUNCTION agency_stamped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := nextval('agency_change_seq');
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE FUNCTION agency_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agency_changes (seq, agency_id, version, status, entry, updated_by, reason, at)
    VALUES (NEW.seq, NEW.agency_id, NEW.version, NEW.status,
            to_jsonb(NEW) - 'seq' - 'updated_at', NEW.updated_by, NEW.reason, NEW.updated_at);
    RETURN NULL;
END $$;

CREATE TRIGGER agencies_stamped BEFORE INSERT OR UPDATE ON agencies
    FOR EACH ROW EXECUTE FUNCTION agency_stamped();
CREATE TRIGGER agencies_recorded AFTER INSERT OR UPDATE ON agencies
    FOR EACH ROW EXECUTE FUNCTION agency_recorded();

-- The contract every process of the hub reads (himaya_store::agencies), as the cases
-- service publishes `cases.open_children`: its columns change only with a new version of
-- the view; the table under it stays the directory's to change.
CREATE VIEW agencies_v1 AS
    SELECT agency_id, agency_type, name_ar, name_en, services, governorates, endpoint,
           protocol, inbound_token_ref, outbound_token_ref, login_user, login_password_ref,
           place_codes, poll_interval_ms, status, seq
      FROM agencies;
