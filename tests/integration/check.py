"""Judge what touchpulse wrote against DIR/expected.json (from scenario.py).

    python3 tests/integration/check.py --bootstrap HOST:PORT --expected DIR/expected.json
        [--timeout SECONDS] [--label NAME] [--alerts-topic T] [--deadletter-topic T]

Reads cx.alerts from the beginning with isolation_level=read_committed, decodes
every value with schemas/alert_event.avsc, and waits until it holds at least as
many alerts as expected (or the timeout passes), then reads 3 s more to catch
extras. Alerts are compared by alert_id: missing, duplicated (an id seen more
than once), unexpected, and for the ids both sides have, every field but
emitted_at (value within 1 % for percentile metrics, 1e-9 otherwise), the
record key (the touchpoint) and the id itself recomputed from README's formula.

cx.deadletter is read the same way: the (source.topic, source.partition,
source.offset, reason) of each dead letter, reason being the `error` header up
to its first colon, must match the expected ones exactly. kcat lists the same
topic once more as a second, independent client, and must count as many.

With --metrics-url (only meaningful for one uninterrupted instance that read
every record), touchpulse's events_{consumed,applied,late,duplicate,rejected}
counters per topic must equal the reference's.

Prints details to stderr, then one summary line; exits 0 only when everything
matches. `check(bootstrap, expected_path, timeout)` does the same from Python
and returns the counts.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import subprocess
import urllib.request
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference  # noqa: E402

ALERT_SCHEMA = HERE.parent.parent / "schemas" / "alert_event.avsc"
EXTRA_READ_SECONDS = 3.0
COMPARED = ("rule", "touchpoint", "metric", "state", "severity", "op", "window_start", "window_end", "samples", "labels")


def _plain_schema(path: Path) -> Any:
    """The schema with logical types dropped: timestamps decode as integer milliseconds."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "logicalType"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return fastavro.parse_schema(strip(json.loads(path.read_text())))


