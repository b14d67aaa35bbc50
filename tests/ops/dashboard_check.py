#!/usr/bin/env python3
"""Check that the Grafana dashboard and the Prometheus alerting rules only ask
for series touchpulse really exports.

    dashboard_check.py [--dashboard FILE] [--rules FILE] [--wait SECONDS]
                       [--save FILE] [--promtool PATH|none] SCRAPE

SCRAPE is a file in the Prometheus text format or an http:// URL of
touchpulse's /metrics. With a URL and --wait, the scrape is fetched again
until every check passes or SECONDS have passed (some families appear only
after the first window is evaluated or librdkafka's first statistics).

For every PromQL expression of the dashboard (panel targets, templating
queries, collapsed rows included) and of the rules file (`expr:`):

- every metric name that is touchpulse_* must be a sample name of the scrape
  (so a histogram is asked for by its _bucket/_sum/_count series, and those
  suffixes count as the histogram's family only when the scrape types it as
  one); `up`, `ALERTS` and Prometheus' own scrape_* series are built in; any
  other name in front of a `{` selector is an error;
- every label a selector matches on must exist on that series, and a label
  compared with `=` to a literal must have that value in the scrape;
- every `by (...)`/`on (...)` label and label_values() label must exist on one
  of the expression's touchpulse series (job, instance and le always do);
- rate(), irate() and increase() must be given counters (or histogram series);
  histogram_quantile() must be given a histogram's _bucket series;
- the expressions must parse: they go through `promtool check rules` (Grafana
  variables replaced by plain values) unless --promtool none.

The dashboard must also be valid JSON with a uid, unique panel ids, and take
its data source from the `datasource` variable (or the provisioned uid).
Quiet on success but for one summary line per file; exit 1 on any error.
Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILTIN_METRICS = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                   "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                   "scrape_series_added"}
TARGET_LABELS = {"job", "instance"}
COUNTER_FUNCS = {"rate", "irate", "increase"}
# PromQL words that can stand where an identifier does.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "count",
            "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group"}


# ---- the scrape ----------------------------------------------------------------------------

class Scrape:
    def __init__(self, text):
        self.types = {}          # family name -> type
        self.labels = {}         # sample name -> set of label names
        self.values = {}         # (sample name, label) -> set of values
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                continue
            name, labels = parse_sample(line, lineno)
            self.labels.setdefault(name, set()).update(labels)
            for k, v in labels.items():
                self.values.setdefault((name, k), set()).add(v)

    def family_type(self, name):
        """The TYPE of a sample name: its own, or its histogram's/summary's when
        it is that family's _bucket/_sum/_count series."""
        if name in self.types:
            return self.types[name]
        for suffix, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                              ("_count", ("histogram", "summary"))):
            if name.endswith(suffix) and self.types.get(name[: -len(suffix)]) in kinds:
                return self.types[name[: -len(suffix)]]
        return None

    def family(self, name):
        t = self.family_type(name)
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name not in self.types and t in ("histogram", "summary"):
                return name[: -len(suffix)]
        return name


SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)")
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,)?')


def parse_sample(line, lineno):
    m = SAMPLE_RE.match(line)
    if not m:
        raise ValueError(f"scrape line {lineno}: not a sample: {line[:80]}")
    name = m.group(1)
    labels = {}
    if m.group(2) == "{":
        pos = m.end()
        while True:
            if line[pos:].lstrip().startswith("}"):
                break
            lm = LABEL_RE.match(line, pos)
            if not lm:
                raise ValueError(f"scrape line {lineno}: bad labels: {line[:80]}")
            value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2))
            labels[lm.group(1)] = value
            pos = lm.end()
            if not lm.group(3):
                break
    return name, labels


def load_scrape(source):
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=5) as r:
            return r.read().decode("utf-8")
    with open(source, encoding="utf-8") as f:
        return f.read()


# ---- where the expressions are ----------------------------------------------------------

