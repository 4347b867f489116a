#!/usr/bin/env bash
# Installs what egress needs to build, run and test on Debian 12, and nothing
# that is already there. Safe to run again; used by the README, .ci/run and
# docker/Dockerfile.
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   plus the peers the test suite drives
#   scripts/install-deps.sh --runtime  only the shared libraries the built
#                                      binary needs (docker/Dockerfile's final stage)
set -euo pipefail

build_packages=(
  g++ cmake make pkg-config ccache
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev
  libssl-dev libc-ares-dev libre2-dev libsqlite3-dev libpq-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libidn2-dev libcli11-dev catch2
)
test_packages=(
  curl sqlite3 python3 openssl dnsmasq-base iproute2 nftables runsc postgresql
  clang libclang-rt-14-dev libbenchmark-dev systemd
  chromium  # tests/integration/test_console.py, tests/bench/console_bench.py (DevTools protocol)
  docker.io docker-compose debootstrap  # tests/integration/test_docker.py
)

runtime_packages=(
  ca-certificates libssl3 libc-ares2 libre2-9 libsqlite3-0 libspdlog1.10 libfmt9
  libyaml-cpp0.7 libidn2-0 libboost-json1.81.0 libboost-url1.81.0 libpq5
)

wanted=("${build_packages[@]}")
if [[ "${1:-}" == "--test" ]]; then wanted+=("${test_packages[@]}"); fi
if [[ "${1:-}" == "--runtime" ]]; then wanted=("${runtime_packages[@]}"); fi

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#wanted[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or with sudo) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
