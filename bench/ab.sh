#!/usr/bin/env bash
# Two builds of bench_apply side by side: both run at the same time, one per
# core, then again with the cores swapped, ROUNDS times; prints each pair's
# events/s and the ratio new/old. Running them together exposes both to the
# same noise of a shared machine, which running them one after the other
# does not.
#   bench/ab.sh OLD_BENCH_APPLY NEW_BENCH_APPLY [touchpoints] [rounds]
set -euo pipefail
old=$1 new=$2 tps=${3:-100000} rounds=${4:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rate() { tail -1 "$1" | awk '{print $(NF-1)}'; }
ratios=()
for ((r = 0; r < rounds; r++)); do
  for cores in "0 1" "1 0"; do
    set -- $cores
    taskset -c "$1" "$old" "$tps" > "$tmp/old" &
    taskset -c "$2" "$new" "$tps" > "$tmp/new"
    wait
    o=$(rate "$tmp/old") n=$(rate "$tmp/new")
    ratio=$(awk -v n="$n" -v o="$o" 'BEGIN { printf "%.3f", n / o }')
    ratios+=("$ratio")
    printf 'touchpoints %s  old %s/s (core %s)  new %s/s (core %s)  new/old %s\n' \
      "$tps" "$o" "$1" "$n" "$2" "$ratio"
  done
done
printf '%s\n' "${ratios[@]}" | sort -n |
  awk '{ a[NR] = $1 } END { printf "median new/old %.3f (min %.3f, max %.3f, %d pairs)\n",
                            (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR], NR }'