def dashboard_exprs(path, errors, ds_uids):
    """(where, expr, is_label_values_query) for every PromQL expression of a dashboard."""
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        errors.append(f"{path}: not valid JSON: {e}")
        return []
    out = []
    if not dash.get("uid") or not dash.get("title"):
        errors.append(f"{path}: the dashboard needs a uid and a title")
    variables = (dash.get("templating") or {}).get("list") or []
    var_names = {v.get("name") for v in variables}
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
        errors.append(f"{path}: no `datasource` variable of type prometheus")
    ok_ds = {"${datasource}", "$datasource"} | set(ds_uids)

    def check_ds(where, ds):
        if ds is None:
            return
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        kind = ds.get("type") if isinstance(ds, dict) else None
        if kind in ("grafana", "__expr__", "datasource"):
            return
        if uid not in ok_ds:
            errors.append(f"{path}: {where}: data source {uid!r} is neither the datasource "
                          f"variable nor a provisioned uid ({', '.join(sorted(ok_ds))})")

    ids = set()

    def walk(panels):
        for p in panels or []:
            where = f"panel {p.get('id')} {p.get('title')!r}"
            if p.get("id") in ids:
                errors.append(f"{path}: {where}: duplicate panel id")
            ids.add(p.get("id"))
            if "gridPos" not in p:
                errors.append(f"{path}: {where}: no gridPos")
            check_ds(where, p.get("datasource"))
            for t in p.get("targets") or []:
                check_ds(where, t.get("datasource"))
                expr = t.get("expr")
                if expr is None or not expr.strip():
                    errors.append(f"{path}: {where}: target {t.get('refId')} has no expr")
                    continue
                out.append((f"{where} target {t.get('refId')}", expr, False))
            walk(p.get("panels"))

    walk(dash.get("panels"))
    if not out:
        errors.append(f"{path}: no PromQL expression found")
    for v in variables:
        if v.get("type") != "query":
            continue
        check_ds(f"variable {v.get('name')}", v.get("datasource"))
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if q:
            out.append((f"variable {v.get('name')}", q, True))
    # Variables the expressions use must exist (Grafana's own start with __).
    for where, expr, _ in out:
        for m in re.finditer(r"\$\{?([A-Za-z_]\w*)", expr):
            if not m.group(1).startswith("__") and m.group(1) not in var_names:
                errors.append(f"{path}: {where}: unknown dashboard variable ${m.group(1)}")
    return out


def rules_exprs(path, errors):
    """(where, expr) for every `expr:` of a Prometheus rules file, read without a
    YAML library: inline scalars (plain, single- or double-quoted, continued on
    more-indented lines) and block scalars (| and >)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        errors.append(f"{path}: {e}")
        return []
    out = []
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?(alert|record):\s*(.*?)\s*$", line)
        if m:
            name = m.group(3).strip("'\"")
        m = re.match(r"^(\s*)(-\s+)?expr:\s*(.*?)\s*$", line)
        if not m:
            i += 1
            continue
        indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
        value = m.group(3)
        body = []
        i += 1
        while i < len(lines):
            nxt = lines[i]
            if nxt.strip() and (len(nxt) - len(nxt.lstrip())) <= indent:
                break
            body.append(nxt)
            i += 1
        if re.match(r"^[|>][-+0-9]*(\s+#.*)?$", value):
            keep = [b for b in body]
            while keep and not keep[-1].strip():
                keep.pop()
            expr = "\n".join(b.strip() for b in keep)
        else:
            text = " ".join([value] + [b.strip() for b in body if b.strip()])
            if text.startswith("'") and text.endswith("'"):
                expr = text[1:-1].replace("''", "'")
            elif text.startswith('"') and text.endswith('"'):
                expr = json.loads(text)
            else:
                expr = re.sub(r"\s+#.*$", "", text)
        out.append((f"rule {name}", expr))
    if not out:
        errors.append(f"{path}: no `expr:` found")
    return out


# ---- PromQL ---------------------------------------------------------------------------------

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<num>(?:[0-9]|\.[0-9])[0-9a-zA-Z._]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@])
""", re.VERBOSE)


def tokenize(expr):
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tokens.append((kind, m.group()))
    return tokens


def unquote(s):
    if s.startswith("`"):
        return s[1:-1]
    return re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), s[1:-1])


class Usage:
    """What one expression asks of the scrape."""

    def __init__(self):
        self.names = []           # metric names (touchpulse_*, up, ...), in order
        self.selectors = []       # (name or None, [(label, op, value)])
        self.groupings = []       # label names in by()/on()/label_values()
        self.counter_args = []    # (function, metric name)
        self.unknown = []         # metric names neither touchpulse_* nor built in
        self.quantile = False


