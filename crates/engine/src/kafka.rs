//! Kafka pieces the chain services and the sink share: client settings and the shape of a
//! dead-lettered record.

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

/// The chain producers' batching and compression, defaults under `settings`: lz4, not zstd,
/// because every clean record is decompressed again by the sink and `serve`, and on
/// `make bench` zstd's compression and decompression were a tenth of the chain's and the
/// sink's CPU; lz4 costs a fraction of that for somewhat larger batches on the broker.
pub const PRODUCER_DEFAULTS: [(&str, &str); 3] = [
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "1000000"),
];

/// [`client_config`] with [`PRODUCER_DEFAULTS`] wherever `settings` leave them unset: the
/// chain services' producer, and the benchmark's pass-through so that it compares like with like.
pub fn producer_config(bootstrap: &str, settings: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = client_config(bootstrap, settings);
    for (k, v) in PRODUCER_DEFAULTS {
        if c.get(k).is_none() {
            c.set(k, v);
        }
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

/// The `KAFKA_PROP_*` settings of this process's environment: the passthrough every Kafka
/// client of the project takes (the CLI's too), e.g. its SASL_SSL principal.
pub fn env_props() -> BTreeMap<String, String> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    props_from_env(&env)
}

/// [`client_config`] with this process's `KAFKA_PROP_*` settings ([`env_props`]).
pub fn env_client_config(bootstrap: &str) -> ClientConfig {
    client_config(bootstrap, &env_props())
}

/// The headers of a raw record: its tenant and its source format (what every writer of raw
/// topics sets: the gateway, the load generator, an erasure's suppression record).
pub fn raw_headers(tenant: &str, source: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "tenant",
            value: Some(tenant),
        })
        .insert(Header {
            key: "source",
            value: Some(source),
        })
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

/// Commits the producer's open transaction after [`flush_deliveries`]: rdkafka's
/// `commit_transaction` flushes first with its own 100 ms steps, so every commit took at
/// least 100 ms. Measured on the mailings chain: `commit_transaction` 101 ms per transaction
/// at 4 000 events/s before, the mean commit 9–12 ms after (bench/results/latest.md, "mean
/// transaction commit").
pub fn commit_transaction<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    flush_deliveries(producer, timeout)?;
    producer.commit_transaction(timeout)
}

/// librdkafka's own default `message.max.bytes`: the largest record (and request) a producer
/// sends unless configured otherwise.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// What a record batch adds to its records on the broker (61 bytes of batch header), with
/// room to spare: a topic takes a batch of records up to its `max.message.bytes` less this.
pub const BATCH_OVERHEAD: usize = 512;
/// The framing of one record beyond its key, value and headers as librdkafka counts it
/// against `message.max.bytes` (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`, 36 bytes), rounded up.
const RECORD_OVERHEAD: usize = 64;
/// Per header: the varints of its key and value lengths.
const HEADER_OVERHEAD: usize = 10;
/// Room kept for the summary that stands in for a payload too large to dead-letter (its
/// fields are bounded; see [`dead_letter_within`]).
pub const SUMMARY_RESERVE: usize = 16 * 1024;
/// How much of the reason a summarized dead letter carries, in characters.
const SUMMARY_REASON_CHARS: usize = 512;
/// How many leading payload bytes a summary shows (as text), and as hex.
const SUMMARY_HEAD_BYTES: usize = 256;
const SUMMARY_HEAD_HEX_BYTES: usize = 64;
/// How many names of left-out headers a summary lists (each cut to 64 characters).
const SUMMARY_HEADER_NAMES: usize = 16;

/// A consumer context for readers that set `enable.partition.eof`: reaching a partition's
/// end is what they wait for, not an error. librdkafka reports it on the polled message
/// (`KafkaError::PartitionEOF`, which the reader handles) and also hands it to the client
/// context as a `Global` error; only other errors are logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(error = %error, reason, "Kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// An upper bound of a record's size as the producer checks it against `message.max.bytes`:
/// key, value, each header `(key length, value length)`, and the framing.
pub fn record_size(key: usize, value: usize, headers: impl IntoIterator<Item = (usize, usize)>) -> usize {
    RECORD_OVERHEAD + key + value + headers.into_iter().map(|(k, v)| HEADER_OVERHEAD + k + v).sum::<usize>()
}

