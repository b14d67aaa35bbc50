#!/usr/bin/env bash
# Security against real brokers: touchpulse's kafka: section reaches
# librdkafka unchanged, so SASL_PLAINTEXT listeners with SASL/SCRAM and
# SASL/PLAIN work, and a failed authentication stops touchpulse with a clear
# error instead of a hang.
#
#   tests/integration/sasl.sh path/to/touchpulse [--only CASE[,CASE...]]
#
# Run from anywhere (after `scripts/kafka.sh fetch`, which this also runs for
# both versions). Starts one broker per Kafka version with
# `[KAFKA_VERSION=3.9.1] scripts/kafka.sh start DIR --sasl` in a fresh
# temporary folder, reuses it for every case on that version, and always stops
# both. Topics are created and test records produced and read over each
# broker's PLAINTEXT listener with kafka-python + fastavro (the virtual
# environment of tests/integration/run.sh); touchpulse talks to the SASL
# listener only.
#
# Why two versions: librdkafka before 2.6.1 (Debian's 2.0.2) repeats the
# client nonce in SCRAM's client-final-message (librdkafka#4895). Kafka 4.x
# compares the nonce strictly (since the CVE-2024-56128 fix) and rejects it as
# invalid credentials whatever the password; Kafka 3.8.1 to 3.9.x accept it.
# So SCRAM is tested against Kafka 3.9.1, PLAIN against 4.1.2 (the version of
# every other integration test), and SCRAM against 4.1.2 must fail fast with
# touchpulse's hint about that limitation.
#
# Cases (all by default, in this order):
#   scram-3.9.1         passthrough, SASL/SCRAM-SHA-256 on Kafka 3.9.1
#   wrong-scram-3.9.1   wrong password, SCRAM-SHA-256 on 3.9.1, exactly_once true
#   plain-4.1.2         passthrough, SASL/PLAIN on Kafka 4.1.2
#   wrong-plain-4.1.2   wrong password, PLAIN on 4.1.2, exactly_once false
#   scram-4.1.2         the RIGHT password, SCRAM-SHA-256 on 4.1.2 (exactly_once
#                       true): the librdkafka limitation above
#
#   passthrough   the config file names the SASL listener, security.protocol,
#                 sasl.mechanism and sasl.username; the password comes only from
#                 TOUCHPULSE_KAFKA_SASL_PASSWORD (so the environment override of
#                 kafka.* keys is tested too). /readyz turns 200, every feedback
#                 record produced is counted in touchpulse_events_consumed_total,
#                 a FIRING alert reaches cx.alerts (read_committed), SIGTERM
#                 exits 0, and the password never appears in touchpulse's output.
#   wrong password / SCRAM on 4.1.2:
#                 touchpulse exits with code 1 within REJECT_TIMEOUT seconds
#                 (default 30; it is killed otherwise), one of its own error
#                 lines (not merely librdkafka's log lines) says that the
#                 authentication failed (on 4.1.2 with SCRAM: and names
#                 librdkafka 2.6.1), /readyz never answered 200, and the
#                 password never appears in its output.
#
# Prints one line per check, a figures line ("sasl: ...") and a final PASS or
# FAIL line; exits 1 on any failure (the temporary folder with every log is
# then kept and named).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kafka_sh=$root/scripts/kafka.sh

all_cases="scram-3.9.1 wrong-scram-3.9.1 plain-4.1.2 wrong-plain-4.1.2 scram-4.1.2"
usage() { sed -n '7p' "$0" | sed 's/^#   /usage: /' >&2; echo "cases: $all_cases" >&2; exit 2; }
[ $# -ge 1 ] || usage
bin=$1
shift
cases=$all_cases
while [ $# -gt 0 ]; do
  case "$1" in
    --only) [ $# -ge 2 ] || usage; cases=${2//,/ }; shift 2 ;;
    *) usage ;;
  esac
done
for c in $cases; do
  case " $all_cases " in *" $c "*) ;; *) echo "sasl.sh: unknown case $c" >&2; usage ;; esac
