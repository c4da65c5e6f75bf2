//! The read side's metrics (`tributary_serve_*`). Label values are bounded: endpoints are
//! the routes' names, statuses the HTTP codes, topics the five clean topics.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub checked: IntCounter,
    pub addresses: IntGauge,
    pub applied: IntCounterVec,
    pub lag: IntGaugeVec,
    pub lake_events: IntGauge,
    pub lake_seconds: Gauge,
    pub gap_records: IntCounter,
    pub rate_limited: IntCounter,
    pub audit_records: IntCounter,
    pub ready: IntGauge,
    pub grants: IntGauge,
    /// Rows of each shared table (label values: grant ids, which are few, and chains).
    pub share_rows: IntGaugeVec,
    /// Delta Sharing requests answered, by grant (`none` before a token is known) and endpoint.
    pub share_requests: IntCounterVec,
    /// Delta Sharing requests refused, by grant (`none`: no or an unknown token) and reason.
    pub share_refusals: IntCounterVec,
    /// Refreshes of the shared tables, by outcome (`ok`, `error`).
    pub share_refreshes: IntCounterVec,
    /// Shared files written or deleted, by kind (`added`, `rewritten`, `removed`).
    pub share_files: IntCounterVec,
    /// How long the last refresh of the shared tables took.
    pub share_refresh_seconds: Gauge,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new_custom(Some("tributary".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("serve_requests_total", "Requests answered, by endpoint and status"),
            &["endpoint", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("serve_request_duration_seconds", "Time to answer, by endpoint").buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            &["endpoint"],
        )?;
        let checked = IntCounter::new("serve_addresses_checked_total", "Addresses checked, single and bulk")?;
        let addresses = IntGauge::new("serve_state_addresses", "Addresses the view holds, over all tenants")?;
        let applied = IntCounterVec::new(
            Opts::new(
                "serve_events_applied_total",
                "Clean events folded into the view from the topics, by chain",
            ),
            &["chain"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "serve_lag_records",
                "Records of a clean topic not yet folded into the view",
            ),
            &["topic"],
        )?;
        let lake_events = IntGauge::new("serve_lake_events", "Events read from the lake at start")?;
        let lake_seconds = Gauge::new("serve_lake_load_seconds", "How long reading the lake took at start")?;
        let gap_records = IntCounter::new(
            "serve_gap_records_total",
            "Clean records expired from a topic before the lake held them (missing from the view)",
        )?;
        let rate_limited = IntCounter::new("serve_rate_limited_total", "Requests refused with 429")?;
        let audit_records = IntCounter::new(
            "serve_audit_records_total",
            "Audit log records of reads of personal data",
        )?;
        let ready = tributary_engine::metrics::ready_gauge("service_ready", "serve")?;
        let grants = IntGauge::new(
            "serve_grants",
            "Live grants (not revoked; expired ones included until used)",
        )?;
        let share_rows = IntGaugeVec::new(
            Opts::new("serve_share_rows", "Rows of each shared table, by grant and table"),
            &["grant", "table"],
        )?;
        let share_requests = IntCounterVec::new(
            Opts::new(
                "serve_share_requests_total",
                "Delta Sharing requests, by grant and endpoint",
            ),
            &["grant", "endpoint"],
        )?;
        let share_refusals = IntCounterVec::new(
            Opts::new(
                "serve_share_refusals_total",
                "Delta Sharing requests refused, by grant and reason",
            ),
            &["grant", "reason"],
        )?;
        let share_refreshes = IntCounterVec::new(
            Opts::new(
                "serve_share_refreshes_total",
                "Refreshes of the shared tables, by outcome",
            ),
            &["outcome"],
        )?;
        let share_files = IntCounterVec::new(
            Opts::new(
                "serve_share_files_total",
                "Shared files added, rewritten (someone withheld) or removed (source gone)",
            ),
            &["kind"],
        )?;
        let share_refresh_seconds = Gauge::new(
            "serve_share_refresh_seconds",
            "How long the last refresh of the shared tables took",
        )?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(checked.clone()),
            Box::new(addresses.clone()),
            Box::new(applied.clone()),
            Box::new(lag.clone()),
            Box::new(lake_events.clone()),
            Box::new(lake_seconds.clone()),
            Box::new(gap_records.clone()),
            Box::new(rate_limited.clone()),
            Box::new(audit_records.clone()),
            Box::new(ready.clone()),
            Box::new(grants.clone()),
            Box::new(share_rows.clone()),
            Box::new(share_requests.clone()),
            Box::new(share_refusals.clone()),
            Box::new(share_refreshes.clone()),
            Box::new(share_files.clone()),
            Box::new(share_refresh_seconds.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            checked,
            addresses,
            applied,
            lag,
            lake_events,
            lake_seconds,
            gap_records,
            rate_limited,
            audit_records,
            ready,
            grants,
            share_rows,
            share_requests,
            share_refusals,
            share_refreshes,
            share_files,
            share_refresh_seconds,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
