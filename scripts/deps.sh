#!/usr/bin/env bash
# Install the Debian packages touchpulse needs to build, test and run its demo.
# Idempotent and quick when everything is already there.
#   scripts/deps.sh          everything: build, tests, demo
#   scripts/deps.sh --build  only what a release build needs (docker/Dockerfile)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  librdkafka-dev libavro-dev libuv1-dev libyaml-dev libjemalloc-dev
)
if [ "${1:-}" != --build ]; then
  # Tests: Criterion, liburcu (the benchmarks' baseline), kcat and Python
  # clients for the real-broker tests, Prometheus and promtool for the
  # metrics checks, docker-compose to validate the compose file, cppcheck
  # and clang-tidy for the static analysis in scripts/lint.sh, clang and its
  # sanitizer and libFuzzer runtimes for scripts/fuzz.sh.
  packages+=(libcriterion-dev liburcu-dev curl kcat prometheus python3 docker-compose
             cppcheck clang-tidy clang libclang-rt-14-dev)
fi

# The integration tests run a real Kafka broker (Java 17, jars fetched with
# Maven) and Python test clients in a virtual environment. Machines that
# already have them (from another source than Debian) are left alone.
if [ "${1:-}" != --build ]; then
  command -v java >/dev/null || packages+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || packages+=(maven)
  python3 -m venv --help >/dev/null 2>&1 || packages+=(python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