done
[ -x "$bin" ] || { echo "sasl.sh: $bin is not an executable" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
reject_timeout=${REJECT_TIMEOUT:-${WRONG_PASSWORD_TIMEOUT:-30}}
ready_timeout=20
records=30

# Only this script's settings reach touchpulse and scripts/kafka.sh.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^TOUCHPULSE_' || true)
unset KAFKA_VERSION

py=$("$root/scripts/venv.sh")

# The versions the selected cases need.
versions=
for c in $all_cases; do
  case " $cases " in *" $c "*) ;; *) continue ;; esac
  v=${c##*-}
  case " $versions " in *" $v "*) ;; *) versions="$versions $v" ;; esac
done
versions=${versions# }
for v in $versions; do KAFKA_VERSION=$v "$kafka_sh" fetch; done

work=$(mktemp -d)
tp_pid=  # the touchpulse process running, if any
failures=0
finished=0
cleanup() {
  local rc=$?
  if [ "$finished" = 0 ]; then
    echo "FAIL  sasl.sh: aborted (exit code $rc)"
  fi
  if [ -n "$tp_pid" ]; then
    kill -KILL "$tp_pid" 2>/dev/null || true
    wait "$tp_pid" 2>/dev/null || true
  fi
  local pids=() d
  for d in "$work"/kafka-*; do
    [ -d "$d" ] || continue
    "$kafka_sh" stop "$d" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  if [ "$failures" -eq 0 ] && [ "$rc" -eq 0 ]; then
    rm -rf "$work"
  else
    rm -rf "$work"/kafka-*/data
    echo "sasl.sh: logs kept in $work" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { printf 'PASS  %-66s %s\n' "$1" "$2"; }
fail() { printf 'FAIL  %-66s %s\n' "$1" "$2"; failures=$((failures + 1)); }

now_ms() { date +%s%3N; }
secs_since() { # START_MS: seconds since then, one decimal
  awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
http_status() { # PORT PATH
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" || true
}
alive() { # PID: running (not exited, not a zombie)
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null || true)
  [ -n "$st" ] && [ "${st:0:1}" != Z ]
}
consumed() { # PORT: touchpulse_events_consumed_total of the feedback topic (-1 when unreachable)
  local body
  body=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" || true)
  awk 'index($0, "touchpulse_events_consumed_total{topic=\"cx.feedback\"}") == 1 { print $NF; found = 1 }
       END { if (!found) print -1 }' <<<"$body"
}
reap() { # PID: waits for it; sets rc to its exit code
  rc=0
  wait "$1" 2>/dev/null || rc=$?
  tp_pid=
}
# touchpulse's own error lines, not the lines librdkafka logged through
# touchpulse's log callback ("touchpulse#consumer-2 FAIL: ...").
own_errors() { # LOG
  grep -E '^[^ ]+ error ' "$1" | grep -Ev '^[^ ]+ error +[^ ]+#(consumer|producer)-[0-9]+ ' || true
}
# One of them naming a SASL authentication failure.
auth_error_line() { # LOG
  own_errors "$1" | grep -i 'authenticat' | grep -Ei 'SASL|SCRAM|invalid credentials|PLAIN' | head -1 || true
}
last_error() { # LOG: the last error or warning line, for a failure's detail
  grep -E '^[^ ]+ (error|warn) ' "$1" | tail -1 | cut -c1-220 || true
}
write_config() { # FILE BOOTSTRAP MECHANISM NAME EXACTLY_ONCE PORT
  cat >"$1" <<YAML
kafka:
  bootstrap.servers: '$2'
  security.protocol: SASL_PLAINTEXT
  sasl.mechanism: $3
  sasl.username: touchpulse
  group.id: touchpulse-$4
  session.timeout.ms: '10000'
http:
  listen: '127.0.0.1:$6'
log:
  level: info
  format: text
processing:
  exactly_once: $5
  commit_interval: 500ms
  transactional_id: touchpulse-$4
workers: 1
windows:
  step: 1m
  allowed_lateness: 10s
  idle_timeout: 0s
rules:
  - name: sasl-csat-low
    metric: csat_mean
    window: 1m
    op: "<"
    threshold: 3
    min_samples: 3
    severity: critical
    touchpoints: ["checkout.*"]
YAML
}

produce_feedback() { # BOOTSTRAP OUT: feedback for checkout.payment, all CSAT 1
  # Every 10 s of event time over 5 minutes ending a minute ago: the rule's
  # first window fires.
  PYTHONPATH=$here "$py" - "$1" "$root/schemas/feedback_event.avsc" "$records" >"$2" 2>&1 <<'PY'
import io, sys, time
from pathlib import Path
import fastavro
from kafka import KafkaProducer
from scenario import load_schema

bootstrap, schema_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

schema = load_schema(Path(schema_path))  # scenario.py's: logical types dropped
now = int(time.time() * 1000)
base = now // 60000 * 60000 - 6 * 60000
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="touchpulse-sasl-test")
for i in range(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, {
        "event_id": f"sasl-{i}", "occurred_at": base + i * 10000, "touchpoint": "checkout.payment",
        "stage": "PURCHASE", "channel": "WEB", "customer_id": f"c{i}", "csat": 1, "nps": None,
        "ces": None, "repurchase": None, "try_other": None, "comment": None})
    producer.send("cx.feedback", key=b"checkout.payment", value=buf.getvalue())
producer.flush()
producer.close()
print(n)
PY
}

read_alert() { # BOOTSTRAP OUT ERR: every cx.alerts record read_committed; 0 once a FIRING sasl-csat-low is read
  PYTHONPATH=$here "$py" - "$1" "$root/schemas/alert_event.avsc" >"$2" 2>"$3" <<'PY'
import io, json, sys, time
from pathlib import Path
import fastavro
from kafka import KafkaConsumer, TopicPartition
from scenario import load_schema

bootstrap, schema_path = sys.argv[1], sys.argv[2]

schema = load_schema(Path(schema_path))  # scenario.py's: logical types dropped
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level="read_committed",
                         client_id="touchpulse-sasl-check")
tps = [TopicPartition("cx.alerts", p) for p in sorted(consumer.partitions_for_topic("cx.alerts") or [0])]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
deadline = time.monotonic() + 30
found = False
while time.monotonic() < deadline and not found:
    for batch in consumer.poll(timeout_ms=300).values():
        for rec in batch:
            alert = fastavro.schemaless_reader(io.BytesIO(rec.value), schema, None)
            print(json.dumps({"key": rec.key.decode() if rec.key else None, **alert}), flush=True)
            found = found or (alert["state"] == "FIRING" and alert["rule"] == "sasl-csat-low")
consumer.close()
sys.exit(0 if found else 1)
PY
}

