//! The gateway's Prometheus metrics. Label values are bounded: routes and providers are
//! fixed names, chains the five, status the HTTP code.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `route` (`webhook`, `upload`), `provider` (a provider, or `csv`/`json` for uploads), `status`.
    pub requests: IntCounterVec,
    /// Records acknowledged by Kafka, per `provider` (or upload format) and `chain`.
    pub events: IntCounterVec,
    /// Upload lines refused before Kafka, per `format`.
    pub rejected_lines: IntCounterVec,
    pub latency: HistogramVec,
    /// Requests answered 503 before or instead of their handler, per `reason`: `overload`
    /// (at max_concurrent_requests) or `timeout` (past request_timeout). Not in `requests`.
    pub shed: IntCounterVec,
    /// Mailgun signatures forgotten before their window ended because the replay cache was full.
    pub replay_evictions: IntCounter,
    pub ready: IntGauge,
    /// `tributary_service_ready{service="ingest"}`, the readiness gauge every service has.
    pub service_ready: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("tributary_ingest_requests_total", "HTTP requests answered"),
            &["route", "provider", "status"],
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_events_total",
                "Raw records Kafka acknowledged, per source and chain",
            ),
            &["provider", "chain"],
        )
        .expect("valid metric");
        let rejected_lines = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_rejected_lines_total",
                "Upload lines refused by the gateway",
            ),
            &["format"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tributary_ingest_request_duration_seconds",
                "Time from request to answer, Kafka acknowledgements included",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
            ]),
            &["route", "provider"],
        )
        .expect("valid metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "tributary_ingest_shed_total",
                "Requests answered 503 by the gateway's limits: overload (max_concurrent_requests) or timeout (request_timeout)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let replay_evictions = IntCounter::new(
            "tributary_ingest_replay_cache_evictions_total",
            "Mailgun signatures forgotten early because the replay cache was full (REPLAY_CACHE_ENTRIES)",
        )
        .expect("valid metric");
        let ready = IntGauge::new("tributary_ingest_ready", "1 when Kafka answers").expect("valid metric");
        registry
            .register(Box::new(replay_evictions.clone()))
            .expect("unique metric");
        for c in [&requests, &events, &rejected_lines, &shed] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(latency.clone())).expect("unique metric");
        registry.register(Box::new(ready.clone())).expect("unique metric");
        let service_ready =
            tributary_engine::metrics::ready_gauge("tributary_service_ready", "ingest").expect("valid metric");
        registry
            .register(Box::new(service_ready.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            requests,
            events,
            rejected_lines,
            latency,
            shed,
            replay_evictions,
            ready,
            service_ready,
        }
    }

    /// Readiness (Kafka answers), in both gauges.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
        self.service_ready.set(i64::from(ready));
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
