#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker + controller) on
# loopback for the integration tests and benchmarks. Jars come from Maven
# Central (scripts/kafka/pom.xml, Kafka 4.1.2); Java 17 runs them.
#
#   scripts/kafka.sh fetch                 download the jars (cached in ~/.m2)
#   scripts/kafka.sh start DIR [--sasl]    fresh data in DIR, free ports, wait until it answers;
#                                          writes DIR/env (KAFKA_BOOTSTRAP, KAFKA_PID, ...)
#   scripts/kafka.sh topic DIR NAME PARTITIONS
#   scripts/kafka.sh stop DIR              SIGTERM (controlled shutdown), SIGKILL after 30 s
#   scripts/kafka.sh restart DIR           stop and start again on the same ports and data
#
# KAFKA_VERSION=3.9.1 (for fetch and start; the default is 4.1.2) runs Kafka
# 3.9.1 instead, also in KRaft mode (scripts/kafka/pom-3.9.xml, jars in
# scripts/kafka/target/libs-3.9.1, log4j 1.x configuration log4j.properties,
# a static quorum: controller.quorum.voters, no --standalone). It is there for
# tests/integration/sasl.sh's SCRAM checks (see the caveat below); every other
# test uses 4.1.2. A 3.9.1 DIR records KAFKA_VERSION in DIR/env, which topic,
# stop and restart follow.
#
# With --sasl a second listener speaks SASL_PLAINTEXT (address in DIR/env as
# KAFKA_SASL_BOOTSTRAP) with SCRAM-SHA-256 and PLAIN, both for user
# "touchpulse" with the password in DIR/env as KAFKA_SASL_PASSWORD. Caveat:
# librdkafka before 2.6.1 (Debian's 2.0.2 included) repeats the client nonce
# in its SCRAM client-final-message (librdkafka#4895), which Kafka 4.x rejects
# as invalid credentials even with the right password; PLAIN is not affected.
# Kafka 3.8.1 to 3.9.x accept that message (their nonce check is looser), so
# SCRAM with librdkafka 2.0.2 works against KAFKA_VERSION=3.9.1.
#
# librdkafka 2.0.2 (Debian's) against Kafka 4.1: every API version it uses
# still overlaps (Kafka 4.0 dropped pre-2.1 protocol versions, KIP-896;
# 4.0.1 restored JoinGroup v0/v1 for old clients, KAFKA-19444). Transactions
# and cooperative-sticky assignment work; see the integration tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
shift || true

use_version() { # VERSION: sets version, libs, pom and logconf (the JVM's logging option)
  version=$1
  case "$version" in
    4.1.2)
      libs=$here/kafka/target/libs
      pom=pom.xml
      logconf=-Dlog4j2.configurationFile="file:$here/kafka/log4j2.properties" ;;
    3.9.1)
      libs=$here/kafka/target/libs-3.9.1
      pom=pom-3.9.xml
      logconf=-Dlog4j.configuration="file:$here/kafka/log4j.properties" ;;
    *)
      echo "kafka.sh: KAFKA_VERSION must be 4.1.2 (the default) or 3.9.1, not '$version'" >&2
      exit 2 ;;
  esac
}
use_version "${KAFKA_VERSION:-4.1.2}"

dir_version() { # DIR: the version DIR's broker was started with (recorded in DIR/env unless 4.1.2)
  local v
  v=$(sed -n 's/^KAFKA_VERSION=//p' "$1/env" 2>/dev/null | tail -1)
  use_version "${v:-4.1.2}"
}

java_cp() { echo "$libs/*"; }

fetch() {
  if [ ! -f "$libs/kafka_2.13-$version.jar" ] || [ ! -f "$libs/kafka-tools-$version.jar" ]; then
    command -v mvn >/dev/null || { echo "kafka.sh: maven (mvn) is needed to fetch the broker" >&2; exit 1; }
    command -v java >/dev/null || { echo "kafka.sh: java 17 is needed to run the broker" >&2; exit 1; }
    (cd "$here/kafka" && mvn -q -B -f "$pom" package) >&2
  fi
}

