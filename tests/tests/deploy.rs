//! Checks of what deploys and observes Tributary, against the code and the binaries. No
//! infrastructure needed; the tools (kustomize, promtool) are the pinned ones that
//! `bash dev/lint-deploy.sh tools` installs into `.infra/tools/bin`, installed on first use.
//!
//! - `dashboards_lint_clean`: grafana/dashboards/*.json with the rules of Grafana's
//!   dashboard-linter that apply (which cannot be installed here: the Go module proxy refuses
//!   it), every query parsed by `promtool`, every metric, label and label value checked
//!   against what the code really registers: `ChainMetrics`, the sink's metrics (from the
//!   built binary: `sink --list-metrics`) and the jobs' pushed metrics
//!   (`tributary_ctl::job_metrics::catalog`, with their grouping labels `job` and `table`),
//!   serve's and the gateway's (read from their `metrics.rs`); the alert rules' metrics too.
//! - `dashboards_lint_catches_seeded_faults`: each rule above finds a fault planted in a
//!   clean dashboard.
//! - `manifests_match_binaries`: `kustomize build` of k8s/overlays/{dev,prod}: probes,
//!   Services and ServiceMonitors on the port the binary listens on, security context,
//!   resources, budgets, network policies, StatefulSet + INSTANCE_ID + ScaledObject for the
//!   chains, --config in a mounted ConfigMap, secrets from Secrets, the Airflow ConfigMap;
//!   every flag and environment variable a container gets is in its binary's `--help`; the
//!   Pushgateway (a third-party image) probed, locked down, scraped with honorLabels and
//!   named by the Airflow ConfigMap's TRIBUTARY_PUSHGATEWAY.
//! - `binaries_run_as_manifests_say`: each built binary started with its manifest's args,
//!   config file, environment and user (Kafka and the registry pointed at a closed port)
//!   serves /health/live, /health/ready and /metrics, and stops within the 30 s grace period.
//!
//! A binary that is not built (ingest, until it exists) is a printed SKIP line, not silence.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------ common

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/release` (or `target/debug`): this test executable is in its `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// `.infra/tools/bin/<name>`, after `bash dev/lint-deploy.sh tools` (once per run; quick when
/// the pinned tools are there already).
fn tool(name: &str) -> PathBuf {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        let out = Command::new("bash")
            .args(["dev/lint-deploy.sh", "tools"])
            .current_dir(root())
            .output()
            .map_err(|e| format!("bash dev/lint-deploy.sh tools: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "bash dev/lint-deploy.sh tools failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    let p = root().join(".infra/tools/bin").join(name);
    assert!(
        p.is_file(),
        "{} is not installed by dev/lint-deploy.sh tools",
        p.display()
    );
    p
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// True when `word` occurs in `text` not as part of a longer word (`-`, `_`, alphanumerics).
fn has_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c == '-' || c == '_' || c.is_ascii_alphanumeric();
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

// ------------------------------------------------------------------------------ metrics

/// What the services and jobs expose: `ChainMetrics` itself, the sink's registry and the
/// jobs' pushed metrics.
struct Known {
    /// Series name (with `_bucket`, `_sum`, `_count` for histograms) to its label names.
    series: BTreeMap<String, BTreeSet<String>>,
    /// (series, label) to the values the engine initialises (labels such as `outcome`).
    values: BTreeMap<(String, String), BTreeSet<String>>,
}

/// Series name and labels of each sample line of the text exposition format.
fn samples(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_owned();
        let mut labels = Vec::new();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').unwrap_or(line.len())];
            for pair in body
                .split("\",")
                .map(|p| p.trim_start_matches(','))
                .filter(|p| !p.is_empty())
            {
                if let Some((k, v)) = pair.split_once('=') {
                    labels.push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
            }
        }
        out.push((name, labels));
    }
    out
}

fn known_metrics() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        use prometheus::{Encoder, TextEncoder};
        let m = tributary_engine::metrics::ChainMetrics::new("users");
        let text = |m: &tributary_engine::metrics::ChainMetrics| {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&m.registry.gather(), &mut buf)
                .expect("encode");
            String::from_utf8(buf).expect("utf-8")
        };
        // The sink's and the jobs' catalogs: every series with one child each (for the
        // table `users`), the jobs' with their grouping labels.
        let sink = sink_catalog();
        let jobs = tributary_ctl::job_metrics::catalog();
        let serve = serve_catalog();
        let ingest = ingest_catalog();
        // As registered: the label values the code initialises (outcome, reason, result,
        // kind, job, when); not those that name a chain, table, partition or service.
        let mut values: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for text in [text(&m), sink.clone(), jobs.clone(), serve.clone(), ingest.clone()] {
            for (name, labels) in samples(&text) {
                for (k, v) in labels.into_iter().filter(|(k, v)| {
                    // serve's catalog read from its source has no values (empty).
                    !v.is_empty() && !["chain", "table", "partition", "service", "le", "topic"].contains(&k.as_str())
                }) {
                    values.entry((name.clone(), k)).or_default().insert(v);
                }
            }
        }
        // Vectors without initialised children are not gathered: give each a child.
        m.state_keys.with_label_values(&["0"]);
        m.state_bytes.with_label_values(&["0"]);
        m.restore_seconds.with_label_values(&["0"]);
        m.last_restore_seconds.with_label_values(&["0"]);
        m.consumer_lag.with_label_values(&["0"]);
        let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for text in [text(&m), sink, jobs, serve, ingest] {
            for (name, labels) in samples(&text) {
                series
                    .entry(name)
                    .or_default()
                    .extend(labels.into_iter().map(|(k, _)| k));
            }
        }
        for prefix in [
            "tributary_sink_",
            "tributary_job_",
            "tributary_compaction_",
            "tributary_reconciliation_",
            "tributary_serve_",
            "tributary_ingest_",
        ] {
            assert!(
                series.keys().any(|n| n.starts_with(prefix)),
                "no {prefix}* series in the catalogs"
            );
        }
        assert!(
            series.len() >= 10,
            "only {} series gathered from ChainMetrics",
            series.len()
        );
        Known { series, values }
    })
}