# Figures for the summary line, by case.
declare -A figure

passthrough() { # CASE VERSION MECHANISM
  local tc=$1 version=$2 mechanism=$3
  local label="$mechanism/$version" dir=$work/kafka-$version
  local ok_before=$failures
  # shellcheck disable=SC1091
  . "$dir/env"
  local port config out log pid t0 ready got detail=
  port=$(free_port)
  config=$work/$tc.yaml
  write_config "$config" "$KAFKA_SASL_BOOTSTRAP" "$mechanism" "$tc" true "$port"
  out=$work/$tc.stdout
  log=$work/$tc.stderr
  TOUCHPULSE_KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD "$bin" --config "$config" >"$out" 2>"$log" &
  pid=$!
  tp_pid=$pid
  t0=$(now_ms)
  ready=0
  while [ $(($(now_ms) - t0)) -lt $((ready_timeout * 1000)) ] && alive "$pid"; do
    if [ "$(http_status "$port" /readyz)" = 200 ]; then ready=1; break; fi
    sleep 0.5
  done
  if [ "$ready" = 1 ]; then
    pass "$label: /readyz 200" "after $(secs_since "$t0") s over SASL_PLAINTEXT/$mechanism (Kafka $version)"
  elif alive "$pid"; then
    fail "$label: /readyz 200" "still $(http_status "$port" /readyz) after $ready_timeout s; last error: $(last_error "$log")"
  else
    reap "$pid"
    fail "$label: /readyz 200" "touchpulse exited with $rc before it was ready; last error: $(last_error "$log")"
  fi

  if [ "$ready" = 1 ]; then
    if produce_feedback "$KAFKA_BOOTSTRAP" "$work/$tc.produce.out"; then
      t0=$(now_ms)
      got=-1
      while [ $(($(now_ms) - t0)) -lt 30000 ] && alive "$pid"; do
        got=$(consumed "$port")
        [ "${got%.*}" -ge "$records" ] 2>/dev/null && break
        sleep 0.5
      done
      if [ "${got%.*}" = "$records" ]; then
        pass "$label: records consumed" "touchpulse_events_consumed_total{topic=\"cx.feedback\"} = $got"
        detail="${got%.*} records"
      else
        fail "$label: records consumed" "touchpulse_events_consumed_total{topic=\"cx.feedback\"} = $got, want $records"
      fi
    else
      fail "$label: records consumed" "producing over PLAINTEXT failed: $(tail -1 "$work/$tc.produce.out")"
    fi
    if read_alert "$KAFKA_BOOTSTRAP" "$work/$tc.alerts.out" "$work/$tc.alerts.err"; then
      pass "$label: alert on cx.alerts" "$(grep -m1 '"FIRING"' "$work/$tc.alerts.out" |
        "$py" -c 'import json,sys; a=json.loads(sys.stdin.read()); print("%s %s %s value=%s samples=%s (read_committed)" % (a["state"], a["rule"], a["touchpoint"], a["value"], a["samples"]))')"
      detail="${detail:+$detail, }alert read back"
    else
      fail "$label: alert on cx.alerts" "no FIRING sasl-csat-low alert within 30 s ($(wc -l <"$work/$tc.alerts.out") records read; $(tail -1 "$work/$tc.alerts.err" 2>/dev/null))"
    fi
  else
    fail "$label: records consumed" "not run: touchpulse never became ready"
    fail "$label: alert on cx.alerts" "not run: touchpulse never became ready"
  fi

  if alive "$pid"; then
    # A graceful stop is bounded at about 30 s; a process that never got ready
    # has nothing to finish and is killed sooner.
    kill -TERM "$pid"
    t0=$(now_ms)
    local limit=10 killed=
    [ "$ready" = 1 ] && limit=40
    while alive "$pid" && [ $(($(now_ms) - t0)) -lt $((limit * 1000)) ]; do sleep 0.2; done
    if alive "$pid"; then kill -KILL "$pid"; killed=" (killed: still running $limit s after SIGTERM)"; fi
    reap "$pid"
    if [ "$ready" = 1 ]; then
      if [ "$rc" = 0 ]; then pass "$label: SIGTERM" "exit code 0 after $(secs_since "$t0") s"; else fail "$label: SIGTERM" "exit code $rc, want 0$killed"; fi
    fi
  elif [ -n "$tp_pid" ]; then
    reap "$pid"
    if [ "$ready" = 1 ]; then fail "$label: SIGTERM" "touchpulse had already exited (code $rc)"; fi
  fi
  if grep -q '"sasl.password": "\[redacted\]"' "$log"; then
    pass "$label: password from env" "the effective configuration shows sasl.password [redacted]; the file has none"
  else
    fail "$label: password from env" "no redacted sasl.password in the effective configuration logged"
  fi
  if grep -qF "$KAFKA_SASL_PASSWORD" "$log" "$out"; then
    fail "$label: password not logged" "the password appears in touchpulse's output: $(grep -lF "$KAFKA_SASL_PASSWORD" "$log" "$out" | xargs)"
  else
    pass "$label: password not logged" "absent from stderr ($(wc -l <"$log") lines) and stdout"
  fi
  if [ "$failures" = "$ok_before" ]; then
    figure[$tc]="$mechanism on Kafka $version ok ($detail)"
  else
    figure[$tc]="$mechanism on Kafka $version FAILED ($((failures - ok_before)) checks${detail:+; $detail})"
  fi
}

