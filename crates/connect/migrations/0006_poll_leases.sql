-- Which connectors replica is pulling an agency, until when: one pull of an agency at a
-- time across replicas. A lease is renewed page by page and released at the end; one
-- whose replica died runs out by itself. (A lease row, not a lock held by an open
-- transaction: a pull makes HTTP and gRPC calls, and must not pin a pooled connection or
-- lose its lock to idle_in_transaction_session_timeout.)
CREATE TABLE poll_leases (
    agency_id TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    until     TIMESTAMPTZ NOT NULL
);
