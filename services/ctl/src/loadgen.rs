//! Realistic synthetic raw events for every chain, in every source format the chain reads
//! (`json`, `csv` and the webhooks of every provider of `providers/providers.txt`, one event a
//! record, the way the gateway publishes them), from a seed so a run can be repeated, with a
//! chosen share of exact duplicates and of invalid records of every class. What it sends is
//! summarised, including the exact set of `tenant/event_id` that must come out clean.
//!
//! The built-in formats are made in [`formats`]; a provider's events, the chains they are made
//! for and its share of a `mix` in `providers/<name>/loadgen.rs`, which [`formats`] declares
//! through `tributary_engine::provider_modules!(loadgen, ..)`.
//!
//! Identities: each format's valid records carry the identity the chain derives from them
//! (`event_id`, or the provider's own, see its `loadgen.rs`), written out by the builder.
//! Where the source has none (Mailchimp, Mandrill sync events, CSV exports without an id
//! column) the chain hashes the normalized record: [`identity`] runs the chain's own pipeline
//! to learn that hash. No two valid records of a run share an identity.

mod formats;
pub mod identity;
mod progress;

pub use formats::{Fault, Format};
pub use progress::Progress;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::Header;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_engine::Source;

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
    /// Event times are spread over this many seconds before the epoch.
    pub spread_secs: i64,
    /// Which source formats: one, or a realistic mix of every format the chain reads.
    pub format: Format,
    /// The newest event time (Unix seconds); `None`: the wall clock at the start. Two runs
    /// with the same seed and epoch send the same bytes.
    pub epoch: Option<i64>,
    /// How long [`send_paced`]'s producer keeps trying to deliver a record before the send
    /// fails (librdkafka's `message.timeout.ms`; its default, 300 s, unless set).
    pub delivery_timeout: Duration,
    /// When set, a producer that acknowledges nothing for this long while records are on
    /// their way is replaced, and what it provably never wrote is sent again (see
    /// [`send_paced`]). Off by default: it keeps every record until Kafka acknowledges it.
    pub replace_stuck_after: Option<Duration>,
}

impl Spec {
    /// The canonical `json` format, ending now: what the tests and the benchmarks build on.
    pub fn new(chain: &str, count: u64) -> Spec {
        Spec {
            chain: chain.to_owned(),
            count,
            duplicate_share: 0.1,
            invalid_share: 0.02,
            seed: 1,
            tenants: vec!["acme".into(), "globex".into(), "initech".into()],
            spread_secs: 3600,
            format: Format::One(Source::Json),
            epoch: None,
            delivery_timeout: DELIVERY_TIMEOUT,
            replace_stuck_after: None,
        }
    }

    pub fn with_format(mut self, format: Format) -> Spec {
        self.format = format;
        self
    }
}

/// The source formats a chain's `parse` reads, in the order they are listed: json, csv, then
/// every provider (in the order of `providers/providers.txt`) whose `providers/<name>/loadgen.rs`
/// names the chain in its `CHAINS`.
pub fn formats_for(chain: &str) -> &'static [Source] {
    static FORMATS: std::sync::LazyLock<Vec<(&'static str, Vec<Source>)>> = std::sync::LazyLock::new(|| {
        tributary_engine::topics::CHAINS
            .iter()
            .map(|c| {
                let reads = Source::ALL
                    .into_iter()
                    .filter(|s| !s.is_provider() || formats::provider_chains(*s).contains(c))
                    .collect();
                (*c, reads)
            })
            .collect()
    });
    FORMATS
        .iter()
        .find(|(c, _)| *c == chain)
        .map_or(&[][..], |(_, reads)| reads.as_slice())
}

