//! Metrics of the sink: rows and bytes committed per table, commit latency, files and their
//! sizes, retries and conflicts, dead letters, the offset lag of each table behind its clean
//! topic, the time of each table's last commit and readiness.
//!
//! Labels are bounded: `table` is one of the five chains, `partition` a clean topic's
//! partition, `result` one of `RESULTS`.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;
use tributary_lake::CommitSummary;

#[derive(Clone)]
pub struct SinkMetrics {
    pub registry: Registry,
    pub rows: IntCounterVec,
    pub bytes: IntCounterVec,
    pub files: IntCounterVec,
    pub file_bytes: HistogramVec,
    pub commit_seconds: HistogramVec,
    pub commits: IntCounterVec,
    pub retries: IntCounterVec,
    pub dlq: IntCounter,
    /// Waits for a registry that did not answer (each a backoff before asking again).
    pub registry_waits: IntCounter,
    /// Records of a clean topic partition not yet in its table, by `table` and `partition`.
    pub lag: IntGaugeVec,
    /// From the oldest waiting record's Kafka timestamp to the commit that holds it.
    pub commit_latency: HistogramVec,
    pub last_commit: GaugeVec,
    /// `tributary_service_ready{service="sink"}`.
    pub ready: IntGauge,
}

/// The values of the `result` label of `tributary_sink_commits_total`.
pub const RESULTS: [&str; 3] = ["committed", "conflict", "failed"];

impl SinkMetrics {
    /// The sink's metrics, with a zero-valued series of every counter for each of `tables`
    /// (so a rate or a ratio has data before the first retry or conflict).
    pub fn new(tables: &[String]) -> Self {
        let registry = Registry::new_custom(Some("tributary".into()), None).expect("valid prefix");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric");
                registry.register(Box::new(m.clone())).expect("registered once");
                m
            }};
        }
        let m = SinkMetrics {
            rows: reg!(IntCounterVec::new(
                Opts::new("sink_rows_total", "Rows committed to the lake"),
                &["table"]
            )),
            bytes: reg!(IntCounterVec::new(
                Opts::new("sink_bytes_total", "Parquet bytes committed"),
                &["table"]
            )),
            files: reg!(IntCounterVec::new(
                Opts::new("sink_files_total", "Parquet files committed"),
                &["table"]
            )),
            file_bytes: reg!(HistogramVec::new(
                HistogramOpts::new("sink_file_size_bytes", "Sizes of committed Parquet files")
                    .buckets(exponential_buckets(4096.0, 4.0, 10).expect("buckets")),
                &["table"]
            )),
            commit_seconds: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "sink_commit_duration_seconds",
                    "Delta commit latency (write and commit)"
                )
                .buckets(exponential_buckets(0.005, 2.0, 14).expect("buckets")),
                &["table"]
            )),
            commits: reg!(IntCounterVec::new(
                Opts::new("sink_commits_total", "Commits by result"),
                &["table", "result"]
            )),
            retries: reg!(IntCounterVec::new(
                Opts::new("sink_retries_total", "Commit retries"),
                &["table"]
            )),
            dlq: reg!(IntCounter::new("sink_dlq_records_total", "Records sent to dlq.sink")),
            registry_waits: reg!(IntCounter::new(
                "sink_registry_waits_total",
                "Backoffs waiting for a schema registry that did not answer"
            )),
            lag: reg!(IntGaugeVec::new(
                Opts::new(
                    "sink_offset_lag_records",
                    "Records of a clean topic partition not yet in its table"
                ),
                &["table", "partition"]
            )),
            commit_latency: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "sink_ingest_to_lake_seconds",
                    "From clean record to lake commit (oldest row of a commit)"
                )
                .buckets(exponential_buckets(0.01, 2.0, 14).expect("buckets")),
                &["table"]
            )),
            last_commit: reg!(GaugeVec::new(
                Opts::new(
                    "sink_last_commit_timestamp_seconds",
                    "Unix time of the table's last commit by this sink"
                ),
                &["table"]
            )),
            ready: reg!(tributary_engine::metrics::ready_gauge("service_ready", "sink")),
            registry,
        };
        for t in tables {
            for c in [&m.rows, &m.bytes, &m.files, &m.retries] {
                c.with_label_values(&[t]);
            }
            for r in RESULTS {
                m.commits.with_label_values(&[t, r]);
            }
        }
        m
    }

    /// The text exposition of every series the sink can expose (one child of each labelled
    /// metric, for table `users`): what `sink --list-metrics` prints, for the checks of the
    /// dashboards and alert rules in tests/tests/deploy/ (metrics.rs, dashboards.rs).
    pub fn catalog() -> String {
        let m = SinkMetrics::new(&["users".to_owned()]);
        m.file_bytes.with_label_values(&["users"]);
        m.commit_seconds.with_label_values(&["users"]);
        m.lag.with_label_values(&["users", "0"]);
        m.commit_latency.with_label_values(&["users"]);
        m.last_commit.with_label_values(&["users"]);
        m.render()
    }

    /// The text exposition of the registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// A commit's latency from its oldest record's Kafka timestamp.
    pub fn latency(&self, table: &str, secs: f64) {
        self.commit_latency.with_label_values(&[table]).observe(secs);
    }

    pub fn committed(&self, table: &str, s: &CommitSummary, took: Duration) {
        self.rows.with_label_values(&[table]).inc_by(s.rows as u64);
        self.bytes.with_label_values(&[table]).inc_by(s.bytes);
        self.files.with_label_values(&[table]).inc_by(s.files as u64);
        for f in &s.file_sizes {
            self.file_bytes.with_label_values(&[table]).observe(*f as f64);
        }
        self.commit_seconds
            .with_label_values(&[table])
            .observe(took.as_secs_f64());
        self.commits.with_label_values(&[table, "committed"]).inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_commit.with_label_values(&[table]).set(now);
    }
}
