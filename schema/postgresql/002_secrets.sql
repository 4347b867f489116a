-- postgresql/002_secrets.sql: the columns of schema/005_secrets.sql in the
-- central store: `injected` (decision events: the names of the secrets
-- egress added) and `scrubbed` (close events: replacements in the response).
-- NULL where nothing was injected, as locally; the shippers copy them like
-- every content column.

ALTER TABLE events ADD COLUMN injected TEXT;
ALTER TABLE events ADD COLUMN scrubbed BIGINT;

DROP VIEW requests;

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
  ON c.replica = d.replica AND c.request_id = d.request_id AND c.event = 'close'
WHERE d.event = 'decision';
