"""Integration tests of touchpulse against a real Apache Kafka broker.

Each test starts a fresh single-node broker (scripts/kafka.sh), creates the
topics, writes the scenario of scenario.py (an independent producer), runs
touchpulse instances in one consumer group while doing what users' clusters
do to them -- scale-out, rebalances in the middle of the stream, kill -9 at
chosen moments, a broker restart, SIGTERM -- and then compares what a
read_committed subscriber sees on cx.alerts with the alerts the independent
reference evaluator expects (check.py): nothing missing, nothing twice,
nothing invented.

    python3 tests/integration/cluster.py --bin build/asan/touchpulse [--only NAME]

Prints one line per test and a table of figures at the end; exits 1 when any
test fails or the broker cannot start.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import check  # noqa: E402  (the independent alert checker)

KAFKA = os.path.join(ROOT, "scripts", "kafka.sh")
PARTITIONS = 6
TOPICS = [("cx.feedback", PARTITIONS), ("cx.support", PARTITIONS),
          ("cx.commerce", PARTITIONS), ("cx.alerts", 3), ("cx.deadletter", 1)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """A fresh broker in its own folder; always stopped by close()."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "kafka")
        out = subprocess.run([KAFKA, "start", self.dir], check=True, capture_output=True,
                             text=True)
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        for topic, parts in TOPICS:
            subprocess.run([KAFKA, "topic", self.dir, topic, str(parts)], check=True)

    def restart(self):
        subprocess.run([KAFKA, "restart", self.dir], check=True)

    def close(self):
        subprocess.run([KAFKA, "stop", self.dir], check=False)


class Instance:
    """One touchpulse process with its own HTTP port and transactional id."""

    def __init__(self, binary, workdir, bootstrap, name, group, env=None):
        self.name = name
        self.port = free_port()
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.config = os.path.join(workdir, f"{name}.yaml")
        with open(os.path.join(HERE, "rules.yaml")) as f:
            rules = f.read()
        with open(self.config, "w") as f:
            f.write(f"kafka:\n  bootstrap.servers: '{bootstrap}'\n  group.id: {group}\n"
                    f"  session.timeout.ms: '10000'\n"
                    f"http:\n  listen: '127.0.0.1:{self.port}'\n"
                    f"processing:\n  exactly_once: true\n  commit_interval: 500ms\n"
                    f"  transactional_id: touchpulse-{name}\n"
                    f"workers: 2\n" + rules)
        self.binary = binary
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.kills = 0
        self.start()

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def metric(self, name):
        """Sum of a metric's samples on /metrics (0 when unreachable)."""
        status, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def term(self, timeout=60):
        """SIGTERM; returns (exit code, seconds it took)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise RuntimeError(f"{self.name} did not stop within {timeout} s of SIGTERM")
        return rc, time.time() - t0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Test:
    """Runs one scenario; collects the figures the README records."""

    def __init__(self, args, name):
        self.args = args
        self.name = name
        self.work = tempfile.mkdtemp(prefix=f"tp-it-{name}-")
        self.instances = []
        self.figures = {"test": name, "instances": 0, "kills": 0, "rebalances": 0,
                        "broker_restarts": 0}

    def __enter__(self):
        self.broker = Broker(self.work)
        return self

    def __exit__(self, *exc):
        for inst in self.instances:
            if inst.alive():
                inst.proc.kill()
                inst.proc.wait()
        self.broker.close()
        return False

    def instance(self, env=None):
        name = f"{self.name}-{len(self.instances) + 1}"
        inst = Instance(self.args.bin, self.work, self.broker.bootstrap, name,
                        f"tp-{self.name}", env)
        self.instances.append(inst)
        self.figures["instances"] += 1
        return inst

    def produce(self, rate=0, wait=True):
        """Runs the independent producer; returns its process."""
        cmd = [sys.executable, os.path.join(HERE, "scenario.py"), "--bootstrap",
               self.broker.bootstrap, "--out", self.work, "--partitions", str(PARTITIONS)]
        if rate:
            cmd += ["--rate", str(rate)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if wait:
            self.finish_produce(proc)
        return proc

    def finish_produce(self, proc):
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"scenario.py failed:\n{out}")
        self.figures["scenario"] = out.strip().splitlines()[-1]

    def verify(self, timeout=120, metrics_url=None):
        result = check.check(self.broker.bootstrap, os.path.join(self.work, "expected.json"),
                             timeout, metrics_url=metrics_url)
        if not result["ok"]:
            print("\n".join(result["details"][:30]), flush=True)
        for inst in self.instances:
            if inst.alive():
                self.figures["rebalances"] += int(inst.metric("touchpulse_rebalances_total"))
            self.figures["kills"] += inst.kills
        self.figures.update({k: result[k] for k in
                             ("expected", "got", "missing", "duplicated", "unexpected",
                              "mismatched")})
        self.figures["ok"] = bool(result["ok"])
        return result["ok"]

    def logs(self):
        out = []
        for inst in self.instances:
            with open(inst.log_path) as f:
                lines = f.read().splitlines()
            interesting = [l for l in lines if " error " in l or " warn " in l or "Sanitizer" in l]
            out.append(f"--- {inst.name} ({len(lines)} log lines)\n" + "\n".join(interesting[-30:]))
        return "\n".join(out)


# ---- the tests ----------------------------------------------------------------

def series(body, name):
    """{labels: value} of one metric family in a Prometheus exposition."""
    out = {}
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def committed_equals_end(bootstrap, group):
    """True when the group's committed offset is the log end everywhere."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    tps = [TopicPartition(t, p) for t, n in TOPICS[:3] for p in range(n)]
    ends = consumer.end_offsets(tps)
    committed = {tp: consumer.committed(tp) for tp in tps}
    consumer.close(autocommit=False)
    bad = [(tp, committed[tp], ends[tp]) for tp in tps
           if ends[tp] > 0 and committed[tp] != ends[tp]]
    for tp, c, e in bad:
        print(f"committed offset of {tp.topic}[{tp.partition}] is {c}, log end {e}", flush=True)
    return not bad


