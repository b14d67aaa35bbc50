#!/usr/bin/env bash
# Configure and build one flavour of touchpulse.
#   scripts/build.sh release|asan|tsan [extra cmake args...]
# Builds into build/<flavour>; prints nothing but errors on success.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
case "$flavour" in
  release) opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan)    opts=(-DCMAKE_BUILD_TYPE=Debug -DTP_ASAN=ON -DTP_UBSAN=ON) ;;
  tsan)    opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_TSAN=ON -DTP_BUILD_BENCH=OFF) ;;
  *) echo "usage: $0 release|asan|tsan [cmake args]" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" "${opts[@]}" "$@" >/dev/null
cmake --build "build/$flavour" -j "$(nproc)" -- --no-print-directory >/dev/null