def read_topic(bootstrap: str, topic: str, want: int, timeout: float) -> list[Any]:
    """Every committed record of a topic from the beginning: until `want` records were
    read or `timeout` seconds passed, then EXTRA_READ_SECONDS more."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        client_id="touchpulse-check",
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"check: topic {topic} does not exist")
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        extra_until = None
        while True:
            now = time.monotonic()
            if extra_until is None and (len(records) >= want or now >= deadline):
                extra_until = now + EXTRA_READ_SECONDS
            if extra_until is not None and now >= extra_until:
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _close(metric: str, got: float, want: float) -> bool:
    if not isinstance(got, (int, float)) or math.isnan(got):
        return False
    tolerance = 0.01 if metric in reference.PERCENTILE_METRICS else 1e-9
    return abs(got - want) <= tolerance * max(abs(want), 1e-12) or got == want


def compare_alerts(expected: list[dict[str, Any]], records: list[Any], schema: Any) -> tuple[dict[str, int], list[str]]:
    """Counts and human-readable differences between expected alerts and records read."""
    details: list[str] = []
    by_id: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    undecodable = 0
    for rec in records:
        try:
            alert = fastavro.schemaless_reader(io.BytesIO(rec.value), schema, None)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a finding
            undecodable += 1
            details.append(f"undecodable alert at {rec.topic}/{rec.partition}@{rec.offset}: {exc}")
            continue
        by_id.setdefault(alert["alert_id"], []).append((rec, alert))
    want = {a["alert_id"]: a for a in expected}
    missing = [i for i in want if i not in by_id]
    unexpected = [i for i in by_id if i not in want]
    duplicated = sum(len(v) - 1 for v in by_id.values() if len(v) > 1)
    mismatched = 0
    for alert_id in missing:
        a = want[alert_id]
        details.append(f"missing {a['state']} {a['rule']} {a['touchpoint']} window_end={a['window_end']} "
                       f"value={a['value']} samples={a['samples']} ({alert_id})")
    for alert_id in unexpected:
        _, a = by_id[alert_id][0]
        details.append(f"unexpected {a['state']} {a['rule']} {a['touchpoint']} window_end={a['window_end']} "
                       f"value={a['value']} samples={a['samples']} ({alert_id})")
    for alert_id, copies in by_id.items():
        if len(copies) > 1:
            where = ", ".join(f"{r.partition}@{r.offset}" for r, _ in copies)
            details.append(f"duplicated {alert_id} x{len(copies)} at {where}")
    for alert_id, copies in by_id.items():
        for rec, got in copies:
            diffs = _differences(got, rec, want.get(alert_id))
            if diffs:
                mismatched += 1
                details.append(f"mismatch {got.get('state')} {got.get('rule')} {got.get('touchpoint')} "
                               f"window_end={got.get('window_end')}: " + "; ".join(diffs))
    counts = {
        "expected": len(expected),
        "got": len(records),
        "missing": len(missing),
        "duplicated": duplicated,
        "unexpected": len(unexpected),
        "mismatched": mismatched + undecodable,
    }
    return counts, details


def _differences(got: dict[str, Any], rec: Any, want: dict[str, Any] | None) -> list[str]:
    diffs = []
    recomputed = reference.alert_id(got["rule"], got["touchpoint"], got["state"], got["window_end"])
    if got["alert_id"] != recomputed:
        diffs.append(f"alert_id {got['alert_id']} != recomputed {recomputed}")
    if rec.key != got["touchpoint"].encode():
        diffs.append(f"key {rec.key!r} != touchpoint")
    if got["op"] not in reference.OPS:
        diffs.append(f"op {got['op']!r}")
    if got["window_end"] - got["window_start"] <= 0:
        diffs.append("empty window")
    if want is None:
        return diffs
    for name in COMPARED:
        if got[name] != want[name]:
            diffs.append(f"{name} {got[name]!r} != {want[name]!r}")
    if not _close(want["metric"], got["value"], want["value"]):
        diffs.append(f"value {got['value']!r} != {want['value']!r}")
    if got["threshold"] != want["threshold"]:
        diffs.append(f"threshold {got['threshold']!r} != {want['threshold']!r}")
    return diffs


def compare_deadletters(expected: list[dict[str, Any]], records: list[Any]) -> tuple[int, int, list[str]]:
    """(matched, got, differences) of dead letters, compared as a multiset."""
    details = []
    got = Counter()
    for rec in records:
        headers = {k: v.decode(errors="replace") for k, v in (rec.headers or [])}
        missing = [h for h in ("error", "source.topic", "source.partition", "source.offset") if h not in headers]
        if missing:
            details.append(f"dead letter {rec.partition}@{rec.offset} lacks headers {missing}")
            continue
        reason = headers["error"].split(":", 1)[0].strip()
        got[(headers["source.topic"], headers["source.partition"], headers["source.offset"], reason)] += 1
    want = Counter((d["topic"], str(d["partition"]), str(d["offset"]), d["reason_prefix"]) for d in expected)
    for key, n in (want - got).items():
        details.append(f"missing dead letter {key} x{n}")
    for key, n in (got - want).items():
        details.append(f"unexpected dead letter {key} x{n}")
    return sum((want & got).values()), len(records), details


def kcat_count(bootstrap: str, topic: str) -> tuple[int, list[str]]:
    """Dead letters as listed by kcat (librdkafka, read_committed by default)."""
    try:
        out = subprocess.run(
            ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
             "-X", "isolation.level=read_committed", "-f", "%k %h\\n\\x1e"],
            capture_output=True, timeout=60, check=True,
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, [f"kcat failed: {exc}"]
    entries = [e.strip("\n") for e in out.split("\x1e") if e.strip()]
    problems = [f"kcat: dead letter without source headers: {e!r}" for e in entries
                if not all(h in e for h in ("error=", "source.topic=", "source.partition=", "source.offset="))]
    return len(entries), problems


COUNTER_RE = re.compile(r'^touchpulse_events_(consumed|applied|late|duplicate|rejected)_total\{topic="([^"]*)"[^}]*\}\s+(\S+)')


def compare_counters(expected: dict[str, dict[str, int]], metrics_url: str) -> list[str]:
    """Differences between the reference's counters and touchpulse's /metrics."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            text = response.read().decode()
    except OSError as exc:
        return [f"metrics: {exc}"]
    got: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = COUNTER_RE.match(line)
        if match:
            key = (match.group(2), match.group(1))
            got[key] = got.get(key, 0) + float(match.group(3))
    details = []
    for topic, counts in sorted(expected.items()):
        for name in ("consumed", "applied", "late", "duplicate", "rejected"):
            want, have = counts.get(name, 0), got.get((topic, name), 0)
            if want != have:
                details.append(f"counter events_{name}_total{{topic={topic}}}: {have:g} != {want}")
    return details


