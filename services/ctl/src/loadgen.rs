//! Realistic synthetic raw events for every chain, from a seed so a run can be repeated, with
//! a chosen share of exact duplicates and of invalid records. What it sends is summarised,
//! including the exact set of identities that must come out clean.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Spec {
    pub chain: String,
    pub count: u64,
    /// Share of records that repeat an earlier valid record exactly.
    pub duplicate_share: f64,
    /// Share of records that are invalid.
    pub invalid_share: f64,
    pub seed: u64,
    pub tenants: Vec<String>,
    /// Event times are spread over this many seconds before "now".
    pub spread_secs: i64,
}

impl Spec {
    pub fn new(chain: &str, count: u64) -> Spec {
        Spec {
            chain: chain.to_owned(),
            count,
            duplicate_share: 0.1,
            invalid_share: 0.02,
            seed: 1,
            tenants: vec!["acme".into(), "globex".into(), "initech".into()],
            spread_secs: 3600,
        }
    }
}

/// One generated raw record.
#[derive(Debug, Clone)]
pub struct Generated {
    pub key: String,
    pub tenant: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
    /// The identity that must appear once in the clean topic (valid records only).
    pub event_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Duplicate,
    Invalid,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub sent: u64,
    pub valid: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// `tenant/event_id` of every valid record: the exact expected clean set.
    #[serde(skip)]
    pub expected: BTreeSet<String>,
}

impl Summary {
    fn add(&mut self, g: &Generated) {
        self.sent += 1;
        match g.kind {
            Kind::Valid => {
                self.valid += 1;
                if let Some(id) = &g.event_id {
                    self.expected.insert(format!("{}/{id}", g.tenant));
                }
            }
            Kind::Duplicate => self.duplicates += 1,
            Kind::Invalid => self.invalid += 1,
        }
    }
}

const FIRST: &[&str] = &[
    "ann", "bob", "chen", "dara", "emil", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "example.net",
    "bücher.example",
    "corp.example.io",
];

/// The generator itself: an iterator of records, deterministic for a spec.
pub struct Generator {
    spec: Spec,
    rng: StdRng,
    i: u64,
    recent: Vec<Generated>,
    now: i64,
}

impl Generator {
    pub fn new(spec: Spec) -> Generator {
        let now = chrono_now();
        Generator {
            rng: StdRng::seed_from_u64(spec.seed),
            spec,
            i: 0,
            recent: Vec::new(),
            now,
        }
    }

    fn valid(&mut self) -> (Value, String, String) {
        let r = &mut self.rng;
        let tenant = self.spec.tenants[r.random_range(0..self.spec.tenants.len())].clone();
        let person = r.random_range(0..100_000u32);
        let email = format!(
            "{}.{}@{}",
            FIRST[person as usize % FIRST.len()],
            person,
            DOMAINS[person as usize % DOMAINS.len()]
        );
        let t = self.now - r.random_range(0..self.spec.spread_secs.max(1));
        let id = format!("{}-{}-{}", self.spec.chain, self.spec.seed, self.i);
        let time: Value = match self.i % 4 {
            0 => json!(t),
            1 => json!(t * 1000),
            2 => json!(format_rfc3339(t)),
            _ => json!(format_naive(t)),
        };
        let mut v = json!({"event_id": id, "event_time": time, "email": email});
        let o = v.as_object_mut().expect("object");
        let list = format!("list-{}", person % 7);
        match self.spec.chain.as_str() {
            "users" => {
                o.insert("user_id".into(), json!(person.to_string()));
                o.insert("first_name".into(), json!(FIRST[person as usize % FIRST.len()]));
                o.insert(
                    "country".into(),
                    json!(["de", "us", "gb", "fr", "jp"][person as usize % 5]),
                );
                o.insert(
                    "attributes".into(),
                    json!({"plan": (["free", "pro", "team"][person as usize % 3])}),
                );
            }
            "unsubscribes" => {
                if person % 3 != 0 {
                    o.insert("list_id".into(), json!(list));
                }
                o.insert("method".into(), json!("link"));
            }
            "blocklists" => {
                o.insert(
                    "reason".into(),
                    json!(["HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL"][person as usize % 3]),
                );
            }
            "subscriptions" => {
                o.insert("list_id".into(), json!(list));
                o.insert(
                    "action".into(),
                    json!(["SUBSCRIBE", "CONFIRM", "RESUBSCRIBE"][person as usize % 3]),
                );
                o.insert("consent_ip".into(), json!(format!("198.51.100.{}", person % 250)));
            }
            _ => {
                o.insert("message_id".into(), json!(format!("msg-{person}-{}", self.i / 3)));
                o.insert("campaign_id".into(), json!(format!("c-{}", person % 11)));
                o.insert(
                    "event_type".into(),
                    json!(["SENT", "DELIVERED", "OPENED", "CLICKED", "BOUNCED"][(self.i % 5) as usize]),
                );
            }
        }
        (v, tenant, email)
    }

