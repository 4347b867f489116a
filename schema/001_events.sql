-- 001_events.sql: the audit log. One row per event (a `decision` when a
-- connection or request is decided, a `close` when it ends), the `requests`
-- view that joins the two, and the triggers that make `events` append-only.
-- This file is the schema's documentation; `sqlite3 FILE .schema` shows it.
--
-- Conventions:
--   * NULL means "not applicable / not known". The writer stores every empty
--     string of the event as NULL, so queries test `IS NULL`, never `= ''`.
--     Decision events carry the decision fields and leave status, bytes_up,
--     bytes_down and duration_ms NULL; close events carry those.
--   * Timestamps are UTC ISO-8601 with microseconds and a `Z`
--     ("2026-11-27T19:54:58.123456Z"); fixed width, so text order is time
--     order and `ts >= '2026-11-27'` works.
--   * Values of mode, kind, decision and reason are checked by the proxy's
--     enums, not by CHECK constraints here: the writer commits events in
--     batches, and one rejected row would fail the whole batch, and with it
--     every waiting connection (invariant 2 fails closed).
--   * The hash chain (prev_hash, hash) makes edits and deletions detectable
--     by `egress audit verify`; the triggers below only stop accidents.
--
-- The migration runner sets PRAGMA application_id and user_version; this
-- file must not.

CREATE TABLE events (
  id            INTEGER PRIMARY KEY,  -- row number, increasing in commit order
  ts            TEXT NOT NULL,        -- when it happened, UTC ISO-8601 with microseconds
  request_id    TEXT NOT NULL,        -- joins a decision event to its close event
  event         TEXT NOT NULL         -- what this row records
                CHECK (event IN ('decision', 'close')),
  mode          TEXT,                 -- production | self-hosted | developer
  role          TEXT,                 -- the worker's role; NULL when it has none
  client_addr   TEXT,                 -- "ip:port" of the worker
  kind          TEXT,                 -- http | connect | inspected
  method        TEXT,                 -- HTTP method; NULL for CONNECT tunnels
  scheme        TEXT,                 -- http | https; NULL for CONNECT tunnels
  host          TEXT,                 -- normalised target host (raw text if it could not be normalised)
  port          INTEGER,              -- target port
  path          TEXT,                 -- request path, where visible (plain HTTP, inspected TLS)
  sni           TEXT,                 -- TLS ClientHello server name, where seen
  decision      TEXT,                 -- allow | deny | report (report: a rule would deny, allowed and logged)
  rule          TEXT,                 -- the rule that decided: "FILE:LINE", "mode:developer", "default"
  reason        TEXT,                 -- reason code (policy/reason.h), e.g. "host-allowed", "ip-private"
  upstream_addr TEXT,                 -- "ip:port" actually connected to
  status        INTEGER,              -- HTTP status sent to the worker (close events)
  bytes_up      INTEGER,              -- bytes worker -> upstream (close events)
  bytes_down    INTEGER,              -- bytes upstream -> worker (close events)
  duration_ms   INTEGER,              -- from decision to close, milliseconds (close events)
  error         TEXT,                 -- what went wrong, for a person; NULL if nothing did
  prev_hash     TEXT NOT NULL,        -- `hash` of the previous row; 64 zeros for the first row
  hash          TEXT NOT NULL         -- hex SHA-256 of prev_hash + this row's canonical content (src/audit/chain.h)
);

-- Time-range scans (`audit tail`, `audit query --since`, retention).
CREATE INDEX events_ts ON events (ts);
-- "What did we send to github.com last week?"
CREATE INDEX events_host_ts ON events (host, ts);
-- Joining a decision to its close (the `requests` view).
CREATE INDEX events_request_id ON events (request_id);
-- "Every deny / report since ..."
CREATE INDEX events_decision_ts ON events (decision, ts);

-- One row per request: the decision event and, once the request has ended,
-- its close event. Requests still in flight have NULL close columns.
-- upstream_addr and error prefer the close row (known only after connecting
-- or failing) and fall back to the decision row.
CREATE VIEW requests AS
SELECT
  d.request_id                                AS request_id,
  d.ts                                        AS ts,         -- decision time
  c.ts                                        AS closed_ts,  -- NULL while in flight
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
  ON c.request_id = d.request_id AND c.event = 'close'
WHERE d.event = 'decision';

-- Append-only. `egress audit prune` (retention) will drop events_no_delete
-- inside its own transaction, delete by age, and recreate it before COMMIT,
-- so no other connection ever sees the table without it.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
  SELECT RAISE(ABORT, 'events is append-only: rows cannot be changed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
  SELECT RAISE(ABORT, 'events is append-only: rows are removed only by egress audit prune');
END;
