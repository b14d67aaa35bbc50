#!/usr/bin/env python3
"""End-to-end benchmark against a real Kafka broker (bench/run.sh starts it).

For each dataset (touchpoint count x distribution) the input topics are
created anew with --partitions partitions and pre-loaded by bench_load; then
each contestant drains them, in turn, --reps times, each time with a fresh
consumer group (and, for the alert-writing contestants, a fresh alert topic):

  raw            bench_raw: a librdkafka consumer that reads and discards
  touchpulse     the service with the example rules (examples/touchpulse.yaml)
  touchpulse-norules
                 the same service and settings with `rules: []`: decoding,
                 deduplication, the touchpoint table, checkpoints, and one
                 15-minute window per topic for the views, but no rule to
                 evaluate; the difference to touchpulse is what the example
                 rules add
  ks-default     the Kafka Streams peer, RocksDB stores + changelog topics
  ks-inmemory    the Kafka Streams peer, in-memory stores, no changelog

Per run: drain rate (records / (last record - first record); touchpulse's
first and last records are the times its "caught up" log line gives, as
/metrics renders every touchpoint's gauges and polling it would load the
contestant, and the line itself comes up to fetch.wait.max.ms after the
last record), wall time from
process start to the last record, CPU seconds of the process (getrusage of
the child, so start-up and shutdown included) per million records, peak RSS
(ru_maxrss) and, for the rule engines, the alerts. The alert sets of
touchpulse and the Kafka Streams peer are compared (rule, touchpoint, state,
window_end): a difference makes the comparison void and is reported.

Every contestant runs on the same machine as the broker; contestants never
overlap. Prints a JSON document of every run and the medians; bench/run.sh
turns it into bench/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from cluster import free_port  # noqa: E402
INPUTS = ["cx.feedback", "cx.support", "cx.commerce"]


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kafka_sh(*args):
    subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def admin_topics(bootstrap, delete=(), create=(), partitions=8):
    """Delete then create topics with the broker's own tool (the jars that
    scripts/kafka.sh runs), through kafka-python's admin client."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import UnknownTopicOrPartitionError
    adm = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        existing = set(adm.list_topics())
        gone = [t for t in delete if t in existing]
        if gone:
            try:
                adm.delete_topics(gone, timeout_ms=30000)
            except UnknownTopicOrPartitionError:
                pass
            for _ in range(300):
                if not set(gone) & set(adm.list_topics()):
                    break
                time.sleep(0.1)
        if create:
            adm.create_topics([NewTopic(t, partitions, 1) for t in create], timeout_ms=30000)
    finally:
        adm.close()
    if create:
        # Until every new topic's partitions have a leader in the metadata.
        from kafka import KafkaConsumer
        c = KafkaConsumer(bootstrap_servers=bootstrap)
        try:
            for _ in range(300):
                c.topics()  # fresh metadata
                if all(len(c.partitions_for_topic(t) or ()) == partitions for t in create):
                    break
                time.sleep(0.1)
        finally:
            c.close()


def process_cpu_s(pid):
    """User + system CPU seconds of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_rusage(proc):
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru


def run_child_json(argv, env=None, timeout=3600):
    """Runs a contestant that prints one JSON line and exits; returns
    (json, rusage, t_start)."""
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    out_lines = []
    deadline = t0 + timeout
    # stdout is small (one line); stderr is drained after exit
    out = proc.stdout.read()
    ru = wait_rusage(proc)
    err = proc.stderr.read()
    if time.time() > deadline:
        raise RuntimeError(f"{argv[0]} took too long")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out_lines.append(json.loads(line))
    if proc.returncode != 0 or not out_lines:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-4000:]}")
    return out_lines[-1], ru, t0


def metric_sum(text, name, **labels):
    total = 0.0
    pat = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})? (\S+)$")
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        lab = m.group(1) or ""
        if all(f'{k}="{v}"' in lab for k, v in labels.items()):
            total += float(m.group(2))
    return total


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def touchpulse_config(path, bootstrap, group, alerts_topic, port, max_tp, rules=True):
    """The example configuration (its rules and defaults) with the bench's
    broker, a fresh group, its own alert topic, a table large enough for the
    dataset, and idle_timeout 0 (windows close on the records alone, as in
    the Kafka Streams peer). rules=False: no rules at all."""
    with open(os.path.join(ROOT, "examples", "touchpulse.yaml")) as f:
        example = f.read()
    rules = example[example.index("\nrules:") + 1:] if rules else "rules: []\n"
    with open(path, "w") as f:
        f.write(f"""kafka:
  bootstrap.servers: "{bootstrap}"
  group.id: "{group}"
