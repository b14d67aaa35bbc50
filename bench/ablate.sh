#!/usr/bin/env bash
# What each part of touchpulse's per-record work costs in a real drain:
# builds touchpulse at every level of bench/ablate.patch (parts compiled out,
# cumulatively; never correct programs) from a copy of HEAD, starts a broker,
# loads one dataset and drains it with raw, touchpulse and each level taking
# turns (bench/ablate.py). Prints a Markdown table; writes nothing in the tree.
#
#   bench/ablate.sh [--events N] [--touchpoints N] [--dist uniform|zipf]
#                   [--reps N] [--levels 1,2,3,4,5]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
args=()
levels=1,2,3,4,5
while [ $# -gt 0 ]; do
  case "$1" in
    --events|--touchpoints|--dist|--reps) args+=("$1" "$2"); shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    *) echo "bench/ablate.sh: unknown option '$1' (see the top of the file)" >&2; exit 2 ;;
  esac
done
scripts/deps.sh >/dev/null
scripts/build.sh release
py=$(scripts/venv.sh)
scripts/kafka.sh fetch

work=$(mktemp -d)
cleanup() {
  scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true
  git worktree remove --force "$work/src" >/dev/null 2>&1 || true
  git worktree prune
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add -q --detach "$work/src" HEAD
if ! git -C "$work/src" apply "$here/ablate.patch"; then
  echo "bench/ablate.sh: bench/ablate.patch no longer applies to HEAD: refresh it" >&2
  exit 1
fi
specs=()
IFS=, read -r -a wanted <<< "$levels"
for level in "${wanted[@]}"; do
  # Code left unused by a level draws warnings: not errors in these builds.
  cmake -S "$work/src" -B "$work/build-$level" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTP_WERROR=OFF -DTP_BUILD_TESTS=OFF -DTP_BUILD_BENCH=OFF \
    "-DCMAKE_C_FLAGS=-DTP_ABLATE=$level" >/dev/null
  cmake --build "$work/build-$level" -j "$(nproc)" --target touchpulse -- --no-print-directory \
    >/dev/null
  specs+=("$level=$work/build-$level/touchpulse")
done
scripts/kafka.sh start "$work/kafka"
# shellcheck disable=SC1091
. "$work/kafka/env"
"$py" "$here/ablate.py" --bootstrap "$KAFKA_BOOTSTRAP" --workdir "$work" \
  --bin "$root/build/release" --levels "$(IFS=,; echo "${specs[*]}")" ${args[@]+"${args[@]}"}
