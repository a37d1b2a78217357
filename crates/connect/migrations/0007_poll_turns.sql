-- Each polled agency's turns, for an operator asking why no case came from its Primero:
-- how many turns the pollers took (every replica's, counted together), when the last
-- one ended, and how it ended. One row per agency, upserted at the end of every turn.
-- A row of its own, not columns of poll_cursors: a cursor is written only after a whole
-- pull, while a turn that skipped or failed is exactly what this must show.
CREATE TABLE poll_turns (
    agency_id    TEXT PRIMARY KEY,
    turns        BIGINT NOT NULL CHECK (turns > 0),
    last_turn_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- pulled: this replica held the lease and read every changed page it was given
    --   (the cases taken in or parked; cursor moved);
    -- lease_held_elsewhere: another replica held the agency's lease, so this turn
    --   skipped, or a pull stopped at the page where it found the lease taken;
    -- failed: the pull stopped on the agency, the network, the hub or storage (the
    --   replica's log says why); tried again next turn.
    last_outcome TEXT NOT NULL CHECK (last_outcome IN ('pulled', 'lease_held_elsewhere', 'failed'))
);