def caught_up_ok(log_path):
    """The "caught up" line (bench/e2e.py reads it): records counted, the
    first in hand no later than the last processed, and the line no earlier."""
    pat = re.compile(r"^(\S+Z) info +caught up: \d+ partition\(s\) at the end of their logs "
                     r"after [\d.]+ s behind; (\d+) records consumed since start \(the first "
                     r"in hand at (\S+), the last processed at (\S+)\); \d+ checkpoints held")
    with open(log_path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                at, first, last = m.group(1), m.group(3), m.group(4)
                # Same-length ISO stamps in UTC: text order is time order.
                return int(m.group(2)) > 0 and first <= last <= at
    return False


def t_single(args):
    """One instance, the whole scenario; lag, watermarks, graceful stop."""
    with Test(args, "single") as t:
        t.produce()
        a = t.instance()
        a.wait_ready()
        # One instance read everything from offset 0: its counters must
        # equal the reference's too.
        ok = t.verify(metrics_url=f"http://127.0.0.1:{a.port}/metrics")
        _, body = a.get("/metrics")
        lag = series(body, "touchpulse_consumer_lag")
        checks = {
            "lag on every input partition": len(lag) == 3 * PARTITIONS,
            "lag back to zero": sum(lag.values()) == 0,
            "a watermark per partition": len(series(body, "touchpulse_partition_watermark_seconds"))
            == 3 * PARTITIONS,
            "the processor's watermark": len(series(body, "touchpulse_watermark_seconds")) == 1,
            "no partition restoring": sum(series(body, "touchpulse_partition_restoring").values())
            == 0,
            "rebalances counted": sum(series(body, "touchpulse_rebalances_total").values()) >= 1,
            "caught up, with when the records were processed": caught_up_ok(a.log_path),
        }
        for what, good in checks.items():
            if not good:
                print(f"single: /metrics: {what} failed", flush=True)
        rc, secs = a.term(timeout=60)
        t.figures["sigterm"] = f"exit {rc} in {secs:.1f} s"
        offsets_ok = committed_equals_end(t.broker.bootstrap, "tp-single")
        return t, ok and all(checks.values()) and rc == 0 and offsets_ok


def t_scale_out(args):
    """Three instances in one group on the same input."""
    with Test(args, "scale3") as t:
        t.produce()
        for _ in range(3):
            t.instance()
        for inst in t.instances:
            inst.wait_ready()
        return t, t.verify()


def t_rebalance(args):
    """Instances 2 and 3 join mid-stream, then one leaves: cooperative rebalances."""
    with Test(args, "rebalance") as t:
        producer = t.produce(rate=args.rate, wait=False)
        a = t.instance()
        time.sleep(4)
        t.instance()
        time.sleep(4)
        c = t.instance()
        time.sleep(4)
        rc, _ = c.term()
        t.finish_produce(producer)
        ok = t.verify()
        return t, ok and rc == 0 and a.alive()


def t_crash(args):
    """kill -9 at several moments, each followed by a restart."""
    with Test(args, "crash") as t:
        producer = t.produce(rate=args.rate, wait=False)
        a = t.instance()
        for delay in (3, 5, 4):
            time.sleep(delay)
            a.kill()
            a.start()
        t.finish_produce(producer)
        a.wait_ready()
        return t, t.verify()


def t_crash_before_commit(args):
    """Killed after alerts were delivered and before the offsets were committed."""
    with Test(args, "crash-commit") as t:
        # Records arrive at --rate while the instance runs, so alerts reach
        # many checkpoints: produced all at once, the whole scenario is read
        # before the first commit and its alerts share one checkpoint.
        producer = t.produce(rate=args.rate, wait=False)
        # Dies at the 1st, then the 2nd, then the 3rd checkpoint that has
        # alerts, each run getting further; the last run goes to the end. The
        # same transactional id each time: every start fences the dead one.
        a = t.instance(env={"TP_FAULT_KILL_AT_CHECKPOINT": "1"})
        kills = 0
        for n in (1, 2, 3):
            a.env["TP_FAULT_KILL_AT_CHECKPOINT"] = str(n)
            if n > 1:
                a.start()
            a.proc.wait(timeout=120)
            kills += a.proc.returncode == -signal.SIGKILL
        del a.env["TP_FAULT_KILL_AT_CHECKPOINT"]
        a.start()
        t.finish_produce(producer)
        a.wait_ready()
        a.kills = kills
        return t, t.verify() and kills == 3


def t_abort(args):
    """Transactions aborted at three checkpoints: the input is rewound each time."""
    with Test(args, "abort") as t:
        t.produce()
        a = t.instance(env={"TP_FAULT_ABORT_AT_CHECKPOINT": "2"})
        a.wait_ready()
        ok = t.verify()
        aborts = int(a.metric("touchpulse_transaction_aborts_total"))
        t.figures["aborts"] = aborts
        return t, ok and aborts == 1


def t_broker_restart(args):
    """The broker restarts while touchpulse is processing."""
    with Test(args, "broker-restart") as t:
        producer = t.produce(rate=args.rate, wait=False)
        t.instance()
        time.sleep(5)
        t.broker.restart()
        t.figures["broker_restarts"] = 1
        t.finish_produce(producer)
        return t, t.verify(timeout=180)


TESTS = {"single": t_single, "scale3": t_scale_out, "rebalance": t_rebalance,
         "crash": t_crash, "crash-commit": t_crash_before_commit, "abort": t_abort,
         "broker-restart": t_broker_restart}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the touchpulse binary")
    ap.add_argument("--only", action="append", help="run only these tests")
    ap.add_argument("--rate", type=int, default=600,
                    help="scenario records per second in the mid-stream tests")
    args = ap.parse_args()
    names = args.only or list(TESTS)
    results, failed = [], 0
    for name in names:
        t0 = time.time()
        try:
            t, ok = TESTS[name](args)
        except Exception as e:  # a failed start is a failed test, never a skip
            print(f"[FAIL] {name}: {e}", flush=True)
            failed += 1
            continue
        t.figures["seconds"] = round(time.time() - t0)
        results.append(t.figures)
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {t.figures}", flush=True)
        if not ok:
            failed += 1
            print(t.logs(), flush=True)
    print("\nintegration figures (real broker, read_committed subscriber):")
    print(f"{'test':16} {'inst':>4} {'kills':>5} {'rebal':>5} {'brk':>3} "
          f"{'expected':>8} {'got':>5} {'lost':>4} {'dup':>4} {'extra':>5} {'s':>4}")
    for f in results:
        print(f"{f['test']:16} {f['instances']:>4} {f['kills']:>5} {f['rebalances']:>5} "
              f"{f['broker_restarts']:>3} {f.get('expected', 0):>8} {f.get('got', 0):>5} "
              f"{f.get('missing', 0):>4} {f.get('duplicated', 0):>4} {f.get('unexpected', 0):>5} "
              f"{f['seconds']:>4}")
    if results and "scenario" in results[0]:
        print(f"scenario: {results[0]['scenario']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