rejected() { # CASE VERSION MECHANISM EXACTLY_ONCE PASSWORD KIND(wrong|hint)
  local tc=$1 version=$2 mechanism=$3 eos=$4 password=$5 kind=$6
  local label dir=$work/kafka-$version ok_before=$failures took=
  if [ "$kind" = wrong ]; then
    label="$mechanism/$version wrong password (exactly_once=$eos)"
  else
    label="$mechanism/$version right password"
  fi
  # shellcheck disable=SC1091
  . "$dir/env"
  local port config out log pid t0 was_ready=0 line
  port=$(free_port)
  config=$work/$tc.yaml
  write_config "$config" "$KAFKA_SASL_BOOTSTRAP" "$mechanism" "$tc" "$eos" "$port"
  out=$work/$tc.stdout
  log=$work/$tc.stderr
  TOUCHPULSE_KAFKA_SASL_PASSWORD=$password "$bin" --config "$config" >"$out" 2>"$log" &
  pid=$!
  tp_pid=$pid
  t0=$(now_ms)
  while alive "$pid" && [ $(($(now_ms) - t0)) -lt $((reject_timeout * 1000)) ]; do
    [ "$(http_status "$port" /readyz)" = 200 ] && was_ready=1
    sleep 0.2
  done
  if alive "$pid"; then
    local healthz stopped t1
    healthz=$(http_status "$port" /healthz)
    kill -TERM "$pid"
    t1=$(now_ms)
    while alive "$pid" && [ $(($(now_ms) - t1)) -lt 10000 ]; do sleep 0.2; done
    stopped="stopped by SIGTERM with exit code"
    if alive "$pid"; then kill -KILL "$pid"; stopped="ignored SIGTERM for 10 s, SIGKILLed:"; fi
    reap "$pid"
    fail "$label: exits 1" "still running after $reject_timeout s (/healthz $healthz); $stopped $rc"
  else
    took=$(secs_since "$t0")
    reap "$pid"
    if [ "$rc" = 1 ]; then
      pass "$label: exits 1" "exit code 1 after $took s (limit $reject_timeout s)"
    else
      fail "$label: exits 1" "exit code $rc after $took s, want 1"
    fi
  fi
  line=$(auth_error_line "$log")
  local own librdkafka_line
  own=$(own_errors "$log" | tail -1 | cut -c1-160)
  librdkafka_line=$(grep -i 'authenticat' "$log" | head -1 | cut -c1-160 || true)
  if [ -n "$line" ]; then
    pass "$label: clear error" "$(cut -c1-200 <<<"$line")"
  else
    fail "$label: clear error" "no error line of touchpulse's own names the SASL authentication failure; its last: ${own:-(none)}${librdkafka_line:+; only librdkafka logged: $librdkafka_line}"
  fi
  if [ "$kind" = hint ]; then
    local hint
    hint=$(own_errors "$log" | grep -i 'authenticat' | grep -F '2.6.1' | head -1 || true)
    if [ -n "$hint" ]; then
      pass "$label: librdkafka hint" "$(grep -oE '[^;:]*2\.6\.1[^;]*' <<<"$hint" | head -1 | sed 's/^ *//' | cut -c1-200)"
    else
      fail "$label: librdkafka hint" "no error line of touchpulse's own names the librdkafka < 2.6.1 SCRAM limitation (librdkafka#4895); its last: ${own:-(none)}"
    fi
  fi
  if [ "$was_ready" = 0 ]; then
    pass "$label: never ready" "/readyz never answered 200"
  else
    fail "$label: never ready" "/readyz answered 200"
  fi
  if grep -qF "$password" "$log" "$out"; then
    fail "$label: password not logged" "the password appears in touchpulse's output: $(grep -lF "$password" "$log" "$out" | xargs)"
  else
    pass "$label: password not logged" "absent from stderr ($(wc -l <"$log") lines) and stdout"
  fi
  local failed=
  [ "$failures" = "$ok_before" ] || failed=", $((failures - ok_before)) checks failed"
  if [ "$kind" = wrong ]; then
    local ended="no exit within $reject_timeout s"
    if [ -n "$took" ]; then ended="exit $rc after $took s"; fi
    figure[$tc]="$ended (exactly_once=$eos, $mechanism on $version$failed)"
  elif [ -z "$failed" ]; then
    figure[$tc]="SCRAM on $version: exit 1 after $took s with the librdkafka hint"
  else
    figure[$tc]="SCRAM on $version: FAILED (${took:+exit code $rc after $took s}${took:-no exit within $reject_timeout s}$failed)"
  fi
}

