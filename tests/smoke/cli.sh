#!/usr/bin/env bash
# Command line: exit codes as SPEC says (0 ok, 2 bad usage or configuration),
# configuration errors naming the file and line, --help and --version.
# usage: cli.sh path/to/touchpulse
set -uo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

expect() { # expect CODE PATTERN -- args...
  local code=$1 pattern=$2
  shift 3
  "$bin" "$@" >"$work/out" 2>&1
  local rc=$?
  if [ $rc -ne "$code" ] || ! grep -qE -- "$pattern" "$work/out"; then
    echo "FAIL: touchpulse $* -> exit $rc (want $code), output:" >&2
    sed 's/^/    /' "$work/out" >&2
    fails=$((fails + 1))
  else
    echo "ok: touchpulse $* -> $code"
  fi
}

here=$(cd "$(dirname "$0")/../.." && pwd)
cat >"$work/bad.yaml" <<'YAML'
windows:
  step: 1m
  stpe: 2m
rules:
  - name: x
    metric: csat_maen
    window: 90s
    op: "<"
    threshold: 3
YAML

expect 0 '^touchpulse [0-9]+\.[0-9]+\.[0-9]+$' -- --version
expect 0 'usage: touchpulse' -- --help
expect 0 'ok \(5 rules\)' -- --check-config "$here/examples/touchpulse.yaml"
expect 2 "bad.yaml:3: .*stpe" -- --check-config "$work/bad.yaml"
expect 2 "bad.yaml:6: .*csat_maen" -- --check-config "$work/bad.yaml"
expect 2 "bad.yaml:7: .*multiple of windows.step" -- --check-config "$work/bad.yaml"
expect 2 "no-such.yaml" -- --check-config "$work/no-such.yaml"
expect 2 "unknown argument '--frobnicate'" -- --frobnicate
expect 2 "nothing to do" --
expect 2 "needs a file name" -- --config
expect 2 "demo-speed" -- --demo --demo-speed fast
TOUCHPULSE_WINDOWS_STPE=1m expect 2 "TOUCHPULSE_WINDOWS_STPE" -- --check-config "$here/examples/touchpulse.yaml"
TOUCHPULSE_HTTP_LISTEN=not-an-address expect 2 "TOUCHPULSE_HTTP_LISTEN: expected host:port" -- --config "$here/examples/touchpulse.yaml"
# The service itself refuses an http.listen it cannot bind (a TEST-NET-3
# address no interface here has), before it starts consuming.
TOUCHPULSE_HTTP_LISTEN=203.0.113.7:9464 expect 2 "http.listen 203.0.113.7:9464" -- --config "$here/examples/touchpulse.yaml"

expect 2 "exclude each other" -- --demo --generate
TOUCHPULSE_KAFKA_LINGER_MS=soon expect 2 "kafka.linger.ms" -- --generate --demo-seconds 1

# log.format json: every line on stderr is one JSON object with ts, level and
# msg; the effective configuration is logged with secrets redacted.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOUCHPULSE_LOG_FORMAT=json TOUCHPULSE_LOG_LEVEL=info TOUCHPULSE_KAFKA_SASL_PASSWORD=hunter2-s3cret \
  TOUCHPULSE_HTTP_LISTEN=127.0.0.1:$port "$bin" --demo --demo-seconds 3 >"$work/out" 2>"$work/err"
rc=$?
if [ $rc -ne 0 ] || ! python3 - "$work/err" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no log lines"
for l in lines:
    o = json.loads(l)
    assert set(o) == {"ts", "level", "msg"} and o["level"] in ("debug", "info", "warn", "error"), l
msgs = [json.loads(l)["msg"] for l in lines]
assert any('"sasl.password": "[redacted]"' in m for m in msgs), "no redacted password in the config dump"
assert any(m.startswith("assigned ") for m in msgs), "no assignment logged"
PY
then
  echo "FAIL: log.format json (exit $rc):" >&2; sed 's/^/    /' "$work/err" | head -20 >&2; fails=$((fails + 1))
elif grep -q hunter2 "$work/out" "$work/err"; then
  echo "FAIL: the password appears in the output" >&2; fails=$((fails + 1))
else
  echo "ok: log.format json: $(wc -l <"$work/err") JSON lines, password redacted"
fi

[ $fails -eq 0 ] || { echo "$fails CLI check(s) failed" >&2; exit 1; }
