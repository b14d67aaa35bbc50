#!/usr/bin/env bash
# Kafka Streams peer of touchpulse for the benchmark.
#
#   run.sh build                                   build target/ks-peer.jar only
#   run.sh MODE BOOTSTRAP APP_ID EXPECTED_RECORDS [ALERT_TOPIC] [--threads N]
#          [--feedback-topic T] [--support-topic T] [--commerce-topic T]
#
# MODE is `default` (RocksDB stores with changelog topics, Kafka Streams'
# default configuration) or `inmemory` (in-memory stores, no changelogs).
# ALERT_TOPIC defaults to bench.ks.alerts, --threads (num.stream.threads) to 2.
# Builds the jar when it is missing or older than the sources, then execs the
# JVM, so this script's PID is the JVM's. JVM flags: the JVM's defaults (heap
# up to a quarter of RAM, G1); JAVA_OPTS adds to them. Logging: stderr, WARN.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jar=$here/target/ks-peer.jar

build() {
  if [ ! -f "$jar" ] || [ -n "$(find "$here/src" "$here/pom.xml" "$here/../../../schemas" -newer "$jar" -type f 2>/dev/null | head -1)" ]; then
    (cd "$here" && mvn -q -B package) >&2
  fi
}

case "${1:-}" in
  build) build; exit 0 ;;
  default|inmemory) ;;
  *) echo "usage: run.sh build | run.sh default|inmemory BOOTSTRAP APP_ID EXPECTED_RECORDS [ALERT_TOPIC] [--threads N]" >&2
     exit 2 ;;
esac
build
# shellcheck disable=SC2086
exec java ${JAVA_OPTS:-} -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -Dorg.slf4j.simpleLogger.logFile=System.err -jar "$jar" "$@"
