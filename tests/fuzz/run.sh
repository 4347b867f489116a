#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DEGRESS_FUZZ=ON, in build-fuzz/) and
# runs each for SECONDS_PER_TARGET seconds (default 15). Exits non-zero if
# any target finds a crash, a broken invariant, a leak or a timeout; the
# input that did it is kept in build-fuzz/fuzz-artifacts/<target>/.
#
#   tests/fuzz/run.sh          # CI: about a minute in all
#   tests/fuzz/run.sh 1800     # a long run: half an hour per target
#
# Runs start from the seed corpus in tests/fuzz/corpus/<target>/ and keep
# what they learn in build-fuzz/fuzz-corpus/<target>/, so later runs go on
# from there; the checked-in seeds are never written to.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
targets=(normalize request_head client_hello policy_loader journal_record)
build=build-fuzz
jobs=${EGRESS_FUZZ_BUILD_JOBS:-$(nproc)}

# Tests stay on: scripts/test.sh runs the unit tests from this same
# sanitized build before fuzzing, so CI compiles the libraries once for both.
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESS_FUZZ=ON -DEGRESS_TESTS=ON >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

failed=()
for target in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
           -artifact_prefix="$artifacts/")
  if [[ -f tests/fuzz/$target.dict ]]; then options+=(-dict="tests/fuzz/$target.dict"); fi
  echo "== fuzz_$target: ${seconds}s"
  if ! "$build/tests/fuzz/fuzz_$target" "${options[@]}" "$corpus" "tests/fuzz/corpus/$target" \
      >"$build/fuzz-$target.log" 2>&1; then
    tail -n 40 "$build/fuzz-$target.log"
    failed+=("$target")
  else
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$build/fuzz-$target.log" | tr '\n' ' '
    echo
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzzing: no findings"
