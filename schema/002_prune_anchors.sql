-- 002_prune_anchors.sql: where the hash chain starts after pruning.
--
-- `egress audit prune` and serve's `retention` remove the oldest rows of
-- `events` (always a prefix in id order, never the newest row, which
-- carries the chain forward). Without a record of that, the first kept row's
-- prev_hash would point at a row that no longer exists and `egress audit
-- verify` could not tell retention from an attacker deleting history. Each
-- prune run therefore writes one anchor row describing the range it removed:
--
--   * first_prev_hash .. last_hash: the chain links at both ends of the
--     removed range. The first anchor's first_prev_hash is the genesis hash
--     (64 zeros); each later anchor's first_prev_hash is the previous
--     anchor's last_hash; the first kept event's prev_hash is the newest
--     anchor's last_hash. verify checks all three links.
--   * hash: hex SHA-256 over first_prev_hash and the anchor's content
--     (ts, older_than, first_id, last_id, pruned_rows, last_hash), in the
--     canonical form of src/audit/chain.h, so an edited anchor is detected.
--
-- A run that prunes in batches extends its own anchor after each batch, in
-- the batch's transaction, so the table has one row per run whatever its
-- size. Additive only: version 1 databases keep every row and view.

CREATE TABLE prune_anchors (
  id              INTEGER PRIMARY KEY,
  ts              TEXT NOT NULL,     -- when the prune run started, UTC ISO-8601 with microseconds
  older_than      TEXT NOT NULL,     -- the cutoff: rows with ts before this were eligible
  first_id        INTEGER NOT NULL,  -- events.id of the first removed row
  last_id         INTEGER NOT NULL,  -- events.id of the last removed row
  pruned_rows     INTEGER NOT NULL,  -- rows removed by this run
  first_prev_hash TEXT NOT NULL,     -- prev_hash of the first removed row
  last_hash       TEXT NOT NULL,     -- hash of the last removed row = prev_hash of the next kept row
  hash            TEXT NOT NULL      -- hex SHA-256 of first_prev_hash + canonical content (see above)
);
