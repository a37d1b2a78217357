-- A copy of the directory's service map, kept from `directory.service.changed` (newest
-- version wins), from which a new referral's matching services are proposed.
CREATE TABLE service_map (
    service_id   TEXT PRIMARY KEY,
    agency_id    TEXT NOT NULL,
    service_type TEXT NOT NULL,
    name_ar      TEXT NOT NULL,
    name_en      TEXT NOT NULL,
    governorate  TEXT NOT NULL,
    districts    TEXT[] NOT NULL,
    capacity     INTEGER NOT NULL,
    languages    TEXT[] NOT NULL,
    accepting    BOOLEAN NOT NULL,
    removed      BOOLEAN NOT NULL,
    version      BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX service_map_find ON service_map (service_type, governorate) WHERE NOT removed;
