#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build egress
# and start it on the embedded default policy: developer mode (allow public
# destinations and log everything), listening on 127.0.0.1:3128, audit in
# ./egress-audit.db. Extra arguments go to `egress serve`, e.g.
#   scripts/run.sh --policy policies/self-hosted.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The same build directory and type (RelWithDebInfo: -O2 -g) as
# scripts/test.sh, so CI builds exactly the binary this command starts.
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target egress -j"$(nproc)"
exec build/egress serve "$@"