/// The `max.message.bytes` in effect for each of `topics` (the topic's own, or the broker's
/// `message.max.bytes` it inherits), as the broker describes them. A topic the broker does
/// not describe (missing, not allowed) is left out of the answer, with a warning.
pub fn max_message_bytes(config: &ClientConfig, topics: &[&str]) -> crate::error::Result<BTreeMap<String, usize>> {
    topic_config_numbers(config, topics, "max.message.bytes")
}

/// One numeric setting in effect for each of `topics` (`retention.ms`, `max.message.bytes`),
/// as the broker describes them; a topic it does not describe is left out, with a warning.
pub fn topic_config_numbers<N: std::str::FromStr>(
    config: &ClientConfig,
    topics: &[&str],
    key: &str,
) -> crate::error::Result<BTreeMap<String, N>>
where
    N::Err: std::fmt::Display,
{
    use crate::error::KafkaContext;
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.create().ctx("creating admin client")?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let described = rt
        .block_on(admin.describe_configs(specs.iter(), &opts))
        .ctx("describing topic configs")?;
    let mut out = BTreeMap::new();
    for (topic, r) in topics.iter().zip(described) {
        let value = r.map_err(|code| code.to_string()).and_then(|res| {
            res.get(key)
                .and_then(|e| e.value.as_deref())
                .ok_or_else(|| format!("no {key}"))
                .and_then(|v| v.parse::<N>().map_err(|e| format!("{key} '{v}': {e}")))
        });
        match value {
            Ok(v) => {
                out.insert((*topic).to_owned(), v);
            }
            Err(e) => tracing::warn!(topic, error = %e, "Cannot read the topic's {key}"),
        }
    }
    Ok(out)
}

/// Where a dead-lettered record was read.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl Origin<'_> {
    fn error_headers(&self, class: &str, reason: &str) -> [(&'static str, String); 6] {
        [
            ("error.class", class.to_owned()),
            ("error.reason", reason.to_owned()),
            ("error.time", crate::normalize::now_micros().to_string()),
            ("source.topic", self.topic.to_owned()),
            ("source.partition", self.partition.to_string()),
            ("source.offset", self.offset.to_string()),
        ]
    }
}

/// A record header: its name and value, borrowed or owned.
pub type HeaderCow<'a> = (Cow<'a, str>, Option<Cow<'a, [u8]>>);

/// A dead letter as [`dead_letter_within`] shaped it.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<Cow<'a, [u8]>>,
    /// The original headers kept, then the error headers.
    pub headers: Vec<HeaderCow<'a>>,
    /// The payload is a summary of the original (`error.truncated: true`): the record did
    /// not fit whole.
    pub truncated: bool,
}

impl DeadLetter<'_> {
    /// The record to produce to `topic`.
    pub fn record<'b>(&'b self, topic: &'b str) -> BaseRecord<'b, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers = headers.insert(Header {
                key: k.as_ref(),
                value: v.as_deref(),
            });
        }
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(k) = self.key {
            rec = rec.key(k);
        }
        if let Some(v) = &self.payload {
            rec = rec.payload(v.as_ref());
        }
        rec
    }

    /// Its size as [`record_size`] bounds it.
    pub fn size(&self) -> usize {
        record_size(
            self.key.map_or(0, <[u8]>::len),
            self.payload.as_ref().map_or(0, |p| p.len()),
            self.headers
                .iter()
                .map(|(k, v)| (k.len(), v.as_ref().map_or(0, |v| v.len()))),
        )
    }
}

/// The DLQ record for `m`, as [`dead_letter`] has it where that fits in `max_bytes` (the
/// largest record, by [`record_size`], the producer and the DLQ topic take).
///
/// Where it does not (a record near the raw topic's own limit gains the error headers), the
/// payload is replaced by a small JSON summary and the record is marked `error.truncated:
/// true`: `{"truncated": true, "why", "class", "reason", "size", "sha256", "head"` (the first
/// 256 bytes as lossy UTF-8), `"head_hex"` (the first 64 bytes)`}`; the original key where it
/// fits (else `key_size` and `key_sha256` in the summary), the original headers that fit, in
/// order (the others counted in `dropped_headers`, their names in `dropped_header_names`),
/// and the error headers with the reason cut to 512 characters. So the record is accounted
/// for, identifiable (hash, size, source offset) and the partition goes on.
pub fn dead_letter_within<'a>(
    m: &'a BorrowedMessage<'_>,
    class: &str,
    reason: &str,
    max_bytes: usize,
) -> DeadLetter<'a> {
    let original: Vec<(&'a str, Option<&'a [u8]>)> = m
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let origin = Origin {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
    };
    shape_dead_letter(m.key(), m.payload(), original, origin, class, reason, max_bytes)
}

