-- The SHA-256 of each message's JSON (keys sorted, whitespace ignored), so that an agency
-- reusing one of its own message ids for a different message is told so (409) instead of
-- getting the first message's answer while its new message is silently dropped.
-- NULL for messages received before this column existed.
ALTER TABLE inbound_messages ADD COLUMN body_sha256 TEXT;