free_ports() { # N: N distinct free ports, one per line (all bound at once,
  # so two picks never return the same port, as two separate picks can)
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

kjava() { # kjava DIR CLASS ARGS...
  local dir=$1 class=$2
  shift 2
  java -Xms128m -Xmx512m "$logconf" \
    -Dkafka.logs.dir="$dir/logs" -cp "$(java_cp)" "$class" "$@"
}

write_props() { # DIR
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/env"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  local map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "${KAFKA_SASL_PORT:-}" ]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    map="$map,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=${listeners/,CONTROLLER:\/\/127.0.0.1:$KAFKA_CONTROLLER_PORT/}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
num.partitions=1
log.retention.hours=-1
PROPS
  if [ -n "${KAFKA_SASL_PORT:-}" ]; then
    cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_touchpulse="$KAFKA_SASL_PASSWORD";
PROPS
  fi
  if [ "$version" = 3.9.1 ]; then
    # Kafka 3.9: a static quorum (controller.quorum.voters; formatted without
    # --standalone) and no share groups (their settings are 4.x only).
    sed -i -e "s/^controller\.quorum\.bootstrap\.servers=.*/controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT/" \
      -e '/^share\.coordinator\./d' "$dir/server.properties"
  fi
}

launch() { # DIR: start the JVM and wait until the broker answers
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/env"
  nohup java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "$logconf" -Dkafka.logs.dir="$dir/logs" \
    -cp "$(java_cp)" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 120); do
    if kcat -L -b "127.0.0.1:$KAFKA_PORT" -m 2 >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  echo "kafka.sh: the broker did not start; last lines of its log:" >&2
  tail -30 "$dir/logs/server.log" "$dir/logs/stdout.log" >&2 2>/dev/null || true
  return 1
}

start() {
  local dir=$1 sasl=${2:-}
  fetch
  rm -rf "$dir"
  mkdir -p "$dir/data" "$dir/logs"
  local ports
  mapfile -t ports < <(free_ports 3)
  {
    echo "KAFKA_PORT=${ports[0]}"
    echo "KAFKA_CONTROLLER_PORT=${ports[1]}"
    if [ "$sasl" = --sasl ]; then
      echo "KAFKA_SASL_PORT=${ports[2]}"
      echo "KAFKA_SASL_PASSWORD=tp-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    fi
    if [ "$version" != 4.1.2 ]; then echo "KAFKA_VERSION=$version"; fi
  } >"$dir/env"
  # shellcheck disable=SC1091
  . "$dir/env"
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT" >>"$dir/env"
  [ -n "${KAFKA_SASL_PORT:-}" ] && echo "KAFKA_SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT" >>"$dir/env"
  write_props "$dir"
  local id
  id=$(kjava "$dir" kafka.tools.StorageTool random-uuid)
  local scram=()
  if [ -n "${KAFKA_SASL_PORT:-}" ]; then
    scram=(-S "SCRAM-SHA-256=[name=touchpulse,password=$KAFKA_SASL_PASSWORD]")
  fi
  local quorum=(--standalone)
  [ "$version" = 3.9.1 ] && quorum=()
  kjava "$dir" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" "${quorum[@]}" \
    "${scram[@]}" >"$dir/logs/format.log" 2>&1 || { cat "$dir/logs/format.log" >&2; return 1; }
  launch "$dir"
  echo "KAFKA_PID=$(cat "$dir/pid")" >>"$dir/env"
  echo "127.0.0.1:$KAFKA_PORT"
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

topic() {
  local dir=$1 name=$2 partitions=$3
  # shellcheck disable=SC1091
  . "$dir/env"
  kjava "$dir" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
    --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 >/dev/null
}

case "$cmd" in
  fetch) fetch ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  restart) dir_version "$1"; stop "$1"; launch "$1"; sed -i "s/^KAFKA_PID=.*/KAFKA_PID=$(cat "$1/pid")/" "$1/env" ;;
  topic) dir_version "$1"; topic "$@" ;;
  *) sed -n '2,33p' "$0" >&2; exit 2 ;;
esac
