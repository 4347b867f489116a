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
#   bash tests/bench/peers.sh --replicate --peers squid        # replication on vs off, same run
#   EGRESS_BENCH_BEFORE=/path/to/old/egress bash tests/bench/peers.sh --peers squid
#                                                              # this build vs another, same run
#   EGRESS_BENCH_EGRESS=/path/to/egress ...                    # measure that binary, build nothing
#
# --replicate (first argument, after --out) adds a second egress,
# "egress-repl", that also ships its audit to a throwaway PostgreSQL 15
# cluster (tests/bench/with_postgres.py); the audit check then also waits
# for its backlog to drain and compares the central count with the local one.
#
# Needs root (the harness edits /etc/hosts and resets VmHWM) and the peers
# installed by ../shared/bench/setup.sh. Loopback only; bounded by the
# harness's --max-total (default 1200 s).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
harness="${EGRESS_BENCH_HARNESS:-$root/../shared/bench}"
out="$root/build/bench"
if [[ "${1:-}" == "--out" ]]; then out="$2"; shift 2; fi
replicate=0
if [[ "${1:-}" == "--replicate" ]]; then
  shift
  [[ -n "${EGRESS_BENCH_PG_DSN:-}" ]] ||
    exec python3 "$root/tests/bench/with_postgres.py" -- bash "$0" --out "$out" --replicate "$@"
  replicate=1
fi
[[ -x "$harness/peers.sh" || -f "$harness/peers.sh" ]] ||
  { echo "peers.sh: no bench harness at $harness (set EGRESS_BENCH_HARNESS)" >&2; exit 2; }

# EGRESS_BENCH_EGRESS: a binary to measure as "egress" instead of building this checkout's.
if [[ -z "${EGRESS_BENCH_EGRESS:-}" ]]; then
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$root/build" -j"$(nproc)" --target egress >/dev/null
fi

mkdir -p "$out"
work="$(mktemp -d /tmp/egress-bench-XXXXXX)"
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

# start_egress NAME PORT ADMIN_PORT [SERVE ARGS...]: one egress instance in
# $work/NAME, from $binary (this checkout's build unless set).
pids=()
binary="${EGRESS_BENCH_EGRESS:-$root/build/egress}"
start_egress() {
  local name="$1" port="$2" admin="$3"
  shift 3
  mkdir -p "$work/$name"
  "$binary" serve --config "$work/egress.yaml" --policy "$work/policy.yaml" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --audit-db "$work/$name/audit.db" "$@" \
    >"$work/$name/egress.out" 2>"$work/$name/egress.log" &
  pids+=("$!")
  for _ in $(seq 50); do
    grep -q "egress listening" "$work/$name/egress.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "egress listening" "$work/$name/egress.out" || { cat "$work/$name/egress.log" >&2; exit 1; }
}
stop_all() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done; }
trap 'stop_all; rm -rf "$work"' EXIT

instances=("egress 13129 19129")
start_egress egress 13129 19129
# The harness takes every NAME=HOST:PORT before its options.
proxies=("egress=127.0.0.1:13129")
options=(--log "egress=$work/egress/egress.log" --pid "egress=${pids[0]}")
if ((replicate)); then
  instances+=("egress-repl 13130 19130")
  start_egress egress-repl 13130 19130 --audit-replicate-to "$EGRESS_BENCH_PG_DSN" --audit-replica bench
  proxies+=("egress-repl=127.0.0.1:13130")
  options+=(--log "egress-repl=$work/egress-repl/egress.log" --pid "egress-repl=${pids[-1]}")
fi
# EGRESS_BENCH_BEFORE: another build of egress (an earlier commit's, say),
# measured as "egress-before" in the same run, with the same policy.
if [[ -n "${EGRESS_BENCH_BEFORE:-}" ]]; then
  [[ -x "$EGRESS_BENCH_BEFORE" ]] || { echo "peers.sh: EGRESS_BENCH_BEFORE=$EGRESS_BENCH_BEFORE is not an executable" >&2; exit 2; }
  instances+=("egress-before 13131 19131")
  binary="$EGRESS_BENCH_BEFORE" start_egress egress-before 13131 19131
  proxies+=("egress-before=127.0.0.1:13131")
  options+=(--log "egress-before=$work/egress-before/egress.log" --pid "egress-before=${pids[-1]}")
fi

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
bash "$harness/peers.sh" "${proxies[@]}" --out "$out/peers-$stamp.jsonl" "${options[@]}" "$@" |
  tee "$out/peers-$stamp.txt"

# One decision event per request: each instance's own counter (/metrics) and
# the harness's request counts against its committed audit rows; with
# replication, the central store holds exactly the local rows once drained.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {sum += $NF} END {printf "%d", sum}'; }
if ((replicate)); then
  for _ in $(seq 300); do
    [[ "$(metric 19130 egress_audit_replication_backlog_rows)" == 0 ]] && break
    sleep 0.2
  done
fi
decided=()
for i in "${!instances[@]}"; do
  read -r name port admin <<<"${instances[$i]}"
  decided+=("$(metric "$admin" egress_proxy_requests_total)")
done
stop_all
failed=0
for i in "${!instances[@]}"; do
  read -r name port admin <<<"${instances[$i]}"
  read -r decisions closes < <(sqlite3 -separator ' ' "$work/$name/audit.db" \
    "SELECT sum(event = 'decision'), sum(event = 'close') FROM events")
  answered="$(python3 "$root/tests/bench/attempts.py" "$out/peers-$stamp.jsonl" "$name")"
  echo "audit $name: $decisions decision events, $closes close events; it decided ${decided[$i]} attempts;" \
    "the harness made $answered attempts through it in its measured runs (warm-ups and checks come on top)" |
    tee -a "$out/peers-$stamp.txt"
  if [[ "$decisions" != "${decided[$i]}" || "$closes" != "$decisions" || "$decisions" -lt "$answered" ]]; then
    echo "peers.sh: FAIL: $name's audit log does not hold one decision and one close event per request" >&2
    failed=1
  fi
  if [[ "$name" == egress-repl ]]; then
    local_rows="$(sqlite3 "$work/$name/audit.db" "SELECT count(*) FROM events")"
    central_rows="$(psql -d "$EGRESS_BENCH_PG_DSN" -XAtqc "SELECT count(*) FROM events WHERE replica = 'bench'")"
    echo "replication: $central_rows events in PostgreSQL, $local_rows in $name's local file" | tee -a "$out/peers-$stamp.txt"
    [[ "$central_rows" == "$local_rows" ]] || { echo "peers.sh: FAIL: the central store is not the local log" >&2; failed=1; }
  fi
done
((failed == 0)) || exit 1
echo "audit check: ok (table: $out/peers-$stamp.txt)"
