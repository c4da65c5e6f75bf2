//! Metrics of a chain service and the HTTP server for `/metrics`, `/health/live` and
//! `/health/ready`. Counters are added per transaction, not per record, to keep the hot path
//! free of atomics.

use crate::error::ErrorClass;
use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub mod text;

#[derive(Clone)]
pub struct ChainMetrics {
    pub registry: Registry,
    /// Records by outcome: clean, dlq, duplicate.
    pub records: IntCounterVec,
    /// Dead-lettered records by reason class.
    pub dlq: IntCounterVec,
    /// Dead letters whose payload was replaced by a summary: too large for the DLQ whole.
    pub dlq_truncated: IntCounter,
    /// Late records (older than the window, let through).
    pub late: IntCounter,
    pub commit_seconds: Histogram,
    pub batch_records: Histogram,
    pub transactions: IntCounterVec,
    pub state_keys: IntGaugeVec,
    pub state_bytes: IntGaugeVec,
    pub restore_seconds: HistogramVec,
    /// Duration of each partition's last restore: a histogram's increase cannot show the
    /// restores a process makes before its first scrape (at start-up), this gauge does.
    pub last_restore_seconds: GaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub ingest_to_clean_seconds: Histogram,
    pub assigned_partitions: IntGauge,
    /// `tributary_service_ready{service}`: 1 while `/health/ready` answers 200.
    pub ready: IntGauge,
}

impl ChainMetrics {
    pub fn new(chain: &'static str) -> Self {
        let registry = Registry::new_custom(
            Some("tributary".into()),
            Some([("chain".to_owned(), chain.to_owned())].into()),
        )
        .expect("valid registry prefix");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric registered once");
                m
            }};
        }
        let secs = |name: &str, help: &str, start: f64| {
            HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, 16).expect("buckets"))
        };
        let m = ChainMetrics {
            records: reg!(IntCounterVec::new(
                Opts::new("chain_records_total", "Input records by outcome"),
                &["outcome"]
            )),
            dlq: reg!(IntCounterVec::new(
                Opts::new("chain_dlq_records_total", "Dead-lettered records by reason class"),
                &["reason"]
            )),
            dlq_truncated: reg!(IntCounter::new(
                "chain_dlq_truncated_records_total",
                "Dead letters too large for the DLQ whole, sent as a summary in place of the payload"
            )),
            late: reg!(IntCounter::new(
                "chain_late_records_total",
                "Records older than the dedup window, let through"
            )),
            commit_seconds: reg!(Histogram::with_opts(secs(
                "chain_commit_duration_seconds",
                "Transaction commit latency",
                0.001
            ))),
            batch_records: reg!(Histogram::with_opts(
                HistogramOpts::new("chain_batch_records", "Input records per transaction")
                    .buckets(exponential_buckets(1.0, 4.0, 10).expect("buckets"))
            )),
            transactions: reg!(IntCounterVec::new(
                Opts::new("chain_transactions_total", "Transactions by result"),
                &["result"]
            )),
            state_keys: reg!(IntGaugeVec::new(
                Opts::new("chain_dedup_state_keys", "Keys in dedup state"),
                &["partition"]
            )),
            state_bytes: reg!(IntGaugeVec::new(
                Opts::new("chain_dedup_state_bytes", "Bytes held by dedup state"),
                &["partition"]
            )),
            restore_seconds: reg!(HistogramVec::new(
                secs("chain_state_restore_duration_seconds", "Dedup state restore time", 0.01),
                &["partition"]
            )),
            last_restore_seconds: reg!(GaugeVec::new(
                Opts::new(
                    "chain_state_last_restore_duration_seconds",
                    "Duration of the partition's last dedup state restore"
                ),
                &["partition"]
            )),
            consumer_lag: reg!(IntGaugeVec::new(
                Opts::new("chain_consumer_lag_records", "Records behind the raw topic's end"),
                &["partition"]
            )),
            ingest_to_clean_seconds: reg!(Histogram::with_opts(secs(
                "chain_ingest_to_clean_seconds",
                "From the raw record's Kafka timestamp to its clean commit",
                0.005
            ))),
            assigned_partitions: reg!(IntGauge::new("chain_assigned_partitions", "Input partitions owned")),
            ready: reg!(ready_gauge("service_ready", chain)),
            registry,
        };
        for outcome in ["clean", "dlq", "duplicate"] {
            m.records.with_label_values(&[outcome]);
        }
        for c in ErrorClass::ALL {
            m.dlq.with_label_values(&[c.as_str()]);
        }
        for r in ["committed", "aborted"] {
            m.transactions.with_label_values(&[r]);
        }
        m
    }
}

