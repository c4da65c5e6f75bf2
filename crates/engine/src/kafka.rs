//! Kafka pieces the chain services and the sink share: client settings and the shape of a
//! dead-lettered record.

use rdkafka::config::ClientConfig;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use std::collections::BTreeMap;

/// `bootstrap.servers` and every librdkafka setting of the service's configuration (its
/// `KAFKA_*` variables); what the service sets on the result afterwards wins.
pub fn client_config(bootstrap: &str, settings: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        c.set(k, v);
    }
    c
}

/// The librdkafka properties among environment variables: `KAFKA_PROP_<NAME>` is the
/// property with dots as underscores (`KAFKA_PROP_SECURITY_PROTOCOL` → `security.protocol`).
pub fn props_from_env<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    env.into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("KAFKA_PROP_")
                .map(|p| (p.to_ascii_lowercase().replace('_', "."), v.clone()))
        })
        .collect()
}

/// A partition's watermarks, waiting out (up to `patience`, backing off to 2 s) what a
/// partition just created or whose leader moves answers for a while (NotLeaderForPartition);
/// gives up early once `stop` says so.
pub fn watermarks_patiently<C: rdkafka::consumer::ConsumerContext>(
    c: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
    patience: std::time::Duration,
    stop: &dyn Fn() -> bool,
) -> rdkafka::error::KafkaResult<(i64, i64)> {
    use rdkafka::consumer::Consumer;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + patience;
    let mut wait = Duration::from_millis(100);
    loop {
        match c.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() < deadline && !stop() => {
                tracing::debug!(topic, partition, error = %e, "Watermarks not available yet; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The DLQ record for `m`: its key and payload byte for byte, its headers, and headers saying
/// why (`error.class`, `error.reason`, `error.time` in µs since the epoch) and where it came
/// from (`source.topic`, `source.partition`, `source.offset`).
pub fn dead_letter<'a>(
    m: &'a BorrowedMessage<'_>,
    dlq_topic: &'a str,
    class: &str,
    reason: &str,
) -> BaseRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let (partition, offset, time) = (
        m.partition().to_string(),
        m.offset().to_string(),
        crate::normalize::now_micros().to_string(),
    );
    for (k, v) in [
        ("error.class", class),
        ("error.reason", reason),
        ("error.time", time.as_str()),
        ("source.topic", m.topic()),
        ("source.partition", partition.as_str()),
        ("source.offset", offset.as_str()),
    ] {
        headers = headers.insert(Header { key: k, value: Some(v) });
    }
    let mut rec = BaseRecord::<[u8], [u8]>::to(dlq_topic).headers(headers);
    if let Some(k) = m.key() {
        rec = rec.key(k);
    }
    if let Some(v) = m.payload() {
        rec = rec.payload(v);
    }
    rec
}
