-- What agencies posted to the webhooks and what the hub answered, keyed by the agency's
-- own message id: a message posted twice is processed once and answered the same way.
-- Answers hold ids and states only, never case data.
CREATE TABLE inbound_messages (
    agency_id   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    route       TEXT NOT NULL,
    http_status INT NOT NULL,
    answer      JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, message_id)
);
