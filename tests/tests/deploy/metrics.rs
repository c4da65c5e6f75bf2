//! What the services and jobs expose: the metric catalogs the dashboards and rules are checked against.

use super::*;

/// What the services and jobs expose: `ChainMetrics` itself, the sink's registry and the
/// jobs' pushed metrics.
pub(crate) struct Known {
    /// Series name (with `_bucket`, `_sum`, `_count` for histograms) to its label names.
    pub(crate) series: BTreeMap<String, BTreeSet<String>>,
    /// (series, label) to the values the engine initialises (labels such as `outcome`).
    pub(crate) values: BTreeMap<(String, String), BTreeSet<String>>,
}

/// Series name and labels of each sample line of the text exposition format.
pub(crate) fn samples(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    tributary_engine::metrics::text::parse(text)
        .into_iter()
        .map(|s| (s.name, s.labels.into_iter().collect()))
        .collect()
}

pub(crate) fn known_metrics() -> &'static Known {
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
pub(crate) fn sink_catalog() -> String {
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
pub(crate) fn serve_catalog() -> String {
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
pub(crate) fn ingest_catalog() -> String {
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
pub(crate) fn catalog_from_source(
    service: &str,
    file: &str,
    quoted_prefix: &str,
    series_prefix: &str,
    ready: &str,
) -> String {
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