/// What `sink --list-metrics` prints: the text exposition of every series the sink has
/// (`SinkMetrics::catalog`); the test crate does not link the sink, its binary does.
fn sink_catalog() -> String {
    let bin = bin_dir().join("sink");
    let out = Command::new(&bin)
        .arg("--list-metrics")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release -p tributary-sink first)", bin.display()));
    assert!(
        out.status.success(),
        "{} --list-metrics: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every series `serve` registers (`services/serve/src/metrics.rs`), in the text format with
/// one sample each and empty label values: `serve --list-metrics` when the binary has it (as
/// the sink does), else read from the registrations in that file, which name each metric
/// (`"serve_..."` after the registry's prefix `tributary_`), its kind and its label names.
/// The test crate does not link serve; the live run checks that what the binary really
/// exposes is in this catalog.
fn serve_catalog() -> String {
    let bin = bin_dir().join("serve");
    if let Ok(out) = Command::new(&bin).arg("--list-metrics").output() {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("tributary_serve_") {
            return text;
        }
    }
    catalog_from_source(
        "serve",
        "services/serve/src/metrics.rs",
        "serve_",
        "tributary_",
        "ready_gauge(\"service_ready\"",
    )
}

/// The gateway's series (the test crate does not link the gateway).
fn ingest_catalog() -> String {
    catalog_from_source(
        "ingest",
        "services/ingest/src/metrics.rs",
        "tributary_ingest_",
        "",
        "ready_gauge(\"tributary_service_ready\", \"ingest\")",
    )
}

/// A service's series read from its metrics source file: one line per metric its
/// `Metrics::new` registers (names quoted with `quoted_prefix`, exposed as `series_prefix` +
/// name), with its label names (no values: its vectors start without children), and its
/// readiness gauge when `ready` occurs in the file.
fn catalog_from_source(service: &str, file: &str, quoted_prefix: &str, series_prefix: &str, ready: &str) -> String {
    let path = root().join(file);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body = &src[src
        .find("fn new(")
        .unwrap_or_else(|| panic!("no fn new in {}", path.display()))..];
    let quoted = |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut out = String::new();
    // One registration per `let x = Kind::new(...)` statement.
    for stmt in body.split("let ").skip(1) {
        let stmt = stmt.split(';').next().unwrap_or("");
        let Some(name) = quoted(stmt).into_iter().next().filter(|n| n.starts_with(quoted_prefix)) else {
            continue;
        };
        let name = format!("{series_prefix}{name}");
        let labels: Vec<String> = stmt
            .find("&[")
            .map(|i| quoted(&stmt[i..i + stmt[i..].find(']').unwrap_or(0)]))
            .unwrap_or_default();
        let l = |extra: &[&str]| {
            let all: Vec<String> = labels
                .iter()
                .map(String::as_str)
                .chain(extra.iter().copied())
                .map(|k| format!("{k}=\"\""))
                .collect();
            if all.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", all.join(","))
            }
        };
        if stmt.contains("HistogramOpts") {
            out += &format!("{name}_bucket{} 0\n", l(&["le"]));
            out += &format!("{name}_sum{} 0\n", l(&[]));
            out += &format!("{name}_count{} 0\n", l(&[]));
        } else {
            out += &format!("{name}{} 0\n", l(&[]));
        }
    }
    if src.contains(ready) {
        out += &format!("tributary_service_ready{{service=\"{service}\"}} 0\n");
    }
    assert!(
        out.lines().count() >= 5,
        "only {} {service} series read from {}",
        out.lines().count(),
        path.display()
    );
    out
}

// ------------------------------------------------------------------------------ PromQL

