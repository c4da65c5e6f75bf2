//! PromQL: tokens, selectors, and the lint of dashboards and alert rules.

use super::*;

pub(crate) const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];
pub(crate) const KNOWN_UNITS: &[&str] = &[
    "short",
    "none",
    "percent",
    "percentunit",
    "s",
    "ms",
    "us",
    "ns",
    "dtdurations",
    "bytes",
    "decbytes",
    "bits",
    "cps",
    "ops",
    "reqps",
    "rps",
    "wps",
    "Bps",
    "binBps",
];
pub(crate) const COUNTER_SUFFIXES: &[&str] = &["_total", "_bucket", "_sum", "_count"];
pub(crate) const RATE_FUNCS: &[&str] = &["rate", "irate", "increase"];
/// Grafana's own variables, with a stand-in value for parsing.
pub(crate) const BUILTIN_VARS: &[(&str, &str)] = &[
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__range", "1h"),
    ("__range_s", "3600"),
];
pub(crate) const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
pub(crate) const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "inf", "nan", "atan2"];

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    /// A `[...]` range or subquery, its inside.
    Range(String),
    /// A number or a duration.
    Num,
    Var,
    Punct(char),
    /// `=`, `!=`, `=~`, `!~` and the other operators.
    Op(String),
}

pub(crate) fn tokenize(expr: &str) -> Vec<Tok> {
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' || ch == '\'' || ch == '`' {
            let mut v = String::new();
            i += 1;
            while i < c.len() && c[i] != ch {
                if c[i] == '\\' && i + 1 < c.len() {
                    i += 1;
                }
                v.push(c[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(v));
        } else if ch == '[' {
            let start = i + 1;
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
            out.push(Tok::Range(c[start..i.min(c.len())].iter().collect()));
            i += 1;
        } else if ch == '$' {
            i += 1;
            if i < c.len() && c[i] == '{' {
                while i < c.len() && c[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            out.push(Tok::Var);
        } else if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if ident(ch) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if "(){},".contains(ch) {
            out.push(Tok::Punct(ch));
            i += 1;
        } else {
            let start = i;
            while i < c.len() && "=!~<>+-*/%^".contains(c[i]) {
                i += 1;
            }
            if i == start {
                i += 1;
            }
            out.push(Tok::Op(c[start..i].iter().collect()));
        }
    }
    out
}

pub(crate) struct Selector {
    pub(crate) name: String,
    /// label, operator, value
    pub(crate) matchers: Vec<(String, String, String)>,
    /// The selector is the first argument of rate(), irate() or increase().
    pub(crate) in_rate: bool,
}

/// The vector selectors of an expression: names that are not functions, keywords, grouping
/// labels or variables.
pub(crate) fn selectors(toks: &[Tok]) -> Vec<Selector> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(name) = &toks[i] else {
            i += 1;
            continue;
        };
        let next = toks.get(i + 1);
        if GROUPING.contains(&name.as_str()) {
            // Skip the label list.
            if next == Some(&Tok::Punct('(')) {
                while i < toks.len() && toks[i] != Tok::Punct(')') {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        // A function call, or an aggregation with its grouping first: `sum by (x) (...)`.
        let call =
            matches!(next, Some(Tok::Punct('('))) || matches!(next, Some(Tok::Ident(g)) if g == "by" || g == "without");
        if KEYWORDS.contains(&name.as_str()) || call {
            i += 1;
            continue;
        }
        let in_rate = i >= 2
            && toks[i - 1] == Tok::Punct('(')
            && matches!(&toks[i - 2], Tok::Ident(f) if RATE_FUNCS.contains(&f.as_str()));
        let mut sel = Selector {
            name: name.clone(),
            matchers: Vec::new(),
            in_rate,
        };
        i += 1;
        if toks.get(i) == Some(&Tok::Punct('{')) {
            i += 1;
            while i < toks.len() && toks[i] != Tok::Punct('}') {
                if let (Tok::Ident(l), Some(Tok::Op(op)), Some(Tok::Str(v))) =
                    (&toks[i], toks.get(i + 1), toks.get(i + 2))
                {
                    sel.matchers.push((l.clone(), op.clone(), v.clone()));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            i += 1;
        }
        out.push(sel);
    }
    out
}

/// The names of the `$var`, `${var}` and `${var:format}` in an expression.
pub(crate) fn used_vars(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in expr.match_indices('$') {
        let rest = expr[i + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The expression with Grafana's variables replaced, for promtool.
pub(crate) fn substitute_vars(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        if braced {
            rest = &rest[1..];
        }
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..n];
        rest = &rest[n..];
        if braced {
            rest = &rest[rest.find('}').map_or(rest.len(), |j| j + 1)..];
        }
        out.push_str(BUILTIN_VARS.iter().find(|(v, _)| *v == name).map_or("x", |(_, s)| s));
    }
    out.push_str(rest);
    out
}

pub(crate) struct Lint {
    pub(crate) findings: Vec<String>,
    /// (where, expression) for promtool.
    pub(crate) queries: Vec<(String, String)>,
}

impl Lint {
    pub(crate) fn new() -> Self {
        Lint {
            findings: Vec::new(),
            queries: Vec::new(),
        }
    }

    pub(crate) fn finding(&mut self, at: &str, rule: &str, msg: impl std::fmt::Display) {
        self.findings.push(format!("{at}: {rule}: {msg}"));
    }

    /// Static checks of one query. `dashboard_vars` is None for alert rules; `counters_raw`
    /// allows a bare counter (the series argument of label_values).
    pub(crate) fn check_expr(
        &mut self,
        at: &str,
        expr: &str,
        dashboard_vars: Option<&BTreeSet<String>>,
        counters_raw: bool,
    ) {
        let known = known_metrics();
        let toks = tokenize(expr);
        if let Some(vars) = dashboard_vars {
            for v in used_vars(expr) {
                if !vars.contains(&v) && !BUILTIN_VARS.iter().any(|(b, _)| *b == v) {
                    self.finding(at, "template-vars", format!("${v} is not a variable of this dashboard"));
                }
            }
            for (i, t) in toks.iter().enumerate() {
                if matches!(t, Tok::Ident(f) if RATE_FUNCS.contains(&f.as_str()))
                    && toks.get(i + 1) == Some(&Tok::Punct('('))
                {
                    let range = toks[i..].iter().find_map(|t| match t {
                        Tok::Range(r) => Some(r.clone()),
                        _ => None,
                    });
                    if let Some(r) = range.filter(|r| r != "$__rate_interval" && r != "$__range") {
                        self.finding(
                            at,
                            "target-rate-interval",
                            format!("{t:?}() over [{r}]: use [$__rate_interval] (or [$__range])"),
                        );
                    }
                }
            }
        }
        for sel in selectors(&toks) {
            let name = sel.name.as_str();
            let labels: BTreeSet<String> = if name == "up" {
                TARGET_LABELS.iter().map(|s| s.to_string()).collect()
            } else if let Some(l) = known.series.get(name) {
                l.iter()
                    .cloned()
                    .chain(TARGET_LABELS.iter().map(|s| s.to_string()))
                    .collect()
            } else {
                self.finding(
                    at,
                    "metric-exists",
                    format!("{name} is not a metric the services expose"),
                );
                continue;
            };
            for (label, op, value) in &sel.matchers {
                if !labels.contains(label) {
                    self.finding(at, "label-exists", format!("{name} has no label {label}"));
                }
                if let Some(allowed) = known.values.get(&(name.to_owned(), label.clone())) {
                    if op == "=" && !value.contains('$') && !allowed.contains(value) {
                        self.finding(
                            at,
                            "label-values",
                            format!("{name}{{{label}=\"{value}\"}}: {label} is one of {allowed:?}"),
                        );
                    }
                }
            }
            if COUNTER_SUFFIXES.iter().any(|s| name.ends_with(s)) && !counters_raw && !sel.in_rate {
                self.finding(
                    at,
                    "target-counter-agg",
                    format!("counter {name} used without rate/irate/increase"),
                );
            }
        }
    }

    /// One promtool run for every query (a recording rule each); findings for those it
    /// cannot parse. Its errors name the rule (`lint:query<N>`).
    pub(crate) fn promql_parse(&mut self) {
        if self.queries.is_empty() {
            return;
        }
        let rules: Vec<Value> = self
            .queries
            .iter()
            .enumerate()
            .map(|(i, (_, e))| json!({"record": format!("lint:query{i}"), "expr": substitute_vars(e)}))
            .collect();
        let dir = tempdir("promql");
        let file = dir.join("queries.yml");
        std::fs::write(&file, json!({"groups": [{"name": "q", "rules": rules}]}).to_string()).expect("write");
        let out = Command::new(tool("promtool"))
            .args(["check", "rules", "--lint=none"])
            .arg(&file)
            .output()
            .expect("promtool runs");
        let _ = std::fs::remove_dir_all(&dir);
        if out.status.success() {
            return;
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut any = false;
        for line in text.lines() {
            let Some(p) = line.find("\"lint:query") else { continue };
            let digits: String = line[p + 11..].chars().take_while(char::is_ascii_digit).collect();
            let Ok(n) = digits.parse::<usize>() else { continue };
            let Some((at, _)) = self.queries.get(n) else { continue };
            let msg = line[p..].split_once(": ").map_or(line, |(_, m)| m);
            let msg = msg.trim_start_matches("could not parse expression: ").trim().to_owned();
            let at = at.clone();
            self.finding(&at, "target-promql", format!("does not parse: {msg}"));
            any = true;
        }
        if !any {
            let all = text.split_whitespace().collect::<Vec<_>>().join(" ");
            self.finding("promtool", "target-promql", all);
        }
    }

    pub(crate) fn lint_dashboard(&mut self, name: &str, text: &str, uids: &mut HashMap<String, String>) {
        let d: Value = match serde_json::from_str(text) {
            Ok(d) => d,
            Err(e) => return self.finding(name, "dashboard", format!("not valid JSON: {e}")),
        };
        for key in ["uid", "title", "schemaVersion"] {
            if d.get(key).is_none_or(|v| v.is_null() || v == "" || v == 0) {
                self.finding(name, "dashboard", format!("no {key}"));
            }
        }
        let uid = s(&d, "uid").to_owned();
        if let Some(other) = uids.get(&uid) {
            let other = other.clone();
            self.finding(name, "dashboard", format!("uid {uid} also used by {other}"));
        }
        uids.insert(uid, name.to_owned());
        if !arr(&d, "tags").iter().any(|t| t == "tributary") {
            self.finding(name, "dashboard", "no tag `tributary`");
        }
        let variables: Vec<&Value> = d
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let var_names: BTreeSet<String> = variables.iter().map(|v| s(v, "name").to_owned()).collect();
        let ds = variables.iter().find(|v| s(v, "name") == "datasource");
        if !ds.is_some_and(|v| s(v, "type") == "datasource" && s(v, "query") == "prometheus") {
            self.finding(
                name,
                "template-datasource",
                "needs a variable `datasource` of type datasource, query prometheus",
            );
        }
        let ds_ok = |x: Option<&Value>| {
            let is = |v: &Value| v == "${datasource}" || v == "$datasource";
            x.is_some_and(|x| is(x) || x.get("uid").is_some_and(is))
        };
        for v in &variables {
            if s(v, "type") != "query" {
                continue;
            }
            let vname = s(v, "name");
            if !ds_ok(v.get("datasource")) {
                self.finding(
                    name,
                    "template-datasource",
                    format!("variable {vname} does not use ${{datasource}}"),
                );
            }
            let q = v
                .get("query")
                .map_or("", |q| q.as_str().unwrap_or_else(|| s(q, "query")))
                .trim();
            if let Some(inner) = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
                if let Some((series, label)) = inner.rsplit_once(',') {
                    if label.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        let at = format!("{name}: variable {vname}");
                        self.check_expr(&at, series, Some(&var_names), true);
                        self.queries.push((at, series.to_owned()));
                    }
                }
            }
        }
        let mut panels = Vec::new();
        for p in arr(&d, "panels") {
            panels.push(p);
            panels.extend(arr(p, "panels"));
        }
        let mut ids = BTreeSet::new();
        for p in panels {
            let at = format!(
                "{name}: panel {} '{}'",
                p.get("id").unwrap_or(&Value::Null),
                s(p, "title")
            );
            if !ids.insert(p.get("id").map(Value::to_string)) {
                self.finding(&at, "panel-layout", "duplicate panel id");
            }
            let g = p.get("gridPos");
            let num = |k: &str| g.and_then(|g| g.get(k)).and_then(Value::as_i64).unwrap_or(0);
            if g.is_none() || num("x") + num("w") > 24 {
                self.finding(&at, "panel-layout", "missing gridPos or wider than 24 columns");
            }
            if s(p, "type") == "row" {
                continue;
            }
            if s(p, "title").is_empty() || s(p, "description").is_empty() {
                self.finding(
                    &at,
                    "panel-title-description",
                    "a panel needs a title and a description",
                );
            }
            if !ds_ok(p.get("datasource")) {
                self.finding(&at, "panel-datasource", "panel data source is not ${datasource}");
            }
            if ["timeseries", "stat", "gauge", "bargauge", "graph"].contains(&s(p, "type")) {
                let unit = p.pointer("/fieldConfig/defaults/unit").and_then(Value::as_str);
                if !unit.is_some_and(|u| KNOWN_UNITS.contains(&u)) {
                    self.finding(
                        &at,
                        "panel-units",
                        format!("unit {unit:?} is not one of {KNOWN_UNITS:?}"),
                    );
                }
            }
            let targets = arr(p, "targets");
            if targets.is_empty() {
                self.finding(&at, "target-promql", "panel has no query");
            }
            for t in targets {
                let tw = format!("{at} target {}", s(t, "refId"));
                if !ds_ok(t.get("datasource").or(p.get("datasource"))) {
                    self.finding(&tw, "panel-datasource", "target data source is not ${datasource}");
                }
                let expr = s(t, "expr");
                if expr.trim().is_empty() {
                    self.finding(&tw, "target-promql", "empty query");
                    continue;
                }
                self.check_expr(&tw, expr, Some(&var_names), false);
                self.queries.push((tw, expr.to_owned()));
            }
        }
    }

    /// The alert rules: unique names, severity, summary and description; their metrics,
    /// labels, label values and counters as for the dashboards (any range allowed). Parsing
    /// is `promtool check rules`' job in dev/lint-deploy.sh.
    pub(crate) fn lint_rules(&mut self, name: &str, text: &str) {
        let doc: Value = serde_yaml_ng::from_str(text).expect("rules file is YAML");
        let mut names = BTreeSet::new();
        for g in arr(&doc, "groups") {
            for r in arr(g, "rules") {
                let id = if r.get("alert").is_some() {
                    s(r, "alert")
                } else {
                    s(r, "record")
                };
                let at = format!("{name}: {id}");
                if !names.insert(id.to_owned()) {
                    self.finding(&at, "rules", "name used twice");
                }
                if r.get("alert").is_some() {
                    if r.pointer("/labels/severity").is_none() {
                        self.finding(&at, "rules", "no severity label");
                    }
                    for key in ["summary", "description"] {
                        if r.get("annotations").and_then(|a| a.get(key)).is_none() {
                            self.finding(&at, "rules", format!("no {key} annotation"));
                        }
                    }
                }
                self.check_expr(&at, s(r, "expr"), None, false);
            }
        }
    }
}
