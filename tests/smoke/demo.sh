#!/usr/bin/env bash
# Demo smoke test: what a new user sees.
#  1. `touchpulse --demo` prints FIRING and RESOLVED alerts within 60 seconds;
#  2. meanwhile /metrics answers and `promtool check metrics` accepts it,
#     /healthz and /readyz answer 200, /v1/touchpoints/{id} gives JSON;
#  3. a flood of slow and malformed HTTP clients never stalls event
#     processing (http_flood.py);
#  4. Ctrl-C (SIGINT) stops it cleanly with exit code 0;
#  5. it logs that it runs on the allocator it was built with (jemalloc in
#     release builds, the C library's malloc under the sanitizers).
# usage: demo.sh path/to/touchpulse jemalloc|libc
set -euo pipefail
bin=$1
allocator=${2:-libc}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TOUCHPULSE_HTTP_LISTEN=127.0.0.1:$port
"$bin" --demo >"$work/out" 2>"$work/err" &
pid=$!
start=$(date +%s)

fail() { echo "demo smoke: $*" >&2; tail -20 "$work/err" >&2; exit 1; }

# Wait for readiness.
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/healthz" | grep -q ok || fail "/healthz not ok"
curl -sf "http://127.0.0.1:$port/readyz" | grep -q ready || fail "/readyz not ready"

# FIRING and RESOLVED within 60 seconds of the start.
while :; do
  if grep -q '^FIRING' "$work/out" && grep -q '^RESOLVED' "$work/out"; then break; fi
  [ $(( $(date +%s) - start )) -lt 60 ] || fail "no FIRING and RESOLVED alert within 60 s"
  kill -0 $pid 2>/dev/null || fail "demo exited early"
  sleep 1
done
case "$allocator" in
  jemalloc) want='memory allocator: jemalloc [0-9]' ;;
  *)        want="memory allocator: the C library's malloc\$" ;;
esac
grep -Eq "$want" "$work/err" || fail "the log does not say the process runs on $allocator"
echo "demo smoke: FIRING and RESOLVED after $(( $(date +%s) - start )) s"

curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics" || fail "/metrics failed"
promtool check metrics <"$work/metrics" || fail "promtool rejected /metrics"
grep -q '^touchpulse_alerts_total{rule="checkout-csat-low",state="FIRING"} [1-9]' "$work/metrics" \
  || fail "alert counter missing"
grep -q '^touchpulse_events_rejected_total{topic="cx.feedback",reason="truncated"}' "$work/metrics" \
  || fail "rejection counter missing"
curl -sf "http://127.0.0.1:$port/v1/touchpoints/checkout.payment" | python3 -c '
import json, sys
v = json.load(sys.stdin)
assert v["touchpoint"] == "checkout.payment", v
assert {t["topic"] for t in v["topics"]} >= {"cx.feedback", "cx.commerce"}, v
' || fail "/v1/touchpoints/checkout.payment"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/touchpoints/nowhere")
[ "$code" = 404 ] || fail "unknown touchpoint gave $code"

python3 "$(dirname "$0")/http_flood.py" "$port" 6 || fail "HTTP flood stalled processing"
curl -sf "http://127.0.0.1:$port/healthz" | grep -q ok || fail "/healthz not ok after the flood"

kill -INT $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 0 ] || fail "exit code $rc after SIGINT"
grep -q 'demo stopped' "$work/out" || fail "no clean stop message"
echo "demo smoke: ok"
