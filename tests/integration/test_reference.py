"""Self-tests of reference.py on small hand-computed cases.

    python3 -m pytest tests/integration/test_reference.py
    python3 tests/integration/test_reference.py

Every expected number below was worked out by hand from SPEC.md and README.md,
not by running the reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mmh3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference  # noqa: E402
from reference import Rejected  # noqa: E402

MIN = 60_000
SEC = 1_000
B = 28_333_333 * MIN  # a step boundary (2023-11-14T22:13Z)


def settings(rules: list[dict], **extra) -> reference.Settings:
    config = {"windows": {"step": "1m", "allowed_lateness": "30s"}, "rules": rules}
    config.update(extra)
    return reference.settings_from_config(config)


def feedback(event_id: str, t: int, tp: str = "web.search", csat: int | None = None, channel: str = "WEB",
             nps: int | None = None) -> dict:
    return {"event_id": event_id, "occurred_at": t, "touchpoint": tp, "stage": "PRE_PURCHASE", "channel": channel,
            "customer_id": None, "csat": csat, "nps": nps, "ces": None, "repurchase": None, "try_other": None,
            "comment": None}


def support(event_id: str, t: int, ticket: str, kind: str, complaint: bool = False, tp: str = "support.chat") -> dict:
    return {"event_id": event_id, "occurred_at": t, "touchpoint": tp, "stage": "POST_PURCHASE", "channel": "CHAT",
            "ticket_id": ticket, "kind": kind, "complaint": complaint}


def feed(config: reference.Settings, topic: str, records: list) -> reference.PartitionReference:
    ref = reference.PartitionReference(topic, 0, config, now_ms=B + 24 * 60 * MIN)
    for offset, record in enumerate(records):
        ref.feed(offset, record)
    return ref


def brief(alerts: list[dict]) -> list[tuple]:
    return [(a["state"], a["window_end"], a["value"], a["samples"], a["threshold"]) for a in alerts]


def test_parse_duration():
    assert reference.parse_duration("500ms") == 500
    assert reference.parse_duration("30s") == 30 * SEC
    assert reference.parse_duration("15m") == 15 * MIN
    assert reference.parse_duration("1h") == 60 * MIN
    assert reference.parse_duration("30d") == 30 * 24 * 60 * MIN


def test_alert_id_is_readme_formula():
    data = b"csat-low\x00checkout.payment\x00FIRING\x001700000000000"
    got = reference.alert_id("csat-low", "checkout.payment", "FIRING", 1700000000000)
    assert got == mmh3.hash_bytes(data).hex()
    assert len(got) == 32 and got == got.lower()
    # README's Python literal b"...FIRING\01700000000000" is not these bytes: "\017" is one octal escape.
    assert b"FIRING\01700000000000" != b"FIRING\x001700000000000"


def test_nearest_rank():
    values = list(range(1, 11))
    assert reference.nearest_rank(values, 90) == 9
    assert reference.nearest_rank(values, 50) == 5
    assert reference.nearest_rank(values, 99) == 10
    assert reference.nearest_rank([1, 2, 3, 4], 50) == 2
    assert reference.nearest_rank([7], 99) == 7
    assert reference.nearest_rank(list(range(1, 31)), 90) == 27  # ceil(27.0), no float drift
    assert reference.nearest_rank(list(range(1, 101)), 99) == 99


def test_watermark_boundaries_lateness_and_quiet_windows():
    cfg = settings([{"name": "quiet", "metric": "responses", "window": "2m", "op": "<", "threshold": 1,
                     "severity": "info"}])
    ref = feed(cfg, "cx.feedback", [
        feedback("e1", B + 10 * SEC, csat=5),         # first record: W = B-20s, nothing evaluated
        feedback("e2", B + 95 * SEC, csat=5),         # W = B+65s: B on [B-2m, B) = {}: FIRING (quiet before
                                                      # the data), B+1m on [B-1m, B+1m) = {e1}: RESOLVED
        feedback("e3", B + 5 * MIN + 30 * SEC, csat=5),  # W = B+5m: B+2m {e1,e2}, B+3m {e2}, B+4m {} FIRING, B+5m {}
        feedback("e4", B + 4 * MIN + 10 * SEC, csat=5),  # below W = B+5m: late, not applied
        feedback("e5", B + 7 * MIN + 30 * SEC, csat=5),  # W = B+7m: B+6m on [B+4m, B+6m) = {e3}: RESOLVED
    ])
    assert ref.statuses == ["applied", "applied", "applied", "late", "applied"]
    assert brief(ref.alerts) == [
        ("FIRING", B, 0.0, 0, 1.0),
        ("RESOLVED", B + MIN, 1.0, 1, 1.0),
        ("FIRING", B + 4 * MIN, 0.0, 0, 1.0),
        ("RESOLVED", B + 6 * MIN, 1.0, 1, 1.0),
    ]
    assert ref.alerts[2]["window_start"] == B + 2 * MIN
    assert ref.alerts[2]["labels"] == {"stage": "PRE_PURCHASE", "channel": "WEB"}
    assert "stage" not in ref.alerts[0]["labels"]  # no event before B: nothing seen yet


def test_watermark_equality_and_boundary_reached_exactly():
    cfg = settings([{"name": "quiet", "metric": "responses", "window": "1m", "op": "<", "threshold": 1}])
    ref = feed(cfg, "cx.feedback", [
        feedback("a", B + 10 * SEC, csat=4),
        feedback("b", B + 90 * SEC, csat=4),   # W = B+60s exactly: B ({}: FIRING) and B+1m ({a}: RESOLVED)
        feedback("c", B + 60 * SEC, csat=4),   # at W exactly: applied
        feedback("d", B + 60 * SEC - 1, csat=4),  # one ms below W: late
        feedback("e", B + 150 * SEC, csat=4),  # W = B+2m: [B+1m, B+2m) = {b, c}
    ])
    assert ref.statuses == ["applied", "applied", "applied", "late", "applied"]
    assert brief(ref.alerts) == [("FIRING", B, 0.0, 0, 1.0), ("RESOLVED", B + MIN, 1.0, 1, 1.0)]
    tp = ref.touchpoints["web.search"]
    assert reference.metric_value("responses", tp, B + MIN, B + 2 * MIN) == (2.0, 2)


def test_duplicates_and_dedup_depth():
    cfg = settings([], dedup={"depth": 2})
    ref = feed(cfg, "cx.feedback", [
        feedback("a", B, csat=1),
        feedback("b", B + SEC, csat=1),
        feedback("a", B + 2 * SEC, csat=1),   # among the last 2 applied: duplicate
        feedback("c", B + 3 * SEC, csat=1),
        feedback("a", B + 4 * SEC, csat=1),   # last 2 applied are b, c: applied again
        feedback("a", B - 5 * MIN, csat=1),   # late and a duplicate: counted as duplicate
        feedback("z", B - 5 * MIN, csat=1),   # late
    ])
    assert ref.statuses == ["applied", "applied", "duplicate", "applied", "applied", "duplicate", "late"]
    assert ref.counters["duplicate"] == 2 and ref.counters["late"] == 1 and ref.counters["applied"] == 4


def test_rejected_records_do_not_move_the_watermark():
    cfg = settings([])
    ref = feed(cfg, "cx.feedback", [
        feedback("a", B, csat=3),
        Rejected("truncated"),
        feedback("b", B + 10 * MIN, csat=9),                 # out of range
        feedback("c", B + 10 * MIN, tp="bad tp", csat=3),     # bad touchpoint
        feedback("d", B + 48 * 60 * MIN, csat=3),             # a day ahead of now_ms: future
        feedback("e", B - 20 * SEC, csat=3),                  # W is still B-30s: applied
    ])
    assert ref.statuses == ["applied", "rejected:truncated", "rejected:out_of_range", "rejected:bad_touchpoint",
                            "rejected:future_timestamp", "applied"]
    assert [d["offset"] for d in ref.deadletters] == [1, 2, 3, 4]


def test_state_machine_for_clear_min_samples_and_labels():
    cfg = settings([{"name": "csat", "metric": "csat_mean", "window": "1m", "op": "<", "threshold": 3, "clear": 4,
                     "min_samples": 2, "for": 2, "severity": "critical", "labels": {"team": "t"}}])
    minutes = [
        [1, 1],  # 0: breach 1 -> PENDING
        [5],     # 1: one sample: undefined, PENDING count held
        [1, 1],  # 2: breach 2 -> FIRING at B+3m
        [3, 4],  # 3: 3.5, between threshold and clear: nothing
        [4, 4],  # 4: 4.0 leaves the breaching side of clear: RESOLVED at B+5m
        [1, 1],  # 5: PENDING
        [5, 5],  # 6: back to OK
        [1, 1],  # 7: PENDING
        [2, 2],  # 8: FIRING at B+9m
    ]
    records, n = [], 0
    for minute, scores in enumerate(minutes):
        for k, score in enumerate(scores):
            n += 1
            channel = "APP" if minute == 2 else "WEB"
            records.append(feedback(f"e{n}", B + minute * MIN + (10 + 10 * k) * SEC, csat=score, channel=channel))
    records.append(feedback("last", B + 9 * MIN + 31 * SEC))  # no scores; moves W past B+9m
    ref = feed(cfg, "cx.feedback", records)
    assert brief(ref.alerts) == [
        ("FIRING", B + 3 * MIN, 1.0, 2, 3.0),
        ("RESOLVED", B + 5 * MIN, 4.0, 2, 4.0),
        ("FIRING", B + 9 * MIN, 2.0, 2, 3.0),
    ]
    assert ref.alerts[0]["labels"] == {"team": "t", "stage": "PRE_PURCHASE", "channel": "APP"}
    assert ref.alerts[1]["labels"] == {"team": "t", "stage": "PRE_PURCHASE", "channel": "WEB"}
    assert ref.alerts[0]["severity"] == "CRITICAL"
    assert ref.alerts[0]["alert_id"] == reference.alert_id("csat", "web.search", "FIRING", B + 3 * MIN)


def test_feedback_metrics():
    cfg = settings([])
    rows = [
        dict(csat=5, nps=10, ces=7, repurchase=9, try_other=8),
        dict(csat=4, nps=9, ces=None, repurchase=None, try_other=None),
        dict(csat=2, nps=6, ces=3, repurchase=3, try_other=0),
        dict(csat=1, nps=None, ces=None, repurchase=None, try_other=None),
        dict(csat=None, nps=None, ces=None, repurchase=None, try_other=None),  # no score
        dict(csat=3, nps=7, ces=1, repurchase=None, try_other=5),
    ]
    records = []
    for n, row in enumerate(rows):
        ev = feedback(f"f{n}", B + n * SEC)
        ev.update(row)
        records.append(ev)
    ref = feed(cfg, "cx.feedback", records)
    tp = ref.touchpoints["web.search"]
    value = lambda m: reference.metric_value(m, tp, B, B + MIN)  # noqa: E731
    assert value("responses") == (5.0, 5)
    assert value("csat_mean") == (15 / 5, 5)
    assert value("csat_pct") == (40.0, 5)
    assert value("dsat_pct") == (40.0, 5)
    assert value("nps") == (100 * (2 - 1) / 4, 4)
    assert value("ces_mean") == (11 / 3, 3)
    assert value("cli_mean") == ((27 + 9) / 6, 2)
    assert reference.metric_value("csat_mean", tp, B + MIN, B + 2 * MIN) == (None, 0)


def test_ticket_metrics():
    cfg = settings([], support={"first_response_sla": "30m"})
    s = support
    ref = feed(cfg, "cx.support", [
        s("1", B, "A", "OPENED", complaint=True),
        s("2", B + 1 * MIN, "B", "OPENED"),
        s("3", B + 2 * MIN, "C", "OPENED"),
        s("4", B + 3 * MIN, "E", "AGENT_REPLIED"),         # read before E's OPENED: cannot be timed
        s("5", B + 150 * SEC, "E", "OPENED"),               # at the watermark: applied
        s("6", B + 4 * MIN, "F", "OPENED"),
        s("7", B + 230 * SEC, "F", "AGENT_REPLIED"),        # stamped 10 s before its OPENED: duration 0
        s("8", B + 5 * MIN, "G", "OPENED"),
        s("9", B + 6 * MIN, "G", "OPENED", complaint=True),  # G opened twice: both OPENED count
        s("10", B + 8 * MIN, "E", "AGENT_REPLIED"),         # E's first reply: 5.5 min
        s("11", B + 10 * MIN, "A", "AGENT_REPLIED"),        # 10 min
        s("12", B + 20 * MIN, "D", "RESOLVED"),             # never opened: ignored
        s("13", B + 32 * MIN, "C", "AGENT_REPLIED"),        # exactly at C's deadline: a breach; 30 min
        s("14", B + 33 * MIN, "B", "AGENT_REPLIED"),        # after B's deadline: a breach; 32 min
        s("15", B + 35 * MIN, "B", "AGENT_REPLIED"),
        s("16", B + 40 * MIN, "A", "RESOLVED"),             # 40 min, first contact
        s("17", B + 45 * MIN, "C", "RESOLVED"),             # 43 min, first contact
        s("18", B + 46 * MIN, "C", "REOPENED"),
        s("19", B + 50 * MIN, "B", "RESOLVED"),             # 49 min, two replies: not first contact
        s("20", B + 55 * MIN, "C", "RESOLVED"),             # 53 min, reopened: not first contact
    ])
    assert set(ref.statuses) == {"applied"}
    tp = ref.touchpoints["support.chat"]
    value = lambda m, a=B, b=B + 60 * MIN: reference.metric_value(m, tp, a, b)  # noqa: E731
    # first replies: F 0, E 5.5 min, A 10 min, C 30 min, B 32 min
    assert value("first_response_ms_p50") == (10 * MIN, 5)
    assert value("first_response_ms_p90") == (32 * MIN, 5)
    assert value("first_response_ms_p99") == (32 * MIN, 5)
    assert value("first_response_ms_mean") == ((0 + 5.5 + 10 + 30 + 32) / 5 * MIN, 5)
    # resolutions: A 40 (fcr), C 43 (fcr), B 49, C 53
    assert value("resolution_ms_p50") == (43 * MIN, 4)
    assert value("resolution_ms_p90") == (53 * MIN, 4)
    assert value("resolution_ms_mean") == ((40 + 43 + 49 + 53) / 4 * MIN, 4)
    assert value("fcr_pct") == (50.0, 4)
    assert value("tickets_opened") == (7.0, 7)
    assert value("complaints") == (2.0, 7)
    # deadlines: A 30 (replied), B 31 (breach), C 32 (breach: reply at the deadline),
    # E 32.5 (replied at 3 min), F 34 (replied), G 35 (breach)
    assert value("first_response_sla_breaches") == (3.0, 3)
    assert value("first_response_sla_breaches", B, B + 32 * MIN) == (1.0, 1)
    assert value("first_response_sla_breaches", B + 32 * MIN, B + 92 * MIN) == (2.0, 2)


def test_commerce_metrics():
    cfg = settings([])
    records = []
    for n in range(8):
        records.append({"event_id": f"o{n}", "occurred_at": B + n * SEC, "touchpoint": "shop.web", "stage": "PURCHASE",
                        "channel": "WEB", "order_id": f"O{n}", "kind": "ORDER_PLACED", "amount_minor": 100,
                        "reason": None})
    for n, kind in enumerate(["RETURN_REQUESTED", "RETURN_REQUESTED", "DELIVERED"]):
        records.append({"event_id": f"r{n}", "occurred_at": B + (10 + n) * SEC, "touchpoint": "shop.web",
                        "stage": "PURCHASE", "channel": "WEB", "order_id": f"O{n}", "kind": kind,
                        "amount_minor": None, "reason": "x"})
    ref = feed(cfg, "cx.commerce", records)
    tp = ref.touchpoints["shop.web"]
    assert reference.metric_value("orders", tp, B, B + MIN) == (8.0, 8)
    assert reference.metric_value("returns", tp, B, B + MIN) == (2.0, 2)
    assert reference.metric_value("return_pct", tp, B, B + MIN) == (25.0, 8)
    assert reference.metric_value("return_pct", tp, B + MIN, B + 2 * MIN) == (None, 0)


def test_rules_yaml_covers_every_metric_family():
    cfg = reference.load_settings(str(HERE / "rules.yaml"))
    metrics = {r.metric for r in cfg.rules}
    families = [{"csat_mean"}, {"nps"}, {"ces_mean"}, {"cli_mean"}, {"responses"}, {"first_response_ms_p90"},
                {"resolution_ms_p50", "resolution_ms_mean"}, {"fcr_pct"}, {"complaints", "tickets_opened"},
                {"first_response_sla_breaches"}, {"return_pct"}]
    for family in families:
        assert metrics & family, family
    assert cfg.step == MIN and cfg.lateness == 30 * SEC and cfg.first_response_sla == 30 * MIN


if __name__ == "__main__":
    tests = [(name, fn) for name, fn in sorted(globals().items()) if name.startswith("test_") and callable(fn)]
    for name, fn in tests:
        fn()
        print(f"ok {name}")
    print(f"{len(tests)} passed")
