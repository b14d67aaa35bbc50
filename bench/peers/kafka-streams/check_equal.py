#!/usr/bin/env python3
"""Compare the alerts of two contestants: touchpulse's (Avro AlertEvent,
schemas/alert_event.avsc) and the Kafka Streams peer's (compact JSON), or
any two topics in either format.

    check_equal.py --bootstrap HOST:PORT [--a cx.alerts:avro] [--b bench.ks.alerts:json]

An alert is (rule, touchpoint, state, window_end); the two topics must hold
the same alerts, each exactly once. Values are compared too (reported, not
failed on: touchpulse's percentiles come from its sketch, so a peer with
exact percentiles may differ within 1 %). Reads each topic from the
beginning to its end offsets at the time of the call (read_committed).
Prints the counts and every difference; exits 0 when equal, 1 otherwise.
"""

import argparse
import collections
import datetime
import io
import json
import os
import sys

import fastavro
from kafka import KafkaConsumer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
ALERT_SCHEMA = os.path.join(HERE, "..", "..", "..", "schemas", "alert_event.avsc")


def read_topic(bootstrap, topic, fmt, timeout_s=60):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", consumer_timeout_ms=1000)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise SystemExit(f"check_equal: topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        schema = None
        if fmt == "avro":
            with open(ALERT_SCHEMA) as f:
                schema = fastavro.parse_schema(json.load(f))
        alerts = []
        import time
        deadline = time.time() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.time() > deadline:
                raise SystemExit(f"check_equal: timed out reading {topic}")
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    if rec.value is None:
                        continue
                    if fmt == "avro":
                        data = rec.value
                        if data[:1] == b"\x00" and len(data) > 5:
                            data = data[5:]
                        a = fastavro.schemaless_reader(io.BytesIO(data), schema)
                    else:
                        a = json.loads(rec.value)
                    alerts.append(a)
        return alerts
    finally:
        consumer.close()


def millis(v):
    """timestamp-millis as an int (fastavro gives a UTC datetime)."""
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    return int(v)


def key(a):
    return (a["rule"], a["touchpoint"], a["state"], millis(a["window_end"]))


def close(x, y):
    if x is None or y is None:
        return x is y
    return abs(x - y) <= 0.011 * max(abs(x), abs(y), 1e-9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--a", default="cx.alerts:avro", help="TOPIC:avro|json (default cx.alerts:avro)")
    ap.add_argument("--b", default="bench.ks.alerts:json", help="TOPIC:avro|json (default bench.ks.alerts:json)")
    ap.add_argument("--show", type=int, default=50, help="differences to print per side")
    args = ap.parse_args()

    sides = []
    for spec in (args.a, args.b):
        topic, _, fmt = spec.rpartition(":")
        if fmt not in ("avro", "json") or not topic:
            raise SystemExit(f"check_equal: bad topic spec {spec!r} (TOPIC:avro or TOPIC:json)")
        alerts = read_topic(args.bootstrap, topic, fmt)
        sides.append((spec, alerts))

    counters = []
    for spec, alerts in sides:
        c = collections.Counter(key(a) for a in alerts)
        counters.append(c)
        states = collections.Counter(a["state"] for a in alerts)
        rules = collections.Counter((a["rule"], a["state"]) for a in alerts)
        print(f"{spec}: {len(alerts)} alerts ({states.get('FIRING', 0)} FIRING, {states.get('RESOLVED', 0)} RESOLVED)")
        for (rule, state), n in sorted(rules.items()):
            print(f"    {rule:24s} {state:8s} {n}")

    ok = True
    for (spec, _), c in zip(sides, counters):
        repeated = sorted(k for k, n in c.items() if n > 1)
        if repeated:
            ok = False
            print(f"{spec}: {len(repeated)} alerts written more than once")
            for k in repeated[: args.show]:
                print("    ", k, "x", c[k])
    only_a = sorted(set(counters[0]) - set(counters[1]), key=lambda k: (k[3], k))
    only_b = sorted(set(counters[1]) - set(counters[0]), key=lambda k: (k[3], k))
    for (spec, _), only in ((sides[0], only_a), (sides[1], only_b)):
        if only:
            ok = False
            print(f"only in {spec}: {len(only)}")
            for k in only[: args.show]:
                print("    ", k)
    values_a = {key(a): a.get("value") for a in sides[0][1]}
    values_b = {key(a): a.get("value") for a in sides[1][1]}
    off = [(k, values_a[k], values_b[k]) for k in sorted(set(values_a) & set(values_b))
           if not close(values_a[k], values_b[k])]
    if off:
        print(f"note: {len(off)} common alerts with values more than 1 % apart")
        for k, x, y in off[: args.show]:
            print("    ", k, x, y)
    print("EQUAL" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
