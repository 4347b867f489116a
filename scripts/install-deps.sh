#!/usr/bin/env bash
# Installs what egress needs to build, run and test on Debian 12, and nothing
# that is already there. Safe to run again; used by the README, .ci/run and
# docker/Dockerfile.
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   plus the peers the test suite drives, and
#                                    build packages upgraded to the archive's
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

# With --test, build packages older than the archive's are upgraded too: the
# suite's build then compiles against the same headers as
# docker/Dockerfile's build stage (which installs from the archive), so the
# Docker test's image build finds every object in that build's compiler
# cache (an OpenSSL point release apart is enough to miss them all).
outdated=()
if [[ "${1:-}" == "--test" ]]; then
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq; fi
  for pkg in "${build_packages[@]}"; do
    installed=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
    candidate=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    if [[ -n $installed && -n $candidate && $candidate != "(none)" ]] &&
        dpkg --compare-versions "$installed" lt "$candidate"; then
      outdated+=("$pkg")
    fi
  done
fi

if ((${#missing[@]} + ${#outdated[@]} == 0)); then
  echo "install-deps: all ${#wanted[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  if ((${#missing[@]})); then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or with sudo) to install them" >&2
    exit 1
  fi
  echo "install-deps: older than the archive's: ${outdated[*]} (run as root to upgrade them)" >&2
  exit 0
fi

echo "install-deps: installing ${missing[*]:-nothing new}; upgrading ${outdated[*]:-nothing}"
export DEBIAN_FRONTEND=noninteractive
if [[ "${1:-}" != "--test" ]]; then apt-get update -qq; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" "${outdated[@]}" >/dev/null
echo "install-deps: done"