const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];
const KNOWN_UNITS: &[&str] = &[
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
const COUNTER_SUFFIXES: &[&str] = &["_total", "_bucket", "_sum", "_count"];
const RATE_FUNCS: &[&str] = &["rate", "irate", "increase"];
/// Grafana's own variables, with a stand-in value for parsing.
const BUILTIN_VARS: &[(&str, &str)] = &[
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__range", "1h"),
    ("__range_s", "3600"),
];
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "inf", "nan", "atan2"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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

fn tokenize(expr: &str) -> Vec<Tok> {
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

struct Selector {
    name: String,
    /// label, operator, value
    matchers: Vec<(String, String, String)>,
    /// The selector is the first argument of rate(), irate() or increase().
    in_rate: bool,
}

/// The vector selectors of an expression: names that are not functions, keywords, grouping
/// labels or variables.
fn selectors(toks: &[Tok]) -> Vec<Selector> {
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
fn used_vars(expr: &str) -> BTreeSet<String> {
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
fn substitute_vars(expr: &str) -> String {
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

struct Lint {
    findings: Vec<String>,
    /// (where, expression) for promtool.
    queries: Vec<(String, String)>,
}

impl Lint {
    fn new() -> Self {
        Lint {
            findings: Vec::new(),
            queries: Vec::new(),
        }
    }

    fn finding(&mut self, at: &str, rule: &str, msg: impl std::fmt::Display) {
        self.findings.push(format!("{at}: {rule}: {msg}"));
    }

    /// Static checks of one query. `dashboard_vars` is None for alert rules; `counters_raw`
    /// allows a bare counter (the series argument of label_values).
    fn check_expr(&mut self, at: &str, expr: &str, dashboard_vars: Option<&BTreeSet<String>>, counters_raw: bool) {
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
    fn promql_parse(&mut self) {
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

    fn lint_dashboard(&mut self, name: &str, text: &str, uids: &mut HashMap<String, String>) {
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
    fn lint_rules(&mut self, name: &str, text: &str) {
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

fn tempdir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("tributary-deploy-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

fn dashboards() -> Vec<(String, String)> {
    let dir = root().join("grafana/dashboards");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read dashboard"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

#[test]
fn dashboards_lint_clean() {
    let mut lint = Lint::new();
    let mut uids = HashMap::new();
    let boards = dashboards();
    for (name, text) in &boards {
        lint.lint_dashboard(name, text, &mut uids);
    }
    let rules = "grafana/alerts/tributary.rules.yml";
    lint.lint_rules(
        "tributary.rules.yml",
        &std::fs::read_to_string(root().join(rules)).expect(rules),
    );
    lint.promql_parse();
    for f in &lint.findings {
        println!("{f}");
    }
    println!(
        "dashboards: {} dashboards, {} queries, the rules of {rules}, {} known series names: {} findings",
        boards.len(),
        lint.queries.len(),
        known_metrics().series.len(),
        lint.findings.len()
    );
    assert!(
        lint.findings.is_empty(),
        "{} findings:\n{}",
        lint.findings.len(),
        lint.findings.join("\n")
    );
}

/// Each mutation of a clean dashboard must give a finding of its rule: the lint still
/// catches what it claims to, whatever the dashboards look like today.
#[test]
fn dashboards_lint_catches_seeded_faults() {
    const SEEDED: &[(&str, &str, &str)] = &[
        (
            "metric-exists",
            "rate(tributary_chain_records_total{",
            "rate(tributary_chain_record_total{",
        ),
        ("label-exists", r#"chain=\"$chain\""#, r#"chian=\"$chain\""#),
        ("label-values", r#"outcome=\"dlq\""#, r#"outcome=\"dead\""#),
        ("target-rate-interval", "[$__rate_interval]", "[5m]"),
        ("target-promql", "sum by (", "sum by (("),
        (
            "target-counter-agg",
            "rate(tributary_chain_records_total",
            "abs(tributary_chain_records_total",
        ),
        ("template-vars", r#"\"$chain\""#, r#"\"$chian\""#),
        (
            "panel-datasource",
            "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"${datasource}\"",
            "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"prom\"",
        ),
        ("panel-units", r#""unit": ""#, r#""unit": "x"#),
        (
            "panel-title-description",
            r#""description": "Records read"#,
            r#""descr": "Records read"#,
        ),
        ("dashboard", r#""tributary""#, r#""tributory""#),
    ];
    // The first dashboard that holds every string a fault is planted in (the chain one).
    let boards = dashboards();
    let (name, text) = boards
        .iter()
        .find(|(_, text)| SEEDED.iter().all(|(_, old, _)| text.contains(old)))
        .unwrap_or(&boards[0]);
    let mut failed = Vec::new();
    for (rule, old, new) in SEEDED {
        if !text.contains(old) {
            failed.push(format!("{rule}: {old:?} is not in {name}"));
            continue;
        }
        let mut lint = Lint::new();
        lint.lint_dashboard(name, &text.replacen(old, new, 1), &mut HashMap::new());
        lint.promql_parse();
        if !lint.findings.iter().any(|f| f.contains(&format!(": {rule}: "))) {
            failed.push(format!(
                "{old:?} -> {new:?} gave no {rule} finding: {:?}",
                lint.findings
            ));
        }
    }
    println!(
        "self-test: {} of {} seeded faults caught",
        SEEDED.len() - failed.len(),
        SEEDED.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

// ------------------------------------------------------------------------------ manifests

const CHAINS: &[&str] = &["users", "unsubscribes", "blocklists", "subscriptions", "mailings"];
/// The contract's default metrics ports, for binaries not built yet; a built binary's
/// --help must agree with it.
const CONTRACT_PORTS: &[(&str, i64)] = &[
    ("users", 9101),
    ("unsubscribes", 9102),
    ("blocklists", 9103),
    ("subscriptions", 9104),
    ("mailings", 9105),
    ("sink", 9106),
    ("ingest", 8080),
    ("serve", 9107),
];
/// Binaries whose API listens on a port of its own (`PORT`) beside the metrics port: the
/// contract's API port, which the container must expose and a Service must reach.
const API_PORTS: &[(&str, i64)] = &[("serve", 8090)];
/// Environment variables a binary reads outside its clap settings, so its --help does not
/// name them: (binary, variable, where it is read). The name must still be in the binary.
const ENV_OUTSIDE_HELP: &[(&str, &str, &str)] = &[(
    "serve",
    "GRANTS_KEK_FILE",
    "tributary_view::grants::Kek::from_env (crates/view/src/grants.rs)",
)];
/// Stand-in contents, for the live runs, of files that manifests mount from Secrets, by the
/// variable that names the file; other such files get `secret-value`.
const SECRET_FILE_STANDINS: &[(&str, &str)] = &[
    // `<tenant> <sha256 hex of its token>` (the token `acme-live-run-token`; any hash will do).
    (
        "TENANT_TOKENS_FILE",
        "acme 0000000000000000000000000000000000000000000000000000000000000001\n",
    ),
    // The gateway's settings file: a tenant (its token comes from TENANT_TOKENS_FILE) and a
    // provider secret.
    (
        "TRIBUTARY_CONFIG",
        "[tenants.acme.mailgun]\nsigning_key = \"live-run-key\"\n",
    ),
    // 64 hex digits.
    (
        "GRANTS_KEK_FILE",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    ),
];

/// One container of a workload, as the manifests run it.
struct Container {
    label: String,
    binary: String,
    args: Vec<String>,
    /// The resolved environment (values from ConfigMaps; stand-ins for Secrets and fields).
    env: BTreeMap<String, String>,
    /// --config paths to their content.
    files: BTreeMap<String, String>,
    /// Environment variables naming a file of a mounted Secret.
    secret_files: BTreeSet<String>,
    run_as: (Option<i64>, Option<i64>),
    errors: Vec<String>,
}

struct Build {
    overlay: &'static str,
    containers: Vec<Container>,
    /// Findings about the build as a whole.
    errors: Vec<String>,
}

fn kustomize(overlay: &'static str) -> Vec<Value> {
    let out = Command::new(tool("kustomize"))
        .arg("build")
        .arg(root().join("k8s/overlays").join(overlay))
        .output()
        .expect("kustomize runs");
    assert!(
        out.status.success(),
        "kustomize build k8s/overlays/{overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(sel) = selector else { return false };
    let sel = sel.get("matchLabels").unwrap_or(sel);
    let Some(m) = sel.as_object().filter(|m| !m.is_empty()) else {
        return false;
    };
    m.iter()
        .filter(|(_, v)| v.is_string())
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The default metrics port of each binary: its --help's, or the contract's if not built.
fn default_ports(help: &BTreeMap<String, Result<String, String>>, errors: &mut Vec<String>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (b, port) in CONTRACT_PORTS {
        if let Some(Ok(h)) = help.get(*b) {
            // `METRICS_PORT (default N)`, or clap's `... [default: N] [env: METRICS_PORT=]`.
            let p = h
                .find("METRICS_PORT (default ")
                .and_then(|i| {
                    let d: String = h[i + 22..].chars().take_while(char::is_ascii_digit).collect();
                    d.parse::<i64>().ok()
                })
                .or_else(|| {
                    let line = h.lines().find(|l| l.contains("[env: METRICS_PORT="))?;
                    let i = line.find("[default: ")?;
                    let d: String = line[i + 10..].chars().take_while(char::is_ascii_digit).collect();
                    d.parse::<i64>().ok()
                });
            match p {
                None => errors.push(format!("{b} --help names no METRICS_PORT default")),
                Some(p) if p != *port => errors.push(format!(
                    "{b} --help says METRICS_PORT default {p}, the contract says {port}"
                )),
                _ => {}
            }
        }
        out.insert(b.to_string(), *port);
    }
    out
}

/// `<binary> --help` of each contract binary that is built.
fn helps() -> BTreeMap<String, Result<String, String>> {
    let mut out = BTreeMap::new();
    for (b, _) in CONTRACT_PORTS {
        let p = bin_dir().join(b);
        if !p.is_file() {
            continue;
        }
        let r = match Command::new(&p).arg("--help").output() {
            Ok(o) if o.status.success() => Ok(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Ok(o) => Err(format!("{b} --help exits {}", o.status)),
            Err(e) => Err(format!("{b} --help: {e}")),
        };
        out.insert(b.to_string(), r);
    }
    out
}

fn is_secretish(name: &str) -> bool {
    ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "KEK"]
        .iter()
        .any(|w| name.contains(w))
        || name.ends_with("_KEY")
}

fn host_port_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|hp| {
            hp.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && h.chars().all(|c| c.is_alphanumeric() || "_.-".contains(c))
                    && !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
            })
        })
}

/// The static checks of one build, and what running its containers needs.
fn check_build(overlay: &'static str, docs: &[Value], defaults: &BTreeMap<String, i64>) -> Build {
    let mut by_kind: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for d in docs {
        by_kind.entry(s(d, "kind")).or_default().push(d);
    }
    let kind = |k: &str| by_kind.get(k).cloned().unwrap_or_default();
    let name_of = |d: &Value| {
        d.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let str_map = |v: Option<&Value>| -> BTreeMap<String, String> {
        v.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let configmaps: BTreeMap<String, BTreeMap<String, String>> = kind("ConfigMap")
        .iter()
        .map(|d| (name_of(d), str_map(d.get("data"))))
        .collect();
    let accounts: BTreeSet<String> = kind("ServiceAccount").iter().map(|d| name_of(d)).collect();
    let services = kind("Service");
    let env_cm = configmaps
        .iter()
        .find(|(k, _)| k.starts_with("tributary-env"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let sasl = env_cm
        .get("KAFKA_PROP_SECURITY_PROTOCOL")
        .is_some_and(|p| p.to_uppercase().starts_with("SASL"));
    let mut images = BTreeSet::new();
    let mut containers = Vec::new();
    let mut errors = Vec::new();

    for w in kind("StatefulSet").into_iter().chain(kind("Deployment")) {
        let (wkind, wname) = (s(w, "kind"), name_of(w));
        let spec = &w["spec"];
        let pod = &spec["template"]["spec"];
        let labels = spec.pointer("/template/metadata/labels").cloned().unwrap_or(json!({}));
        let psc = pod.get("securityContext").cloned().unwrap_or(json!({}));
        if let Some((_, image)) = THIRD_PARTY.iter().find(|(n, _)| *n == wname) {
            // Not a Tributary binary: its own checks, and not in `images`/`containers`.
            let ctx = ThirdParty {
                image,
                pod,
                labels: &labels,
                services: &services,
                monitors: &kind("ServiceMonitor"),
                budgets: &kind("PodDisruptionBudget"),
                policies: &kind("NetworkPolicy"),
                airflow: configmaps.get("tributary-airflow"),
            };
            errors.extend(ctx.check().into_iter().map(|e| format!("{wkind}/{wname}: {e}")));
            continue;
        }
        for c in arr(pod, "containers") {
            let mut errors = Vec::new();
            let mut err = |e: String| errors.push(e);
            images.insert(s(c, "image").to_owned());
            let cmd: Vec<String> = arr(c, "command")
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect();
            let mut args: Vec<String> = cmd.iter().skip(1).cloned().collect();
            args.extend(
                arr(c, "args")
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            );
            let binary = cmd.first().cloned().unwrap_or_default();
            if binary.is_empty() || binary.contains('/') {
                err(format!(
                    "command should be the bare binary name (on PATH in the image), got {cmd:?}"
                ));
            }
            // --- files of mounted Secrets: their paths in the container
            let mut secret_paths = BTreeSet::new();
            for vm in arr(c, "volumeMounts") {
                let Some(vol) = arr(pod, "volumes").iter().find(|v| s(v, "name") == s(vm, "name")) else {
                    continue;
                };
                let mp = s(vm, "mountPath").trim_end_matches('/').to_owned();
                let Some(sec) = vol.get("secret") else { continue };
                if s(sec, "secretName").is_empty() {
                    err(format!("volume {} names no Secret", s(vol, "name")));
                }
                // Without `items` every key is a file; with them, only their paths.
                match sec.get("items").and_then(Value::as_array) {
                    Some(items) => secret_paths.extend(items.iter().map(|i| format!("{mp}/{}", s(i, "path")))),
                    None => {
                        secret_paths.insert(format!("{mp}/*"));
                    }
                }
            }
            let in_secret = |v: &str| {
                secret_paths.contains(v)
                    || v.rsplit_once('/')
                        .is_some_and(|(dir, _)| secret_paths.contains(&format!("{dir}/*")))
            };
            let mut secret_files = BTreeSet::new();
            // --- environment, resolved
            let mut env = BTreeMap::new();
            let mut env_from_secret = BTreeSet::new();
            for ef in arr(c, "envFrom") {
                if let Some(r) = ef.get("configMapRef") {
                    let r = s(r, "name");
                    match configmaps.get(r) {
                        Some(cm) => env.extend(cm.clone()),
                        None => err(format!("envFrom ConfigMap {r} is not in the build")),
                    }
                } else if ef.get("secretRef").is_some() {
                    err(
                        "envFrom secretRef hides the variable names from this check: use env[].valueFrom.secretKeyRef"
                            .into(),
                    );
                }
            }
            for e in arr(c, "env") {
                let n = s(e, "name").to_owned();
                if let Some(v) = e.get("value") {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    // A file of a mounted Secret: `*_FILE`, or the settings file of a service
                    // whose settings hold secrets (the gateway's provider keys).
                    if (n.ends_with("_FILE") || n == "TRIBUTARY_CONFIG") && in_secret(&v) {
                        secret_files.insert(n.clone());
                    } else if is_secretish(&n) && !v.is_empty() {
                        err(format!(
                            "{n} has a literal value: take it from a Secret (secretKeyRef, or a file of a mounted Secret)"
                        ));
                    }
                    env.insert(n, v);
                } else if let Some(vf) = e.get("valueFrom") {
                    let v = if vf.get("secretKeyRef").is_some() {
                        env_from_secret.insert(n.clone());
                        "secret-value".to_owned()
                    } else if let Some(f) = vf.get("fieldRef") {
                        if s(f, "fieldPath") == "metadata.name" {
                            format!("{wname}-0")
                        } else {
                            "field".to_owned()
                        }
                    } else if let Some(r) = vf.get("configMapKeyRef") {
                        configmaps
                            .get(s(r, "name"))
                            .and_then(|m| m.get(s(r, "key")))
                            .cloned()
                            .unwrap_or_default()
                    } else {
                        "value".to_owned()
                    };
                    env.insert(n, v);
                }
            }
            // --- ports and probes
            let ports: BTreeMap<String, i64> = arr(c, "ports")
                .iter()
                .map(|p| {
                    (
                        s(p, "name").to_owned(),
                        p.get("containerPort").and_then(Value::as_i64).unwrap_or(-1),
                    )
                })
                .collect();
            let port_ref = |p: Option<&Value>| match p {
                Some(Value::String(n)) => ports.get(n).copied(),
                Some(v) => v.as_i64(),
                None => None,
            };
            let expected = match env.get("METRICS_PORT") {
                Some(p) => p.parse::<i64>().ok(),
                None => defaults.get(&binary).copied(),
            };
            let Some(expected) = expected else {
                err(format!("no METRICS_PORT and no known default port for {binary}"));
                continue;
            };
            if !ports.values().any(|p| *p == expected) {
                err(format!(
                    "the metrics port {expected} is not a container port ({ports:?})"
                ));
            }
            for (probe, path) in [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")] {
                let Some(h) = c.get(probe).and_then(|p| p.get("httpGet")) else {
                    err(format!("{probe}: none, or not httpGet"));
                    continue;
                };
                if s(h, "path") != path {
                    err(format!("{probe}: path {} is not {path}", s(h, "path")));
                }
                if port_ref(h.get("port")) != Some(expected) {
                    err(format!(
                        "{probe}: port {:?} is not the metrics port {expected}",
                        h.get("port")
                    ));
                }
            }
            // The API port of a binary that has one apart from the metrics port.
            let api = API_PORTS
                .iter()
                .find(|(b, _)| *b == binary)
                .map(|(_, p)| env.get("PORT").and_then(|p| p.parse::<i64>().ok()).unwrap_or(*p));
            if let Some(api) = api {
                if !ports.values().any(|p| *p == api) {
                    err(format!("the API port {api} is not a container port ({ports:?})"));
                }
                let reached = services.iter().any(|sv| {
                    selects(sv.pointer("/spec/selector"), &labels)
                        && arr(&sv["spec"], "ports")
                            .iter()
                            .any(|p| port_ref(p.get("targetPort").or(p.get("port"))) == Some(api))
                });
                if !reached {
                    err(format!("no Service reaches the API port {api}"));
                }
            }
            // Service and ServiceMonitor reach the metrics port
            let svc: Vec<&&Value> = services
                .iter()
                .filter(|sv| selects(sv.pointer("/spec/selector"), &labels))
                .collect();
            if svc.is_empty() {
                err("no Service selects these pods".into());
            }
            for sv in svc {
                let sports = arr(&sv["spec"], "ports");
                let tports: Vec<Option<i64>> = sports
                    .iter()
                    .map(|p| port_ref(p.get("targetPort").or(p.get("port"))))
                    .collect();
                if !tports.contains(&Some(expected)) {
                    err(format!(
                        "Service {} does not reach port {expected} ({tports:?})",
                        name_of(sv)
                    ));
                }
                let pnames: BTreeSet<&str> = sports.iter().map(|p| s(p, "name")).collect();
                let slabels = sv.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                let scraped = kind("ServiceMonitor").iter().any(|m| {
                    selects(m.pointer("/spec/selector"), &slabels)
                        && arr(&m["spec"], "endpoints")
                            .iter()
                            .any(|ep| pnames.contains(s(ep, "port")) && ep.get("path").is_none_or(|p| p == "/metrics"))
                });
                if !scraped {
                    err(format!("no ServiceMonitor scrapes /metrics of Service {}", name_of(sv)));
                }
            }
            // --- security
            let csc = c.get("securityContext").cloned().unwrap_or(json!({}));
            let sc = |k: &str| csc.get(k).or(psc.get(k)).cloned();
            if sc("runAsNonRoot") != Some(json!(true)) {
                err("runAsNonRoot is not true".into());
            }
            for key in ["runAsUser", "runAsGroup"] {
                if sc(key).and_then(|v| v.as_i64()).is_none_or(|id| id < 10000) {
                    err(format!("{key} {:?} is not a uid/gid >= 10000", sc(key)));
                }
            }
            if csc.get("readOnlyRootFilesystem") != Some(&json!(true)) {
                err("readOnlyRootFilesystem is not true".into());
            }
            if csc.get("allowPrivilegeEscalation") != Some(&json!(false)) {
                err("allowPrivilegeEscalation is not false".into());
            }
            if csc.get("privileged") == Some(&json!(true)) {
                err("privileged".into());
            }
            if !csc
                .pointer("/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.contains(&json!("ALL")))
            {
                err("capabilities do not drop ALL".into());
            }
            if sc("seccompProfile").as_ref().map(|p| s(p, "type")) != Some("RuntimeDefault") {
                err("seccompProfile is not RuntimeDefault".into());
            }
            if pod.get("automountServiceAccountToken") != Some(&json!(false)) {
                err("automountServiceAccountToken is not false".into());
            }
            if !accounts.contains(s(pod, "serviceAccountName")) {
                err(format!(
                    "service account {} is not in the build",
                    s(pod, "serviceAccountName")
                ));
            }
            if pod.get("terminationGracePeriodSeconds") != Some(&json!(30)) {
                err(format!(
                    "terminationGracePeriodSeconds is {:?}, not 30",
                    pod.get("terminationGracePeriodSeconds")
                ));
            }
            for part in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    if c.pointer(&format!("/resources/{part}/{r}")).is_none() {
                        err(format!("no {r} {}", &part[..part.len() - 1]));
                    }
                }
            }
            // --- disruption budget, network policy
            if !kind("PodDisruptionBudget")
                .iter()
                .any(|p| selects(p.pointer("/spec/selector"), &labels))
            {
                err("no PodDisruptionBudget selects these pods".into());
            }
            if !kind("NetworkPolicy")
                .iter()
                .any(|p| selects(p.pointer("/spec/podSelector"), &labels))
            {
                err("no NetworkPolicy selects these pods".into());
            }
            // --- chains
            if CHAINS.contains(&binary.as_str()) {
                if wkind != "StatefulSet" {
                    err(format!(
                        "a chain service must be a StatefulSet (stable, unique INSTANCE_ID), not a {wkind}"
                    ));
                }
                let iid = arr(c, "env").iter().find(|e| s(e, "name") == "INSTANCE_ID");
                if iid.and_then(|e| e.pointer("/valueFrom/fieldRef/fieldPath")) != Some(&json!("metadata.name")) {
                    err("INSTANCE_ID must come from the pod name (fieldRef metadata.name)".into());
                }
                if wkind == "StatefulSet" {
                    let gov = services.iter().find(|sv| name_of(sv) == s(spec, "serviceName"));
                    if !gov.is_some_and(|g| g.pointer("/spec/clusterIP") == Some(&json!("None"))) {
                        err(format!(
                            "serviceName {} is not a headless Service of the build",
                            s(spec, "serviceName")
                        ));
                    }
                }
                if spec.get("replicas").is_some() {
                    err("replicas is set: the ScaledObject owns it".into());
                }
                let ns = env.get("TOPIC_NAMESPACE").cloned().unwrap_or_default();
                let dot = if ns.is_empty() { String::new() } else { format!("{ns}.") };
                let group = env
                    .get("GROUP_ID")
                    .cloned()
                    .unwrap_or_else(|| format!("{dot}tributary-{binary}"));
                let topic = format!("{dot}raw.{binary}");
                let scaled = kind("ScaledObject");
                let sos: Vec<&&Value> = scaled
                    .iter()
                    .filter(|so| {
                        so.pointer("/spec/scaleTargetRef/name") == Some(&json!(wname))
                            && so.pointer("/spec/scaleTargetRef/kind") == Some(&json!(wkind))
                    })
                    .collect();
                if sos.len() != 1 {
                    err(format!("{} ScaledObjects target this {wkind}, not 1", sos.len()));
                }
                for so in sos {
                    for t in arr(&so["spec"], "triggers") {
                        let md = t.get("metadata").cloned().unwrap_or(json!({}));
                        if s(t, "type") != "kafka" {
                            err(format!("ScaledObject trigger {} is not kafka", s(t, "type")));
                            continue;
                        }
                        if s(&md, "consumerGroup") != group {
                            err(format!(
                                "ScaledObject consumerGroup {} is not the service's group {group}",
                                s(&md, "consumerGroup")
                            ));
                        }
                        if s(&md, "topic") != topic {
                            err(format!("ScaledObject topic {} is not {topic}", s(&md, "topic")));
                        }
                        let src = s(&md, "bootstrapServersFromEnv");
                        if s(&md, "bootstrapServers").is_empty() && !env.contains_key(src) {
                            err(format!(
                                "ScaledObject bootstrapServersFromEnv {src} is not in the container's environment"
                            ));
                        }
                        if sasl && (md.get("sasl").is_none() || t.get("authenticationRef").is_none()) {
                            err("Kafka uses SASL but the ScaledObject trigger has no sasl/authenticationRef".into());
                        }
                    }
                }
            }
            // --- config file
            let mut files = BTreeMap::new();
            for (i, a) in args.iter().enumerate() {
                if (a == "--config" || a == "-c") && i + 1 < args.len() {
                    let path = &args[i + 1];
                    let mut found = false;
                    for vm in arr(c, "volumeMounts") {
                        let mp = format!("{}/", s(vm, "mountPath").trim_end_matches('/'));
                        let Some(key) = path.strip_prefix(&mp) else { continue };
                        let vol = arr(pod, "volumes").iter().find(|v| s(v, "name") == s(vm, "name"));
                        let cm = vol
                            .and_then(|v| v.pointer("/configMap/name"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if let Some(content) = configmaps.get(cm).and_then(|m| m.get(key)) {
                            files.insert(path.clone(), content.clone());
                            found = true;
                        }
                    }
                    if !found {
                        err(format!("--config {path} is not a key of a ConfigMap mounted there"));
                    }
                }
            }
            // --- secrets and addresses
            if sasl && !env_from_secret.contains("KAFKA_PROP_SASL_PASSWORD") {
                err("Kafka uses SASL but KAFKA_PROP_SASL_PASSWORD does not come from a Secret".into());
            }
            if let Some(u) = env.get("SCHEMA_REGISTRY_URL") {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    err(format!("SCHEMA_REGISTRY_URL {u} is not an http(s) URL"));
                }
            }
            if let Some(b) = env.get("KAFKA_BOOTSTRAP") {
                if !host_port_list(b) {
                    err(format!("KAFKA_BOOTSTRAP {b} is not a host:port list"));
                }
            }
            if let Some(l) = env.get("LAKE_URI") {
                if !(l.starts_with("hdfs://") || l.starts_with("file://") || l.starts_with('/')) {
                    err(format!("LAKE_URI {l} is not hdfs://, file:// or an absolute path"));
                }
            }
            let id = |k: &str| sc(k).and_then(|v| v.as_i64());
            containers.push(Container {
                label: format!("{overlay} {wkind}/{wname}/{}", s(c, "name")),
                binary,
                args,
                env,
                files,
                secret_files,
                run_as: (id("runAsUser"), id("runAsGroup")),
                errors,
            });
        }
    }

    // --- Airflow settings
    match configmaps.get("tributary-airflow") {
        None => errors.push("no ConfigMap tributary-airflow".to_owned()),
        Some(air) => {
            let lake = configmaps
                .iter()
                .find(|(k, _)| k.starts_with("tributary-lake"))
                .map(|(_, v)| v.clone());
            let ns = kind("ConfigMap")
                .iter()
                .find(|d| name_of(d) == "tributary-airflow")
                .and_then(|d| d.pointer("/metadata/namespace"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let image = if images.len() == 1 {
                images.iter().next().cloned()
            } else {
                Some(format!("one image (workloads use {images:?})"))
            };
            let want = [
                ("TRIBUTARY_IMAGE", image),
                ("NAMESPACE", ns),
                ("LAKE_URI", lake.and_then(|l| l.get("LAKE_URI").cloned())),
                ("KAFKA_BOOTSTRAP", env_cm.get("KAFKA_BOOTSTRAP").cloned()),
                ("SCHEMA_REGISTRY_URL", env_cm.get("SCHEMA_REGISTRY_URL").cloned()),
            ];
            for (k, v) in want {
                if air.get(k) != v.as_ref() {
                    errors.push(format!("tributary-airflow {k} is {:?}, expected {v:?}", air.get(k)));
                }
            }
            let sa = air.get("SERVICE_ACCOUNT").cloned().unwrap_or_default();
            if !accounts.contains(&sa) {
                errors.push(format!("tributary-airflow SERVICE_ACCOUNT {sa:?} is not in the build"));
            }
        }
    }
    Build {
        overlay,
        containers,
        errors,
    }
}

/// Workloads that run a third-party image (name, image without tag).
const THIRD_PARTY: &[(&str, &str)] = &[("pushgateway", "prom/pushgateway")];

/// A third-party workload of the build and what it must agree with.
struct ThirdParty<'a> {
    image: &'a str,
    pod: &'a Value,
    labels: &'a Value,
    services: &'a [&'a Value],
    monitors: &'a [&'a Value],
    budgets: &'a [&'a Value],
    policies: &'a [&'a Value],
    airflow: Option<&'a BTreeMap<String, String>>,
}

impl ThirdParty<'_> {
    /// The Pushgateway: a pinned image, probes on its port, locked down like the services,
    /// a budget and a network policy, a Service that only a ServiceMonitor with honorLabels
    /// scrapes (the pushed `job` labels survive), and the Airflow ConfigMap's
    /// TRIBUTARY_PUSHGATEWAY pointing at that Service.
    fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut err = |e: String| errors.push(e);
        let psc = self.pod.get("securityContext").cloned().unwrap_or(json!({}));
        let containers = arr(self.pod, "containers");
        if containers.len() != 1 {
            err(format!("{} containers, expected 1", containers.len()));
        }
        for c in containers {
            let image = s(c, "image");
            match image.split_once(':') {
                Some((name, tag)) if name == self.image && !tag.is_empty() && tag != "latest" => {}
                _ => err(format!("image {image} is not {}:<pinned tag>", self.image)),
            }
            let ports: BTreeMap<&str, i64> = arr(c, "ports")
                .iter()
                .map(|p| {
                    (
                        s(p, "name"),
                        p.get("containerPort").and_then(Value::as_i64).unwrap_or(-1),
                    )
                })
                .collect();
            let port = ports.values().next().copied();
            for probe in ["livenessProbe", "readinessProbe"] {
                let p = c.pointer(&format!("/{probe}/httpGet/port"));
                let n = match p {
                    Some(Value::String(n)) => ports.get(n.as_str()).copied(),
                    Some(v) => v.as_i64(),
                    None => None,
                };
                if n.is_none() || n != port {
                    err(format!("{probe}: not an httpGet on the container port {port:?}"));
                }
            }
            let csc = c.get("securityContext").cloned().unwrap_or(json!({}));
            let sc = |k: &str| csc.get(k).or(psc.get(k)).cloned();
            if sc("runAsNonRoot") != Some(json!(true)) {
                err("runAsNonRoot is not true".into());
            }
            if csc.get("readOnlyRootFilesystem") != Some(&json!(true)) {
                err("readOnlyRootFilesystem is not true".into());
            }
            if csc.get("allowPrivilegeEscalation") != Some(&json!(false)) {
                err("allowPrivilegeEscalation is not false".into());
            }
            if !csc
                .pointer("/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.contains(&json!("ALL")))
            {
                err("capabilities do not drop ALL".into());
            }
            for part in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    if c.pointer(&format!("/resources/{part}/{r}")).is_none() {
                        err(format!("no {r} {}", &part[..part.len() - 1]));
                    }
                }
            }
        }
        if self.pod.get("automountServiceAccountToken") != Some(&json!(false)) {
            err("automountServiceAccountToken is not false".into());
        }
        if !self
            .budgets
            .iter()
            .any(|p| selects(p.pointer("/spec/selector"), self.labels))
        {
            err("no PodDisruptionBudget selects these pods".into());
        }
        if !self.policies.iter().any(|p| {
            selects(p.pointer("/spec/podSelector"), self.labels)
                && p.pointer("/spec/podSelector/matchLabels/app.kubernetes.io~1name")
                    .is_some()
        }) {
            err("no NetworkPolicy of its own lets the jobs push to it".into());
        }
        let svcs: Vec<&&Value> = self
            .services
            .iter()
            .filter(|sv| selects(sv.pointer("/spec/selector"), self.labels))
            .collect();
        if svcs.len() != 1 {
            err(format!("{} Services select these pods, expected 1", svcs.len()));
        }
        for sv in svcs {
            let sname = sv.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            let sports = arr(&sv["spec"], "ports");
            let pnames: BTreeSet<&str> = sports.iter().map(|p| s(p, "name")).collect();
            let slabels = sv.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            let scrapes: Vec<&Value> = self
                .monitors
                .iter()
                .filter(|m| selects(m.pointer("/spec/selector"), &slabels))
                .flat_map(|m| arr(&m["spec"], "endpoints"))
                .filter(|ep| pnames.contains(s(ep, "port")))
                .collect();
            if scrapes.is_empty() {
                err(format!("no ServiceMonitor scrapes Service {sname}"));
            }
            for ep in scrapes {
                if ep.get("honorLabels") != Some(&json!(true)) {
                    err(format!(
                        "a ServiceMonitor scrapes Service {sname} port {} without honorLabels: the pushed job labels would be lost",
                        s(ep, "port")
                    ));
                }
            }
            let sport = sports.first().and_then(|p| p.get("port")).and_then(Value::as_i64);
            let want = format!("http://{sname}:{}", sport.unwrap_or(-1));
            let got = self.airflow.and_then(|a| a.get("TRIBUTARY_PUSHGATEWAY"));
            if got != Some(&want) {
                err(format!(
                    "tributary-airflow TRIBUTARY_PUSHGATEWAY is {got:?}, expected {want:?}"
                ));
            }
        }
        errors
    }
}

fn builds(errors: &mut Vec<String>) -> (Vec<Build>, BTreeMap<String, Result<String, String>>) {
    let help = helps();
    let defaults = default_ports(&help, errors);
    let builds = ["dev", "prod"]
        .into_iter()
        .map(|o| check_build(o, &kustomize(o), &defaults))
        .collect();
    (builds, help)
}

#[test]
fn manifests_match_binaries() {
    let mut failures = Vec::new();
    let (builds, help) = builds(&mut failures);
    let (mut ok, mut skipped) = (0, 0);
    for b in &builds {
        failures.extend(b.errors.iter().map(|e| format!("{}: {e}", b.overlay)));
        for c in &b.containers {
            if c.errors.is_empty() {
                ok += 1;
            }
            failures.extend(c.errors.iter().map(|e| format!("{}: {e}", c.label)));
            let h = match help.get(&c.binary) {
                None => {
                    println!(
                        "SKIP  {}: no binary {} (not built yet): its flags and environment names are not checked",
                        c.label,
                        bin_dir().join(&c.binary).display()
                    );
                    skipped += 1;
                    continue;
                }
                Some(Err(e)) => {
                    failures.push(format!("{}: {e}", c.label));
                    continue;
                }
                Some(Ok(h)) => h,
            };
            for a in c.args.iter().filter(|a| a.starts_with('-')) {
                let flag = a.split('=').next().unwrap_or(a);
                if !has_word(h, flag) {
                    failures.push(format!("{}: flag {a} is not in {} --help", c.label, c.binary));
                }
            }
            let missing: Vec<&String> = c
                .env
                .keys()
                .filter(|v| match v.as_str() {
                    // Read by tributary_engine::init_tracing (crates/engine/src/lib.rs), and
                    // local mode by tributary_engine::config (every service that has one).
                    "RUST_LOG" | "LOG_FORMAT" | "TRIBUTARY_LOCAL" => false,
                    v if v.starts_with("KAFKA_PROP_") => !h.contains("KAFKA_PROP_<NAME>"),
                    v if ENV_OUTSIDE_HELP.iter().any(|(b, n, _)| *b == c.binary && *n == v) => {
                        // Read outside clap: the name must at least be in the binary.
                        let bytes = std::fs::read(bin_dir().join(&c.binary)).unwrap_or_default();
                        !bytes.windows(v.len()).any(|w| w == v.as_bytes())
                    }
                    v => !has_word(h, v),
                })
                .collect();
            if !missing.is_empty() {
                failures.push(format!(
                    "{}: environment variables not in {} --help (the binary would ignore them): {missing:?}",
                    c.label, c.binary
                ));
            }
        }
    }
    let n: usize = builds.iter().map(|b| b.containers.len()).sum();
    println!(
        "manifests: {n} containers in dev and prod, {ok} without static findings, {skipped} without a binary: {} failures",
        failures.len()
    );
    assert!(n >= 12, "only {n} containers in the builds");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------ live runs

/// Status code and body of a GET on 127.0.0.1.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut c = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned()))
}

fn tail(path: &Path) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let t: String = t
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    t.replace('\n', " ")
}

/// Runs one container's binary as its manifest would; returns its failures and ok lines.
fn live_run(c: &Container, known: &Known) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut ok) = (Vec::new(), Vec::new());
    let label = &c.label;
    let dir = tempdir(&c.binary);
    let port = tributary_tests::free_port();
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| match c.files.get(a) {
            Some(content) => {
                let p = dir.join(Path::new(a).file_name().expect("file name"));
                std::fs::write(&p, content).expect("write config");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
                p.display().to_string()
            }
            None => a.clone(),
        })
        .collect();
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).expect("lake dir");
    let mut cmd;
    let root_user = std::fs::metadata(&dir).map(|m| m.uid() == 0).unwrap_or(false);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    let binary = bin_dir().join(&c.binary).canonicalize().expect("binary path");
    let as_user = match (root_user, setpriv, c.run_as.0) {
        (true, Some(sp), Some(uid)) => {
            let gid = c.run_as.1.unwrap_or(uid);
            std::os::unix::fs::chown(&lake, Some(uid as u32), Some(gid as u32)).expect("chown lake");
            cmd = Command::new(sp);
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ])
            .arg(&binary);
            Some(uid)
        }
        _ => {
            cmd = Command::new(&binary);
            None
        }
    };
    cmd.args(&args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &dir);
    // A separate API port (PORT, unless it is the metrics port too) gets a free port as well.
    let api_port = c
        .env
        .get("PORT")
        .filter(|p| c.env.get("METRICS_PORT") != Some(*p))
        .map(|_| tributary_tests::free_port());
    for (k, v) in &c.env {
        match k.as_str() {
            "KAFKA_BOOTSTRAP" | "SCHEMA_REGISTRY_URL" | "METRICS_PORT" => {}
            "PORT" => {
                cmd.env(k, api_port.map_or_else(|| port.to_string(), |p| p.to_string()));
            }
            "LAKE_URI" => {
                cmd.env(k, &lake);
            }
            k if c.secret_files.contains(k) => {
                // The mounted Secret's file: a stand-in of the same form.
                let content = SECRET_FILE_STANDINS
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map_or("secret-value\n", |(_, c)| c);
                let p = dir.join(format!("secret-{}", k.to_ascii_lowercase()));
                std::fs::write(&p, content).expect("write secret stand-in");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
                cmd.env(k, &p);
            }
            _ => {
                cmd.env(k, v);
            }
        }
    }
    // Nothing leaves this machine: Kafka and the registry are a closed local port.
    cmd.env("KAFKA_BOOTSTRAP", "127.0.0.1:9")
        .env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/apis/ccompat/v7")
        .env("METRICS_PORT", port.to_string());
    let log = dir.join("stderr");
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = cmd.spawn().expect("spawn");
    let mut live = None;
    for _ in 0..100 {
        live = http_get(port, "/health/live").map(|(code, _)| code);
        if live == Some(200) {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            bad.push(format!(
                "{label}: exited ({st}) before serving /health/live: {}",
                tail(&log)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            return (bad, ok);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if live != Some(200) {
        bad.push(format!(
            "{label}: /health/live on METRICS_PORT={port} answered {live:?} after 10 s"
        ));
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        return (bad, ok);
    }
    let user = as_user.map_or(String::new(), |u| format!(" as uid {u}"));
    ok.push(format!(
        "{label}: runs with the manifest's args, config file and environment{user}; /health/live 200"
    ));
    match http_get(port, "/health/ready") {
        Some((code @ (200 | 503), _)) => ok.push(format!("{label}: /health/ready answers ({code})")),
        other => bad.push(format!(
            "{label}: /health/ready answered {other:?} (expected 200 or 503)"
        )),
    }
    if let Some(api) = api_port {
        // The API port serves /health/* too (DESIGN: serve answers them on both).
        let mut live = None;
        for _ in 0..50 {
            live = http_get(api, "/health/live").map(|(code, _)| code);
            if live == Some(200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if live == Some(200) {
            ok.push(format!("{label}: API port (PORT={api}) /health/live 200"));
        } else {
            bad.push(format!(
                "{label}: /health/live on the API port PORT={api} answered {live:?}"
            ));
        }
    }
    let body = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let exposed: BTreeSet<String> = samples(&body)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("tributary_"))
        .collect();
    let unknown: Vec<&String> = exposed
        .iter()
        .filter(|n| {
            ["tributary_chain_", "tributary_sink_", "tributary_serve_"]
                .iter()
                .any(|p| n.starts_with(p))
                && !known.series.contains_key(*n)
        })
        .collect();
    if exposed.is_empty() {
        bad.push(format!("{label}: /metrics has no tributary_* series"));
    } else if !unknown.is_empty() {
        bad.push(format!(
            "{label}: /metrics exposes chain, sink or serve series the code does not register: {unknown:?}"
        ));
    } else {
        ok.push(format!("{label}: /metrics: {} tributary_* series", exposed.len()));
    }
    if let Ok(Some(st)) = child.try_wait() {
        bad.push(format!("{label}: exited ({st}) on its own: {}", tail(&log)));
    } else {
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut stopped = false;
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if stopped {
            ok.push(format!("{label}: stops {} ms after SIGTERM", t0.elapsed().as_millis()));
        } else {
            bad.push(format!(
                "{label}: still running 30 s after SIGTERM (terminationGracePeriodSeconds is 30)"
            ));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (bad, ok)
}

#[test]
fn binaries_run_as_manifests_say() {
    // Static findings are manifests_match_binaries' to report; these are the runs.
    let mut ignored = Vec::new();
    let (builds, help) = builds(&mut ignored);
    let known = known_metrics();
    let runnable: Vec<&Container> = builds
        .iter()
        .flat_map(|b| &b.containers)
        .filter(|c| {
            let built = matches!(help.get(&c.binary), Some(Ok(_)));
            if !built {
                println!(
                    "SKIP  {}: no runnable binary {}",
                    c.label,
                    bin_dir().join(&c.binary).display()
                );
            }
            built
        })
        .collect();
    let results: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = runnable.iter().map(|c| sc.spawn(move || live_run(c, known))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("live run thread"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut n_ok = 0;
    for (bad, ok) in results {
        for o in &ok {
            println!("ok    {o}");
        }
        n_ok += ok.len();
        failures.extend(bad);
    }
    println!(
        "live runs: {} containers run, {n_ok} checks passed, {} failed",
        runnable.len(),
        failures.len()
    );
    assert!(!runnable.is_empty(), "no binary in {} to run", bin_dir().display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each fault planted in the dev build must give a static finding: the manifest checks
/// still catch what they claim to.
#[test]
fn manifest_checks_catch_seeded_faults() {
    let mut ignored = Vec::new();
    let help = helps();
    let defaults = default_ports(&help, &mut ignored);
    let docs = kustomize("dev");
    let users = |d: &Value| s(d, "kind") == "StatefulSet" && d.pointer("/metadata/name") == Some(&json!("users"));
    let container = "/spec/template/spec/containers/0";
    type Plant = fn(&mut Value);
    let seeded: &[(&str, &str, Plant)] = &[
        ("probes", "livenessProbe: path", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = json!("/healthz")
        }),
        ("ports", "readinessProbe: port", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = json!(1234)
        }),
        ("security", "readOnlyRootFilesystem", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false)
        }),
        ("security", "runAsUser", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("resources", "no memory limit", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                .as_object_mut()
                .map(|m| m.remove("memory"));
        }),
        ("chains", "replicas is set", |d| d["spec"]["replicas"] = json!(3)),
        ("chains", "INSTANCE_ID", |d| {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env");
            env.retain(|e| s(e, "name") != "INSTANCE_ID");
        }),
        ("config", "--config", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = json!([]);
        }),
        ("secrets", "literal value", |d| {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env");
            env.push(json!({"name": "KAFKA_PROP_SASL_PASSWORD", "value": "hunter2"}));
        }),
        ("grace", "terminationGracePeriodSeconds", |d| {
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(5)
        }),
    ];
    assert!(docs.iter().any(users), "no StatefulSet users in the dev build");
    assert!(docs
        .iter()
        .find(|d| users(d))
        .and_then(|d| d.pointer(container))
        .is_some());
    let mut failed = Vec::new();
    for (what, expect, plant) in seeded {
        let mut docs = docs.clone();
        plant(docs.iter_mut().find(|d| users(d)).expect("users"));
        let b = check_build("dev", &docs, &defaults);
        let errors: Vec<&String> = b
            .containers
            .iter()
            .filter(|c| c.binary == "users")
            .flat_map(|c| &c.errors)
            .collect();
        if !errors.iter().any(|e| e.contains(expect)) {
            failed.push(format!("{what}: no finding with {expect:?}: {errors:?}"));
        }
    }
    // The Pushgateway's faults are findings of the build as a whole.
    fn named(d: &Value, kind: &str, name: &str) -> bool {
        s(d, "kind") == kind && d.pointer("/metadata/name") == Some(&json!(name))
    }
    type PlantAll = fn(&mut Vec<Value>);
    let pushgateway_faults: &[(&str, &str, PlantAll)] = &[
        ("honorLabels", "without honorLabels", |docs| {
            for d in docs
                .iter_mut()
                .filter(|d| named(d, "ServiceMonitor", "tributary-pushgateway"))
            {
                d["spec"]["endpoints"][0]["honorLabels"] = json!(false);
            }
        }),
        ("image", "pinned tag", |docs| {
            for d in docs.iter_mut().filter(|d| named(d, "Deployment", "pushgateway")) {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("prom/pushgateway:latest");
            }
        }),
        ("airflow", "TRIBUTARY_PUSHGATEWAY", |docs| {
            for d in docs.iter_mut().filter(|d| named(d, "ConfigMap", "tributary-airflow")) {
                d["data"]["TRIBUTARY_PUSHGATEWAY"] = json!("http://elsewhere:9091");
            }
        }),
    ];
    for (what, expect, plant) in pushgateway_faults {
        let mut docs = docs.clone();
        plant(&mut docs);
        let b = check_build("dev", &docs, &defaults);
        if !b.errors.iter().any(|e| e.contains(expect)) {
            failed.push(format!(
                "pushgateway {what}: no finding with {expect:?}: {:?}",
                b.errors
            ));
        }
    }
    // serve: its Secret files and its API port.
    let serve = |d: &Value| s(d, "kind") == "Deployment" && d.pointer("/metadata/name") == Some(&json!("serve"));
    let serve_faults: &[(&str, &str, Plant)] = &[
        ("secret file", "GRANTS_KEK_FILE has a literal value", |d| {
            for v in d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .expect("volumes")
            {
                if v.get("secret")
                    .is_some_and(|s| s["secretName"] == json!("tributary-grants-kek"))
                {
                    *v = json!({"name": v["name"].clone(), "emptyDir": {}});
                }
            }
        }),
        ("api port", "API port", |d| {
            let c = &mut d["spec"]["template"]["spec"]["containers"][0];
            c["ports"]
                .as_array_mut()
                .expect("ports")
                .retain(|p| p["containerPort"] != json!(8090));
        }),
    ];
    if docs.iter().any(serve) {
        for (what, expect, plant) in serve_faults {
            let mut docs = docs.clone();
            plant(docs.iter_mut().find(|d| serve(d)).expect("serve"));
            let b = check_build("dev", &docs, &defaults);
            let errors: Vec<&String> = b
                .containers
                .iter()
                .filter(|c| c.binary == "serve")
                .flat_map(|c| &c.errors)
                .collect();
            if !errors.iter().any(|e| e.contains(expect)) {
                failed.push(format!("serve {what}: no finding with {expect:?}: {errors:?}"));
            }
        }
    } else {
        failed.push("no Deployment serve in the dev build".into());
    }
    let n = seeded.len() + pushgateway_faults.len() + serve_faults.len();
    println!("manifest self-test: {} of {n} seeded faults caught", n - failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The secure setup is the rendered one: every workload of every overlay turns local mode off
/// explicitly (the only mode with built-in tenants, tokens and keys); in prod the gateway and serve take
/// their tenants' tokens, and serve its grants KEK, from files of mounted Secrets, and the
/// gateway requires provider signatures with its providers' secrets from a Secret too.
#[test]
fn overlays_never_run_in_local_mode_and_prod_takes_credentials_from_secrets() {
    let mut ignored = Vec::new();
    let (builds, _) = builds(&mut ignored);
    let mut failures = Vec::new();
    for b in &builds {
        for c in &b.containers {
            if c.env.get("TRIBUTARY_LOCAL").map(String::as_str) != Some("0") {
                failures.push(format!(
                    "{}: TRIBUTARY_LOCAL is {:?}, not 0",
                    c.label,
                    c.env.get("TRIBUTARY_LOCAL")
                ));
            }
        }
    }
    let prod: Vec<&Container> = builds
        .iter()
        .filter(|b| b.overlay == "prod")
        .flat_map(|b| &b.containers)
        .collect();
    let mut want = |binary: &str, files: &[&str], literal: &[(&str, &str)]| {
        let found: Vec<&&Container> = prod.iter().filter(|c| c.binary == binary).collect();
        if found.is_empty() {
            failures.push(format!("prod: no {binary} container"));
        }
        for c in found {
            for f in files {
                if !c.secret_files.contains(*f) {
                    failures.push(format!("{}: {f} is not a file of a mounted Secret", c.label));
                }
            }
            for (k, v) in literal {
                if c.env.get(*k).map(String::as_str) != Some(*v) {
                    failures.push(format!("{}: {k} is {:?}, not {v}", c.label, c.env.get(*k)));
                }
            }
        }
    };
    want(
        "ingest",
        &["TENANT_TOKENS_FILE", "TRIBUTARY_CONFIG"],
        &[("REQUIRE_PROVIDER_SIGNATURES", "true")],
    );
    want("serve", &["TENANT_TOKENS_FILE", "GRANTS_KEK_FILE"], &[]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
