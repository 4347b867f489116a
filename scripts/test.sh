#!/usr/bin/env bash
# Quick start, command 2: install what is missing (build and test
# dependencies), build everything, run the whole test suite (unit and
# integration, through ctest), then build the unit tests again under
# AddressSanitizer + UBSan and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
scripts/install-deps.sh --test

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEGRESS_SANITIZE=ON >/dev/null
unit_targets=$(cd build-asan && ctest -N -L unit | sed -n 's/.*Test *#[0-9]*: unit\.\(.*\)/\1_tests/p')
# shellcheck disable=SC2086
cmake --build build-asan -j"$jobs" --target $unit_targets
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -L unit -j"$jobs")

# Fuzzing: build the libFuzzer targets with clang and run each for 15 s
# (about a minute in all); any crash, leak or broken invariant fails the run.
tests/fuzz/run.sh 15
