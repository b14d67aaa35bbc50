#!/usr/bin/env bash
# Integration tests against a real Apache Kafka broker (scripts/kafka.sh):
# fetches the broker's jars on the first run, installs the independent test
# clients (kafka-python, fastavro) into a virtual environment, and runs
# tests/integration/cluster.py, which starts and always stops its brokers.
# A broker that cannot start fails the run; nothing is skipped.
#   tests/integration/run.sh path/to/touchpulse [--only NAME ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$1
shift

py=$("$root/scripts/venv.sh")
"$root/scripts/kafka.sh" fetch

# Every test's folder (and broker) lives under one root, so whatever happens
# to cluster.py, no broker outlives the run.
export TMPDIR
TMPDIR=$(mktemp -d)
cleanup() {
  for d in "$TMPDIR"/*/kafka; do
    [ -d "$d" ] && "$root/scripts/kafka.sh" stop "$d" || true
  done
  rm -rf "$TMPDIR"
}
trap cleanup EXIT
"$py" "$here/cluster.py" --bin "$bin" "$@"
