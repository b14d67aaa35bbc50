"""Brute-force reference of touchpulse's alerting, written from SPEC.md and README.md only.

Given the rules configuration and every input record per (topic, partition) in
partition order, `run` returns the alerts one uninterrupted touchpulse instance
must write to cx.alerts, the records it must dead-letter, and its counters.

Nothing here is optimised the way touchpulse is: each partition keeps the full
list of applied events per touchpoint, and at every step boundary its watermark
passes, every window of every rule on every touchpoint of the partition that the
rule matches is recomputed from that list. The semantics implemented:

* Watermark of a partition: the largest `occurred_at` of the valid records read
  from it so far, minus `windows.allowed_lateness`. When it moves from W to W',
  every boundary T (a multiple of `windows.step`) with W < T <= W' is evaluated
  in order on [T - L, T); nothing is evaluated on the partition's first valid
  record. The raise happens before the record is judged, and before it is
  applied.
* A valid record is a duplicate if its `event_id` is among the last
  `dedup.depth` applied `event_id`s of the partition (checked first, so a late
  duplicate is a duplicate), late if `occurred_at` is below the watermark, and
  applied otherwise.
* Records that cannot be used (markers `Rejected`, values out of range,
  malformed ids, events further than `windows.max_future_skew` ahead of the
  given clock) are dead-lettered and do not move the watermark.
* Metrics as in SPEC's and README's tables, with README's decisions on tickets:
  the first reply is the first AGENT_REPLIED applied after the ticket's first
  OPENED; the SLA check uses the earliest reply applied; resolution time runs
  from the first OPENED; a resolution is first-contact when at most one
  AGENT_REPLIED and no REOPENED were applied before it; a RESOLVED of a ticket
  never seen OPENED is ignored; negative durations count as 0. Percentiles are
  exact nearest-rank (touchpulse's sketch is within 1 % of them).
* The state machine per (rule, touchpoint): OK -> PENDING -> FIRING -> RESOLVED
  -> OK with `for`, `clear` hysteresis and `min_samples`; an undefined value
  changes nothing.
* `labels`: the rule's labels plus `stage` and `channel` of the touchpoint's
  applied event with the largest `occurred_at` below `window_end`.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import mmh3

FEEDBACK, SUPPORT, COMMERCE = "feedback", "support", "commerce"

METRIC_SOURCE = {
    "responses": FEEDBACK,
    "csat_mean": FEEDBACK,
    "csat_pct": FEEDBACK,
    "dsat_pct": FEEDBACK,
    "nps": FEEDBACK,
    "ces_mean": FEEDBACK,
    "cli_mean": FEEDBACK,
    "first_response_ms_p50": SUPPORT,
    "first_response_ms_p90": SUPPORT,
    "first_response_ms_p99": SUPPORT,
    "first_response_ms_mean": SUPPORT,
    "resolution_ms_p50": SUPPORT,
    "resolution_ms_p90": SUPPORT,
    "resolution_ms_mean": SUPPORT,
    "fcr_pct": SUPPORT,
    "tickets_opened": SUPPORT,
    "complaints": SUPPORT,
    "first_response_sla_breaches": SUPPORT,
    "orders": COMMERCE,
    "returns": COMMERCE,
    "return_pct": COMMERCE,
}

# Metrics computed by touchpulse from a log-bucketed sketch (<1 % relative error).
PERCENTILE_METRICS = frozenset(m for m in METRIC_SOURCE if re.search(r"_p\d+$", m))

# Integer-valued metrics: their comparisons are exact, ties included.
COUNT_METRICS = frozenset(
    ["responses", "tickets_opened", "complaints", "first_response_sla_breaches", "orders", "returns"]
)

DEFAULT_TOPICS = {
    FEEDBACK: "cx.feedback",
    SUPPORT: "cx.support",
    COMMERCE: "cx.commerce",
    "alerts": "cx.alerts",
    "deadletter": "cx.deadletter",
}

SCORE_FIELDS = ("csat", "nps", "ces", "repurchase", "try_other")
SCORE_RANGES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7), "repurchase": (0, 10), "try_other": (0, 10)}
TOUCHPOINT_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
YEAR_2100_MS = 4102444800000  # 2100-01-01T00:00:00Z

OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: Any) -> int:
    """Milliseconds of a duration written like `500ms`, `30s`, `1m`, `1h`, `30d`."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise ValueError(f"bad duration {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def alert_id(rule: str, touchpoint: str, state: str, window_end: int) -> str:
    """README's alert id: MurmurHash3 x64 128 of `rule NUL touchpoint NUL state NUL window_end`."""
    data = b"\x00".join([rule.encode(), touchpoint.encode(), state.encode(), str(window_end).encode()])
    return mmh3.hash_bytes(data).hex()


def nearest_rank(sorted_values: list[int], percent: int) -> int:
    """Nearest-rank percentile: the ceil(percent * n / 100)-th smallest value (1-based)."""
    n = len(sorted_values)
    rank = max(1, (percent * n + 99) // 100)
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Rule:
    """One entry of `rules:`."""

    name: str
    metric: str
    window: int
    op: str
    threshold: float
    clear: float
    min_samples: int
    for_: int
    severity: str
    touchpoints: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]

    @property
    def source(self) -> str:
        return METRIC_SOURCE[self.metric]

    def matches(self, touchpoint: str) -> bool:
        return any(fnmatch.fnmatchcase(touchpoint, pattern) for pattern in self.touchpoints)

    def breaching(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def cleared(self, value: float) -> bool:
        """True when the value has left the breaching side of the clear level."""
        return not OPS[self.op](value, self.clear)


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration that decide the alerts."""

    step: int
    lateness: int
    max_future_skew: int
    dedup_depth: int
    first_response_sla: int
    topics: Mapping[str, str]
    rules: tuple[Rule, ...]

    def kind_of_topic(self, topic: str) -> str:
        for kind in (FEEDBACK, SUPPORT, COMMERCE):
            if self.topics[kind] == topic:
                return kind
        raise KeyError(f"{topic} is not an input topic")


def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """Build `Settings` from a parsed YAML configuration (defaults as in SPEC)."""
    windows = config.get("windows") or {}
    support = config.get("support") or {}
    dedup = config.get("dedup") or {}
    topics = dict(DEFAULT_TOPICS)
    topics.update(config.get("topics") or {})
    step = parse_duration(windows.get("step", "1m"))
    rules = []
    for raw in config.get("rules") or []:
        metric = raw["metric"]
        if metric not in METRIC_SOURCE:
            raise ValueError(f"rule {raw['name']}: unknown metric {metric}")
        window = parse_duration(raw["window"])
        if window % step:
            raise ValueError(f"rule {raw['name']}: window is not a multiple of the step")
        threshold = float(raw["threshold"])
        op = str(raw["op"])
        if op not in OPS:
            raise ValueError(f"rule {raw['name']}: bad op {op}")
        clear = float(raw.get("clear", threshold))
        if OPS[op](clear, threshold) and clear != threshold:
            raise ValueError(f"rule {raw['name']}: clear lies on the breaching side")
        patterns = raw.get("touchpoints") or ["*"]
        labels = raw.get("labels") or {}
        rules.append(
            Rule(
                name=str(raw["name"]),
                metric=metric,
                window=window,
                op=op,
                threshold=threshold,
                clear=clear,
                min_samples=int(raw.get("min_samples", 0)),
                for_=int(raw.get("for", 1)),
                severity=str(raw.get("severity", "warning")).upper(),
                touchpoints=tuple(str(p) for p in patterns),
                labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            )
        )
    return Settings(
        step=step,
        lateness=parse_duration(windows.get("allowed_lateness", "30s")),
        max_future_skew=parse_duration(windows.get("max_future_skew", "5m")),
        dedup_depth=int(dedup.get("depth", 100_000)),
        first_response_sla=parse_duration(support.get("first_response_sla", "1h")),
        topics=topics,
        rules=tuple(rules),
    )


def load_settings(path: str) -> Settings:
    """Read a YAML configuration file (rules.yaml) into `Settings`."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        return settings_from_config(yaml.safe_load(handle) or {})


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be decoded (truncated, bad enum, empty value, ...)."""

    reason: str
    detail: str = ""


def validation_error(kind: str, event: Mapping[str, Any], now_ms: int, settings: Settings) -> str | None:
    """The dead-letter reason of a decoded event, or None when it is usable."""

    def id_ok(value: Any) -> bool:
        return isinstance(value, str) and 1 <= len(value.encode()) <= 128

    if not id_ok(event["event_id"]):
        return "bad_event_id"
    if not TOUCHPOINT_RE.match(event["touchpoint"]):
        return "bad_touchpoint"
    if not 0 <= event["occurred_at"] < YEAR_2100_MS:
        return "out_of_range"
    if kind == FEEDBACK:
        for name in SCORE_FIELDS:
            value = event.get(name)
            low, high = SCORE_RANGES[name]
            if value is not None and not low <= value <= high:
                return "out_of_range"
        comment = event.get("comment")
        if comment is not None and len(comment.encode()) > 4096:
            return "comment_too_long"
    elif kind == SUPPORT:
        if not id_ok(event["ticket_id"]):
            return "bad_id"
    elif not id_ok(event["order_id"]):
        return "bad_id"
    if event["occurred_at"] > now_ms + settings.max_future_skew:
        return "future_timestamp"
    return None


class _Sorted:
    """Parallel lists kept sorted by time; equal times keep their insertion order."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.items: list[Any] = []

    def add(self, time: int, item: Any) -> None:
        index = bisect.bisect_right(self.times, time)
        self.times.insert(index, time)
        self.items.insert(index, item)

    def window(self, start: int, end: int) -> list[Any]:
        return self.items[bisect.bisect_left(self.times, start) : bisect.bisect_left(self.times, end)]


@dataclass
class _Ticket:
    opened_at: int | None = None
    first_reply_at: int | None = None
    earliest_reply: int | None = None
    replies: int = 0
    reopened: bool = False
    sla: int = 0


@dataclass
class _Touchpoint:
    name: str
    labels: _Sorted = field(default_factory=_Sorted)
    feedback: _Sorted = field(default_factory=_Sorted)  # (csat, nps, ces, repurchase, try_other)
    opened: _Sorted = field(default_factory=_Sorted)  # complaint flag
    first_replies: _Sorted = field(default_factory=_Sorted)  # duration ms
    resolutions: _Sorted = field(default_factory=_Sorted)  # (duration ms, first contact)
    deadlines: _Sorted = field(default_factory=_Sorted)  # ticket
    orders: _Sorted = field(default_factory=_Sorted)
    returns: _Sorted = field(default_factory=_Sorted)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(hits: int, total: int) -> float | None:
    return 100 * hits / total if total else None


def metric_value(metric: str, tp: _Touchpoint, start: int, end: int) -> tuple[float | None, int]:
    """(value, samples) of a metric on [start, end); value None when undefined."""
    if METRIC_SOURCE[metric] == FEEDBACK:
        rows = tp.feedback.window(start, end)
        if metric == "responses":
            n = sum(1 for row in rows if any(v is not None for v in row))
            return float(n), n
        if metric in ("csat_mean", "csat_pct", "dsat_pct"):
            csat = [row[0] for row in rows if row[0] is not None]
            if metric == "csat_mean":
                return _mean(csat), len(csat)
            wanted = (4, 5) if metric == "csat_pct" else (1, 2)
            return _pct(sum(1 for v in csat if v in wanted), len(csat)), len(csat)
        if metric == "nps":
            nps = [row[1] for row in rows if row[1] is not None]
            if not nps:
                return None, 0
            promoters = sum(1 for v in nps if v >= 9)
            detractors = sum(1 for v in nps if v <= 6)
            return 100 * (promoters - detractors) / len(nps), len(nps)
        if metric == "ces_mean":
            ces = [row[2] for row in rows if row[2] is not None]
            return _mean(ces), len(ces)
        if metric == "cli_mean":
            sums = [row[1] + row[3] + row[4] for row in rows if None not in (row[1], row[3], row[4])]
            return (sum(sums) / (3 * len(sums)) if sums else None), len(sums)
    if metric.startswith("first_response_ms_"):
        durations = sorted(tp.first_replies.window(start, end))
        return _summary(metric.rsplit("_", 1)[1], durations), len(durations)
    if metric.startswith("resolution_ms_"):
        durations = sorted(d for d, _ in tp.resolutions.window(start, end))
        return _summary(metric.rsplit("_", 1)[1], durations), len(durations)
    if metric == "fcr_pct":
        rows = tp.resolutions.window(start, end)
        return _pct(sum(1 for _, fcr in rows if fcr), len(rows)), len(rows)
    if metric in ("tickets_opened", "complaints"):
        rows = tp.opened.window(start, end)
        value = len(rows) if metric == "tickets_opened" else sum(1 for c in rows if c)
        return float(value), len(rows)
    if metric == "first_response_sla_breaches":
        deadlines = tp.deadlines.window(start, end)
        # A deadline in the window is final when evaluated: any reply before it is
        # older than the watermark, so it was applied already or will be late.
        breaches = 0
        for ticket in deadlines:
            deadline = ticket.opened_at + ticket.sla
            if ticket.earliest_reply is None or ticket.earliest_reply >= deadline:
                breaches += 1
        return float(breaches), breaches
    if metric in ("orders", "returns", "return_pct"):
        orders = len(tp.orders.window(start, end))
        returns = len(tp.returns.window(start, end))
        if metric == "orders":
            return float(orders), orders
        if metric == "returns":
            return float(returns), returns
        return _pct(returns, orders), orders
    raise KeyError(metric)


def _summary(kind: str, sorted_values: list[int]) -> float | None:
    if not sorted_values:
        return None
    if kind == "mean":
        return sum(sorted_values) / len(sorted_values)
    return float(nearest_rank(sorted_values, int(kind[1:])))


@dataclass
class _RuleState:
    state: str = "OK"  # OK, PENDING or FIRING
    breaches: int = 0


@dataclass
class Evaluation:
    """One defined evaluation whose value sits too close to the level that decides it."""

    rule: str
    touchpoint: str
    window_end: int
    value: float
    level: float
    state: str


class PartitionReference:
    """One input partition: watermark, dedup ring, tickets, touchpoints, rule states."""

    def __init__(self, topic: str, partition: int, settings: Settings, now_ms: int) -> None:
        self.topic = topic
        self.partition = partition
        self.kind = settings.kind_of_topic(topic)
        self.settings = settings
        self.now_ms = now_ms
        self.rules = [r for r in settings.rules if r.source == self.kind]
        self.max_time: int | None = None
        self.watermark: int | None = None
        self.ring: deque[str] = deque()
        self.ring_ids: Counter[str] = Counter()
        self.tickets: dict[str, _Ticket] = {}
        self.touchpoints: dict[str, _Touchpoint] = {}
        self.rule_states: dict[tuple[str, str], _RuleState] = {}
        self.alerts: list[dict[str, Any]] = []
        self.deadletters: list[dict[str, Any]] = []
        self.statuses: list[str] = []
        self.close_calls: list[Evaluation] = []
        self.counters = Counter()

    # -- records ---------------------------------------------------------------

    def feed(self, offset: int, record: Mapping[str, Any] | Rejected) -> str:
        """Process one record; returns applied, late, duplicate or rejected:<reason>."""
        self.counters["consumed"] += 1
        if isinstance(record, Rejected):
            return self._reject(offset, record.reason)
        reason = validation_error(self.kind, record, self.now_ms, self.settings)
        if reason:
            return self._reject(offset, reason)
        occurred = record["occurred_at"]
        if self.max_time is None:
            self.max_time = occurred
            self.watermark = occurred - self.settings.lateness
        elif occurred > self.max_time:
            new_watermark = occurred - self.settings.lateness
            step = self.settings.step
            boundary = (self.watermark // step + 1) * step
            while boundary <= new_watermark:
                self._evaluate(boundary)
                boundary += step
            self.max_time = occurred
            self.watermark = new_watermark
        if self.ring_ids[record["event_id"]]:
            status = "duplicate"
        elif occurred < self.watermark:
            status = "late"
        else:
            status = "applied"
            self._remember(record["event_id"])
            self._apply(record)
        self.counters[status] += 1
        self.statuses.append(status)
        return status

    def _reject(self, offset: int, reason: str) -> str:
        self.counters["rejected"] += 1
        self.deadletters.append(
            {"topic": self.topic, "partition": self.partition, "offset": offset, "reason_prefix": reason}
        )
        status = f"rejected:{reason}"
        self.statuses.append(status)
        return status

    def _remember(self, event_id: str) -> None:
        self.ring.append(event_id)
        self.ring_ids[event_id] += 1
        if len(self.ring) > self.settings.dedup_depth:
            old = self.ring.popleft()
            self.ring_ids[old] -= 1
            if not self.ring_ids[old]:
                del self.ring_ids[old]

    def _apply(self, event: Mapping[str, Any]) -> None:
        name = event["touchpoint"]
        tp = self.touchpoints.get(name)
        if tp is None:
            tp = self.touchpoints[name] = _Touchpoint(name)
        t = event["occurred_at"]
        tp.labels.add(t, (event["stage"], event["channel"]))
        if self.kind == FEEDBACK:
            tp.feedback.add(t, tuple(event.get(f) for f in SCORE_FIELDS))
        elif self.kind == COMMERCE:
            if event["kind"] == "ORDER_PLACED":
                tp.orders.add(t, True)
            elif event["kind"] == "RETURN_REQUESTED":
                tp.returns.add(t, True)
        else:
            self._apply_support(tp, event, t)

    def _apply_support(self, tp: _Touchpoint, event: Mapping[str, Any], t: int) -> None:
        ticket = self.tickets.setdefault(event["ticket_id"], _Ticket())
        kind = event["kind"]
        if kind == "OPENED":
            tp.opened.add(t, bool(event["complaint"]))
            if ticket.opened_at is None:
                ticket.opened_at = t
                ticket.sla = self.settings.first_response_sla
                tp.deadlines.add(t + ticket.sla, ticket)
        elif kind == "AGENT_REPLIED":
            ticket.replies += 1
            if ticket.earliest_reply is None or t < ticket.earliest_reply:
                ticket.earliest_reply = t
            if ticket.opened_at is not None and ticket.first_reply_at is None:
                ticket.first_reply_at = t
                tp.first_replies.add(t, max(0, t - ticket.opened_at))
        elif kind == "REOPENED":
            ticket.reopened = True
        elif kind == "RESOLVED" and ticket.opened_at is not None:
            first_contact = ticket.replies <= 1 and not ticket.reopened
            tp.resolutions.add(t, (max(0, t - ticket.opened_at), first_contact))

    # -- evaluation --------------------------------------------------------------

    def _evaluate(self, boundary: int) -> None:
        for rule in self.rules:
            for name in sorted(self.touchpoints):
                if rule.matches(name):
                    self._step(rule, self.touchpoints[name], boundary)

    def _step(self, rule: Rule, tp: _Touchpoint, end: int) -> None:
        start = end - rule.window
        value, samples = metric_value(rule.metric, tp, start, end)
        if value is None or samples < rule.min_samples:
            return
        state = self.rule_states.setdefault((rule.name, tp.name), _RuleState())
        level = rule.clear if state.state == "FIRING" else rule.threshold
        self._note_close_call(rule, tp.name, end, value, level, state.state)
        if state.state == "FIRING":
            if rule.cleared(value):
                self._emit(rule, tp, "RESOLVED", value, samples, start, end)
                state.state, state.breaches = "OK", 0
            return
        if not rule.breaching(value):
            state.state, state.breaches = "OK", 0
            return
        state.breaches += 1
        if state.breaches >= rule.for_:
            self._emit(rule, tp, "FIRING", value, samples, start, end)
            state.state = "FIRING"
        else:
            state.state = "PENDING"

    def _note_close_call(self, rule: Rule, name: str, end: int, value: float, level: float, state: str) -> None:
        """Record evaluations that a sketch error (percentiles) or float rounding could flip."""
        if rule.metric in COUNT_METRICS or value == level == 0:
            return  # integer counts compare exactly, and so does a zero numerator
        margin = 0.03 * abs(level) if rule.metric in PERCENTILE_METRICS else 1e-9 * max(1.0, abs(level))
        if abs(value - level) <= margin:
            self.close_calls.append(Evaluation(rule.name, name, end, value, level, state))

    def _emit(self, rule: Rule, tp: _Touchpoint, state: str, value: float, samples: int, start: int, end: int) -> None:
        labels = dict(rule.labels)
        index = bisect.bisect_left(tp.labels.times, end) - 1
        if index >= 0:
            stage, channel = tp.labels.items[index]
            labels["stage"] = stage
            labels["channel"] = channel
        self.alerts.append(
            {
                "alert_id": alert_id(rule.name, tp.name, state, end),
                "rule": rule.name,
                "touchpoint": tp.name,
                "metric": rule.metric,
                "state": state,
                "severity": rule.severity,
                "value": float(value),
                "threshold": rule.threshold if state == "FIRING" else rule.clear,
                "op": rule.op,
                "window_start": start,
                "window_end": end,
                "samples": int(samples),
                "labels": labels,
                "source_topic": self.topic,
                "source_partition": self.partition,
            }
        )
        self.counters[f"alerts_{state.lower()}"] += 1


@dataclass
class Result:
    """Everything `run` computes."""

    alerts: list[dict[str, Any]]
    deadletters: list[dict[str, Any]]
    counters: dict[str, dict[str, int]]
    statuses: dict[tuple[str, int], list[str]]
    close_calls: list[Evaluation]


def alert_sort_key(alert: Mapping[str, Any]) -> tuple:
    return (alert["window_end"], alert["rule"], alert["touchpoint"], alert["state"])


def run(
    settings: Settings,
    partitions: Mapping[tuple[str, int], Iterable[Mapping[str, Any] | Rejected]],
    now_ms: int,
) -> Result:
    """Expected alerts and dead letters for records given per (topic, partition) in order.

    Each record is a decoded event (a dict with the Avro field names, enums as
    their symbols) or a `Rejected` marker. `now_ms` is the wall clock the
    future-skew check compares with. Offsets are the records' positions.
    """
    alerts, deadletters, close_calls = [], [], []
    counters: dict[str, Counter] = {}
    statuses = {}
    for (topic, partition), records in sorted(partitions.items()):
        ref = PartitionReference(topic, partition, settings, now_ms)
        for offset, record in enumerate(records):
            ref.feed(offset, record)
        alerts.extend(ref.alerts)
        deadletters.extend(ref.deadletters)
        close_calls.extend(ref.close_calls)
        counters.setdefault(topic, Counter()).update(ref.counters)
        statuses[(topic, partition)] = ref.statuses
    alerts.sort(key=alert_sort_key)
    deadletters.sort(key=lambda d: (d["topic"], d["partition"], d["offset"]))
    return Result(
        alerts=alerts,
        deadletters=deadletters,
        counters={topic: dict(sorted(c.items())) for topic, c in sorted(counters.items())},
        statuses=statuses,
        close_calls=close_calls,
    )
