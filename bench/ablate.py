#!/usr/bin/env python3
"""What each part of touchpulse's per-record work costs in a real drain.

Loads one dataset (bench_load), then drains it with raw (bench_raw),
touchpulse, and touchpulse built at each ablation level of
bench/ablate.patch (see there: 1 no evaluation, 2 and no duplicate index,
3 and no bucket, 4 and no touchpoint table, 5 and no decoding), taking
turns, --reps times each, each run a fresh consumer group, with the example
rules. Drain rate and CPU to the last record are measured as bench/e2e.py
measures them. Prints a Markdown table of medians, spreads and ratios to
raw. bench/ablate.sh builds the levels and starts the broker.
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import e2e  # noqa: E402

LEVELS = {
    0: "touchpulse, the patch applied, nothing removed",
    1: "no evaluation (no boundary scheduled, no window sums, no rules)",
    2: "and no duplicate index",
    3: "and no bucket written",
    4: "and no touchpoint table",
    5: "and no decoding (offsets only)",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--touchpoints", type=int, default=100_000)
    ap.add_argument("--dist", default="uniform")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--bin", required=True, help="the release build (bench_raw, bench_load, touchpulse)")
    ap.add_argument("--levels", required=True, help="LEVEL=BINARY,... (bench/ablate.sh passes them)")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    args.raw = os.path.join(args.bin, "bench_raw")
    binaries = {"raw": None, "touchpulse": os.path.join(args.bin, "touchpulse")}
    for spec in args.levels.split(","):
        level, path = spec.split("=", 1)
        binaries[f"level {level}"] = path

    e2e.admin_topics(args.bootstrap, delete=e2e.INPUTS, create=e2e.INPUTS,
                     partitions=args.partitions)
    load, _, _ = e2e.run_child_json([os.path.join(args.bin, "bench_load"), "--bootstrap",
                                     args.bootstrap, "--events", str(args.events),
                                     "--touchpoints", str(args.touchpoints), "--dist", args.dist,
                                     "--partitions", str(args.partitions)])
    expected = load["events"]
    e2e.log(f"loaded {expected} events, {args.touchpoints} {args.dist} touchpoints")
    runs = {who: [] for who in binaries}
    n = 0
    for rep in range(args.reps):
        for who, path in binaries.items():
            n += 1
            run_id = f"ablate-{rep}-{n}-{os.getpid()}"
            if who == "raw":
                res, _, _ = e2e.run_raw(args, args.bootstrap, expected, run_id)
                cpu_last = res["cpu_ms"] / 1000.0
            else:
                args.touchpulse = path
                res, _, _ = e2e.run_touchpulse(args, args.bootstrap, expected, run_id,
                                               max(2 * args.touchpoints, 100000))
                cpu_last = res["cpu_to_last_s"]
            secs = (res["last_ms"] - res["first_ms"]) / 1000.0
            runs[who].append((expected / secs, cpu_last / (expected / 1e6)))
            e2e.log(f"  {who} rep {rep}: {runs[who][-1][0]:.0f} records/s, "
                    f"{runs[who][-1][1]:.2f} CPU s per M to the last record")

    def med(who, k):
        return statistics.median(r[k] for r in runs[who])

    def spread(who, k, digits):
        vals = [r[k] for r in runs[who]]
        return f"{min(vals):.{digits}f}-{max(vals):.{digits}f}"

    print(f"{expected} records, {args.touchpoints} {args.dist} touchpoints, "
          f"{args.partitions} partitions per topic, {args.reps} runs each taking turns; "
          "medians [min-max]\n")
    print("| build | records/s | / raw | CPU s per M to the last record | / raw |")
    print("| --- | ---: | ---: | ---: | ---: |")
    raw_rate, raw_cpu = med("raw", 0), med("raw", 1)
    for who in binaries:
        label = who
        if who.startswith("level "):
            label = f"{who}: {LEVELS.get(int(who.split()[1]), '?')}"
        print(f"| {label} | {med(who, 0):,.0f} [{spread(who, 0, 0)}] | "
              f"{med(who, 0) / raw_rate:.2f} | {med(who, 1):.2f} [{spread(who, 1, 2)}] | "
              f"{med(who, 1) / raw_cpu:.2f} |")


if __name__ == "__main__":
    main()
