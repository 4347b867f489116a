-- 003_alpn.sql: the ALPN protocols a tunnel's TLS ClientHello offered
-- (h2, http/1.1, ...), next to its SNI. NULL where no ClientHello was seen
-- or it carried no ALPN extension, which includes every row written before
-- this migration.
--
-- The column is appended (SQLite's ADD COLUMN), so it comes after `hash` in
-- the table; the hash chain covers it only when it is not NULL
-- (src/audit/chain.h), so rows written before it existed verify unchanged.
-- The `requests` view is recreated with it after `sni`. Additive only.

ALTER TABLE events ADD COLUMN alpn TEXT;  -- ALPN protocol names, comma-separated, in the order offered

DROP VIEW requests;

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
  ON c.request_id = d.request_id AND c.event = 'close'
WHERE d.event = 'decision';
