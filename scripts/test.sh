#!/usr/bin/env bash
# Quick start, command 2: install what is missing (build and test
# dependencies), build everything, run the whole test suite (unit and
# integration, the Docker deployment among them, through ctest), then the
# unit tests again under AddressSanitizer + UBSan, then the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# Each stage's wall time goes to the log, so CI's budget (30 min on 2 cores)
# can be read from it stage by stage.
stage_start=$SECONDS
stage() { echo "test.sh: stage '$1' took $((SECONDS - stage_start)) s (total $SECONDS s)"; stage_start=$SECONDS; }
scripts/install-deps.sh --test
stage install

# Through ccache (scripts/ccache.conf; the cache in build/ccache): the Docker
# test seeds docker/Dockerfile's build stage with it, so the image build
# reuses these objects instead of compiling egress again.
# ccache hashes the locale (LANG, LC_ALL, LC_CTYPE, LC_MESSAGES), so this
# build compiles in the image build stage's: LANG=C.UTF-8 and nothing else.
export CCACHE_DIR=$PWD/build/ccache CCACHE_CONFIGPATH=$PWD/scripts/ccache.conf
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
env -u LC_ALL -u LC_CTYPE -u LC_MESSAGES LANG=C.UTF-8 cmake --build build -j"$jobs"
stage build

# The sanitizer build: the unit tests and the libFuzzer targets, built by
# clang in build-fuzz (every library they link instrumented for ASan, UBSan
# and coverage, so the libraries are compiled once for both). It compiles at
# the lowest priority while the suite runs, since the suite spends most of
# its time waiting on sockets, containers and gVisor; the suite's processes
# keep the CPU whenever they want it.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESS_FUZZ=ON -DEGRESS_TESTS=ON >/dev/null
set -m  # job control: the background build gets its own process group, to stop it as a whole
nice -n 19 cmake --build build-fuzz -j"$jobs" --target unit_tests fuzz_targets >build-fuzz/build.log 2>&1 &
sanitizer_build=$!
set +m
trap 'kill -- -$sanitizer_build 2>/dev/null || true' EXIT

# EGRESS_TEST_DOCKER=0 leaves out the Docker test (label docker: its own
# dockerd, the egress image, compose in three modes; docs/docker.md).
docker_label=()
if [[ "${EGRESS_TEST_DOCKER:-1}" == 0 ]]; then docker_label=(-LE docker); fi
(cd build && ctest --output-on-failure -j"$jobs" "${docker_label[@]}")
stage suite

if ! wait $sanitizer_build; then
  tail -n 60 build-fuzz/build.log
  echo "test.sh: the sanitizer build failed (build-fuzz/build.log)" >&2
  exit 1
fi
trap - EXIT
stage "sanitizer build (what was left after the suite)"
(cd build-fuzz && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -L unit -j"$jobs")
stage "unit tests under ASan + UBSan"
tests/fuzz/run.sh 15
stage fuzz