    /// An invalid record of one of the classes, cycling through them.
    fn invalid(&mut self) -> (Vec<u8>, String) {
        let (mut v, tenant, _) = self.valid();
        let o = v.as_object_mut().expect("object");
        let payload = match self.i % 5 {
            0 => return (b"{not json".to_vec(), tenant),
            1 => {
                o.insert("email".into(), json!("not-an-address"));
                v.to_string()
            }
            2 => {
                o.insert("event_time".into(), json!("1999-01-01T00:00:00Z"));
                v.to_string()
            }
            3 => {
                o.insert("tenant_id".into(), json!("no-such-tenant"));
                v.to_string()
            }
            _ => {
                o.remove("email");
                v.to_string()
            }
        };
        (payload.into_bytes(), tenant)
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.i >= self.spec.count {
            return None;
        }
        let roll: f64 = self.rng.random();
        let g = if roll < self.spec.duplicate_share && !self.recent.is_empty() {
            let pick = self.rng.random_range(0..self.recent.len());
            let mut d = self.recent[pick].clone();
            d.kind = Kind::Duplicate;
            d
        } else if roll < self.spec.duplicate_share + self.spec.invalid_share {
            let (payload, tenant) = self.invalid();
            Generated {
                key: format!("{tenant}:invalid"),
                tenant,
                payload,
                kind: Kind::Invalid,
                event_id: None,
            }
        } else {
            let (v, tenant, email) = self.valid();
            let id = v["event_id"].as_str().map(str::to_owned);
            let g = Generated {
                key: format!("{tenant}:{email}"),
                tenant,
                payload: v.to_string().into_bytes(),
                kind: Kind::Valid,
                event_id: id,
            };
            if self.recent.len() < 10_000 {
                self.recent.push(g.clone());
            } else {
                let slot = self.rng.random_range(0..self.recent.len());
                self.recent[slot] = g.clone();
            }
            g
        };
        self.i += 1;
        Some(g)
    }
}

/// Sends a spec's records to `raw.<chain>` and waits until Kafka has them all.
pub fn send(bootstrap: &str, topic: &str, spec: Spec, progress: impl FnMut(u64)) -> anyhow::Result<Summary> {
    send_paced(bootstrap, topic, spec, None, progress)
}

/// Like [`send`], at most `per_sec` records a second when given.
pub fn send_paced(
    bootstrap: &str,
    topic: &str,
    spec: Spec,
    per_sec: Option<u64>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Summary> {
    let started = std::time::Instant::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let mut summary = Summary::default();
    for g in Generator::new(spec) {
        summary.add(&g);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "tenant",
                value: Some(g.tenant.as_str()),
            })
            .insert(Header {
                key: "source",
                value: Some("json"),
            });
        let mut rec = BaseRecord::to(topic)
            .key(g.key.as_bytes())
            .payload(&g.payload[..])
            .headers(headers);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::ZERO);
        if let Some(rate) = per_sec {
            let due = Duration::from_secs_f64(summary.sent as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if summary.sent % 10_000 == 0 {
            progress(summary.sent);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    progress(summary.sent);
    Ok(summary)
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn civil(t: i64) -> (i64, u32, u32, i64, i64, i64) {
    // Days to civil date (Howard Hinnant's algorithm).
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 { y + 1 } else { y },
        m,
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
    )
}

fn format_rfc3339(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn format_naive(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records_and_shares_hold() {
        let a: Vec<_> = Generator::new(Spec::new("mailings", 5000)).map(|g| g.payload).collect();
        let b: Vec<_> = Generator::new(Spec::new("mailings", 5000)).map(|g| g.payload).collect();
        assert_eq!(a, b);
        let mut s = Summary::default();
        for g in Generator::new(Spec::new("users", 10_000)) {
            s.add(&g);
        }
        assert!((800..1200).contains(&s.duplicates), "{s:?}");
        assert_eq!(s.expected.len() as u64, s.valid);
    }

    #[test]
    fn dates_format() {
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_naive(0), "1970-01-01 00:00:00");
    }
}
