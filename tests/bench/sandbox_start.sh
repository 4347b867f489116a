#!/usr/bin/env bash
# What a sandbox costs to start: wall time of `egress sandbox run -- CMD`
# (namespace, veth, runsc start, teardown) against CMD run natively, 9 times
# each, interleaved; prints the medians. Needs root and runsc. Creates the
# proxy address 10.213.254.1 on lo and the sandbox firewall table, and
# removes both on exit; no traffic leaves the host.
#
#   bash tests/bench/sandbox_start.sh [build/egress]
set -euo pipefail
egress="$(realpath "${1:-build/egress}")"
proxy=10.213.254.1:3128
work="$(mktemp -d /tmp/egress-sandbox-start-XXXXXX)"
cat >"$work/policy.yaml" <<'YAML'
version: 1
mode: production
roles:
  bench:
    sources: [10.213.250.0/24]
    internal: [allowed.test]
YAML
"$egress" sandbox setup --proxy "$proxy" >/dev/null
"$egress" serve --policy "$work/policy.yaml" --listen "$proxy" --admin-listen off \
  --audit-db "$work/audit.db" >/dev/null 2>&1 &
serve=$!
cleanup() {
  kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  "$egress" sandbox teardown --proxy "$proxy" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sleep 1

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
for cmd in "/bin/true" "python3 -c pass"; do
  native=() sandboxed=()
  for _ in $(seq 9); do
    t0=$(date +%s%N); $cmd; t1=$(date +%s%N)
    native+=($(( (t1 - t0) / 1000 )))
    t0=$(date +%s%N)
    "$egress" sandbox run --policy "$work/policy.yaml" --role bench --proxy "$proxy" -- $cmd >/dev/null
    t1=$(date +%s%N)
    sandboxed+=($(( (t1 - t0) / 1000 )))
  done
  fastest=$(printf '%s\n' "${sandboxed[@]}" | sort -n | head -1)
  echo "$cmd: native median $(median "${native[@]}") µs, sandboxed median $(median "${sandboxed[@]}") µs" \
       "(fastest $fastest µs)"
done