/// [`dead_letter_within`] over the parts of a record.
pub fn shape_dead_letter<'a>(
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    original: Vec<(&'a str, Option<&'a [u8]>)>,
    origin: Origin<'_>,
    class: &str,
    reason: &str,
    max_bytes: usize,
) -> DeadLetter<'a> {
    let errors = origin.error_headers(class, reason);
    let mut whole = DeadLetter {
        key,
        payload: payload.map(Cow::Borrowed),
        headers: original
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), v.map(Cow::Borrowed)))
            .chain(
                errors
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(*k), Some(Cow::Owned(v.clone().into_bytes())))),
            )
            .collect(),
        truncated: false,
    };
    let size = whole.size();
    if size <= max_bytes {
        return whole;
    }
    // The summary form. Fixed parts first: the error headers (reason cut) and the marker.
    let cut_reason = crate::normalize::truncate(reason, SUMMARY_REASON_CHARS);
    let mut error_part: Vec<HeaderCow<'a>> = errors
        .iter()
        .map(|(k, v)| {
            let v = if *k == "error.reason" {
                cut_reason.to_owned()
            } else {
                v.clone()
            };
            (Cow::Borrowed(*k), Some(Cow::Owned(v.into_bytes())))
        })
        .collect();
    error_part.push((Cow::Borrowed("error.truncated"), Some(Cow::Borrowed(&b"true"[..]))));
    let fixed = record_size(
        0,
        SUMMARY_RESERVE,
        error_part
            .iter()
            .map(|(k, v)| (k.len(), v.as_ref().map_or(0, |v| v.len()))),
    );
    let mut room = max_bytes.saturating_sub(fixed);
    // The key next (it places and identifies the record), then the original headers in order.
    let original_key = key;
    let key = match original_key {
        Some(k) if k.len() <= room => {
            room -= k.len();
            Some(k)
        }
        _ => None,
    };
    let mut kept = Vec::new();
    let (mut dropped, mut dropped_names) = (0usize, Vec::new());
    for (k, v) in &original {
        let cost = HEADER_OVERHEAD + k.len() + v.map_or(0, <[u8]>::len);
        if cost <= room {
            room -= cost;
            kept.push((Cow::Borrowed(*k), v.map(Cow::Borrowed)));
        } else {
            dropped += 1;
            if dropped_names.len() < SUMMARY_HEADER_NAMES {
                dropped_names.push(crate::normalize::truncate(k, 64));
            }
        }
    }
    let head = payload.map_or(&[][..], |p| &p[..p.len().min(SUMMARY_HEAD_BYTES)]);
    let mut summary = serde_json::json!({
        "truncated": true,
        "why": format!(
            "the dead letter would be {size} bytes with its headers; the largest record the DLQ takes is {max_bytes} bytes"
        ),
        "class": class,
        "reason": cut_reason,
        "size": payload.map_or(0, <[u8]>::len),
        "sha256": payload.map(|p| hex::encode(Sha256::digest(p))),
        "head": String::from_utf8_lossy(head),
        "head_hex": hex::encode(&head[..head.len().min(SUMMARY_HEAD_HEX_BYTES)]),
    });
    if let (Some(k), None) = (original_key, key) {
        summary["key_size"] = k.len().into();
        summary["key_sha256"] = hex::encode(Sha256::digest(k)).into();
    }
    if dropped > 0 {
        summary["dropped_headers"] = dropped.into();
        summary["dropped_header_names"] = dropped_names.into();
    }
    kept.extend(error_part);
    whole.key = key;
    whole.payload = Some(Cow::Owned(summary.to_string().into_bytes()));
    whole.headers = kept;
    whole.truncated = true;
    whole
}

