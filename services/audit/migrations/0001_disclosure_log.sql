-- The disclosure log: append-only and hash-chained. Each entry's hash commits to its
-- content and to the previous entry's hash, so a changed, deleted, inserted or reordered
-- entry breaks the chain at that point (`himaya audit verify`). `at` is kept as the exact
-- text that was hashed.
CREATE TABLE log (
    seq         BIGINT PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    at          TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    referral_id TEXT,
    recipient   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT,
    categories  TEXT[] NOT NULL,
    basis       TEXT[] NOT NULL,
    delivery_message_id TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX log_case ON log (case_id, seq);
CREATE INDEX log_recipient ON log (recipient, case_id) WHERE decision = 'permit';

-- Append-only for the application: changing history takes a deliberate act (disabling
-- this trigger), and the chain still tells.
CREATE FUNCTION log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the disclosure log is append-only';
END $$;
CREATE TRIGGER log_append_only BEFORE UPDATE OR DELETE ON log
    FOR EACH ROW EXECUTE FUNCTION log_append_only();

-- Signed checkpoints: (seq, hash) signed with the hub's ed25519 key. Exported and kept
-- elsewhere, they reveal a truncated or rewritten tail too.
CREATE TABLE checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    signed_at  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
