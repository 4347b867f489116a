#!/usr/bin/env bash
# Quick start, command 2: install what is missing (build and test
# dependencies), build everything, run the whole test suite (unit and
# integration, through ctest), then the unit tests again under
# AddressSanitizer + UBSan, then the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# Each stage's wall time goes to the log, so CI's budget (30 min on 2 cores)
# can be read from it stage by stage.
stage_start=$SECONDS
stage() { echo "test.sh: stage '$1' took $((SECONDS - stage_start)) s (total $SECONDS s)"; stage_start=$SECONDS; }
scripts/install-deps.sh --test
stage install

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
stage build
# The Docker test (label docker) passes end to end but takes about 14 min,
# 10 of them compiling egress a third time inside docker/Dockerfile's build
# stage: with it CI would take about 48 min, so it runs only when asked
# (EGRESS_TEST_DOCKER=1 scripts/test.sh, or ctest -L docker): docs/docker.md.
docker_label=(-LE docker)
if [[ "${EGRESS_TEST_DOCKER:-0}" == 1 ]]; then docker_label=(); fi
(cd build && ctest --output-on-failure -j"$jobs" "${docker_label[@]}")
stage suite

# The unit tests once more under AddressSanitizer + UBSan, built by clang in
# the fuzzing build (build-fuzz: every library instrumented for ASan, UBSan
# and coverage), so the libraries are compiled once for both; then the
# libFuzzer targets run 15 s each (about a minute in all). Any sanitizer
# report, crash, leak or broken invariant fails the run.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESS_FUZZ=ON -DEGRESS_TESTS=ON >/dev/null
unit_targets=$(cd build-fuzz && ctest -N -L unit | sed -n 's/.*Test *#[0-9]*: unit\.\(.*\)/\1_tests/p')
# shellcheck disable=SC2086
cmake --build build-fuzz -j"$jobs" --target $unit_targets
(cd build-fuzz && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -L unit -j"$jobs")
stage "sanitizer build and unit tests"
tests/fuzz/run.sh 15
stage fuzz
