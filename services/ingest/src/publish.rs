//! Publishing to the raw topics. One idempotent producer with `acks=all`: a record counts as
//! published only once every in-sync replica has it, and retries never duplicate or reorder
//! within a partition. Callers await each record's delivery before answering 2xx, so an
//! accepted request is never lost to a gateway crash.

use crate::config::Settings;
use crate::error::{Error, Result};
use rdkafka::message::Header;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;
use tributary_engine::topics;

pub struct Publisher {
    producer: FutureProducer,
    namespace: String,
}

/// One record's headers.
pub struct Meta<'a> {
    pub tenant: &'a str,
    pub source: &'a str,
    pub request_id: &'a str,
    pub csv_header: Option<&'a [u8]>,
}

impl Publisher {
    pub fn new(s: &Settings) -> Result<Publisher> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &s.kafka_bootstrap)
            .set("linger.ms", "5")
            .set("compression.type", "zstd")
            .set("message.timeout.ms", s.delivery_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in &s.kafka {
            cfg.set(k, v);
        }
        // Last, so no property can weaken them.
        cfg.set("enable.idempotence", "true").set("acks", "all");
        let producer = cfg
            .create()
            .map_err(|e| Error::Config(format!("creating the Kafka producer: {e}")))?;
        Ok(Publisher {
            producer,
            namespace: s.topic_namespace.clone(),
        })
    }

    pub fn topic(&self, chain: &str) -> String {
        topics::namespaced(&self.namespace, &topics::raw(chain))
    }

    /// Hands one record to the producer; the future resolves when Kafka acknowledges it.
    /// Waits (without blocking the runtime) while the producer's queue is full.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8], meta: &Meta<'_>) -> Result<DeliveryFuture> {
        let mut headers = tributary_engine::kafka::raw_headers(meta.tenant, meta.source).insert(Header {
            key: "request-id",
            value: Some(meta.request_id),
        });
        if let Some(h) = meta.csv_header {
            headers = headers.insert(Header {
                key: "csv-header",
                value: Some(h),
            });
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload).headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(Error::Unavailable(format!("Kafka refused a record for {topic}: {e}"))),
            }
        }
    }

    /// Whether the cluster answers a metadata request.
    pub fn reachable(&self) -> bool {
        self.producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok()
    }

    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::error!(error = %e, "Records not acknowledged at shutdown");
        }
    }
}

/// Awaits one delivery; any failure is a 503: the caller retries and the chains' dedup drops
/// what had already landed.
pub async fn delivered(f: DeliveryFuture, topic: &str) -> Result<()> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(Error::Unavailable(format!(
            "Kafka did not acknowledge a record for {topic}: {e}"
        ))),
        Err(_) => Err(Error::Unavailable(format!(
            "the Kafka producer dropped a record for {topic}"
        ))),
    }
}