topics:
  alerts: "{alerts_topic}"
  deadletter: bench.deadletter
windows:
  idle_timeout: 0s
state:
  max_touchpoints: {max_tp}
http:
  listen: 127.0.0.1:{port}
log:
  level: info
{rules}""")


def run_touchpulse(args, bootstrap, expected, run_id, max_tp, rules=True):
    alerts_topic = f"bench.tp.alerts.{run_id}"
    admin_topics(bootstrap, create=[alerts_topic], partitions=args.partitions)
    port = free_port()
    cfg = os.path.join(args.workdir, f"touchpulse-{run_id}.yaml")
    touchpulse_config(cfg, bootstrap, f"bench-tp-{run_id}", alerts_topic, port, max_tp, rules)
    t0 = time.time()
    logpath = os.path.join(args.workdir, f"touchpulse-{run_id}.log")
    proc = subprocess.Popen([args.touchpulse, "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(logpath, "w"))
    # The first and the last record: from touchpulse's "caught up" log line,
    # which says when the first record was in hand and when the last was
    # processed. The line itself comes later: it waits for the end-of-log
    # events, which the broker sends with the next fetch after the last
    # record, held up to fetch.wait.max.ms (500 ms) when no partition has
    # more. /metrics is not polled meanwhile: a scrape renders every
    # touchpoint's gauges and would load the contestant.
    first = last = None
    deadline = t0 + args.timeout
    caught = re.compile(r"^(\S+Z) info +caught up: .* (\d+) records consumed since start "
                        r"\(the first in hand at (\S+), the last processed at (\S+)\); "
                        r"(\d+) checkpoints held the workers for ([\d.]+) s")

    def utc(stamp):
        return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ") \
            .replace(tzinfo=datetime.timezone.utc).timestamp()

    with open(logpath) as log_lines:  # read as it grows, each line once
        partial = ""
        while last is None and time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"touchpulse exited with {proc.returncode}, see {logpath}")
            for line in log_lines:
                line, partial = partial + line, ""
                if not line.endswith("\n"):  # still being written
                    partial = line
                    break
                mt = caught.match(line)
                if mt and int(mt.group(2)) >= expected:
                    held = {"checkpoints": int(mt.group(5)), "held_s": float(mt.group(6)),
                            "cpu_s": process_cpu_s(proc.pid),
                            "eof_lag_s": utc(mt.group(1)) - utc(mt.group(4))}
                    first, last = utc(mt.group(3)), utc(mt.group(4))
            time.sleep(0.2)
    if first is None or last is None:
        proc.kill()
        raise RuntimeError("touchpulse did not drain the topics in time")
    # Every alert of the drained input is produced by now; let the last
    # transaction commit, then stop.
    time.sleep(1.5)
    text = scrape(port)
    proc.send_signal(signal.SIGTERM)
    ru = wait_rusage(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"touchpulse exited with {proc.returncode}")
    def m(name, **kw):
        return metric_sum(text, name, **kw)
    res = {
        "records": int(m("touchpulse_events_consumed_total")),
        "applied": int(m("touchpulse_events_applied_total")),
        "rejected": int(m("touchpulse_events_rejected_total")),
        "late": int(m("touchpulse_events_late_total")),
        "overflow": int(m("touchpulse_events_overflow_total")),
        "alerts": int(m("touchpulse_alerts_total")),
        "alerts_firing": int(m("touchpulse_alerts_total", state="FIRING")),
        "alerts_resolved": int(m("touchpulse_alerts_total", state="RESOLVED")),
        "aborts": int(m("touchpulse_transaction_aborts_total")),
        "first_ms": first * 1000, "last_ms": last * 1000,
        "alert_topic": alerts_topic,
        # Checkpoints from start until caught up, and how long they held
        # the workers (the log line that marks the end of the drain).
        "checkpoints": held["checkpoints"], "checkpoint_hold_s": held["held_s"],
        # CPU time from start to the "caught up" line (read within 0.2 s of it).
        # How long after the last record the line came (the end-of-log wait).
        "eof_lag_s": held["eof_lag_s"],
        "cpu_to_last_s": held["cpu_s"],
    }
    return res, ru, t0


def run_raw(args, bootstrap, expected, run_id):
    argv = [args.raw, "--bootstrap", bootstrap, "--group", f"bench-raw-{run_id}",
            "--expect", str(expected), "--topics", ",".join(INPUTS),
            "--timeout", str(args.timeout)]
    return run_child_json(argv, timeout=args.timeout)


def run_ks(args, bootstrap, expected, run_id, mode):
    alerts_topic = f"bench.ks.alerts.{run_id}"
    admin_topics(bootstrap, create=[alerts_topic], partitions=args.partitions)
    argv = [os.path.join(HERE, "peers", "kafka-streams", "run.sh"), mode, bootstrap,
            f"bench-ks-{mode}-{run_id}", str(expected), alerts_topic]
    res, ru, t0 = run_child_json(argv, timeout=args.timeout)
    res["alert_topic"] = alerts_topic
    return res, ru, t0


def compare_alerts(bootstrap, tp_topic, ks_topic):
    """The alert sets of both rule engines: (equal, summary)."""
    script = os.path.join(HERE, "peers", "kafka-streams", "check_equal.py")
    p = subprocess.run([sys.executable, script, "--bootstrap", bootstrap,
                        "--a", f"{tp_topic}:avro", "--b", f"{ks_topic}:json"],
                       capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr).strip()[-2000:]


def summarize(rows):
    """Median and spread (min-max) of the runs of one contestant."""
    def med(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(vals) if vals else None
    def spread(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return [min(vals), max(vals)] if vals else None
    out = {}
    for key in ("rate", "wall_s", "cpu_per_m", "cpu_last_per_m", "rss_mb", "alerts"):
        out[key] = med(key)
        out[key + "_range"] = spread(key)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--touchpoints", default="10000,100000,1000000")
    ap.add_argument("--dists", default="uniform,zipf")
    ap.add_argument("--contestants",
                    default="raw,touchpulse,touchpulse-norules,ks-default,ks-inmemory",
                    help="on the main datasets")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--ks-dataset", default="",
                    help="DIST-TOUCHPOINTS:EVENTS, a dataset where every contestant runs, "
                         "Kafka Streams included (e.g. zipf-100000:300000)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "release"))
    args = ap.parse_args()
    args.touchpulse = os.path.join(args.bin, "touchpulse")
    args.raw = os.path.join(args.bin, "bench_raw")
    loader = os.path.join(args.bin, "bench_load")
    contestants = args.contestants.split(",")
    results = {"events": args.events, "partitions": args.partitions, "reps": args.reps,
               "datasets": []}
    state = {"run_no": 0}

    def run_dataset(dist, tps, events, who_list, label):
        name = f"{dist}-{tps}{label}"
        log(f"dataset {name}: {events} events")
        admin_topics(args.bootstrap, delete=INPUTS, create=INPUTS, partitions=args.partitions)
        load, _, _ = run_child_json([loader, "--bootstrap", args.bootstrap, "--events",
                                     str(events), "--touchpoints", str(tps), "--dist",
                                     dist, "--partitions", str(args.partitions)])
        log(f"  loaded: {load}")
        ds = {"name": name, "dist": dist, "touchpoints": tps, "events": events, "load": load,
              "runs": [], "summary": {}}
        expected = load["events"]
        for rep in range(args.reps):
            for who in who_list:
                state["run_no"] += 1
                run_id = f"{name}-{who}-{rep}-{os.getpid()}-{state['run_no']}"
                try:
                    if who == "raw":
                        res, ru, t0 = run_raw(args, args.bootstrap, expected, run_id)
                    elif who in ("touchpulse", "touchpulse-norules"):
                        res, ru, t0 = run_touchpulse(args, args.bootstrap, expected, run_id,
                                                     max(2 * tps, 100000),
                                                     rules=who == "touchpulse")
                    else:
                        res, ru, t0 = run_ks(args, args.bootstrap, expected, run_id,
                                             who[len("ks-"):])
                except RuntimeError as e:
                    log(f"  {who} rep {rep}: FAILED: {e}")
                    ds["runs"].append({"contestant": who, "rep": rep, "error": str(e)})
                    continue
                # Kafka Streams produces the alerts of windows still held in its record
                # caches when it closes: its drain ends then (closed_ms).
                end_ms = max(res["last_ms"], res.get("closed_ms") or 0)
                secs = (end_ms - res["first_ms"]) / 1000.0
                cpu = ru.ru_utime + ru.ru_stime
                # CPU from start to the last record, without shutting down (and
                # touchpulse's /metrics scrape of every touchpoint after the drain).
                cpu_last = res.get("cpu_to_last_s")
                if cpu_last is None and res.get("cpu_ms") is not None:
                    cpu_last = res["cpu_ms"] / 1000.0
                row = {"contestant": who, "rep": rep, "records": res.get("records"),
                       "rate": expected / secs if secs > 0 else None,
                       "drain_s": secs, "wall_s": end_ms / 1000.0 - t0,
                       "cpu_s": cpu, "cpu_per_m": cpu / (expected / 1e6),
                       "cpu_last_per_m": None if cpu_last is None else cpu_last / (expected / 1e6),
                       "rss_mb": ru.ru_maxrss / 1024.0,
                       "alerts": res.get("alerts"), "detail": res}
                ds["runs"].append(row)
                held = ""
                if "checkpoint_hold_s" in res:
                    held = (f", {res['checkpoints']} checkpoints held the workers "
                            f"{res['checkpoint_hold_s']:.2f} s")
                log(f"  {who} rep {rep}: {row['rate']:.0f} rec/s, drain {secs:.2f} s, "
                    f"cpu {cpu:.1f} s{'' if cpu_last is None else f' ({cpu_last:.1f} to the last record)'}, rss {row['rss_mb']:.0f} MB, alerts {row['alerts']}{held}")
        for who in who_list:
            rows = [r for r in ds["runs"] if r["contestant"] == who and "error" not in r]
            if rows:
                ds["summary"][who] = summarize(rows)
        # The comparison is void unless both rule engines wrote the same alerts.
        tp_runs = [r for r in ds["runs"] if r["contestant"] == "touchpulse" and "error" not in r]
        for who in ("ks-default", "ks-inmemory"):
            ks_runs = [r for r in ds["runs"] if r["contestant"] == who and "error" not in r]
            if tp_runs and ks_runs:
                eq, summary = compare_alerts(args.bootstrap, tp_runs[0]["detail"]["alert_topic"],
                                             ks_runs[0]["detail"]["alert_topic"])
                ds.setdefault("alerts_compare", {})[who] = {"equal": eq, "summary": summary}
                log(f"  alerts touchpulse vs {who}: {'equal' if eq else 'DIFFERENT'}")
        results["datasets"].append(ds)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)

    for dist in args.dists.split(","):
        for tps in [int(x) for x in args.touchpoints.split(",")]:
            run_dataset(dist, tps, args.events, contestants, "")
    if args.ks_dataset:
        # Kafka Streams drains thousands of records a second: it meets the
        # others on a smaller dataset of its own.
        spec, events = args.ks_dataset.split(":")
        dist, tps = spec.split("-")
        run_dataset(dist, int(tps), int(events),
                    ["raw", "touchpulse", "ks-default", "ks-inmemory"], f"-{events}")
    log(f"results in {args.out}")


if __name__ == "__main__":
    main()
