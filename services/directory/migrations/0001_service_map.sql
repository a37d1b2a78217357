-- The service map: each agency's concrete services, kept current by the agency. Rows are
-- never deleted (removed = true), so a consumer can always apply the newest version.
CREATE TABLE services (
    service_id   TEXT PRIMARY KEY,
    agency_id    TEXT NOT NULL,
    service_type TEXT NOT NULL,
    name_ar      TEXT NOT NULL,
    name_en      TEXT NOT NULL DEFAULT '',
    governorate  TEXT NOT NULL,
    districts    TEXT[] NOT NULL DEFAULT '{}',
    capacity     INTEGER NOT NULL CHECK (capacity >= 0),
    languages    TEXT[] NOT NULL,
    accepting    BOOLEAN NOT NULL,
    removed      BOOLEAN NOT NULL DEFAULT false,
    version      BIGINT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX services_find ON services (service_type, governorate) WHERE NOT removed;
