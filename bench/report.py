#!/usr/bin/env python3
"""bench/RESULTS.md from bench/e2e.py's JSON and the micro-benchmarks' output
(bench/run.sh calls it). Every figure is a ratio of contestants measured in
the same run, or a count; absolute rates are printed for context only."""
import argparse
import json
import os
import platform
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              cwd=ROOT).stdout.strip()
    except OSError:
        return "?"


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}".replace(",", " ")


def ratio(a, b):
    return a / b if a and b else None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--micro-dir", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--commit", required=True, help="what the binaries were built from")
    args = ap.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    out = []
    w = out.append
    w("# Benchmark results\n")
    w(f"Produced by `{args.command}` (see bench/run.sh) with binaries built from "
      f"`{args.commit}`, {sh('date -u +%Y-%m-%dT%H:%MZ')}.\n")
    w("Machine: " + sh("nproc") + " cores (" +
      sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip() + "), " +
      sh("free -g | awk '/Mem:/{print $2}'") + f" GiB, {platform.platform()}; shared and "
      "noisy, so only ratios of contestants measured in the same run are meaningful.\n")
    w("Versions: Kafka 4.1.2 broker (KRaft, one node, loopback, on the same 2 cores), "
      f"librdkafka {sh('pkg-config --modversion rdkafka')}, Avro-C "
      f"{sh('pkg-config --modversion avro-c')}, {sh('java -version 2>&1 | head -1')}, "
      "Kafka Streams as pinned in bench/peers/kafka-streams/pom.xml.\n")
    w(f"Datasets: {fmt(res['events'])} events each (the Kafka Streams dataset: the number after "
      "the touchpoints in its name) (80 % feedback, 12 % support, 8 % commerce; "
      f"bench_load), {res['partitions']} partitions per input topic; {res['reps']} repetitions "
      "per contestant, contestants taking turns, each run a fresh consumer group. Figures are "
      "medians, [min-max] the spread.\n")

    w("## End to end: draining pre-loaded topics\n")
    w("| dataset | contestant | records/s | [spread] | CPU s per M records | "
      "to the last record | peak RSS MB | alerts |")
    w("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for ds in res["datasets"]:
        for who, s in ds["summary"].items():
            sp = s.get("rate_range") or [None, None]
            w(f"| {ds['name']} | {who} | {fmt(s['rate'])} | [{fmt(sp[0])}-{fmt(sp[1])}] | "
              f"{fmt(s['cpu_per_m'], 2)} | {fmt(s.get('cpu_last_per_m'), 2)} | {fmt(s['rss_mb'])} | "
              f"{'-' if s['alerts'] is None else fmt(s['alerts'])} |")
        for r in ds["runs"]:
            if "error" in r:
                w(f"| {ds['name']} | {r['contestant']} rep {r['rep']} | FAILED: "
                  f"{r['error'][:120]} | | | | | |")
    w("")
    w("Ratios (medians of the same dataset):\n")
    w("| dataset | touchpulse / raw drain rate | CPU per record touchpulse / raw | "
      "same, to the last record | without rules: drain rate / raw | without rules: CPU to the "
      "last record / raw | "
      "touchpulse / KS default rate | touchpulse / KS in-memory rate | KS default / touchpulse RSS | alerts equal |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for ds in res["datasets"]:
        s = ds["summary"]
        tp, raw = s.get("touchpulse", {}), s.get("raw", {})
        nr = s.get("touchpulse-norules", {})
        ksd, ksm = s.get("ks-default", {}), s.get("ks-inmemory", {})
        cmp = ds.get("alerts_compare", {})
        eq = ", ".join(f"{k}: {'yes' if v['equal'] else 'NO'}" for k, v in cmp.items()) or "-"
        w(f"| {ds['name']} | {fmt(ratio(tp.get('rate'), raw.get('rate')), 2)} | "
          f"{fmt(ratio(tp.get('cpu_per_m'), raw.get('cpu_per_m')), 2)} | "
          f"{fmt(ratio(tp.get('cpu_last_per_m'), raw.get('cpu_last_per_m')), 2)} | "
          f"{fmt(ratio(nr.get('rate'), raw.get('rate')), 2)} | "
          f"{fmt(ratio(nr.get('cpu_last_per_m'), raw.get('cpu_last_per_m')), 2)} | "
          f"{fmt(ratio(tp.get('rate'), ksd.get('rate')), 1)} | "
          f"{fmt(ratio(tp.get('rate'), ksm.get('rate')), 1)} | "
          f"{fmt(ratio(ksd.get('rss_mb'), tp.get('rss_mb')), 1)} | {eq} |")
    w("")
    lags = [r["detail"]["eof_lag_s"] for ds in res["datasets"] for r in ds["runs"]
            if "error" not in r and r.get("detail", {}).get("eof_lag_s") is not None]
    if lags:
        w(f"touchpulse's `caught up` line came {min(lags):.2f}-{max(lags):.2f} s after its last "
          "record in these runs (the end-of-log wait); the drain rates above end at the last "
          "record.\n")
    for ds in res["datasets"]:
        for who, v in ds.get("alerts_compare", {}).items():
            if not v["equal"]:
                w(f"Alerts of touchpulse and {who} differ on {ds['name']}:\n\n```\n{v['summary']}\n```\n")
    w("Definitions: records/s = records / (wall time of the last record - wall time of the "
      "first), as each contestant reports it (touchpulse: both from its `caught up` log line, "
      "which gives when the first record was in hand and when the last was processed; the "
      "line itself comes up to fetch.wait.max.ms, 500 ms, later, when the broker answers the "
      "next fetch with the end of the logs; Kafka Streams: "
      "the last when close() has produced the last alerts); CPU and peak RSS from getrusage of the contestant's process, "
      "start-up and shutdown included (touchpulse's also a /metrics scrape of every touchpoint after the "
      "drain, which bench/e2e.py reads its counters from); CPU to the last record: the process's CPU time "
      "from its start to the last record (raw: getrusage at the last record; touchpulse: /proc when its "
      "`caught up` line appears, so the wait for the end of the logs is in it, idle but for the "
      "threads' polls); alerts = FIRING + RESOLVED written; touchpulse-norules: the same "
      "service and settings with `rules: []`: each topic keeps one 15-minute window for the views, "
      "its sums kept and published at every boundary, and no rule is evaluated, so the difference "
      "to touchpulse is what the example rules add.\n")

    for name, title in (("bench_decode.txt", "Decoder: tp_decode vs Avro-C generic decode"),
                        ("bench_table.txt", "Table: updates with 1 and 2 writers, evaluator scanning"),
                        ("bench_rss.txt", "Resident bytes per active touchpoint"),
                        ("latency.json", "Alert latency after the watermark passes a boundary")):
        text = read(os.path.join(args.micro_dir, name))
        if text:
            w(f"## {title}\n")
            w("```\n" + text.strip() + "\n```\n")
    notes = read(os.path.join(HERE, "NOTES.md"))
    if notes:
        w(notes.strip() + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
