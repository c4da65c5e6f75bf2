#!/usr/bin/env python3
"""Lints the Grafana dashboards and the Prometheus alert rules against the metrics the
services really expose.

Grafana's dashboard-linter cannot be installed here (the Go module proxy refuses every
version of github.com/grafana/dashboard-linter, and its releases carry a `replace`
directive that `go install` rejects), so this implements its rules that apply to these
dashboards, plus checks it does not have:

  dashboard        valid JSON, uid/title/schemaVersion set, uid unique, tag `tributary`
  template-datasource  a `datasource` variable of type datasource, query `prometheus`
  panel-datasource every panel and target uses `${datasource}`
  template-vars    every `$var` used in a query is a defined variable
  panel-title-description  every panel has a title and a description
  panel-units      every graph/stat panel sets a known unit
  panel-layout     unique panel ids, a gridPos on each panel, inside 24 columns
  target-promql    every query parses (promtool check rules on the queries, variables
                   substituted)
  target-rate-interval  rate/irate/increase over `$__rate_interval` (or `$__range`)
  target-counter-agg    counters (`_total`, `_bucket`, `_sum`, `_count`) only inside
                   rate/irate/increase
  metric-exists    every metric is one the engine registers (crates/engine/src/metrics.rs,
                   with the registry prefix and histogram series), or Prometheus' `up`
  label-exists     label matchers use labels that metric has (its own, `chain`, `le` on
                   buckets, or a scrape target label)
  label-values     values of `outcome` and `result` are ones the engine initialises

The alert rules go through metric-exists, label-exists, label-values and
target-counter-agg too (with any range allowed).

Usage: lint_dashboards.py --metrics-rs FILE --promtool BIN --rules FILE DASHBOARD.json...
Exits 1 on any finding, printing each as `file: where: rule: message`.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
KNOWN_UNITS = {
    "short", "none", "percent", "percentunit", "s", "ms", "us", "ns", "dtdurations",
    "bytes", "decbytes", "bits", "cps", "ops", "reqps", "rps", "wps", "Bps", "binBps",
}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
RATE_FUNCS = ("rate", "irate", "increase")
# Grafana's own variables, with a stand-in value for parsing.
BUILTIN_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and",
    "or", "unless", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk",
    "bottomk", "quantile", "count_values", "group", "rate", "irate", "increase", "delta",
    "idelta", "deriv", "histogram_quantile", "absent", "absent_over_time", "clamp_min",
    "clamp_max", "label_replace", "label_join", "vector", "scalar", "time", "abs", "ceil",
    "floor", "round", "sort", "sort_desc", "changes", "resets", "predict_linear",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "quantile_over_time", "humanize", "inf", "nan", "le", "atan2",
}

findings = []


def finding(where, rule, msg):
    findings.append(f"{where}: {rule}: {msg}")


# ----------------------------------------------------------------------------- metrics
def engine_metrics(path):
    """{series name: set of labels}, and {series name: {label: allowed values}}."""
    src = open(path, encoding="utf-8").read()
    m = re.search(r'Registry::new_custom\(\s*Some\("([a-z_]+)"', src)
    prefix = (m.group(1) + "_") if m else ""
    const_labels = set(re.findall(r'\[\("(\w+)"\.to_owned\(\)', src))
    metrics, field_metric = {}, {}
    for m in re.finditer(r"(\w+):\s*reg!\(\s*(\w+)::(.*?)\)\),", src, re.S):
        field, kind, body = m.groups()
        name = re.search(r'"(chain_\w+)"', body)
        if not name:
            continue
        lab = re.search(r"&\[([^\]]*)\]", body)
        labels = set(re.findall(r'"(\w+)"', lab.group(1))) if lab else set()
        labels |= const_labels
        base = prefix + name.group(1)
        if kind.startswith("Histogram"):
            metrics[base + "_bucket"] = labels | {"le"}
            metrics[base + "_sum"] = set(labels)
            metrics[base + "_count"] = set(labels)
        else:
            metrics[base] = labels
        field_metric[field] = base
    values = {}
    for _var, items, field in re.findall(
        r"for (\w+) in \[([^\]]*)\]\s*\{\s*m\.(\w+)\.with_label_values", src
    ):
        metric = field_metric.get(field)
        label = None
        if metric:
            labels = metrics.get(metric, set()) - const_labels
            if len(labels) == 1:
                label = next(iter(labels))
        if metric and label:
            values.setdefault(metric, {})[label] = set(re.findall(r'"([^"]+)"', items))
    return metrics, values


# ----------------------------------------------------------------------------- PromQL
def selectors(expr):
    """(metric, {label: (op, value)}, start, end) for each vector selector: a name that is
    not a PromQL keyword or function, a grouping label, a duration or a variable."""
    out = []
    expr = re.sub(r"\[[^\]]*\]", "[R]", expr)  # ranges and subqueries: [5m], [1h:1m]
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?", expr):
        name = m.group(1)
        start = m.start()
        before = expr[:start].rstrip()
        after = expr[m.end():].lstrip()
        if name in PROMQL_WORDS or name.startswith("$") or before.endswith("$"):
            continue
        if after.startswith("(") and not m.group(2):
            continue  # a function call
        if before.endswith(("by (", "by(", "without (", "without(", "on (", "on(", "ignoring (", "ignoring(")):
            continue
        # Inside a by (...) list: skip grouping labels.
        open_paren = before.rfind("(")
        if open_paren != -1 and re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*$", before[:open_paren]) and ")" not in before[open_paren:]:
            continue
        if re.fullmatch(r"\d+[smhdwy]?", name) or before.endswith("["):
            continue
        matchers = {}
        if m.group(3):
            for lm in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(3)):
                matchers[lm.group(1)] = (lm.group(2), lm.group(3))
        out.append((name, matchers, m.start(), m.end()))
    return out


def check_expr(where, expr, metrics, values, dashboard_vars=None, counters_raw=False):
    """Static checks of one query; `dashboard_vars` is None for alert rules; `counters_raw`
    allows a bare counter (the series argument of label_values)."""
    used_vars = set(re.findall(r"\$\{?(\w+)", expr))
    if dashboard_vars is not None:
        for v in used_vars - set(dashboard_vars) - set(BUILTIN_VARS):
            finding(where, "template-vars", f"${v} is not a variable of this dashboard")
        for m in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
            rng = re.search(r"\[([^\]]*)\]", expr[m.end():])
            if rng and rng.group(1) not in ("$__rate_interval", "$__range"):
                finding(where, "target-rate-interval",
                        f"{m.group(1)}() over [{rng.group(1)}]: use [$__rate_interval] (or [$__range])")
    plain = expr
    for v in used_vars:
        plain = re.sub(r"\$\{?" + v + r"\}?", "X", plain)
    plain = re.sub(r"\[[^\]]*\]", "[R]", plain)
    plain = re.sub(r"\boffset\s+\w+", "", plain)
    for name, matchers, start, end in selectors(plain):
        if name == "up":
            known = TARGET_LABELS
        elif name in metrics:
            known = metrics[name] | TARGET_LABELS
        else:
            finding(where, "metric-exists", f"{name} is not a metric the services expose")
            continue
        for label, (op, value) in matchers.items():
            if label not in known:
                finding(where, "label-exists", f"{name} has no label {label}")
            allowed = values.get(name, {}).get(label)
            if allowed and op == "=" and value not in allowed:
                finding(where, "label-values", f'{name}{{{label}="{value}"}}: {label} is one of {sorted(allowed)}')
        if name.endswith(COUNTER_SUFFIXES) and not counters_raw:
            inner = plain[:start].rstrip()
            if not re.search(r"\b(" + "|".join(RATE_FUNCS) + r")\s*\($", inner):
                finding(where, "target-counter-agg", f"counter {name} used without rate/irate/increase")


def promql_parse(promtool, queries):
    """queries: [(where, expr)]; findings for those promtool cannot parse. One promtool run
    for all of them (one recording rule each); its errors name the rule's index."""
    if not queries:
        return []
    rules = []
    for i, (_, expr) in enumerate(queries):
        text = expr
        for v, stand_in in BUILTIN_VARS.items():
            text = re.sub(r"\$\{?" + v + r"\}?", stand_in, text)
        text = re.sub(r"\$\{?(\w+)(:\w+)?\}?", "x", text)
        rules.append({"record": f"lint:query{i}", "expr": text})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump({"groups": [{"name": "q", "rules": rules}]}, f)
    try:
        r = subprocess.run([promtool, "check", "rules", "--lint=none", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if r.returncode == 0:
        return []
    out = r.stdout + r.stderr
    bad = []
    for m in re.finditer(r'rule (\d+), "lint:query\d+": (?:could not parse expression: )?([^\n]*)', out):
        bad.append(f"{queries[int(m.group(1)) - 1][0]}: target-promql: does not parse: {m.group(2).strip()}")
    return bad or [f"promtool: target-promql: {' '.join(out.split())}"]


# ----------------------------------------------------------------------------- dashboards
def panels_of(d):
    for p in d.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def lint_dashboard(path, metrics, values, uids, queries):
    name = os.path.basename(path)
    try:
        d = json.load(open(path, encoding="utf-8"))
    except ValueError as e:
        finding(name, "dashboard", f"not valid JSON: {e}")
        return
    for key in ("uid", "title", "schemaVersion"):
        if not d.get(key):
            finding(name, "dashboard", f"no {key}")
    if d.get("uid") in uids:
        finding(name, "dashboard", f"uid {d.get('uid')} also used by {uids[d['uid']]}")
    uids[d.get("uid")] = name
    if "tributary" not in d.get("tags", []):
        finding(name, "dashboard", "no tag `tributary`")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        finding(name, "template-datasource", "needs a variable `datasource` of type datasource, query prometheus")

    def ds_ok(x):
        return x in ("${datasource}", "$datasource") or (
            isinstance(x, dict) and x.get("uid") in ("${datasource}", "$datasource"))

    for v in variables.values():
        if v.get("type") == "query":
            if not ds_ok(v.get("datasource")):
                finding(name, "template-datasource", f"variable {v.get('name')} does not use ${{datasource}}")
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            lv = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
            if lv:
                check_expr(f"{name}: variable {v['name']}", lv.group(1), metrics, values, variables, True)
                queries.append((f"{name}: variable {v['name']}", lv.group(1)))
    ids = set()
    for p in panels_of(d):
        where = f"{name}: panel {p.get('id')} '{p.get('title', '')}'"
        if p.get("id") in ids:
            finding(where, "panel-layout", "duplicate panel id")
        ids.add(p.get("id"))
        g = p.get("gridPos")
        if not g or g.get("x", 0) + g.get("w", 0) > 24:
            finding(where, "panel-layout", "missing gridPos or wider than 24 columns")
        if p.get("type") == "row":
            continue
        if not p.get("title") or not p.get("description"):
            finding(where, "panel-title-description", "a panel needs a title and a description")
        if not ds_ok(p.get("datasource")):
            finding(where, "panel-datasource", "panel data source is not ${datasource}")
        if p.get("type") in ("timeseries", "stat", "gauge", "bargauge", "graph"):
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if unit not in KNOWN_UNITS:
                finding(where, "panel-units", f"unit {unit!r} is not one of {sorted(KNOWN_UNITS)}")
        targets = p.get("targets") or []
        if not targets:
            finding(where, "target-promql", "panel has no query")
        for t in targets:
            tw = f"{where} target {t.get('refId')}"
            if not ds_ok(t.get("datasource", p.get("datasource"))):
                finding(tw, "panel-datasource", "target data source is not ${datasource}")
            expr = t.get("expr", "")
            if not expr.strip():
                finding(tw, "target-promql", "empty query")
                continue
            check_expr(tw, expr, metrics, values, variables)
            queries.append((tw, expr))


def lint_rules(path, metrics, values, queries):
    import yaml  # python3-yaml

    doc = yaml.safe_load(open(path, encoding="utf-8"))
    names = set()
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            rid = r.get("alert") or r.get("record")
            where = f"{os.path.basename(path)}: {rid}"
            if rid in names:
                finding(where, "rules", "name used twice")
            names.add(rid)
            if r.get("alert"):
                for key in ("severity",):
                    if key not in r.get("labels", {}):
                        finding(where, "rules", f"no {key} label")
                for key in ("summary", "description"):
                    if key not in r.get("annotations", {}):
                        finding(where, "rules", f"no {key} annotation")
            check_expr(where, r.get("expr", ""), metrics, values, None)


# Each mutation of a clean dashboard must produce a finding of that rule: proves the linter
# still catches what it claims to, whatever the dashboards look like today.
SELF_TEST = [
    ("metric-exists", "rate(tributary_chain_records_total{", "rate(tributary_chain_record_total{"),
    ("label-exists", 'chain=\\"$chain\\"', 'chian=\\"$chain\\"'),
    ("label-values", 'outcome=\\"dlq\\"', 'outcome=\\"dead\\"'),
    ("target-rate-interval", "[$__rate_interval]", "[5m]"),
    ("target-promql", "sum by (", "sum by (("),
    ("target-counter-agg", "rate(tributary_chain_records_total", "abs(tributary_chain_records_total"),
    ("template-vars", '\\"$chain\\"', '\\"$chian\\"'),
    ("panel-datasource", '"datasource": {\n        "type": "prometheus",\n        "uid": "${datasource}"', '"datasource": {\n        "type": "prometheus",\n        "uid": "prom"'),
    ("panel-units", '"unit": "', '"unit": "x'),
    ("panel-title-description", '"description": "Records read', '"descr": "Records read'),
]


def self_test(path, metrics, values, promtool):
    global findings
    text = open(path, encoding="utf-8").read()
    failed = 0
    for rule, old, new in SELF_TEST:
        if old not in text:
            print(f"self-test: {rule}: {old!r} not in {path}")
            failed += 1
            continue
        findings = []
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(text.replace(old, new, 1))
        try:
            queries = []
            lint_dashboard(f.name, metrics, values, {}, queries)
            findings.extend(promql_parse(promtool, queries))
        finally:
            os.unlink(f.name)
        if not any(f": {rule}: " in x for x in findings):
            print(f"self-test: a dashboard with {old!r} -> {new!r} gave no {rule} finding: {findings}")
            failed += 1
    findings = []
    print(f"self-test: {len(SELF_TEST) - failed} of {len(SELF_TEST)} seeded faults caught")
    return failed == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics-rs", required=True)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--print-metrics", action="store_true", help="print the metric names and exit")
    ap.add_argument("--self-test", action="store_true", help="first check that seeded faults are caught")
    ap.add_argument("dashboards", nargs="*")
    a = ap.parse_args()
    metrics, values = engine_metrics(a.metrics_rs)
    if a.print_metrics:
        for n in sorted(metrics):
            print(n, " ".join(sorted(metrics[n])))
        return 0
    if len(metrics) < 10:
        print(f"found only {len(metrics)} metrics in {a.metrics_rs}: has its layout changed?", file=sys.stderr)
        return 1
    if a.self_test and a.dashboards and not self_test(a.dashboards[0], metrics, values, a.promtool):
        return 1
    uids, queries = {}, []
    for path in a.dashboards:
        lint_dashboard(path, metrics, values, uids, queries)
    for path in a.rules:
        lint_rules(path, metrics, values, queries)
    findings.extend(promql_parse(a.promtool, queries))
    for f in findings:
        print(f)
    n_dash = len(a.dashboards)
    print(f"dashboards: {n_dash} dashboards, {len(queries)} queries, {len(metrics)} known series names: "
          f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
