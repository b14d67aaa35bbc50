#!/usr/bin/env bash
# The benchmark: touchpulse side by side with a raw librdkafka consumer and
# Kafka Streams on a real Kafka broker, plus the micro-benchmarks, written to
# bench/RESULTS.md (and the raw figures to bench/results.json).
#
#   bench/run.sh [--events N] [--touchpoints 10000,100000,1000000]
#                [--dists uniform,zipf] [--reps 3] [--partitions 8]
#                [--contestants raw,touchpulse,touchpulse-norules,ks-default,ks-inmemory]
#                [--ks-dataset DIST-TOUCHPOINTS:EVENTS] [--skip-micro] [--skip-latency]
#
# Defaults are the full run: 10 M events per dataset, six datasets, three
# repetitions of five contestants (days on 2 cores: Kafka Streams drains a
# few thousand records a second here). --contestants
# raw,touchpulse,touchpulse-norules with --ks-dataset zipf-100000:300000
# runs Kafka Streams on a dataset of its own where raw, touchpulse and the
# two Kafka Streams configurations meet. Installs what
# it needs (scripts/deps.sh, the broker's and Kafka Streams' jars from Maven
# Central, kafka-python and fastavro into build/itest-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

e2e_args=()
micro=1
latency=1
cmdline="bench/run.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-micro) micro=0; shift ;;
    --skip-latency) latency=0; shift ;;
    --events|--touchpoints|--dists|--reps|--partitions|--contestants|--ks-dataset)
      e2e_args+=("$1" "$2"); shift 2 ;;
    *) echo "bench/run.sh: unknown option '$1' (see the top of the file)" >&2; exit 2 ;;
  esac
done

scripts/deps.sh >/dev/null
scripts/build.sh release
"$here/peers/kafka-streams/run.sh" build
built_from=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
py=$(scripts/venv.sh)
scripts/kafka.sh fetch

work=$(mktemp -d)
cleanup() {
  scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/kafka.sh start "$work/kafka"
# shellcheck disable=SC1091
. "$work/kafka/env"

out=$here/results.json
status=0
if [ "$micro" = 1 ]; then
  build/release/bench_decode > "$work/bench_decode.txt"
  build/release/bench_table > "$work/bench_table.txt"
  build/release/bench_rss > "$work/bench_rss.txt"
fi
"$py" "$here/e2e.py" --bootstrap "$KAFKA_BOOTSTRAP" --workdir "$work" \
  --out "$out" ${e2e_args[@]+"${e2e_args[@]}"}
if [ "$latency" = 1 ]; then
  if ! "$py" "$here/latency.py" --bootstrap "$KAFKA_BOOTSTRAP" --workdir "$work" \
    --bin build/release/touchpulse > "$work/latency.json"; then
    echo '{"error": "the latency run failed: see its message above"}' > "$work/latency.json"
    status=1
  fi
fi
"$py" "$here/report.py" --results "$out" --micro-dir "$work" \
  --command "$cmdline" --commit "$built_from" > "$here/RESULTS.md"
echo "bench/RESULTS.md written"
exit "$status"
