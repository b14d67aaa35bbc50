#!/usr/bin/env bash
# A real Prometheus (Debian's prometheus package) scrapes touchpulse:
#   1. `touchpulse --demo` on a free loopback port;
#   2. `prometheus` on another free loopback port scrapes it every second and
#      evaluates docker/prometheus/alerts.yml every second;
#   3. PromQL over its HTTP API: up{job="touchpulse"} is 1, events were
#      consumed, a per-touchpoint family has series, a processing latency
#      quantile comes out of the histogram, and every alerting rule evaluates
#      without error on the real series;
#   4. `promtool check metrics` accepts a scrape of /metrics taken then (with
#      every family present).
# Both processes are always stopped on exit. Takes about 20 s (90 s at most).
# usage: tests/ops/prometheus.sh path/to/touchpulse   (run from anywhere)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 path/to/touchpulse" >&2; exit 2; }
bin=$1
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
cd "$(dirname "$0")/../.."
[ -x "$bin" ] || { echo "prometheus check: $bin is not an executable" >&2; exit 2; }
for tool in prometheus promtool curl python3; do
  command -v "$tool" >/dev/null || { echo "prometheus check: $tool is not installed (scripts/deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
tp_pid=""
prom_pid=""
stop() { # PID: SIGTERM, then SIGKILL after 10 s
  local p=$1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  stop "$prom_pid"
  stop "$tp_pid"
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "prometheus check: FAILED: $*" >&2
  for f in "$work/touchpulse.err" "$work/prometheus.log"; do
    [ -s "$f" ] && { echo "--- last lines of $(basename "$f"):" >&2; tail -15 "$f" >&2; }
  done
  exit 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
start=$(date +%s)
deadline=$((start + 80))

# ---- touchpulse ----------------------------------------------------------------------------
tp_port=$(free_port)
# --demo-seconds bounds it even if this script is killed before its trap runs.
TOUCHPULSE_HTTP_LISTEN=127.0.0.1:$tp_port "$bin" --demo --demo-seconds 120 \
  >"$work/touchpulse.out" 2>"$work/touchpulse.err" &
tp_pid=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$tp_port/metrics" 2>/dev/null; do
  kill -0 "$tp_pid" 2>/dev/null || fail "touchpulse --demo exited early"
  [ "$(date +%s)" -lt $((start + 20)) ] || fail "touchpulse /metrics did not answer within 20 s"
  sleep 0.2
done

# ---- prometheus ------------------------------------------------------------------------------
prom_port=$(free_port)
cp docker/prometheus/alerts.yml "$work/alerts.yml"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: touchpulse
    static_configs:
      - targets: ["127.0.0.1:$tp_port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
api=http://127.0.0.1:$prom_port
until curl -fsS -o /dev/null "$api/-/ready" 2>/dev/null; do
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited early"
  [ "$(date +%s)" -lt $((start + 40)) ] || fail "prometheus was not ready within 40 s"
  sleep 0.2
done

# query PROMQL: prints the instant vector as "value<TAB>labels" lines, or
# "scalar<TAB>value"; nothing for an empty result.
query() {
  curl -fsS -G --data-urlencode "query=$1" "$api/api/v1/query" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "success", d
r = d["data"]
if r["resultType"] == "vector":
    for s in r["result"]:
        print(s["value"][1], json.dumps(s["metric"], sort_keys=True), sep="\t")
elif r["resultType"] == "scalar":
    print("scalar", r["result"][1], sep="\t")
'
}
# expect DESCRIPTION PROMQL PYTHON-CONDITION-ON-v: polls until the first
# sample's value v (a float) satisfies the condition, or the deadline.
expect() {
  local what=$1 promql=$2 cond=$3 out value
  while :; do
    out=$(query "$promql") || fail "the query $promql failed"
    value=$(printf '%s\n' "$out" | sed -n '1s/\t.*//p')
    if [ -n "$value" ] && python3 -c "import math, sys; v = float(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$value"; then
      echo "prometheus check: $what: $promql = $value"
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: $promql gave '${value:-no result}', wanted $cond"
    kill -0 "$tp_pid" 2>/dev/null || fail "touchpulse --demo exited early"
    sleep 1
  done
}

expect "the target is up" 'up{job="touchpulse"}' 'v == 1'
expect "events were consumed" 'sum(touchpulse_events_consumed_total)' 'v > 0'
expect "per-touchpoint series" 'count(touchpulse_touchpoint_csat_mean)' 'v > 0'
expect "latency quantile from the histogram" \
  'histogram_quantile(0.99, sum by (le) (rate(touchpulse_processing_latency_seconds_bucket[30s])))' \
  'math.isfinite(v) and v >= 0'

# Every rule of alerts.yml evaluated, without error, on the real series.
while :; do
  verdict=$( { curl -fsS "$api/api/v1/rules" || echo '{"data": {"groups": []}}'; } | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = ["%s: %s" % (r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
unknown = [r["name"] for r in rules if r.get("health") != "ok"]
if bad:
    print("error", "; ".join(bad))
elif unknown or not rules:
    print("wait", len(rules))
else:
    firing = sorted({r["name"] for r in rules if r.get("state") in ("firing", "pending")})
    print("ok", len(rules), ", ".join(firing) or "none")
') || fail "cannot read the rules from $api/api/v1/rules"
  case $verdict in
    ok\ *)
      set -- $verdict
      echo "prometheus check: the $2 alerting rules of docker/prometheus/alerts.yml evaluate without error" \
        "(pending or firing on the demo: ${*:3})"
      break ;;
    error\ *) fail "alerting rules failed to evaluate: ${verdict#error }" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || fail "the alerting rules were not all evaluated in time ($verdict)"
  sleep 1
done
# By now every family is there (per-touchpoint gauges, librdkafka statistics).
curl -fsS -o "$work/metrics" "http://127.0.0.1:$tp_port/metrics" || fail "touchpulse /metrics failed"
promtool check metrics <"$work/metrics" >"$work/promtool.log" 2>&1 \
  || { cat "$work/promtool.log" >&2; fail "promtool check metrics rejected touchpulse's /metrics"; }
echo "prometheus check: promtool check metrics accepts /metrics" \
  "($(grep -c '^# TYPE' "$work/metrics") families, $(grep -vc '^#' "$work/metrics") samples)"
echo "prometheus check: ok ($(($(date +%s) - start)) s)"
