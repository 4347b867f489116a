-- postgresql/001_events.sql: the central audit store of a fleet of egress
-- replicas (docs/audit-fleet.md). Every replica's shipper (serve with
-- audit.replicate_to) copies its committed SQLite rows here unchanged, in id
-- order, adding the replica's name; (replica, id) is the key, so a batch
-- sent twice (a shipper killed between COMMIT and noting it) inserts
-- nothing the second time. prev_hash and hash are the replica's own chain
-- (src/audit/chain.h), so `egress audit verify --db postgresql://...` checks
-- each replica's rows exactly as `verify` checks the local file.
--
-- Same columns, types and NULL conventions as schema/001_events.sql and
-- 003_alpn.sql (ts is the fixed-width UTC text, so text order is time
-- order and `ts >= '2026-11-27'` works in psql as in sqlite3).
--
-- The migration runner (src/audit/pg_connection.cpp) records each applied
-- file in egress_schema; this file must not.

CREATE TABLE events (
  replica       TEXT   NOT NULL,  -- which egress wrote the row (--audit-replica; default the host name)
  id            BIGINT NOT NULL,  -- the row's id in that replica's SQLite file
  ts            TEXT   NOT NULL,  -- when it happened, UTC ISO-8601 with microseconds
  request_id    TEXT   NOT NULL,  -- joins a decision event to its close event (within a replica)
  event         TEXT   NOT NULL CHECK (event IN ('decision', 'close')),
  mode          TEXT,
  role          TEXT,
  client_addr   TEXT,
  kind          TEXT,
  method        TEXT,
  scheme        TEXT,
  host          TEXT,
  port          BIGINT,
  path          TEXT,
  sni           TEXT,
  decision      TEXT,
  rule          TEXT,
  reason        TEXT,
  upstream_addr TEXT,
  status        BIGINT,
  bytes_up      BIGINT,
  bytes_down    BIGINT,
  duration_ms   BIGINT,
  error         TEXT,
  prev_hash     TEXT   NOT NULL,  -- `hash` of the replica's previous row
  hash          TEXT   NOT NULL,  -- the replica's chain hash of this row
  alpn          TEXT,
  replicated_at TIMESTAMPTZ NOT NULL DEFAULT now(),  -- when the shipper inserted it (not hashed)
  PRIMARY KEY (replica, id)
);

-- Fleet-wide time ranges ("everything since yesterday").
CREATE INDEX events_ts ON events (ts);
-- "Which workers reached huggingface.co yesterday?"
CREATE INDEX events_host_ts ON events (host, ts);
-- "Every deny across the fleet since ..."
CREATE INDEX events_decision_ts ON events (decision, ts);
-- Joining a decision to its close (the requests view).
CREATE INDEX events_replica_request ON events (replica, request_id);

-- One row per request, as schema/003_alpn.sql's view, per replica.
CREATE VIEW requests AS
SELECT
  d.replica                                   AS replica,
  d.request_id                                AS request_id,
  d.ts                                        AS ts,
  c.ts                                        AS closed_ts,
  d.mode                                      AS mode,
  d.role                                      AS role,
  d.client_addr                               AS client_addr,
  d.kind                                      AS kind,
  d.method                                    AS method,
  d.scheme                                    AS scheme,
  d.host                                      AS host,
  d.port                                      AS port,
  d.path                                      AS path,
  d.sni                                       AS sni,
  d.alpn                                      AS alpn,
  d.decision                                  AS decision,
  d.rule                                      AS rule,
  d.reason                                    AS reason,
  COALESCE(c.upstream_addr, d.upstream_addr)  AS upstream_addr,
  c.status                                    AS status,
  c.bytes_up                                  AS bytes_up,
  c.bytes_down                                AS bytes_down,
  c.duration_ms                               AS duration_ms,
  COALESCE(c.error, d.error)                  AS error,
  d.id                                        AS decision_id,
  c.id                                        AS close_id
FROM events AS d
LEFT JOIN events AS c
  ON c.replica = d.replica AND c.request_id = d.request_id AND c.event = 'close'
WHERE d.event = 'decision';
