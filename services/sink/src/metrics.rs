//! Metrics of the sink: rows and bytes committed per table, commit latency, files and their
//! sizes, retries, dead letters and the offset lag of each clean topic behind the sink.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
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
    pub lag: IntGaugeVec,
    pub commit_latency: Histogram,
}

impl SinkMetrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("tributary".into()), None).expect("valid prefix");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric");
                registry.register(Box::new(m.clone())).expect("registered once");
                m
            }};
        }
        SinkMetrics {
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
            lag: reg!(IntGaugeVec::new(
                Opts::new(
                    "sink_offset_lag_records",
                    "Records of a clean topic partition not yet in its table"
                ),
                &["topic", "partition"]
            )),
            commit_latency: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "sink_ingest_to_lake_seconds",
                    "From clean record to lake commit (oldest row of a commit)"
                )
                .buckets(exponential_buckets(0.01, 2.0, 14).expect("buckets"))
            )),
            registry,
        }
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
    }

    pub fn update_lag<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let Ok(pos) = consumer.position() else { return };
        for el in pos.elements() {
            if let (Some(at), Ok((_, high))) = (
                el.offset().to_raw(),
                consumer.fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(3)),
            ) {
                self.lag
                    .with_label_values(&[el.topic(), &el.partition().to_string()])
                    .set((high - at).max(0));
            }
        }
    }
}