def analyse(expr, label_values_query=False):
    u = Usage()
    toks = tokenize(expr)
    n = len(toks)
    i = 0
    if label_values_query:
        m = re.match(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", expr, re.S)
        if m:
            inner = analyse(m.group(1))
            inner.groupings.append(m.group(2))
            return inner
        return u  # label_values(label), metrics(...), query_result(...): nothing to check
    while i < n:
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < n else None
        if kind == "ident" and text in ("by", "on") and nxt == "(":
            j = i + 2
            while j < n and toks[j][1] != ")":
                if toks[j][0] == "ident":
                    u.groupings.append(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and text in ("without", "ignoring", "group_left", "group_right") and nxt == "(":
            j = i + 2
            while j < n and toks[j][1] != ")":
                j += 1
            i = j + 1
            continue
        if kind == "ident" and text == "histogram_quantile":
            u.quantile = True
        if kind == "ident" and nxt == "(" and text in COUNTER_FUNCS:
            if i + 2 < n and toks[i + 2][0] == "ident":
                u.counter_args.append((text, toks[i + 2][1]))
        is_metric = kind == "ident" and nxt != "(" and text not in KEYWORDS
        if kind == "ident" and nxt == "{":
            is_metric = True
        if (is_metric or (kind == "op" and text == "{")):
            name = text if kind == "ident" else None
            if name is not None:
                if name.startswith("touchpulse_") or name in BUILTIN_METRICS:
                    u.names.append(name)
                else:
                    # Label names (selectors, by/on lists) and durations were
                    # consumed above: any other identifier that is neither a
                    # keyword nor a function call is a metric name.
                    u.unknown.append(name)
                i += 1
            matchers = []
            if i < n and toks[i][1] == "{":
                j = i + 1
                while j < n and toks[j][1] != "}":
                    if (toks[j][0] == "ident" and j + 2 < n and toks[j + 1][1] in ("=", "!=", "=~", "!~")
                            and toks[j + 2][0] == "str"):
                        matchers.append((toks[j][1], toks[j + 1][1], unquote(toks[j + 2][1])))
                        j += 3
                    else:
                        j += 1
                i = j + 1
            if name is None:
                for label, op, value in matchers:
                    if label == "__name__" and op == "=":
                        u.names.append(value)
                    elif label == "__name__" and op == "=~":
                        for alt in value.split("|"):
                            if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", alt):
                                u.names.append(alt)
                            else:
                                u.unknown.append(f'__name__=~"{value}" (only alternations of plain names are checked)')
            u.selectors.append((name, [mt for mt in matchers if mt[0] != "__name__"]))
            continue
        i += 1
    return u


def check_usage(where, expr, u, scrape, errors):
    """Errors of one expression's usage against the scrape."""
    tp_names = [x for x in u.names if x.startswith("touchpulse_")]
    for x in u.unknown:
        errors.append(f"{where}: {x} is not a touchpulse_* series nor one Prometheus makes itself: {expr!r}")
    missing = [x for x in dict.fromkeys(tp_names) if x not in scrape.labels]
    for x in missing:
        hint = ""
        if scrape.types.get(x) in ("histogram", "summary"):
            hint = f" ({x} is a {scrape.types[x]}: ask for {x}_bucket, _sum or _count)"
        errors.append(f"{where}: {x} is not exported{hint}")
    present = [x for x in tp_names if x in scrape.labels]
    for name, matchers in u.selectors:
        names = [name] if name else [x for x in u.names if x in scrape.labels]
        names = [x for x in names if x and x.startswith("touchpulse_") and x in scrape.labels]
        if not names:
            continue
        for label, op, value in matchers:
            if label in TARGET_LABELS:
                continue
            have = [x for x in names if label in scrape.labels[x]]
            if not have:
                errors.append(f"{where}: {'/'.join(names)} has no label {label!r}")
                continue
            if op == "=" and "$" not in value:
                values = set()
                for x in have:
                    values |= scrape.values.get((x, label), set())
                if value not in values:
                    errors.append(f"{where}: {'/'.join(names)}{{{label}={value!r}}} is not exported "
                                  f"(values: {', '.join(sorted(values)[:12])})")
    if present:
        available = set(TARGET_LABELS) | {"le"}
        for x in present:
            available |= scrape.labels[x]
        for label in u.groupings:
            if label not in available:
                errors.append(f"{where}: label {label!r} is on none of {', '.join(sorted(set(present)))}")
    for func, name in u.counter_args:
        if not name.startswith("touchpulse_") or name not in scrape.labels:
            continue
        t = scrape.family_type(name)
        if t not in ("counter", "histogram", "summary"):
            errors.append(f"{where}: {func}() of {name}, a {t or 'untyped series'}: {func}() wants a counter")
    if u.quantile and not missing:
        if not any(x.endswith("_bucket") and scrape.family_type(x) == "histogram" for x in present):
            errors.append(f"{where}: histogram_quantile() without a histogram's _bucket series: {expr!r}")


# ---- PromQL syntax through promtool -----------------------------------------------------------

def grafana_to_promql(expr, label_values_query):
    if label_values_query:
        m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", expr, re.S)
        if not m:
            return None
        expr = m.group(1)
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?(?!_)", "5m", expr)
    expr = re.sub(r"\$\{?__(range_s|interval_ms|range_ms)\}?", "300", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", ".*", expr)
    return expr


def promtool_syntax(promtool, items, errors):
    """items: (where, promql). Runs `promtool check rules` on them as recording rules."""
    if not items:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "exprs.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("groups:\n  - name: exprs\n    rules:\n")
            for k, (_, expr) in enumerate(items):
                f.write(f"      - record: expr:{k}\n        expr: {json.dumps(expr)}\n")
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            detail = (r.stdout + r.stderr).strip()
            # Point at the expressions promtool names (their recording rule names).
            for k in sorted({int(m.group(1)) for m in re.finditer(r"expr:(\d+)", detail)}):
                if k < len(items):
                    errors.append(f"{items[k][0]}: PromQL does not parse: {items[k][1]!r}")
            errors.append(f"promtool check rules rejected the expressions:\n{detail}")


# ---- main -----------------------------------------------------------------------------------

def shown(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def run_checks(args, scrape_text, quiet):
    errors = []
    scrape = Scrape(scrape_text)
    summaries = []
    syntax = []
    all_names = set()
    for path in args.dashboard:
        before = len(errors)
        exprs = dashboard_exprs(shown(path), errors, args.datasource_uid)
        names = set()
        for where, expr, lvq in exprs:
            try:
                u = analyse(expr, lvq)
            except ValueError as e:
                errors.append(f"{shown(path)}: {where}: {e}: {expr!r}")
                continue
            check_usage(f"{shown(path)}: {where}", expr, u, scrape, errors)
            names |= {x for x in u.names if x.startswith("touchpulse_")}
            p = grafana_to_promql(expr, lvq)
            if p is not None:
                syntax.append((f"{shown(path)}: {where}", p))
        all_names |= names
        summaries.append((path, len(exprs), names, len(errors) - before))
    for path in args.rules:
        before = len(errors)
        exprs = rules_exprs(shown(path), errors)
        names = set()
        for where, expr in exprs:
            try:
                u = analyse(expr)
            except ValueError as e:
                errors.append(f"{shown(path)}: {where}: {e}: {expr!r}")
                continue
            check_usage(f"{shown(path)}: {where}", expr, u, scrape, errors)
            names |= {x for x in u.names if x.startswith("touchpulse_")}
        all_names |= names
        summaries.append((path, len(exprs), names, len(errors) - before))
    if args.promtool != "none" and not errors:
        promtool = args.promtool or shutil.which("promtool")
        if promtool:
            promtool_syntax(promtool, syntax, errors)
        elif not quiet:
            print("dashboard_check: promtool not found: dashboard PromQL syntax not checked", file=sys.stderr)
    return errors, summaries, scrape, all_names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scrape", help="metrics text file, or http(s) URL of /metrics")
    ap.add_argument("--dashboard", action="append",
                    help="Grafana dashboard JSON (default docker/grafana/dashboards/touchpulse.json)")
    ap.add_argument("--rules", action="append",
                    help="Prometheus rules file (default docker/prometheus/alerts.yml)")
    ap.add_argument("--datasource-uid", action="append", default=None,
                    help="provisioned data source uid panels may name (default: prometheus)")
    ap.add_argument("--wait", type=float, default=0,
                    help="with a URL: fetch again until the checks pass or this many seconds pass")
    ap.add_argument("--save", help="write the (last) scrape to this file")
    ap.add_argument("--promtool", default=None, help="promtool binary, or `none` to skip the syntax check")
    args = ap.parse_args()
    if args.dashboard is None:
        args.dashboard = [os.path.join(ROOT, "docker/grafana/dashboards/touchpulse.json")]
    if args.rules is None:
        args.rules = [os.path.join(ROOT, "docker/prometheus/alerts.yml")]
    if args.datasource_uid is None:
        args.datasource_uid = ["prometheus"]

    is_url = re.match(r"https?://", args.scrape) is not None
    deadline = time.monotonic() + args.wait
    while True:
        try:
            text = load_scrape(args.scrape)
            errors, summaries, scrape, names = run_checks(args, text, quiet=True)
        except (OSError, ValueError) as e:
            text, errors, summaries, scrape, names = "", [f"{args.scrape}: {e}"], [], None, set()
        if not errors or not is_url or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if args.save and text:
        with open(args.save, "w", encoding="utf-8") as f:
            f.write(text)
    if errors:
        for e in errors:
            print(f"dashboard_check: {e}", file=sys.stderr)
        if scrape is not None:
            missing = sorted(x for x in names if x not in scrape.labels)
            if missing:
                print(f"dashboard_check: {len(missing)} series asked for but not in the scrape: "
                      f"{' '.join(missing)}", file=sys.stderr)
        print(f"dashboard_check: FAILED ({len(errors)} errors)", file=sys.stderr)
        return 1
    for path, n_exprs, names, _ in summaries:
        fams = {scrape.family(x) for x in names}
        print(f"dashboard_check: {shown(path)}: {n_exprs} expressions, {len(names)} touchpulse series "
              f"({len(fams)} families), all in the scrape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
