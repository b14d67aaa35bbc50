#!/usr/bin/env python3
"""Alert latency after the watermark passes a boundary, on a real broker.

touchpulse runs with the example rules (exactly-once, its defaults) on
input topics of one partition each. For each sample i a new support
touchpoint gets 10 complaint tickets (complaints-surge: >= 10 in 15 min,
for 1) inside step i of event time; then one more support record, 90 s of
event time later, moves the partition's watermark past the step's end. The
latency is from the broker's acknowledgement of that record to the FIRING
alert's arrival at a read_committed subscriber (kafka-python, fetch wait
5 ms), so it includes touchpulse's fetch, processing, producing
(linger.ms 5) and transaction commit, and the subscriber's fetch. The first
20 samples warm the path up and are not counted: the first alert also pays
for the transaction's first AddPartitionsToTxn, the producer's metadata and
the subscriber's first fetch, and a broker that has served few transactions
answers the next ones more slowly while its JVM warms up (on fresh brokers,
samples 1-16 took 44-101 ms and later ones 40-57 ms; bench/NOTES.md, "Alert
latency"). They are reported apart (warmup_ms) rather than hidden.

Prints JSON: samples, p50, p90, p99, max (ms), linger.ms, and the warm-up
samples' latencies.
"""
import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from pathlib import Path  # noqa: E402

import fastavro  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from cluster import free_port  # noqa: E402
from scenario import load_schema  # noqa: E402

MIN = 60_000
WARMUP = 20  # not counted, reported apart (see the top)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    tag = f"lat{os.getpid()}"
    topics = {k: f"{tag}.{k}" for k in ("feedback", "support", "commerce", "alerts", "deadletter")}
    adm = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    adm.create_topics([NewTopic(t, 1, 1) for t in topics.values()])
    adm.close()

    port = free_port()
    with open(os.path.join(ROOT, "examples", "touchpulse.yaml")) as f:
        example = f.read()
    cfg = os.path.join(args.workdir, f"{tag}.yaml")
    with open(cfg, "w") as f:
        f.write(f'kafka: {{bootstrap.servers: "{args.bootstrap}", group.id: "{tag}"}}\n'
                "topics: {" + ", ".join(f'{k}: "{v}"' for k, v in topics.items()) + "}\n"
                f"windows: {{idle_timeout: 0s}}\nhttp: {{listen: '127.0.0.1:{port}'}}\n"
                "log: {level: warn}\n" + example[example.index("\nrules:") + 1:])
    proc = subprocess.Popen([args.bin, "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(cfg + ".log", "w"))
    schema = load_schema(Path(ROOT) / "schemas" / "support_event.avsc")
    alert_schema = load_schema(Path(ROOT) / "schemas" / "alert_event.avsc")
    prod = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    cons = KafkaConsumer(topics["alerts"], bootstrap_servers=args.bootstrap,
                         isolation_level="read_committed", auto_offset_reset="earliest",
                         fetch_max_wait_ms=5, enable_auto_commit=False, group_id=None)
    cons.poll(timeout_ms=500)

    def send(ev):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, ev)
        return prod.send(topics["support"], key=ev["touchpoint"].encode(), value=buf.getvalue())

    # Wait until touchpulse is ready (partitions assigned).
    import urllib.request
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)

    # Two days back, floored to the day: 20 min per sample stays in the past
    # (max_future_skew) for up to 144 samples.
    base = (int(time.time() * 1000) - 2 * 86_400_000) // (1440 * MIN) * (1440 * MIN)
    if args.samples + WARMUP > 144:
        raise SystemExit("latency: at most 144 samples")
    lat = []
    warm = []
    serial = 0
    try:
        for i in range(args.samples + WARMUP):
            step = base + i * 20 * MIN  # 20 min apart: the 15 min window never sees two samples
            tp = f"support.lat{i}"
            for k in range(10):
                serial += 1
                send({"event_id": f"{tag}-{serial}", "occurred_at": step + 1000 + k * 1000,
                      "touchpoint": tp, "stage": "POST_PURCHASE", "channel": "CHAT",
                      "ticket_id": f"T{i}-{k}", "kind": "OPENED", "complaint": True})
            prod.flush()
            time.sleep(0.2)  # processed, no boundary of this step passed yet
            serial += 1
            fut = send({"event_id": f"{tag}-{serial}", "occurred_at": step + MIN + 30_000 + 1,
                        "touchpoint": tp, "stage": "POST_PURCHASE", "channel": "CHAT",
                        "ticket_id": f"T{i}-tick", "kind": "CUSTOMER_REPLIED",
                        "complaint": False})
            fut.get(timeout=10)
            t_ack = time.perf_counter()
            got = None
            deadline = t_ack + 10
            while got is None and time.perf_counter() < deadline:
                for recs in cons.poll(timeout_ms=5).values():
                    for r in recs:
                        a = fastavro.schemaless_reader(io.BytesIO(r.value), alert_schema, None)
                        if a["touchpoint"] == tp and a["state"] == "FIRING" and a["window_end"] == step + MIN:
                            got = time.perf_counter()
            if got is None:
                raise SystemExit(f"latency: no FIRING alert for {tp} within 10 s")
            (lat if i >= WARMUP else warm).append((got - t_ack) * 1000)
            if args.verbose:
                print(f"sample {i}: {(got - t_ack) * 1000:.1f} ms", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        prod.close()
        cons.close()
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1)

    print(json.dumps({"samples": len(lat), "p50_ms": pct(50), "p90_ms": pct(90),
                      "p99_ms": pct(99), "max_ms": round(lat[-1], 1), "linger_ms": 5,
                      "warmup": WARMUP, "warmup_ms": [round(x, 1) for x in warm],
                      "subscriber": "read_committed"}))


if __name__ == "__main__":
    main()
