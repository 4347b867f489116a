#!/bin/sh
# Audit benchmarks: writer throughput with commit-before-upstream on, and
# `egress audit query` on a 10-million-event database for a one-hour window
# filtered by host. Usage: tests/bench/audit_bench.sh BUILD_DIR [WORK_DIR]
set -eu
build=${1:?usage: audit_bench.sh BUILD_DIR [WORK_DIR]}
work=${2:-$(mktemp -d /tmp/egress-audit-bench-XXXXXX)}
mkdir -p "$work"
echo "== writer: 10 s, 64 and 256 concurrent sessions"
rm -f "$work"/writer.db*
"$build/tests/audit_bench" writer "$work/writer.db" 10 64
rm -f "$work"/writer.db*
"$build/tests/audit_bench" writer "$work/writer.db" 10 256

echo "== query: 10,000,000 events over 7 days, 200 hosts"
if [ ! -s "$work/big.db" ]; then
  "$build/tests/audit_bench" generate "$work/big.db" 10000000
fi
since=$(date -u -d '-3 days' +%Y-%m-%dT%H:00:00Z)
until=$(date -u -d '-3 days +1 hour' +%Y-%m-%dT%H:00:00Z)
for run in 1 2 3; do
  start=$(date +%s.%N)
  rows=$("$build/egress" audit query --db "$work/big.db" --host h42.example \
           --since "$since" --until "$until" --format json | wc -l)
  end=$(date +%s.%N)
  echo "query --host h42.example --since $since --until $until: $rows requests in $(echo "$end - $start" | bc) s"
done
start=$(date +%s.%N)
"$build/egress" audit query --db "$work/big.db" --host .example --since "$since" --until "$until" \
  --format csv | wc -l
end=$(date +%s.%N)
echo "query --host .example (every host, one hour): $(echo "$end - $start" | bc) s"
echo "work dir: $work (remove it when done)"