started=$(now_ms)

# -- brokers: one per version, started together, reused by every case ----------
declare -A broker_pid
for v in $versions; do
  (
    KAFKA_VERSION=$v "$kafka_sh" start "$work/kafka-$v" --sasl >/dev/null &&
      for spec in cx.feedback:2 cx.support:2 cx.commerce:2 cx.alerts:1 cx.deadletter:1; do
        "$kafka_sh" topic "$work/kafka-$v" "${spec%:*}" "${spec#*:}" || exit 1
      done
  ) >"$work/broker-$v.log" 2>&1 &
  broker_pid[$v]=$!
done
for v in $versions; do
  if wait "${broker_pid[$v]}"; then
    # shellcheck disable=SC1090
    . "$work/kafka-$v/env"
    pass "broker $v" "PLAINTEXT $KAFKA_BOOTSTRAP, SASL_PLAINTEXT $KAFKA_SASL_BOOTSTRAP (SCRAM-SHA-256, PLAIN), 5 topics"
  else
    fail "broker $v" "scripts/kafka.sh start --sasl or the topics failed: $(tail -1 "$work/broker-$v.log")"
  fi
done
if [ "$failures" -gt 0 ]; then
  finished=1
  echo "FAIL  sasl.sh: a broker did not start ($(( ($(now_ms) - started) / 1000 )) s)"
  exit 1
