#!/usr/bin/env bash
# Checks of the Docker deployment (docker/) that need no Docker engine:
#   1. docker-compose accepts docker/docker-compose.yml (`config -q`);
#   2. promtool accepts the Prometheus configuration and rules and the rules'
#      unit tests pass (docker/prometheus/alerts_test.yml);
#   3. touchpulse accepts docker/touchpulse.yaml, the configuration the compose
#      file mounts, with the compose file's environment;
#   4. the Dockerfile builds with the project's scripts and its run stage
#      installs the package of every shared library the binary needs;
#   5. the Grafana dashboard parses, and every PromQL expression in it and in
#      the alerting rules names series that touchpulse really exports: checked
#      against /metrics of `touchpulse --demo` (tests/ops/dashboard_check.py).
# Quiet on success but for one line per check.
# usage: tests/ops/docker_check.sh path/to/touchpulse   (run from anywhere)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 path/to/touchpulse" >&2; exit 2; }
bin=$1
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
cd "$(dirname "$0")/../.."
[ -x "$bin" ] || { echo "docker check: $bin is not an executable" >&2; exit 2; }

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "docker check: FAILED: $*" >&2; exit 1; }
# run NAME CMD...: run quietly; on failure show what it said.
run() {
  local name=$1
  shift
  if ! "$@" >"$work/log" 2>&1; then
    cat "$work/log" >&2
    fail "$name"
  fi
}

# ---- 1. compose file -------------------------------------------------------------------
command -v docker-compose >/dev/null \
  || fail "docker-compose is not installed (Debian package docker-compose; scripts/deps.sh installs it)"
# `config` only reads files; no Docker engine is asked. Unset variables are errors here.
run "docker-compose rejects docker/docker-compose.yml" \
  docker-compose -f docker/docker-compose.yml config -q
if grep -i "variable is not set" "$work/log" >&2; then
  fail "docker/docker-compose.yml uses unset variables"
fi
echo "docker check: docker-compose config accepts docker/docker-compose.yml"

# ---- 2. Prometheus files ---------------------------------------------------------------------
command -v promtool >/dev/null || fail "promtool is not installed (Debian package prometheus)"
run "promtool check config docker/prometheus/prometheus.yml" \
  promtool check config docker/prometheus/prometheus.yml
run "promtool check rules docker/prometheus/alerts.yml" promtool check rules docker/prometheus/alerts.yml
rules=$(sed -n 's/.*SUCCESS: \([0-9]* rules found\).*/\1/p' "$work/log" | sed -n 1p)
run "promtool test rules docker/prometheus/alerts_test.yml" \
  promtool test rules docker/prometheus/alerts_test.yml
echo "docker check: promtool accepts prometheus.yml and alerts.yml ($rules), alerts_test.yml passes"

# ---- 3. touchpulse configuration of the compose file ------------------------------------------
grep -q '\./touchpulse\.yaml:/etc/touchpulse/touchpulse\.yaml' docker/docker-compose.yml \
  || fail "docker-compose.yml no longer mounts docker/touchpulse.yaml"
run "touchpulse --check-config docker/touchpulse.yaml" \
  env TOUCHPULSE_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 "$bin" --check-config docker/touchpulse.yaml
echo "docker check: $(cat "$work/log")"
# The generator service runs `touchpulse --generate --config FILE`.
"$bin" --help >"$work/help" 2>&1 || true
grep -q -- '--generate' "$work/help" \
  || fail "touchpulse --help lists no --generate mode, which the generator service of docker-compose.yml runs"

# ---- 4. Dockerfile ---------------------------------------------------------------------------------
grep -q '^RUN scripts/deps.sh' docker/Dockerfile || fail "docker/Dockerfile does not run scripts/deps.sh"
grep -q 'scripts/build.sh release' docker/Dockerfile || fail "docker/Dockerfile does not run scripts/build.sh release"
# Packages the run stage installs (apt-get install in the last stage).
runtime=$(python3 - <<'PY'
import re
s = open("docker/Dockerfile").read()
stage = re.sub(r"\\\n", " ", s[s.rfind("\nFROM "):])
for m in re.finditer(r"apt-get install ([^&;|\n]*)", stage):
    print("\n".join(w for w in m.group(1).split() if not w.startswith("-")))
PY
)
needed=0
while read -r lib; do
  [ -n "$lib" ] || continue
  needed=$((needed + 1))
  # The library the dynamic loader would pick (the native one when several are listed).
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && p == "" && /x86-64|x86_64|64bit|aarch64/ {p = $NF}
                                         $1 == l && q == "" {q = $NF} END {print (p != "" ? p : q)}')
  [ -n "$path" ] || fail "cannot find $lib, which $bin needs"
  pkg=$( { dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true; } \
    | awk -F: 'NR == 1 {print $1}')
  [ -n "$pkg" ] || fail "no Debian package owns $path ($lib)"
  case $pkg in
    libc6 | libgcc-s1 | libasan* | libubsan* | libtsan* | liblsan*) continue ;; # base image / sanitizer builds
  esac
  grep -qx "$pkg" <<<"$runtime" \
    || fail "$bin needs $lib from $pkg, which the run stage of docker/Dockerfile does not install"
done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "docker check: Dockerfile builds with deps.sh + build.sh; its run stage has the packages of all $needed libraries touchpulse links"

# ---- 5. dashboard and rules against a real scrape ------------------------------------------------
uids=$(sed -n 's/^ *uid: *\([A-Za-z0-9_-]*\).*/\1/p' docker/grafana/provisioning/datasources/*.yml)
[ -n "$uids" ] || fail "no data source uid in docker/grafana/provisioning/datasources"
uid_args=()
for u in $uids; do uid_args+=(--datasource-uid "$u"); done
provider_path=$(sed -n 's/^ *path: *\(.*\)$/\1/p' docker/grafana/provisioning/dashboards/*.yml | sed -n 1p)
grep -q "\./grafana/dashboards:$provider_path" docker/docker-compose.yml \
  || fail "the dashboard provider reads $provider_path, where docker-compose.yml mounts no dashboards"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOUCHPULSE_HTTP_LISTEN=127.0.0.1:$port "$bin" --demo --demo-seconds 60 >"$work/demo.out" 2>"$work/demo.err" &
pid=$!
# Some families appear only after the first window is evaluated or librdkafka's
# first statistics: the checker fetches /metrics again until all are there.
if ! python3 tests/ops/dashboard_check.py --wait 45 "${uid_args[@]}" \
    "http://127.0.0.1:$port/metrics"; then
  kill -0 "$pid" 2>/dev/null || { echo "touchpulse --demo exited early:" >&2; tail -20 "$work/demo.err" >&2; }
  fail "the dashboard or the rules ask for series touchpulse does not export"
fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { tail -20 "$work/demo.err" >&2; fail "touchpulse --demo exited $rc after SIGTERM"; }
echo "docker check: ok"
