#!/usr/bin/env bash
# The Python environment of the integration tests and the benchmarks: the
# independent Kafka and Avro clients of tests/integration/requirements.txt
# (kafka-python, fastavro, mmh3, PyYAML) in build/itest-venv, created, or
# completed when one of them is missing. Prints the environment's python.
#   py=$(scripts/venv.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/build/itest-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kafka, fastavro, mmh3, yaml' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$root/tests/integration/requirements.txt" >&2
fi
echo "$venv/bin/python"
