#!/usr/bin/env python3
"""Test data for checking the Kafka Streams peer against touchpulse.

Writes Avro (schemas/*.avsc, plain binary) records keyed by touchpoint to the
three input topics: HOURS of event time ending two days before now, healthy
background traffic, and incidents so that every rule of
examples/touchpulse.yaml fires and resolves (CSAT and NPS collapse on
checkout touchpoints, slow first replies and complaint surges on support
touchpoints, a returns spike on app touchpoints). It also holds what a
watermark must handle: 0-20 s of jitter (inside the 30 s allowed lateness),
a few stragglers 2-10 minutes late, a few duplicate records (same event
re-sent), and a support touchpoint whose complaint burst is followed by
silence (its complaints count falls to 0 in a window with no events).

    gen_test_data.py --bootstrap HOST:PORT [--hours 6] [--scale 1] [--seed 1]

Prints the number of records written per topic as JSON.
"""

import argparse
import json
import os
import random
import sys
import time
import uuid

import fastavro
from kafka import KafkaProducer

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "..", "schemas")
MIN = 60_000


def load(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return fastavro.parse_schema(json.load(f))


def encode(schema, record):
    import io

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--hours", type=float, default=6)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--feedback-topic", default="cx.feedback")
    ap.add_argument("--support-topic", default="cx.support")
    ap.add_argument("--commerce-topic", default="cx.commerce")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    fb_schema, sup_schema, com_schema = (load(n) for n in ("feedback_event.avsc", "support_event.avsc", "commerce_event.avsc"))

    end = (int(time.time() * 1000) - 2 * 86_400_000) // (3_600_000) * 3_600_000
    span = int(args.hours * 3_600_000)
    start = end - span
    events = []  # (time, topic, touchpoint, record)

    def incident(t, period, length, offset):
        """True inside a recurring incident: `length` minutes every `period` minutes, after `offset`."""
        m = (t - start) // MIN - offset
        return m >= 0 and m % period < length

    def common(t, tp, stage, channel):
        return {"event_id": str(uuid.UUID(int=rnd.getrandbits(128))), "occurred_at": t, "touchpoint": tp,
                "stage": stage, "channel": channel}

    # Feedback: checkout touchpoints collapse (CSAT and NPS) periodically.
    fb_tps = ["checkout.payment", "checkout.cart", "checkout.shipping", "web.home", "web.search", "app.home",
              "store.front", "support.chat"]
    for i, tp in enumerate(fb_tps):
        rate = 4 * args.scale  # responses per minute
        t = start + rnd.randrange(MIN)
        bad_tp = tp.startswith("checkout.") or tp == "web.search"
        while t < end:
            bad = bad_tp and incident(t, 120, 35, 30 + 10 * i)
            r = common(t, tp, "PURCHASE", "WEB")
            r.update({"customer_id": None, "csat": None, "nps": None, "ces": None, "repurchase": None,
                      "try_other": None, "comment": None})
            if rnd.random() < 0.8:
                r["csat"] = rnd.choice([1, 2, 2, 3]) if bad else rnd.choice([4, 5, 5, 4, 3])
            if rnd.random() < 0.7:
                r["nps"] = rnd.choice([0, 2, 4, 6, 7]) if bad else rnd.choice([9, 10, 10, 8, 7, 9])
            if rnd.random() < 0.3:
                r["ces"] = rnd.randint(1, 7)
            events.append((t, args.feedback_topic, tp, encode(fb_schema, r)))
            t += int(rnd.expovariate(rate) * MIN) + 1

    # Support: tickets with first replies, slow periods and complaint surges.
    sup_tps = ["support.chat", "support.email", "support.phone", "support.social", "web.help"]
    for i, tp in enumerate(sup_tps):
        rate = 1.5 * args.scale  # tickets per minute
        t = start + rnd.randrange(MIN)
        while t < end:
            slow = tp != "web.help" and incident(t, 150, 40, 20 + 25 * i)
            surge = incident(t, 100, 20, 60 + 15 * i)
            if tp == "support.phone":
                # Complaint bursts at the very end of its traffic, then silence: quiet windows resolve it.
                quiet = incident(t, 180, 40, 140)
                if quiet:
                    t += MIN
                    continue
                surge = incident(t, 180, 1, 139)
            tid = "T-" + uuid.UUID(int=rnd.getrandbits(128)).hex[:16]
            complaint = rnd.random() < (0.7 if surge else 0.02)
            r = common(t, tp, "POST_PURCHASE", "CHAT")
            r.update({"ticket_id": tid, "kind": "OPENED", "complaint": complaint})
            events.append((t, args.support_topic, tp, encode(sup_schema, r)))
            if surge and tp == "support.phone":
                for _ in range(int(6 * args.scale) + 12):  # a burst inside one step bucket
                    tt = t + rnd.randrange(20_000)
                    r = common(tt, tp, "POST_PURCHASE", "PHONE")
                    r.update({"ticket_id": "T-" + uuid.UUID(int=rnd.getrandbits(128)).hex[:16], "kind": "OPENED",
                              "complaint": True})
                    events.append((tt, args.support_topic, tp, encode(sup_schema, r)))
            delay = rnd.randint(20, 40) * MIN if slow else rnd.randint(120_000, 300_000)
            if rnd.random() < 0.9:
                tr = t + delay
                if tr < end:
                    r = common(tr, tp, "POST_PURCHASE", "CHAT")
                    r.update({"ticket_id": tid, "kind": "AGENT_REPLIED", "complaint": False})
                    events.append((tr, args.support_topic, tp, encode(sup_schema, r)))
                    if rnd.random() < 0.3:
                        r = common(tr + 60_000, tp, "POST_PURCHASE", "CHAT")
                        r.update({"ticket_id": tid, "kind": "AGENT_REPLIED", "complaint": False})
                        events.append((tr + 60_000, args.support_topic, tp, encode(sup_schema, r)))
                    tres = tr + rnd.randint(60_000, 600_000)
                    if tres < end:
                        r = common(tres, tp, "POST_PURCHASE", "CHAT")
                        r.update({"ticket_id": tid, "kind": "RESOLVED", "complaint": False})
                        events.append((tres, args.support_topic, tp, encode(sup_schema, r)))
            t += int(rnd.expovariate(rate) * MIN) + 1

    # Commerce: orders, deliveries and returns; app touchpoints see return spikes.
    com_tps = ["app.orders", "app.returns", "web.checkout", "store.pos", "checkout.payment"]
    for i, tp in enumerate(com_tps):
        rate = 5 * args.scale
        t = start + rnd.randrange(MIN)
        while t < end:
            spike = tp.startswith("app.") and incident(t, 140, 45, 50 + 30 * i)
            u = rnd.random()
            kind = "RETURN_REQUESTED" if u < (0.35 if spike else 0.03) else ("DELIVERED" if u < 0.4 else "ORDER_PLACED")
            r = common(t, tp, "PURCHASE", "APP")
            r.update({"order_id": "O-" + uuid.UUID(int=rnd.getrandbits(128)).hex[:16], "kind": kind,
                      "amount_minor": rnd.randint(100, 100000), "reason": None})
            events.append((t, args.commerce_topic, tp, encode(com_schema, r)))
            t += int(rnd.expovariate(rate) * MIN) + 1

    # Read order: event time plus 0-20 s of jitter; stragglers and duplicates.
    ordered = []
    for t, topic, tp, value in events:
        arrival = t + rnd.randrange(20_000)
        if rnd.random() < 0.002:
            arrival = t + rnd.randint(2, 10) * MIN  # a straggler, late by then
        ordered.append((arrival, topic, tp, value))
        if rnd.random() < 0.005:
            ordered.append((arrival + rnd.randrange(30_000), topic, tp, value))  # a retry
    ordered.sort(key=lambda e: e[0])

    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20, batch_size=262144)
    counts = {}
    for _, topic, tp, value in ordered:
        producer.send(topic, key=tp.encode(), value=value)
        counts[topic] = counts.get(topic, 0) + 1
    producer.flush()
    producer.close()
    counts["total"] = len(ordered)
    print(json.dumps(counts))


if __name__ == "__main__":
    sys.exit(main())