/// Per-transaction tallies, added to the counters when the transaction commits.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    pub received: u64,
    pub clean: u64,
    pub dlq: u64,
    pub duplicate: u64,
    pub late: u64,
    pub dlq_truncated: u64,
    pub dlq_by_class: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn publish(&self, m: &ChainMetrics) {
        m.records.with_label_values(&["clean"]).inc_by(self.clean);
        m.records.with_label_values(&["dlq"]).inc_by(self.dlq);
        m.records.with_label_values(&["duplicate"]).inc_by(self.duplicate);
        m.late.inc_by(self.late);
        m.dlq_truncated.inc_by(self.dlq_truncated);
        for (class, n) in &self.dlq_by_class {
            m.dlq.with_label_values(&[class]).inc_by(*n);
        }
        m.batch_records.observe(self.received as f64);
    }
}

/// The readiness gauge of a service (`<prefix>service_ready{service}`, 1 or 0): `name` is
/// `service_ready` in a registry with the prefix `tributary`, `tributary_service_ready` in
/// one without.
pub fn ready_gauge(name: &str, service: &str) -> prometheus::Result<IntGauge> {
    IntGauge::with_opts(
        Opts::new(name, "1 while the service is ready (its /health/ready answers 200)").const_label("service", service),
    )
}

/// Readiness: set once the producer is initialised and every assigned partition's state is
/// restored; cleared while a restore runs. With a gauge (`Health::with_gauge`), every change
/// is also published as `tributary_service_ready`.
///
/// Liveness: a service whose work loop calls [`Health::beat`] is live while it beats; once
/// it has not for [`STALL_AFTER`], `/health/live` answers 503 and the orchestrator restarts
/// it (the loop is wedged: a commit that never returns, a deadlock). A service that never
/// beats is live while its HTTP server answers.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    gauge: Option<IntGauge>,
    /// Unix milliseconds of the last beat; 0 before the first.
    beat: Arc<std::sync::atomic::AtomicU64>,
}

/// How long a beating loop may stand still before the service is no longer live: longer than
/// any restore, commit or registry wait the loop rides out on its own.
pub const STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    pub fn with_gauge(gauge: IntGauge) -> Health {
        gauge.set(0);
        Health {
            ready: Arc::default(),
            gauge: Some(gauge),
            beat: Arc::default(),
        }
    }

    /// The work loop turned.
    pub fn beat(&self) {
        self.beat.store(unix_ms(), Ordering::Relaxed);
    }

    /// [`Health::beat`] with the caller's reading of the clock, in milliseconds since the epoch.
    pub fn beat_at(&self, unix_ms: i64) {
        self.beat.store(unix_ms.max(0) as u64, Ordering::Relaxed);
    }

    /// [`Health::stalled_for`] now.
    pub fn stalled(&self) -> Option<std::time::Duration> {
        self.stalled_for(unix_ms())
    }

    /// How long the loop has stood still, when that is longer than [`STALL_AFTER`] at `now_ms`.
    pub fn stalled_for(&self, now_ms: u64) -> Option<std::time::Duration> {
        let last = self.beat.load(Ordering::Relaxed);
        let still = now_ms.saturating_sub(last);
        (last > 0 && still > STALL_AFTER.as_millis() as u64).then(|| std::time::Duration::from_millis(still))
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        if let Some(g) = &self.gauge {
            g.set(i64::from(ready));
        }
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Serves the endpoints until `shutdown` is cancelled, on its own thread and runtime so the
/// blocking consume loop never starves it.
pub fn serve(
    port: u16,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use axum::{http::StatusCode, routing::get, Router};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut buf = Vec::new();
                        let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
                        let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
                        ([("content-type", "text/plain; version=0.0.4")], buf)
                    }
                }),
            )
            .route("/health/live", {
                let health = health.clone();
                get(move || {
                    let stalled = health.stalled();
                    async move {
                        match stalled {
                            None => (StatusCode::OK, "live\n".to_owned()),
                            Some(d) => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not live: the work loop has not turned for {} s\n", d.as_secs()),
                            ),
                        }
                    }
                })
            })
            .route(
                "/health/ready",
                get(move || {
                    let ready = health.is_ready();
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            );
        rt.block_on(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_until_the_beating_loop_stands_still_too_long() {
        let h = Health::default();
        assert_eq!(
            h.stalled_for(unix_ms() + 10 * STALL_AFTER.as_millis() as u64),
            None,
            "never beat: live"
        );
        h.beat();
        let now = unix_ms();
        assert_eq!(h.stalled_for(now), None);
        assert_eq!(h.stalled_for(now + STALL_AFTER.as_millis() as u64 - 1000), None);
        let stalled = h
            .stalled_for(now + STALL_AFTER.as_millis() as u64 + 5000)
            .expect("stalled");
        assert!(stalled > STALL_AFTER, "{stalled:?}");
        h.beat();
        assert_eq!(h.stalled_for(unix_ms()), None, "a beat makes it live again");
    }
}