/// Waits, in 1 ms steps, until the broker has acknowledged every record the producer holds
/// (the producer's own thread takes the delivery reports). rdkafka 0.39's own
/// `BaseProducer::flush` waits in 100 ms `poll` calls that return only at their deadline
/// (rust-rdkafka #748): with a record in flight it takes at least 100 ms however fast the
/// broker answers.
pub fn flush_deliveries<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin {
        topic: "raw.users",
        partition: 2,
        offset: 41,
    };

    fn header<'d>(d: &'d DeadLetter<'_>, name: &str) -> Option<&'d [u8]> {
        d.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    #[test]
    fn a_dead_letter_that_fits_is_the_record_byte_for_byte() {
        let payload = vec![b'x'; 70_000];
        let headers = vec![("tenant", Some(&b"acme"[..])), ("source", Some(&b"json"[..]))];
        let d = shape_dead_letter(
            Some(b"k"),
            Some(&payload),
            headers,
            ORIGIN,
            "oversize",
            "too big",
            1_000_000,
        );
        assert!(!d.truncated);
        assert_eq!(d.payload.as_deref(), Some(&payload[..]));
        assert_eq!(d.key, Some(&b"k"[..]));
        assert_eq!(header(&d, "tenant"), Some(&b"acme"[..]));
        assert_eq!(header(&d, "error.reason"), Some(&b"too big"[..]));
        assert_eq!(header(&d, "source.offset"), Some(&b"41"[..]));
        assert_eq!(header(&d, "error.truncated"), None);
        assert!(d.size() <= 1_000_000);
    }

    #[test]
    fn a_dead_letter_too_large_is_summarized_within_the_limit() {
        let max = 1_000_000;
        let mut payload = br#"{"event_id":"huge-1","blob":""#.to_vec();
        payload.resize(max - 100, 0xfe);
        let big_header = vec![b'h'; max / 2];
        let headers = vec![
            ("tenant", Some(&b"acme"[..])),
            ("big", Some(&big_header[..])),
            ("source", Some(&b"json"[..])),
            ("empty", None),
        ];
        let reason = "r".repeat(5_000);
        let d = shape_dead_letter(
            Some(b"special"),
            Some(&payload),
            headers,
            ORIGIN,
            "oversize",
            &reason,
            max,
        );
        assert!(d.truncated);
        assert!(d.size() <= max, "{} > {max}", d.size());
        assert_eq!(d.key, Some(&b"special"[..]));
        assert_eq!(header(&d, "error.truncated"), Some(&b"true"[..]));
        assert_eq!(header(&d, "error.class"), Some(&b"oversize"[..]));
        assert_eq!(header(&d, "error.reason").map(<[u8]>::len), Some(512), "reason cut");
        assert_eq!(header(&d, "source.topic"), Some(&b"raw.users"[..]));
        assert_eq!(header(&d, "source.partition"), Some(&b"2"[..]));
        assert_eq!(header(&d, "tenant"), Some(&b"acme"[..]));
        assert_eq!(header(&d, "source"), Some(&b"json"[..]));
        assert!(
            d.headers.iter().any(|(k, v)| k == "empty" && v.is_none()),
            "a null header fits"
        );
        // Beside the summary there is room for the half-megabyte header: kept (dropped below,
        // under a smaller limit).
        assert_eq!(header(&d, "big").map(<[u8]>::len), Some(max / 2));
        let s: serde_json::Value = serde_json::from_slice(d.payload.as_deref().unwrap()).unwrap();
        assert_eq!(s["truncated"], true);
        assert_eq!(s["size"], payload.len());
        assert_eq!(s["sha256"], hex::encode(Sha256::digest(&payload)));
        assert_eq!(s["class"], "oversize");
        assert!(s["head"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"event_id":"huge-1","blob":""#));
        assert_eq!(s["head_hex"].as_str().unwrap().len(), 128);
        assert!(d.payload.as_ref().unwrap().len() <= SUMMARY_RESERVE);

        let small = 64 * 1024;
        let headers = vec![("tenant", Some(&b"acme"[..])), ("big", Some(&big_header[..]))];
        let long_key = vec![b'k'; 200_000];
        let d = shape_dead_letter(
            Some(&long_key),
            Some(&payload),
            headers,
            ORIGIN,
            "oversize",
            "big",
            small,
        );
        assert!(d.truncated && d.size() <= small, "{}", d.size());
        assert_eq!(d.key, None, "a key that does not fit is left out");
        assert_eq!(header(&d, "tenant"), Some(&b"acme"[..]));
        assert_eq!(header(&d, "big"), None);
        let s: serde_json::Value = serde_json::from_slice(d.payload.as_deref().unwrap()).unwrap();
        assert_eq!(s["key_size"], 200_000);
        assert_eq!(s["key_sha256"], hex::encode(Sha256::digest(&long_key)));
        assert_eq!(s["dropped_headers"], 1);
        assert_eq!(s["dropped_header_names"], serde_json::json!(["big"]));
    }
}
