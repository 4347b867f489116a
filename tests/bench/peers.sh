#!/usr/bin/env bash
# egress side by side with squid, tinyproxy and mitmproxy, through the shared
# bench harness (../shared/bench, see its README). Builds egress (build/,
# RelWithDebInfo: the binary scripts/run.sh starts and CI tests),
# starts it with the bench policy (allowed.test internal, everything else
# refused) and the audit guarantee on, runs the harness with egress added as
# an extra proxy, then checks the audit database: one decision event per
# request egress answered (compared with egress's own request counter and
# with the harness's request counts), and a close event for each.
#
#   bash tests/bench/peers.sh [--out DIR] [HARNESS ARGS...]
#   bash tests/bench/peers.sh --rounds 1 --duration 2            # a quick run
#   bash tests/bench/peers.sh --scenarios http-keepalive --peers squid
#
# Needs root (the harness edits /etc/hosts and resets VmHWM) and the peers
# installed by ../shared/bench/setup.sh. Loopback only; bounded by the
# harness's --max-total (default 1200 s).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
harness="${EGRESS_BENCH_HARNESS:-$root/../shared/bench}"
out="$root/build/bench"
if [[ "${1:-}" == "--out" ]]; then out="$2"; shift 2; fi
[[ -x "$harness/peers.sh" || -f "$harness/peers.sh" ]] ||
  { echo "peers.sh: no bench harness at $harness (set EGRESS_BENCH_HARNESS)" >&2; exit 2; }

cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target egress >/dev/null

mkdir -p "$out"
work="$(mktemp -d /tmp/egress-bench-XXXXXX)"
port=13129 admin=19129
cat >"$work/policy.yaml" <<'EOF'
version: 1
mode: self-hosted
internal:
  - host: allowed.test        # the bench upstream is on 127.0.0.1
    ports: [18080, 18443]
EOF
cat >"$work/egress.yaml" <<'EOF'
dns:
  hosts_file: false
  hosts: {allowed.test: [127.0.0.1], denied.test: [127.0.0.1]}
log_level: info   # the canonical line per attempt: the harness's "access log"
EOF

"$root/build/egress" serve --config "$work/egress.yaml" --policy "$work/policy.yaml" \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --audit-db "$work/audit.db" \
  >"$work/egress.out" 2>"$work/egress.log" &
egress_pid=$!
stop_egress() { kill -TERM "$egress_pid" 2>/dev/null && wait "$egress_pid" 2>/dev/null || true; }
trap 'stop_egress; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  grep -q "egress listening" "$work/egress.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "egress listening" "$work/egress.out" || { cat "$work/egress.log" >&2; exit 1; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
bash "$harness/peers.sh" --out "$out/peers-$stamp.jsonl" "egress=127.0.0.1:$port" \
  --log "egress=$work/egress.log" --pid "egress=$egress_pid" "$@" | tee "$out/peers-$stamp.txt"

# One decision event per request: egress's own counter (/metrics) and the
# harness's request counts against the committed audit rows.
decided="$(curl -s "http://127.0.0.1:$admin/metrics" |
  awk '/^egress_proxy_requests_total/ {sum += $NF} END {printf "%d", sum}')"
stop_egress
read -r decisions closes < <(sqlite3 -separator ' ' "$work/audit.db" \
  "SELECT sum(event = 'decision'), sum(event = 'close') FROM events")
answered="$(python3 "$root/tests/bench/attempts.py" "$out/peers-$stamp.jsonl" egress)"
echo "audit: $decisions decision events, $closes close events; egress decided $decided attempts;" \
  "the harness made $answered attempts through egress in its measured runs (warm-ups and checks come on top)" |
  tee -a "$out/peers-$stamp.txt"
if [[ "$decisions" != "$decided" || "$closes" != "$decisions" || "$decisions" -lt "$answered" ]]; then
  echo "peers.sh: FAIL: the audit log does not hold one decision and one close event per request" >&2
  exit 1
fi
echo "audit check: ok (table: $out/peers-$stamp.txt)"