/// Checks that `chain` reads `format`; the error lists what it does read.
pub fn check_format(chain: &str, format: Format) -> Result<(), String> {
    let reads = formats_for(chain);
    if reads.is_empty() {
        return Err(format!("unknown chain '{chain}'"));
    }
    match format {
        Format::Mix => Ok(()),
        Format::One(s) if reads.contains(&s) => Ok(()),
        Format::One(s) => Err(format!(
            "the {chain} chain does not read '{}'; it reads: mix, {}",
            s.as_str(),
            reads.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// One generated raw record.
#[derive(Debug, Clone)]
pub struct Generated {
    pub key: String,
    /// The `tenant` header.
    pub tenant: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
    /// The identity that must appear once in the clean topic (valid records only).
    pub event_id: Option<String>,
    /// The `source` header.
    pub source: Source,
    /// The `csv-header` header: the upload's header row.
    pub csv_header: Option<String>,
    /// For invalid records, what is wrong (each maps to one DLQ error class).
    pub fault: Option<Fault>,
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
    /// Records sent per source format.
    pub per_format: BTreeMap<String, u64>,
    /// Invalid records per DLQ error class they must get.
    pub invalid_by_class: BTreeMap<String, u64>,
    /// Wall time of the send, including the final flush.
    pub seconds: f64,
    /// Records a second achieved.
    pub rate: f64,
    /// Stuck producers replaced ([`Spec::replace_stuck_after`]) and the records they had not
    /// written, sent again.
    pub replaced_producers: u32,
    pub resent: u64,
    /// `tenant/event_id` of every valid record: the exact expected clean set.
    #[serde(skip)]
    pub expected: BTreeSet<String>,
}

impl Summary {
    pub fn add(&mut self, g: &Generated) {
        self.sent += 1;
        *self.per_format.entry(g.source.as_str().to_owned()).or_default() += 1;
        match g.kind {
            Kind::Valid => {
                self.valid += 1;
                if let Some(id) = &g.event_id {
                    self.expected.insert(format!("{}/{id}", g.tenant));
                }
            }
            Kind::Duplicate => self.duplicates += 1,
            Kind::Invalid => {
                self.invalid += 1;
                if let Some(f) = g.fault {
                    *self.invalid_by_class.entry(f.class().as_str().to_owned()).or_default() += 1;
                }
            }
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        self.seconds = elapsed.as_secs_f64();
        self.rate = if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        };
    }
}

/// Realistic shares of the formats in a `mix`, per chain (weights; formats a chain does not
/// read are left out): json's and csv's are the chain's (`services/<chain>/loadgen.rs`), a
/// provider's is its `mix_weight` (`providers/<name>/loadgen.rs`).
fn mix_weight(chain: &str, s: Source) -> u32 {
    match s {
        Source::Json => formats::chain_mix_weights(chain).0,
        Source::Csv => formats::chain_mix_weights(chain).1,
        provider => formats::provider_weight(provider, chain),
    }
}

/// The generator itself: an iterator of records, deterministic for a spec.
pub struct Generator {
    spec: Spec,
    rng: StdRng,
    i: u64,
    recent: Vec<Generated>,
    now: i64,
    /// Records already decided that come next: the other recipients of one SES message, the
    /// other topics of one SES opt-out.
    pending: VecDeque<Generated>,
    /// Hashes of every valid `tenant/identity`, so no two valid records share one.
    seen: HashSet<u64>,
    mix: Vec<(Source, u32)>,
    hasher: identity::Hasher,
    unknown_tenant: String,
}

impl Generator {
    pub fn new(spec: Spec) -> Generator {
        let now = spec.epoch.unwrap_or_else(chrono_now);
        let mix = formats_for(&spec.chain)
            .iter()
            .map(|s| (*s, mix_weight(&spec.chain, *s)))
            .collect();
        let mut unknown_tenant = "umbrella".to_owned();
        while spec.tenants.contains(&unknown_tenant) {
            unknown_tenant.push('x');
        }
        Generator {
            rng: StdRng::seed_from_u64(spec.seed),
            hasher: identity::Hasher::new(&spec.chain, &spec.tenants),
            spec,
            i: 0,
            recent: Vec::new(),
            now,
            pending: VecDeque::new(),
            seen: HashSet::new(),
            mix,
            unknown_tenant,
        }
    }

    fn pick_format(&mut self) -> Source {
        match self.spec.format {
            Format::One(s) => s,
            Format::Mix => {
                let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
                let mut roll = self.rng.random_range(0..total.max(1));
                for (s, w) in &self.mix {
                    if roll < *w {
                        return *s;
                    }
                    roll -= w;
                }
                Source::Json
            }
        }
    }

    fn tenant(&mut self) -> String {
        // Tenants differ in size: the first ones send more.
        let n = self.spec.tenants.len();
        let a = self.rng.random_range(0..n);
        let b = self.rng.random_range(0..n);
        self.spec.tenants[a.min(b)].clone()
    }

    /// A record of `source`, valid or with `fault`; `None` when its identity is taken.
    fn build(&mut self, source: Source, fault: Option<Fault>) -> Option<Vec<Generated>> {
        let tenant = self.tenant();
        let person = self.rng.random_range(0..100_000u32);
        let t = match fault {
            Some(Fault::TooOld) => 915_148_800 + self.rng.random_range(0..86_400 * 300),
            _ => self.now - self.rng.random_range(0..self.spec.spread_secs.max(1)),
        };
        let mut cx = formats::Ctx {
            chain: &self.spec.chain,
            seed: self.spec.seed,
            i: self.i,
            t,
            person,
            tenant: &tenant,
            fault,
            rng: &mut self.rng,
        };
        let built = formats::build(source, &mut cx);
        let header_tenant = if fault == Some(Fault::UnknownTenant) {
            self.unknown_tenant.clone()
        } else {
            tenant
        };
        let mut out = Vec::with_capacity(built.len());
        for b in built {
            let event_id = if fault.is_some() {
                None
            } else {
                let id = match b.identity {
                    formats::Identity::Known(id) => id,
                    formats::Identity::Hashed => {
                        self.hasher
                            .identity(source, &b.payload, &header_tenant, b.csv_header.as_deref())
                    }
                };
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&header_tenant, &id).hash(&mut h);
                if !self.seen.insert(h.finish()) {
                    return None;
                }
                Some(id)
            };
            out.push(Generated {
                key: format!(
                    "{header_tenant}:{}",
                    b.email.as_deref().unwrap_or_default().trim().to_lowercase()
                ),
                tenant: header_tenant.clone(),
                payload: b.payload,
                kind: if fault.is_some() { Kind::Invalid } else { Kind::Valid },
                event_id,
                source,
                csv_header: b.csv_header,
                fault,
            });
        }
        Some(out)
    }

    fn remember(&mut self, g: &Generated) {
        if self.recent.len() < 10_000 {
            self.recent.push(g.clone());
        } else {
            let slot = self.rng.random_range(0..self.recent.len());
            self.recent[slot] = g.clone();
        }
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.i >= self.spec.count {
            return None;
        }
        let g = if let Some(g) = self.pending.pop_front() {
            self.remember(&g);
            g
        } else {
            let roll: f64 = self.rng.random();
            if roll < self.spec.duplicate_share && !self.recent.is_empty() {
                let pick = self.rng.random_range(0..self.recent.len());
                let mut d = self.recent[pick].clone();
                d.kind = Kind::Duplicate;
                d
            } else if roll < self.spec.duplicate_share + self.spec.invalid_share {
                let source = self.pick_format();
                let fault = Fault::ALL[(self.i % Fault::ALL.len() as u64) as usize];
                let built = self
                    .build(source, Some(fault))
                    .expect("invalid records have no identity");
                built.into_iter().next().expect("one record")
            } else {
                let source = self.pick_format();
                let mut records = loop {
                    if let Some(b) = self.build(source, None) {
                        break b;
                    }
                };
                let first = records.remove(0);
                self.remember(&first);
                self.pending.extend(records);
                first
            }
        };
        self.i += 1;
        Some(g)
    }
}

/// How long the producer of [`send_paced`] keeps trying to deliver a record unless the
/// spec says otherwise (librdkafka's default, written out because the final flush relies on it).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends a spec's records to `raw.<chain>` and waits until Kafka has them all.
pub fn send(bootstrap: &str, topic: &str, spec: Spec, progress: impl FnMut(u64)) -> anyhow::Result<Summary> {
    send_paced(bootstrap, topic, spec, None, progress)
}

/// Like [`send`], at most `per_sec` records a second when given. `progress` is called with
/// the number sent so far, every 1 000 records and at the end.
///
/// With [`Spec::replace_stuck_after`], a producer that acknowledges nothing for that long while
/// records are on their way is replaced. `make chaos` saw the load's idempotent producer go
/// silent on every partition after broker restarts and never recover, while the broker was
/// healthy again; librdkafka 2.12 keeps a decommissioned broker's handle (see
/// `tributary_engine::watchdog`). The stuck producer's queued and in-flight records are purged;
/// some of them may have been written all the same (a request whose answer was lost). So each
/// partition with purged records is read back from its last acknowledged offset: an idempotent
/// producer writes a partition's records in order, so what was written is a prefix of the
/// partition's purged records, found in order by key and value. The rest goes again, through a
/// fresh producer, in the original order, so per-key order holds and nothing is written twice.
pub fn send_paced(
    bootstrap: &str,
    topic: &str,
    spec: Spec,
    per_sec: Option<u64>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let delivery_timeout = spec.delivery_timeout;
    let mut out = Sender::new(bootstrap, topic, delivery_timeout, spec.replace_stuck_after)?;
    let mut summary = Summary::default();
    for g in Generator::new(spec) {
        summary.add(&g);
        out.send(summary.sent, Pending::from(g))?;
        if let Some(rate) = per_sec {
            let due = Duration::from_secs_f64(summary.sent as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if summary.sent % 1_000 == 0 {
            progress(summary.sent);
        }
    }
    (summary.replaced_producers, summary.resent) = out.finish(&format!("the {}", summary.sent))?;
    progress(summary.sent);
    summary.finish(started.elapsed());
    Ok(summary)
}

/// Sends raw records of the caller's making (the chaos harness's poison records) the way
/// [`send_paced`] sends the load: idempotent, in order, and through a fresh producer when one is
/// stuck (with `stuck_after`), with nothing written twice. Which of a stuck producer's records
/// were written after all is read back by key and value, so no two records of one sender may
/// share both: give each its own key.
pub struct RawSender<'a> {
    out: Sender<'a>,
    next: u64,
}

impl<'a> RawSender<'a> {
    pub fn new(
        bootstrap: &'a str,
        topic: &'a str,
        delivery_timeout: Duration,
        stuck_after: Option<Duration>,
    ) -> anyhow::Result<Self> {
        Ok(RawSender {
            out: Sender::new(bootstrap, topic, delivery_timeout, stuck_after)?,
            next: 0,
        })
    }

    /// Queues one record with the raw headers of `tenant` and `source`.
    /// `source` is the `source` header as it is, a format's name or not (a poison record may
    /// name a format nobody reads).
    pub fn send(&mut self, key: &[u8], payload: Vec<u8>, tenant: &str, source: &'static str) -> anyhow::Result<()> {
        self.next += 1;
        self.out.send(
            self.next,
            Pending {
                key: key.to_vec(),
                payload,
                tenant: tenant.to_owned(),
                source,
                csv_header: None,
            },
        )
    }

    /// Waits until Kafka has every record sent; fails when it refused any. Returns how many
    /// times the producer was replaced.
    pub fn finish(self) -> anyhow::Result<u32> {
        let what = format!("the {} records", self.next);
        Ok(self.out.finish(&what)?.0)
    }
}

/// A record on its way, kept (when stuck producers are replaced) until Kafka acknowledges it.
struct Pending {
    key: Vec<u8>,
    payload: Vec<u8>,
    tenant: String,
    /// The `source` header.
    source: &'static str,
    csv_header: Option<String>,
}

impl Pending {
    /// Takes the record's bytes: the generator's record is not needed after it is sent.
    fn from(g: Generated) -> Pending {
        Pending {
            key: g.key.into_bytes(),
            payload: g.payload,
            tenant: g.tenant,
            source: g.source.as_str(),
            csv_header: g.csv_header,
        }
    }
}

/// The load's producer, replaced when it is stuck (see [`send_paced`]).
struct Sender<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    delivery_timeout: Duration,
    stuck_after: Option<Duration>,
    producer: BaseProducer<Deliveries>,
    /// Acknowledgements seen at `progress_at`.
    acked: u64,
    progress_at: Instant,
    replaced: u32,
    resent: u64,
}

impl<'a> Sender<'a> {
    fn new(
        bootstrap: &'a str,
        topic: &'a str,
        delivery_timeout: Duration,
        stuck_after: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let producer = Self::producer(
            bootstrap,
            topic,
            delivery_timeout,
            stuck_after.is_some(),
            Default::default(),
            Default::default(),
        )?;
        Ok(Sender {
            bootstrap,
            topic,
            delivery_timeout,
            stuck_after,
            producer,
            acked: 0,
            progress_at: Instant::now(),
            replaced: 0,
            resent: 0,
        })
    }

    fn producer(
        bootstrap: &str,
        topic: &str,
        delivery_timeout: Duration,
        keep: bool,
        counts: Counts,
        acked_end: BTreeMap<i32, i64>,
    ) -> anyhow::Result<BaseProducer<Deliveries>> {
        Ok(tributary_engine::kafka::env_client_config(bootstrap)
            // Names it in librdkafka's logs, e.g. `loadgen-raw.users#producer-3`.
            .set("client.id", format!("loadgen-{topic}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("compression.type", "zstd")
            .set("queue.buffering.max.messages", "500000")
            // A topic that does not exist is an error, not a wait until the message times out.
            .set("allow.auto.create.topics", "false")
            // Room for the oversize records a [`RawSender`] sends as poison.
            .set("message.max.bytes", "2000000")
            .set("message.timeout.ms", delivery_timeout.as_millis().to_string())
            .create_with_context(Deliveries {
                pending: keep.then(Default::default),
                counts,
                acked_end: std::sync::Mutex::new(acked_end),
                ..Default::default()
            })?)
    }

    fn send(&mut self, seq: u64, p: Pending) -> anyhow::Result<()> {
        let mut headers = tributary_engine::kafka::raw_headers(p.tenant.as_str(), p.source);
        if let Some(h) = &p.csv_header {
            headers = headers.insert(Header {
                key: "csv-header",
                value: Some(h.as_str()),
            });
        }
        let mut rec = BaseRecord::with_opaque_to(self.topic, seq as usize)
            .key(&p.key[..])
            .payload(&p.payload[..])
            .headers(headers);
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(10));
                    if self.stuck()? {
                        // The record was not queued: it goes through the new producer.
                        drop(rec);
                        return self.send(seq, p);
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        // Kept (librdkafka copied the bytes) before the poll that may report its delivery.
        if let Some(pending) = &self.producer.context().pending {
            lock(pending).insert(seq, p);
        }
        self.producer.poll(Duration::ZERO);
        if seq.is_multiple_of(1_000) {
            self.stuck()?;
        }
        Ok(())
    }

    /// Waits until Kafka has every record; fails naming what it refused. Returns how many
    /// times the producer was replaced and how many records went again.
    fn finish(mut self, what: &str) -> anyhow::Result<(u32, u64)> {
        // Every record queued is delivered or fails within `message.timeout.ms` (the
        // `delivery_timeout`), and a failure is counted by `Deliveries`: so the flush waits that
        // long and a little more. A shorter bound failed a chaos run whose broker restart (a
        // clean stop, then the start with its log recovery) outlasted it, with every record
        // still on its way.
        self.flush(self.delivery_timeout + Duration::from_secs(30))?;
        self.producer
            .context()
            .check(&format!("{what} sent to {}", self.topic))?;
        if self.replaced > 0 {
            tracing::warn!(
                topic = self.topic,
                replaced = self.replaced,
                resent = self.resent,
                "The load's producer was stuck and replaced; every record it had not written was sent again"
            );
        }
        Ok((self.replaced, self.resent))
    }

    /// Waits until every record is acknowledged or failed, up to `timeout`.
    fn flush(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} records to {} neither acknowledged nor failed after {timeout:?}",
                self.producer.in_flight_count(),
                self.topic
            );
            let _ = self.producer.flush(Duration::from_secs(1));
            self.stuck()?;
        }
        Ok(())
    }

    /// Replaces the producer when it is stuck; whether it did.
    fn stuck(&mut self) -> anyhow::Result<bool> {
        let Some(limit) = self.stuck_after else {
            return Ok(false);
        };
        let acked = self.producer.context().counts.acked.load(Relaxed);
        let outstanding = self.producer.in_flight_count();
        if acked != self.acked || outstanding == 0 {
            self.acked = acked;
            self.progress_at = Instant::now();
            return Ok(false);
        }
        if self.progress_at.elapsed() < limit {
            return Ok(false);
        }
        tracing::warn!(
            topic = self.topic,
            outstanding,
            "The load's producer acknowledged nothing for {limit:?}: replacing it"
        );
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let settle = Instant::now() + Duration::from_secs(30);
        while self.producer.in_flight_count() > 0 {
            anyhow::ensure!(
                Instant::now() < settle,
                "the stuck producer to {} did not give back its {} records when purged",
                self.topic,
                self.producer.in_flight_count()
            );
            self.producer.poll(Duration::from_millis(100));
        }
        let old = self.producer.context();
        let purged = std::mem::take(&mut *lock(&old.purged));
        let acked_end = lock(&old.acked_end).clone();
        let mut pending = lock(old.pending.as_ref().expect("kept when stuck producers are replaced"));
        let mut by_partition: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for (seq, partition) in &purged {
            by_partition.entry(*partition).or_default().push(*seq);
        }
        let mut written = 0;
        for (partition, seqs) in by_partition.iter_mut().filter(|(p, _)| **p >= 0) {
            seqs.sort_unstable();
            let from = acked_end.get(partition).map_or(0, |o| o + 1);
            let found = written_prefix(self.bootstrap, self.topic, *partition, from, seqs, &pending)?;
            for seq in seqs.drain(..found) {
                pending.remove(&seq);
                old.counts.acked.fetch_add(1, Relaxed);
                written += 1;
            }
        }
        let mut resend: Vec<(u64, Pending)> = by_partition
            .into_values()
            .flatten()
            .filter_map(|seq| pending.remove(&seq).map(|p| (seq, p)))
            .collect();
        resend.sort_unstable_by_key(|(seq, _)| *seq);
        drop(pending);
        tracing::warn!(
            topic = self.topic,
            purged = purged.len(),
            written,
            "Of the stuck producer's records, {written} were written after all; the others go again"
        );
        let counts = old.counts.clone();
        // The fresh producer reads back, if it is stuck in turn, from where its predecessors'
        // acknowledgements end: from offset 0 it could take an earlier record of the same key
        // and value for one of its own.
        let fresh = Self::producer(
            self.bootstrap,
            self.topic,
            self.delivery_timeout,
            true,
            counts,
            acked_end,
        )?;
        // A stuck client may never finish its `rd_kafka_destroy` (it waits for the broker
        // handle that keeps it stuck): leave it be.
        std::mem::forget(std::mem::replace(&mut self.producer, fresh));
        self.replaced += 1;
        self.resent += resend.len() as u64;
        tracing::warn!(
            topic = self.topic,
            resent = resend.len(),
            "Sending again what the stuck producer never wrote"
        );
        self.progress_at = Instant::now();
        for (seq, p) in resend {
            self.send(seq, p)?;
        }
        Ok(true)
    }
}

/// How many of `seqs` (the records purged from a stuck producer to `partition`, in order) the
/// partition holds from offset `from` on: found in order by key and value, other writers'
/// records in between passed over.
fn written_prefix(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: i64,
    seqs: &[u64],
    pending: &BTreeMap<u64, Pending>,
) -> anyhow::Result<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = tributary_engine::kafka::env_client_config(bootstrap)
        .set("group.id", format!("loadgen-readback-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let (_, end) =
        tributary_engine::kafka::watermarks_patiently(&consumer, topic, partition, Duration::from_secs(120), &|| {
            false
        })?;
    if from >= end {
        return Ok(0);
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let mut found = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = from;
    while next < end && found < seqs.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} [{partition}] back did not reach offset {end}"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let want = &pending[&seqs[found]];
                if m.key() == Some(&want.key[..]) && m.payload().unwrap_or(&[]) == &want.payload[..] {
                    found += 1;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(found)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of the records, shared by a producer and the one that replaces it.
#[derive(Default, Clone)]
pub(crate) struct Counts {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Failures per partition: one stuck partition and a stuck producer read differently.
    failed_by_partition: Arc<std::sync::Mutex<BTreeMap<i32, u64>>>,
}

/// Counts the records Kafka did not acknowledge, so a run that lost any fails loudly
/// (a `BaseProducer`'s `flush` returns Ok whatever became of the records).
#[derive(Default)]
pub(crate) struct Deliveries {
    counts: Counts,
    /// The records not yet acknowledged, by number, when a stuck producer is to be replaced.
    pending: Option<std::sync::Mutex<BTreeMap<u64, Pending>>>,
    /// Records purged from a stuck producer, with their partition (-1: none yet).
    purged: std::sync::Mutex<Vec<(u64, i32)>>,
    /// The highest acknowledged offset per partition, when records are kept.
    acked_end: std::sync::Mutex<BTreeMap<i32, i64>>,
}

impl Deliveries {
    /// Fails, naming the first error, when any record was refused.
    pub(crate) fn check(&self, what: &str) -> anyhow::Result<()> {
        let c = &self.counts;
        let failed = c.failed.load(Relaxed);
        if failed > 0 {
            let first = lock(&c.first_error).clone().unwrap_or_default();
            let by_partition = lock(&c.failed_by_partition)
                .iter()
                .map(|(p, n)| format!("{p}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            anyhow::bail!(
                "{failed} record(s) of {what} not acknowledged by Kafka (by partition: {by_partition}); first error: {first}"
            );
        }
        Ok(())
    }
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: usize) {
        let seq = seq as u64;
        match result {
            Ok(m) => {
                self.counts.acked.fetch_add(1, Relaxed);
                if let Some(p) = &self.pending {
                    lock(p).remove(&seq);
                    let (partition, offset) = (rdkafka::Message::partition(m), rdkafka::Message::offset(m));
                    let mut ends = lock(&self.acked_end);
                    let end = ends.entry(partition).or_insert(offset);
                    *end = (*end).max(offset);
                }
            }
            Err((e, m)) => {
                use rdkafka::error::KafkaError::MessageProduction;
                use rdkafka::types::RDKafkaErrorCode::{PurgeInflight, PurgeQueue};
                if self.pending.is_some() && matches!(e, MessageProduction(PurgeQueue | PurgeInflight)) {
                    lock(&self.purged).push((seq, rdkafka::Message::partition(m)));
                    return;
                }
                if let Some(p) = &self.pending {
                    lock(p).remove(&seq);
                }
                let c = &self.counts;
                c.failed.fetch_add(1, Relaxed);
                *lock(&c.failed_by_partition)
                    .entry(rdkafka::Message::partition(m))
                    .or_default() += 1;
                lock(&c.first_error).get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The start of the current UTC day, in Unix seconds: a default epoch under which every run
/// of one day sends the same bytes.
pub fn start_of_today() -> i64 {
    chrono_now().div_euclid(86_400) * 86_400
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
mod tests;

/// `tributary loadgen`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The chain whose raw topic receives the events.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(tributary_engine::topics::CHAINS))]
    pub chain: String,
    /// The source format: one the chain reads (json, csv, or a provider's), or `mix`, a
    /// realistic share of every format the chain reads (a wrong one is refused with the list).
    #[arg(long, default_value = "mix", value_parser = clap::builder::PossibleValuesParser::new(Format::NAMES))]
    pub format: String,
    /// How many records.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Share of exact duplicates of earlier records.
    #[arg(long, default_value_t = 0.1)]
    pub duplicates: f64,
    /// Share of invalid records (malformed, bad address, too old, unknown tenant, missing
    /// recipient, in turn, in every format).
    #[arg(long, default_value_t = 0.02)]
    pub invalid: f64,
    /// Seed: the same seed (and epoch) sends the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tenants to spread the events over.
    #[arg(long, value_delimiter = ',', default_value = "acme,globex,initech")]
    pub tenants: Vec<String>,
    /// At most this many records a second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Event times are spread over this long before the epoch.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub spread: std::time::Duration,
    /// The newest event time: `today` (the start of the current UTC day, so every run of one
    /// day with the same seed sends the same bytes and a repeat is all duplicates), `now`, or
    /// Unix seconds.
    #[arg(long, default_value = "today", value_parser = parse_epoch)]
    pub epoch: Epoch,
    /// Topic namespace: `<ns>.raw.<chain>`.
    #[arg(long, env = "TOPIC_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    Today,
    Now,
    At(i64),
}

fn parse_epoch(s: &str) -> Result<Epoch, String> {
    match s {
        "today" => Ok(Epoch::Today),
        "now" => Ok(Epoch::Now),
        n => n
            .parse::<i64>()
            .map(Epoch::At)
            .map_err(|_| format!("'{n}' is not today, now or Unix seconds")),
    }
}

impl Args {
    /// The run these flags ask for; `Err` is a usage error (a format the chain does not read,
    /// shares out of range).
    pub fn spec(&self) -> Result<Spec, String> {
        let format = Format::parse(&self.format).ok_or_else(|| format!("unknown format '{}'", self.format))?;
        check_format(&self.chain, format)?;
        let share = |x: f64| (0.0..=1.0).contains(&x);
        if !(share(self.duplicates) && share(self.invalid) && self.duplicates + self.invalid <= 1.0) {
            return Err("--duplicates and --invalid are shares between 0 and 1 that add up to at most 1".into());
        }
        if self.tenants.is_empty() {
            return Err("--tenants names no tenant".into());
        }
        Ok(Spec {
            chain: self.chain.clone(),
            count: self.count,
            duplicate_share: self.duplicates,
            invalid_share: self.invalid,
            seed: self.seed,
            tenants: self.tenants.clone(),
            spread_secs: self.spread.as_secs().max(1) as i64,
            format,
            epoch: match self.epoch {
                Epoch::Today => Some(start_of_today()),
                Epoch::Now => None,
                Epoch::At(t) => Some(t),
            },
            delivery_timeout: DELIVERY_TIMEOUT,
            replace_stuck_after: None,
        })
    }
}

/// Runs `tributary loadgen` with checked flags: sends, shows progress on stderr, prints the
/// summary (as JSON with `--json`).
pub fn run_cli(bootstrap: &str, args: &Args, spec: Spec) -> anyhow::Result<Summary> {
    let topic = tributary_engine::topics::namespaced(&args.namespace, &tributary_engine::topics::raw(&args.chain));
    let mut progress = Progress::new(&format!("loadgen {topic} ({})", args.format), spec.count);
    let s = send_paced(bootstrap, &topic, spec, args.rate, |n| progress.update(n))?;
    progress.finish(s.sent);
    if args.json {
        let mut v = serde_json::to_value(&s)?;
        v["chain"] = serde_json::json!(args.chain);
        v["topic"] = serde_json::json!(topic);
        v["format"] = serde_json::json!(args.format);
        v["seed"] = serde_json::json!(args.seed);
        v["expected_clean"] = serde_json::json!(s.expected.len());
        println!("{v}");
    } else {
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            }
        };
        println!(
            "sent {} records to {topic} in {:.1}s ({:.0} records/s): {} valid, {} duplicates, {} invalid",
            s.sent, s.seconds, s.rate, s.valid, s.duplicates, s.invalid
        );
        println!("  per format: {}", list(&s.per_format));
        println!("  invalid by class: {}", list(&s.invalid_by_class));
        println!("  expected clean identities: {}", s.expected.len());
    }
    Ok(s)
}
