-- 005_secrets.sql: credentials egress injected (issue 16; docs/secrets.md).
-- `injected` (decision events): the names of the secrets egress added to
-- the request, comma-separated; never a value. `scrubbed` (close events):
-- how many times an injected secret was replaced with [egress:NAME] in what
-- the upstream sent back. NULL where nothing was injected, which includes
-- every row written before this migration.
--
-- Appended like alpn (003_alpn.sql): the hash chain covers them only when
-- not NULL, so older rows verify unchanged. Additive only.

ALTER TABLE events ADD COLUMN injected TEXT;     -- secret names, comma-separated
ALTER TABLE events ADD COLUMN scrubbed INTEGER;  -- replacements in the response

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
  d.injected                                  AS injected,
  d.decision                                  AS decision,
  d.rule                                      AS rule,
  d.reason                                    AS reason,
  COALESCE(c.upstream_addr, d.upstream_addr)  AS upstream_addr,
  c.status                                    AS status,
  c.bytes_up                                  AS bytes_up,
  c.bytes_down                                AS bytes_down,
  c.duration_ms                               AS duration_ms,
  COALESCE(c.error, d.error)                  AS error,
  c.scrubbed                                  AS scrubbed,
  d.id                                        AS decision_id,
  c.id                                        AS close_id
FROM events AS d
LEFT JOIN events AS c
  ON c.request_id = d.request_id AND c.event = 'close'
WHERE d.event = 'decision';