fi
broker_s=$(secs_since "$started")

# -- cases ---------------------------------------------------------------------------
for c in $all_cases; do
  case " $cases " in *" $c "*) ;; *) continue ;; esac
  v=${c##*-}
  # shellcheck disable=SC1090
  . "$work/kafka-$v/env"
  case "$c" in
    scram-3.9.1) passthrough "$c" "$v" SCRAM-SHA-256 ;;
    plain-4.1.2) passthrough "$c" "$v" PLAIN ;;
    wrong-scram-3.9.1) rejected "$c" "$v" SCRAM-SHA-256 true "$KAFKA_SASL_PASSWORD-wrong" wrong ;;
    wrong-plain-4.1.2) rejected "$c" "$v" PLAIN false "$KAFKA_SASL_PASSWORD-wrong" wrong ;;
    scram-4.1.2) rejected "$c" "$v" SCRAM-SHA-256 true "$KAFKA_SASL_PASSWORD" hint ;;
  esac
done

# -- figures ---------------------------------------------------------------------------
parts=()
[ -n "${figure[scram-3.9.1]:-}" ] && parts+=("${figure[scram-3.9.1]}")
[ -n "${figure[plain-4.1.2]:-}" ] && parts+=("${figure[plain-4.1.2]}")
wrong=()
[ -n "${figure[wrong-scram-3.9.1]:-}" ] && wrong+=("${figure[wrong-scram-3.9.1]}")
[ -n "${figure[wrong-plain-4.1.2]:-}" ] && wrong+=("${figure[wrong-plain-4.1.2]}")
if [ "${#wrong[@]}" -gt 0 ]; then
  w="wrong password: ${wrong[0]}"
  if [ "${#wrong[@]}" -gt 1 ]; then
    # "exit 1 after X s (...), Y s (...)" when both exited with 1
    if [ "${wrong[0]#exit 1 after }" != "${wrong[0]}" ]; then w="$w, ${wrong[1]#exit 1 after }"; else w="$w, ${wrong[1]}"; fi
  fi
  parts+=("$w")
fi
[ -n "${figure[scram-4.1.2]:-}" ] && parts+=("${figure[scram-4.1.2]}")
summary=$(printf '%s, ' "${parts[@]}")
echo "sasl: ${summary%, }; brokers ready in $broker_s s, $(secs_since "$started") s in all"

finished=1
if [ "$failures" -eq 0 ]; then
  echo "PASS  sasl.sh: every check passed in $(secs_since "$started") s"
else
  echo "FAIL  sasl.sh: $failures check(s) failed in $(secs_since "$started") s"
  exit 1
fi
