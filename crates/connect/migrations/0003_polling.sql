-- Where each polled agency's pull stands: the last change time read (schema: connectors).
CREATE TABLE poll_cursors (
    agency_id  TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Items an agency sent (pulled or pushed) that the hub could not take, with the reason,
-- for an operator to take up with the agency. The reason names fields, never values.
CREATE TABLE inbound_parked (
    id          BIGSERIAL PRIMARY KEY,
    agency_id   TEXT NOT NULL,
    route       TEXT NOT NULL,
    message_id  TEXT,
    http_status INT NOT NULL,
    reason      TEXT NOT NULL,
    parked_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
