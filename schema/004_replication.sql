-- 004_replication.sql: how far this file's rows have been shipped to a
-- central PostgreSQL store (serve's audit.replicate_to, docs/audit-fleet.md).
--
-- The shipper writes a row for its target when it starts (shipped_id 0)
-- and raises shipped_id after each batch the central store has committed.
-- `egress audit prune` and serve's retention never remove a row whose id is
-- above the smallest shipped_id here, so a backlog waiting for PostgreSQL is
-- never pruned away. To stop replicating for good, delete the target's row
-- (sqlite3 FILE "DELETE FROM replication WHERE target = '...'").
-- Not part of the hash chain. Additive only.

CREATE TABLE replication (
  target     TEXT PRIMARY KEY,   -- the central store, its DSN without the password
  replica    TEXT NOT NULL,      -- the name this file's rows carry there
  shipped_id INTEGER NOT NULL,   -- every row with id <= this is in the central store
  updated_ts TEXT NOT NULL       -- when shipped_id last moved, UTC ISO-8601
);