def check(bootstrap: str, expected_path: str, timeout: float = 60.0, alerts_topic: str = "cx.alerts",
          deadletter_topic: str = "cx.deadletter", metrics_url: str | None = None) -> dict[str, Any]:
    """Compare cx.alerts and cx.deadletter with the expectations; returns the counts, `ok` and `details`."""
    expected = json.loads(Path(expected_path).read_text())
    schema = _plain_schema(ALERT_SCHEMA)
    alert_records = read_topic(bootstrap, alerts_topic, len(expected["alerts"]), timeout)
    result: dict[str, Any] = {}
    counts, details = compare_alerts(expected["alerts"], alert_records, schema)
    result.update(counts)
    letters = read_topic(bootstrap, deadletter_topic, len(expected["deadletters"]), timeout)
    matched, got, letter_details = compare_deadletters(expected["deadletters"], letters)
    details += letter_details
    kcat, kcat_details = kcat_count(bootstrap, deadletter_topic)
    details += kcat_details
    if kcat != got:
        details.append(f"kcat lists {kcat} dead letters, kafka-python read {got}")
    counter_details = compare_counters(expected["counters"], metrics_url) if metrics_url else []
    details += counter_details
    result.update(
        counters_mismatched=len(counter_details) if metrics_url else None,
        deadletters_expected=len(expected["deadletters"]),
        deadletters_matched=matched,
        deadletters_got=got,
        deadletters_kcat=kcat,
    )
    result["ok"] = (
        counts["missing"] == counts["duplicated"] == counts["unexpected"] == counts["mismatched"] == 0
        and counts["got"] == counts["expected"]
        and matched == got == kcat == len(expected["deadletters"])
        and not kcat_details
        and not letter_details
        and not counter_details
    )
    result["details"] = details
    return result


def summary(result: dict[str, Any], label: str) -> str:
    return (
        f"check[{label}]: expected {result['expected']} alerts, got {result['got']}, missing {result['missing']}, "
        f"duplicated {result['duplicated']}, unexpected {result['unexpected']}, mismatched {result['mismatched']}; "
        f"deadletters {result['deadletters_matched']}/{result['deadletters_expected']} "
        f"(read {result['deadletters_got']}, kcat {result['deadletters_kcat']})"
        + ("" if result["counters_mismatched"] is None else f"; counters mismatched {result['counters_mismatched']}")
        + f" -> {'OK' if result['ok'] else 'FAIL'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--label", default="run")
    parser.add_argument("--alerts-topic", default="cx.alerts")
    parser.add_argument("--deadletter-topic", default="cx.deadletter")
    parser.add_argument("--metrics-url", help="e.g. http://127.0.0.1:9464/metrics of the one instance that ran")
    args = parser.parse_args(argv)
    result = check(args.bootstrap, args.expected, args.timeout, args.alerts_topic, args.deadletter_topic,
                   args.metrics_url)
    for line in result["details"][:200]:
        print(f"check[{args.label}]: {line}", file=sys.stderr)
    if len(result["details"]) > 200:
        print(f"check[{args.label}]: ... {len(result['details']) - 200} more", file=sys.stderr)
    print(summary(result, args.label))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
