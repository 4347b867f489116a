#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build egress (Release)
# and start it on the embedded default policy: developer mode (allow public
# destinations and log everything), listening on 127.0.0.1:3128, audit in
# ./egress-audit.db. Extra arguments go to `egress serve`, e.g.
#   scripts/run.sh --policy policies/self-hosted.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEGRESS_TESTS=OFF >/dev/null
cmake --build build-release --target egress -j"$(nproc)"
exec build-release/egress serve "$@"
