//! The transactional consume → process → produce loop of a chain service.
//!
//! Invariants:
//! - Every input record lands in exactly one of clean (possibly late), DLQ or duplicate, and
//!   what it produced (clean or DLQ record, changelog entries) is written in the same Kafka
//!   transaction as the input offset that covers it (EOS v2: `send_offsets_to_transaction`
//!   with the consumer's current group metadata). Each transaction also carries one audit
//!   record with its input ranges and tallies.
//! - Dedup state changes are journaled per transaction: committed with it, rolled back when
//!   it aborts; after an abort the consumer is sought back to the first offset of the
//!   transaction in each partition, so the records are processed again.
//! - A partition is processed only after its state is restored from the committed changelog.
//! - On revocation the open transaction is committed before the partitions go, so the next
//!   owner starts exactly where this one stopped.
//! - A fenced producer or any fatal error stops the service: another instance owns the work.
//!   A failure while processing a record aborts the open transaction first, so the
//!   revocation on the way out cannot commit a record whose outputs are missing.
//! - Nothing written is larger than the producer and the topics take (`max_out_bytes`, from
//!   their `message.max.bytes` / `max.message.bytes`): a record the broker would refuse would
//!   abort its transaction on every retry, or stop the service. A clean record over it is
//!   dead-lettered as oversize; a dead letter over it goes as a summary of the original.

use crate::chain::{self, Chain, PipelineSettings};
use crate::config::Config;
use crate::dedup::{self, DedupState, Verdict};
use crate::error::{Error, ErrorClass, KafkaContext, RecordError, Result};
use crate::metrics::{ChainMetrics, Health, Tally};
use crate::record::RawRecord;
use crate::topics;
use crate::watchdog::{self, Connected, Progress};
use prometheus::IntGaugeVec;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most changelog records a restore makes room for ahead: a table of about 450 MB, what
/// 20 M keys take anyway.
const RESTORE_RESERVE_MAX: i64 = 20_000_000;
/// How long an instance whose partitions the group took (its session lapsed, e.g. while the
/// broker restarted) waits for partitions back once the broker answers again. librdkafka
/// normally rejoins within a session or two; `make chaos` (broker-restart) once saw a chain
/// revoked on a lapsed session never rejoin, alive and idle for 6 minutes with its liveness
/// green, until librdkafka logged "unexpected instruction to revoke current assignment" at
/// shutdown. Past this the instance stops loudly and its restart rejoins, whether or not the
/// broker answers the stuck consumer's metadata requests (a later run saw the instance idle
/// and silent for minutes with that check in place).
const REJOIN_LIMIT: Duration = Duration::from_secs(60);
/// The exit status of a chain stopped by its watchdog (`STALL_LIMIT`): like any other fatal
/// error's, non-zero; distinct, so that an operator can tell a stuck client from the rest.
pub const STALLED_EXIT: i32 = 3;

type Producer_ = ThreadedProducer<ProducerCtx>;

/// The producer's context: librdkafka's defaults, and its statistics for the watchdog.
/// Deliveries need no callback: every transaction flushes before it commits, and a failed
/// delivery fails the commit.
struct ProducerCtx {
    connected: Arc<Connected>,
}

impl ClientContext for ProducerCtx {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.connected.observe(&statistics);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn client_config(cfg: &Config) -> ClientConfig {
    crate::kafka::client_config(&cfg.kafka_bootstrap, &cfg.kafka)
}

/// The loop's clock: one monotonic reading per poll, and the wall time derived from it.
#[derive(Clone, Copy)]
struct LoopClock {
    now: Instant,
    /// Microseconds since the Unix epoch at `now`.
    wall_us: i64,
}

/// A wall-clock reading paired with a monotonic one, so that the loop reads one clock per
/// record instead of five (the heartbeat, the record's processing time, the transaction's
/// deadline, its due check, the gauges' tick): those reads were 5 % of a chain's CPU
/// (`perf record` of `make bench`'s mailings service). Re-anchored every 10 s, so that a
/// wall-clock step or slew shows within 10 s.
struct WallAnchor {
    at: Instant,
    wall_us: i64,
}

impl WallAnchor {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            wall_us: crate::normalize::now_micros(),
        }
    }

    fn read(&self) -> LoopClock {
        let now = Instant::now();
        LoopClock {
            now,
            wall_us: self.wall_us + now.saturating_duration_since(self.at).as_micros() as i64,
        }
    }
}

/// Names of the chain's topics, resolved once.
struct Topics {
    raw: String,
    clean: String,
    dlq: String,
    audit: String,
    changelog: String,
}

/// The open transaction.
#[derive(Default)]
struct Txn {
    open: bool,
    started: Option<Instant>,
    /// First offset consumed in this transaction, per partition: where to seek on abort.
    first: BTreeMap<i32, i64>,
    /// Next offset to consume, per partition: what the transaction commits.
    next: BTreeMap<i32, i64>,
    tally: Tally,
    oldest_input_ms: Option<i64>,
}

struct Core<C: Chain> {
    cfg: Config,
    topics: Topics,
    settings: PipelineSettings,
    producer: Producer_,
    states: HashMap<i32, DedupState>,
    txn: Txn,
    changes: Vec<dedup::ChangelogEntry>,
    /// The largest record (by [`crate::kafka::record_size`]) the producer and every topic it
    /// writes take: a clean record over it is dead-lettered, a dead letter over it summarized.
    max_out_bytes: usize,
    metrics: ChainMetrics,
    health: Health,
    /// A failure met inside a rebalance callback, raised by the main loop.
    fatal: Option<Error>,
    /// When the group took our partitions because our session lapsed (assignment lost),
    /// until partitions are assigned again.
    lost_at: Option<Instant>,
    /// When the open transaction began, for the watchdog (see [`watchdog`]).
    progress: Arc<Progress>,
    _chain: PhantomData<C>,
}

struct Ctx<C: Chain> {
    core: Arc<Mutex<Core<C>>>,
    connected: Arc<Connected>,
    /// `chain_consumer_lag_records`, set from the statistics.
    lag: IntGaugeVec,
}

impl<C: Chain> ClientContext for Ctx<C> {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.connected.observe(&statistics);
        for (_, partition, lag) in watchdog::partition_lags(&statistics) {
            self.lag.with_label_values(&[&partition.to_string()]).set(lag);
        }
    }
}

impl<C: Chain> ConsumerContext for Ctx<C> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut core = lock(&self.core);
            if consumer.assignment_lost() {
                tracing::warn!(partitions = ?partitions_of(tpl), "Partitions lost: the group session lapsed");
                core.lost_at.get_or_insert_with(Instant::now);
            }
            if let Err(e) = core.commit(consumer) {
                core.fatal.get_or_insert(e);
            }
            for el in tpl.elements() {
                core.states.remove(&el.partition());
                core.metrics
                    .state_keys
                    .with_label_values(&[&el.partition().to_string()])
                    .set(0);
                core.metrics
                    .state_bytes
                    .with_label_values(&[&el.partition().to_string()])
                    .set(0);
            }
            let n = core.states.len() as i64;
            core.metrics.assigned_partitions.set(n);
            tracing::info!(partitions = ?partitions_of(tpl), "Partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut core = lock(&self.core);
                // An empty incremental assignment is not a rejoin with work: the limit runs on.
                if tpl.count() > 0 {
                    core.lost_at = None;
                }
                core.health.set_ready(false);
                // The committed offsets first, the changelog's end after. A previous owner
                // paused (a zombie) after sending its offsets to its transaction and before
                // committing it still commits when it wakes up: its offsets, clean records and
                // changelog entries become visible together. A read_committed consumer's
                // offset fetch waits while such offsets are pending, so once it returns that
                // transaction is committed or aborted, and the restore that follows reads a
                // changelog end that includes it. (Restoring first read an end without it and
                // then processed from the zombie's offsets with a state that lacked its keys:
                // records came out clean twice; found by `make chaos`, scenario chain-zombie.)
                if let Err(e) = consumer
                    .committed_offsets(TopicPartitionList::clone(tpl), TXN_TIMEOUT * 2)
                    .ctx("fetching the committed offsets of the assigned partitions")
                {
                    core.fatal.get_or_insert(e);
                    return;
                }
                let todo: Vec<i32> = partitions_of(tpl)
                    .into_iter()
                    .filter(|p| !core.states.contains_key(p))
                    .collect();
                for (p, restored) in core.restore_all(&todo) {
                    match restored {
                        Ok(state) => {
                            core.states.insert(p, state);
                        }
                        Err(e) => {
                            core.fatal.get_or_insert(e);
                            return;
                        }
                    }
                }
                let n = core.states.len() as i64;
                core.metrics.assigned_partitions.set(n);
                core.health.set_ready(true);
                tracing::info!(partitions = ?partitions_of(tpl), "Partitions assigned and restored");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "Rebalance failed"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update: the process is going down anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl<C: Chain> Core<C> {
    fn begin(&mut self, now: Instant) -> Result<()> {
        if !self.txn.open {
            self.producer
                .begin_transaction()
                .map_err(txn_error("begin transaction"))?;
            self.txn.open = true;
            self.txn.started = Some(now);
            self.progress.open(now);
        }
        Ok(())
    }

    fn deadline_in(&self, now: Instant) -> Option<Duration> {
        self.txn.started.map(|s| {
            self.cfg
                .commit_interval
                .saturating_sub(now.saturating_duration_since(s))
        })
    }

    fn due(&self, now: Instant) -> bool {
        self.txn.open
            && (self.txn.tally.received as usize >= self.cfg.max_batch_records
                || self
                    .txn
                    .started
                    .is_some_and(|s| now.saturating_duration_since(s) >= self.cfg.commit_interval))
    }

    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        let mut record = record;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(Error::Kafka {
                        context: "producing",
                        source: e,
                    })
                }
            }
        }
    }

    /// Processes one raw record at `clock`'s reading of this loop iteration.
    fn process(&mut self, m: &BorrowedMessage<'_>, clock: &LoopClock) -> Result<()> {
        self.begin(clock.now)?;
        let (p, offset) = (m.partition(), m.offset());
        let Some(state) = self.states.get_mut(&p) else {
            return Err(Error::Internal(format!(
                "record from partition {p}, which has no restored state"
            )));
        };
        self.txn.first.entry(p).or_insert(offset);
        self.txn.next.insert(p, offset + 1);
        self.txn.tally.received += 1;
        if let Some(ts) = m.timestamp().to_millis() {
            let o = self.txn.oldest_input_ms.get_or_insert(ts);
            *o = (*o).min(ts);
        }
        let raw = RawRecord {
            payload: m.payload().unwrap_or(&[]),
            tenant: header(m, "tenant"),
            csv_header: header(m, "csv-header"),
        };
        let now = clock.wall_us;
        let encoded = match chain::process::<C>(&self.settings, header(m, "source"), &raw, now) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(m, &e),
        };
        let key = m.key().unwrap_or(encoded.tenant_id.as_bytes());
        let size = crate::kafka::record_size(key.len(), encoded.value.len(), []);
        if size > self.max_out_bytes {
            // Decided before the record enters dedup state: it never becomes clean.
            let e = RecordError::new(
                ErrorClass::Oversize,
                format!(
                    "its clean record would be {size} bytes; the largest record {} takes is {} bytes",
                    self.topics.clean, self.max_out_bytes
                ),
            );
            return self.dead_letter(m, &e);
        }
        self.changes.clear();
        state.cap_clock(dedup::micros_to_secs2000(now));
        let verdict = state.observe(
            encoded.key,
            dedup::micros_to_secs2000(encoded.event_time),
            &mut self.changes,
        );
        match verdict {
            Verdict::Duplicate => {
                self.txn.tally.duplicate += 1;
                return Ok(());
            }
            Verdict::Late => self.txn.tally.late += 1,
            Verdict::New => {}
        }
        self.txn.tally.clean += 1;
        self.send(BaseRecord::to(&self.topics.clean).key(key).payload(&encoded.value))?;
        for i in 0..self.changes.len() {
            let (k, v) = self.changes[i];
            let key = dedup::changelog_key(k);
            let value = v.map(dedup::changelog_value);
            let rec = BaseRecord::<[u8], [u8]>::to(&self.topics.changelog)
                .partition(p)
                .key(&key[..]);
            let rec = match &value {
                Some(v) => rec.payload(&v[..]),
                None => rec,
            };
            self.send(rec)?;
        }
        Ok(())
    }

    /// The DLQ record: the original key, value and headers, plus the error and where the
    /// record came from; where that is too large for the DLQ, a summary in place of the
    /// payload (`error.truncated: true`, see [`crate::kafka::dead_letter_within`]).
    fn dead_letter(&mut self, m: &BorrowedMessage<'_>, e: &RecordError) -> Result<()> {
        self.txn.tally.dlq += 1;
        *self.txn.tally.dlq_by_class.entry(e.class.as_str()).or_default() += 1;
        let dl = crate::kafka::dead_letter_within(m, e.class.as_str(), &e.reason, self.max_out_bytes);
        if dl.truncated {
            self.txn.tally.dlq_truncated += 1;
            tracing::warn!(
                partition = m.partition(),
                offset = m.offset(),
                class = e.class.as_str(),
                bytes = m.payload().map_or(0, <[u8]>::len),
                max_bytes = self.max_out_bytes,
                "Record too large to dead-letter whole: dead-lettered as a summary"
            );
        }
        self.send(dl.record(&self.topics.dlq))
    }

    /// Commits the open transaction (audit record, offsets, commit). An abortable failure
    /// aborts, rolls state back and rewinds the consumer; a fatal one is returned.
    fn commit<X: ConsumerContext>(&mut self, consumer: &BaseConsumer<X>) -> Result<()> {
        if !self.txn.open {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.try_commit(consumer);
        match result {
            Ok(()) => {
                for s in self.states.values_mut() {
                    s.commit();
                }
                self.state_gauges();
                let t = &self.txn.tally;
                t.publish(&self.metrics);
                self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                self.metrics.transactions.with_label_values(&["committed"]).inc();
                if let Some(ms) = self.txn.oldest_input_ms {
                    let now_ms = crate::normalize::now_micros() / 1000;
                    self.metrics
                        .ingest_to_clean_seconds
                        .observe(((now_ms - ms).max(0) as f64) / 1e3);
                }
                self.end_txn();
                Ok(())
            }
            Err(e) => {
                if let Error::Kafka {
                    source: KafkaError::Transaction(ref re),
                    ..
                } = e
                {
                    if is_fenced(re.code()) {
                        return Err(Error::Fenced(format!(
                            "{e}: another instance with transactional id {} took over",
                            self.transactional_id()
                        )));
                    }
                    if re.is_fatal() {
                        return Err(e);
                    }
                }
                tracing::warn!(error = %e, "Transaction failed; aborting and processing its records again");
                self.abort(consumer)
            }
        }
    }

    fn try_commit<X: ConsumerContext>(&mut self, consumer: &BaseConsumer<X>) -> Result<()> {
        let tally = &self.txn.tally;
        let audit = crate::audit::Audit {
            chain: C::NAME.to_owned(),
            instance: self.cfg.instance_id.clone(),
            inputs: self
                .txn
                .first
                .iter()
                .map(|(p, first)| crate::audit::AuditInput {
                    topic: self.topics.raw.clone(),
                    partition: *p,
                    first_offset: *first,
                    next_offset: self.txn.next[p],
                })
                .collect(),
            received: tally.received,
            clean: tally.clean,
            dlq: tally.dlq,
            duplicate: tally.duplicate,
            late: tally.late,
            dlq_by_class: tally.dlq_by_class.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            committed_at: crate::normalize::now_micros(),
        };
        let audit = serde_json::to_string(&audit).map_err(|e| Error::Internal(format!("audit record: {e}")))?;
        self.send(
            BaseRecord::to(&self.topics.audit)
                .key(self.cfg.instance_id.as_bytes())
                .payload(audit.as_bytes()),
        )?;
        let mut tpl = TopicPartitionList::new();
        for (p, next) in &self.txn.next {
            tpl.add_partition_offset(&self.topics.raw, *p, Offset::Offset(*next))
                .ctx("building offsets")?;
        }
        let cgm = consumer
            .group_metadata()
            .ok_or_else(|| Error::Internal("consumer has no group metadata".into()))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &cgm, TXN_TIMEOUT)
            .map_err(txn_error("send offsets to transaction"))?;
        loop {
            match crate::kafka::commit_transaction(&self.producer, TXN_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    tracing::warn!(error = %e, "Commit failed with a retriable error; retrying");
                }
                Err(e) => {
                    return Err(Error::Kafka {
                        context: "commit transaction",
                        source: e,
                    })
                }
            }
        }
    }

    fn abort<X: ConsumerContext>(&mut self, consumer: &BaseConsumer<X>) -> Result<()> {
        self.producer
            .abort_transaction(TXN_TIMEOUT)
            .map_err(txn_error("abort transaction"))?;
        for s in self.states.values_mut() {
            s.rollback();
        }
        for (p, first) in &self.txn.first {
            if self.states.contains_key(p) {
                consumer
                    .seek(&self.topics.raw, *p, Offset::Offset(*first), Duration::from_secs(10))
                    .ctx("seeking back after abort")?;
            }
        }
        self.metrics.transactions.with_label_values(&["aborted"]).inc();
        self.end_txn();
        Ok(())
    }

    /// Aborts the open transaction after a failure that stops the service, so that nothing
    /// commits it on the way out; its records are read again by the partitions' next owner.
    fn discard(&mut self) {
        if !self.txn.open {
            return;
        }
        if let Err(e) = self.producer.abort_transaction(TXN_TIMEOUT) {
            tracing::warn!(error = %e, "Cannot abort the failed transaction; it aborts when it times out or the next instance starts");
        }
        for s in self.states.values_mut() {
            s.rollback();
        }
        self.metrics.transactions.with_label_values(&["aborted"]).inc();
        self.end_txn();
    }

    /// Forgets the transaction that just committed or aborted.
    fn end_txn(&mut self) {
        self.txn = Txn::default();
        self.progress.close();
    }

    fn transactional_id(&self) -> String {
        transactional_id(&self.cfg.topic_namespace, C::NAME, &self.cfg.instance_id)
    }

    /// Restores the partitions' states side by side, one thread a core: a restore waits on
    /// the broker about half of its time and spends the rest in librdkafka's per-record
    /// poll, so one thread left a core idle (10 M keys over 4 partitions, 2 cores: 7.9 s one
    /// after the other, 4.2 s side by side, service start included).
    fn restore_all(&self, partitions: &[i32]) -> Vec<(i32, Result<DedupState>)> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, partitions.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = Mutex::new(Vec::with_capacity(partitions.len()));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(&p) = partitions.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                        let restored = self.restore(p);
                        lock(&done).push((p, restored));
                    }
                });
            }
        });
        let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        done.sort_by_key(|(p, _)| *p);
        done
    }

    /// Rebuilds a partition's dedup state from the committed changelog.
    fn restore(&self, partition: i32) -> Result<DedupState> {
        let started = Instant::now();
        let topic = &self.topics.changelog;
        let fail = |reason: String| Error::Restore {
            topic: topic.clone(),
            partition,
            reason,
        };
        let mut state = DedupState::new(self.cfg.dedup_window.as_secs() as u32);
        state.cap_clock(dedup::micros_to_secs2000(crate::normalize::now_micros()));
        let consumer: BaseConsumer = client_config(&self.cfg)
            .set("group.id", format!("{}-restore", self.cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760")
            // librdkafka stops fetching while 100 000 records wait in its queue and then
            // looks again only after fetch.queue.backoff.ms, 1 s by default: the restore
            // drained the queue in a tenth of that and stood idle the rest (61 % of the
            // machine idle during a 10 M key restore, measured with `perf record -a`).
            .set("fetch.queue.backoff.ms", "5")
            .create()
            .ctx("creating restore consumer")?;
        // A partition just created answers NotLeaderForPartition for a while: waited out.
        let (low, high) =
            crate::kafka::watermarks_patiently(&consumer, topic, partition, Duration::from_secs(120), &|| false)
                .map_err(|e| fail(e.to_string()))?;
        state.reserve_for_restore((high - low).clamp(0, RESTORE_RESERVE_MAX) as usize);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .ctx("building restore assignment")?;
        consumer.assign(&tpl).ctx("assigning changelog partition")?;
        let limit = Instant::now() + TXN_TIMEOUT * 2;
        let mut n = 0u64;
        let mut idle = true;
        loop {
            // The clock is read once every 1 024 records and after every empty poll: read for
            // each record, it was a sixth of the restore's CPU (`perf record`, 10 M keys).
            if idle || n.is_multiple_of(1024) {
                idle = false;
                if Instant::now() > limit {
                    return Err(fail(format!("not at the end ({high}) after {:?}", TXN_TIMEOUT * 2)));
                }
                self.health.beat();
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    if let Some((k, v)) = dedup::decode_changelog(m.key(), m.payload()) {
                        state.apply_changelog(k, v);
                        n += 1;
                    } else {
                        return Err(fail(format!("malformed changelog record at offset {}", m.offset())));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    idle = true;
                    let pos = consumer
                        .position()
                        .ctx("restore position")?
                        .find_partition(topic, partition)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(0);
                    if pos >= high || high == 0 {
                        break;
                    }
                }
                Some(Err(e)) => return Err(fail(e.to_string())),
            }
        }
        state.finish_restore();
        let elapsed = started.elapsed();
        let label = partition.to_string();
        self.metrics
            .restore_seconds
            .with_label_values(&[&label])
            .observe(elapsed.as_secs_f64());
        self.metrics
            .last_restore_seconds
            .with_label_values(&[&label])
            .set(elapsed.as_secs_f64());
        self.metrics
            .state_keys
            .with_label_values(&[&label])
            .set(state.len() as i64);
        self.metrics
            .state_bytes
            .with_label_values(&[&label])
            .set(state.allocated_bytes() as i64);
        tracing::info!(
            partition,
            records = n,
            keys = state.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "State restored"
        );
        Ok(state)
    }

    /// The dedup state's keys and bytes per partition, set at every commit.
    fn state_gauges(&self) {
        for (p, s) in &self.states {
            let label = p.to_string();
            self.metrics.state_keys.with_label_values(&[&label]).set(s.len() as i64);
            self.metrics
                .state_bytes
                .with_label_values(&[&label])
                .set(s.allocated_bytes() as i64);
        }
    }
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced
    )
}

fn txn_error(context: &'static str) -> impl Fn(KafkaError) -> Error {
    move |source| Error::Kafka { context, source }
}

pub fn transactional_id(namespace: &str, chain: &str, instance: &str) -> String {
    topics::namespaced(namespace, &format!("tributary-{chain}-{instance}"))
}

/// Registers the chain's schema under `clean.<chain>-value` and returns its id, retrying
/// while the registry is unreachable.
pub fn register_schema(url: &str, subject: &str, schema: &str, shutdown: &CancellationToken) -> Result<u32> {
    use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
    use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let settings = SrSettings::new(url.to_owned());
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
        match rt.block_on(post_schema(&settings, subject.to_owned(), supplied)) {
            Ok(r) => return Ok(r.id),
            Err(e) if e.retriable && attempt < 30 && !shutdown.is_cancelled() => {
                tracing::warn!(error = %e, attempt, "Schema registry unreachable; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(Error::Registry(format!("registering {subject}: {e}"))),
        }
    }
    unreachable!("the loop returns")
}

/// The smallest record a chain service must be able to write whole: a dead letter's summary
/// with its headers (see [`crate::kafka::dead_letter_within`]), with room to spare.
const MIN_OUT_RECORD_BYTES: usize = 2 * crate::kafka::SUMMARY_RESERVE;

/// The largest record the producer may write: its `message.max.bytes` (configured, else
/// librdkafka's default), lowered to what the smallest `max.message.bytes` of the topics it
/// writes takes in a batch. The producer is set to it, so that no batch it builds and no
/// record it sends is one the broker rejects inside a transaction (which would abort it
/// again on every retry); records over it are dead-lettered or summarized instead.
fn output_record_limit(cfg: &Config, topics: &[&str]) -> Result<usize> {
    let configured = match cfg.kafka.get("message.max.bytes") {
        None => crate::kafka::DEFAULT_MESSAGE_MAX_BYTES,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|e| Error::Config(format!("kafka property message.max.bytes '{v}': {e}")))?,
    };
    let mut limit = configured;
    match crate::kafka::max_message_bytes(&client_config(cfg), topics) {
        Ok(found) => {
            for (topic, max) in found {
                let takes = max.saturating_sub(crate::kafka::BATCH_OVERHEAD);
                if takes < limit {
                    tracing::info!(
                        topic,
                        max_message_bytes = max,
                        "Records written are sized to the topic's limit"
                    );
                    limit = takes;
                }
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            message_max_bytes = configured,
            "Cannot read the topics' max.message.bytes; records are sized to message.max.bytes alone"
        ),
    }
    if limit < MIN_OUT_RECORD_BYTES {
        return Err(Error::Config(format!(
            "records of at most {limit} bytes can be written (message.max.bytes {configured}, and the \
             max.message.bytes of {topics:?}); at least {MIN_OUT_RECORD_BYTES} are needed"
        )));
    }
    if cfg.max_record_bytes > limit {
        tracing::info!(
            max_record_bytes = cfg.max_record_bytes,
            limit,
            "max_record_bytes is above what the producer may write: a valid record whose clean encoding is larger is dead-lettered as oversize"
        );
    }
    Ok(limit)
}

/// Checks that the chain's topics exist and that the changelog can hold every input partition.
fn check_topics<X: ConsumerContext>(consumer: &BaseConsumer<X>, t: &Topics) -> Result<()> {
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .ctx("fetching metadata")?;
    let count = |name: &str| {
        md.topics()
            .iter()
            .find(|x| x.name() == name && x.error().is_none())
            .map(|x| x.partitions().len())
    };
    let mut missing = Vec::new();
    for name in [&t.raw, &t.clean, &t.dlq, &t.audit, &t.changelog] {
        if count(name).is_none() {
            missing.push(name.as_str());
        }
    }
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "missing topics {missing:?}: create them with `tributary topics`"
        )));
    }
    let (raw, log) = (count(&t.raw).unwrap_or(0), count(&t.changelog).unwrap_or(0));
    if log < raw {
        return Err(Error::Config(format!(
            "{} has {log} partitions but {} has {raw}: the changelog needs one partition per input partition",
            t.changelog, t.raw
        )));
    }
    Ok(())
}

/// Stops the process, loudly, once `probe` names a stall: a transaction open for longer than
/// the stall limit, or a client with no broker up for that long. Its Kafka client is stuck (see
/// [`watchdog`] for the librdkafka bug that does this), and a restart gets a fresh one. An open
/// transaction that old cannot commit any more, so the exit loses nothing: the broker aborts
/// it, and its records are read again by the partitions' next owner.
fn watch_progress(
    probe: impl FnMut(Instant) -> Option<String> + Send + 'static,
    limit: Duration,
    stop: CancellationToken,
) -> Result<()> {
    watchdog::watch(Duration::from_secs(1), stop, probe, move |why| {
        tracing::error!(
            stall_limit = ?limit,
            "Stalled: {why}, longer than the stall limit ({limit:?}): the Kafka client is stuck; \
             exiting so that a restart gets a fresh client (an open transaction never commits: \
             its records are read again)"
        );
        std::process::exit(STALLED_EXIT);
    })
    .map(drop)
    .map_err(|e| Error::Internal(format!("cannot start the watchdog thread: {e}")))
}

/// Runs a chain service until `shutdown` is cancelled or a fatal error occurs.
pub fn run<C: Chain>(cfg: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = ChainMetrics::new(C::NAME);
    let health = Health::with_gauge(metrics.ready.clone());
    let http = crate::metrics::serve(
        cfg.metrics_port,
        metrics.registry.clone(),
        health.clone(),
        shutdown.clone(),
    )?;
    let result = run_loop::<C>(cfg, metrics, health, shutdown.clone());
    shutdown.cancel();
    let _ = http.join();
    result
}

fn run_loop<C: Chain>(cfg: Config, metrics: ChainMetrics, health: Health, shutdown: CancellationToken) -> Result<()> {
    let subject = topics::namespaced(&cfg.topic_namespace, &topics::subject(C::NAME));
    let schema_id = register_schema(&cfg.schema_registry_url, &subject, C::SCHEMA, &shutdown)?;
    tracing::info!(chain = C::NAME, schema_id, "Schema registered");
    let ns = |t: String| topics::namespaced(&cfg.topic_namespace, &t);
    let topics = Topics {
        raw: ns(topics::raw(C::NAME)),
        clean: ns(topics::clean(C::NAME)),
        dlq: ns(topics::dlq(C::NAME)),
        audit: ns(topics::audit(C::NAME)),
        changelog: ns(topics::changelog(C::NAME)),
    };
    let max_out_bytes = output_record_limit(&cfg, &[&topics.clean, &topics.dlq, &topics.audit, &topics.changelog])?;
    // Batching and compression are defaults the deployment's `kafka` settings may replace;
    // what exactly-once rests on (idempotence, the transactional id) is set after them.
    // Whether each client has a broker up, from its statistics. The consumer's come through
    // its poll, so they also stop while the loop is blocked in a commit (which the open
    // transaction's age catches first).
    let (producer_connected, consumer_connected) = (Arc::new(Connected::default()), Arc::new(Connected::default()));
    let producer: Producer_ = crate::kafka::producer_config(&cfg.kafka_bootstrap, &cfg.kafka)
        .set("message.max.bytes", max_out_bytes.to_string())
        .set(
            "transactional.id",
            transactional_id(&cfg.topic_namespace, C::NAME, &cfg.instance_id),
        )
        .set("enable.idempotence", "true")
        .set("transaction.timeout.ms", TXN_TIMEOUT.as_millis().to_string())
        .set("statistics.interval.ms", watchdog::STATS_INTERVAL)
        .create_with_context(ProducerCtx {
            connected: producer_connected.clone(),
        })
        .ctx("creating producer")?;
    producer.init_transactions(TXN_TIMEOUT).map_err(|e| Error::Kafka {
        context: "init transactions",
        source: e,
    })?;
    let progress = Arc::new(Progress::default());
    let core = Arc::new(Mutex::new(Core::<C> {
        settings: PipelineSettings {
            tenants: cfg.tenants.clone(),
            max_record_bytes: cfg.max_record_bytes,
            schema_id,
        },
        cfg: cfg.clone(),
        topics,
        producer,
        states: HashMap::new(),
        txn: Txn::default(),
        changes: Vec::new(),
        max_out_bytes,
        metrics,
        health: health.clone(),
        fatal: None,
        lost_at: None,
        progress: progress.clone(),
        _chain: PhantomData,
    }));
    // Watches until this function returns, the final commit at shutdown included.
    let watching = CancellationToken::new();
    let _stop_watching = watching.clone().drop_guard();
    let limit = cfg.stall_limit;
    let clients = [
        ("producer", producer_connected),
        ("consumer", consumer_connected.clone()),
    ];
    let probe = move |now: Instant| {
        if let Some(open) = progress.open_for(now).filter(|open| *open > limit) {
            return Some(format!("a transaction has been open for {open:.0?}"));
        }
        clients.iter().find_map(|(client, connected)| {
            let down = connected.down_past(now, limit)?;
            Some(format!("the {client} has had no broker up for {down:.0?}"))
        })
    };
    watch_progress(probe, limit, watching)?;
    let consumer: BaseConsumer<Ctx<C>> = client_config(&cfg)
        .set("group.id", &cfg.group_id)
        // Static membership: a restarted instance takes its partitions back at once instead
        // of waiting for the session of its dead predecessor to expire.
        .set(
            "group.instance.id",
            transactional_id(&cfg.topic_namespace, C::NAME, &cfg.instance_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", watchdog::STATS_INTERVAL)
        .create_with_context(Ctx {
            core: core.clone(),
            connected: consumer_connected.clone(),
            lag: lock(&core).metrics.consumer_lag.clone(),
        })
        .ctx("creating consumer")?;
    check_topics(&consumer, &lock(&core).topics)?;
    let raw_topic = lock(&core).topics.raw.clone();
    consumer.subscribe(&[&raw_topic]).ctx("subscribing")?;
    health.set_ready(true);
    tracing::info!(chain = C::NAME, group = %cfg.group_id, instance = %cfg.instance_id, "Consuming");
    let mut anchor = WallAnchor::new();
    let mut clock = anchor.read();
    while !shutdown.is_cancelled() {
        // The heartbeat and the poll's timeout use the reading after the last poll: one
        // record's processing ago.
        health.beat_at(clock.wall_us / 1000);
        let timeout = lock(&core).deadline_in(clock.now).unwrap_or(Duration::from_millis(100));
        let polled = consumer.poll(timeout.max(Duration::from_millis(1)));
        clock = anchor.read();
        let mut core = lock(&core);
        if let Some(e) = core.fatal.take() {
            return Err(e);
        }
        match polled {
            Some(Ok(m)) => {
                if let Err(e) = core.process(&m, &clock) {
                    // The record's outputs may be half written: its transaction must not
                    // commit (the revocation on the way out would commit it, offset and all).
                    core.discard();
                    return Err(e);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Consumer error");
                if let KafkaError::MessageConsumptionFatal(_) = e {
                    return Err(Error::Kafka {
                        context: "consuming",
                        source: e,
                    });
                }
            }
            None => {}
        }
        if core.due(clock.now) {
            core.commit(&consumer)?;
        }
        if clock.now.saturating_duration_since(anchor.at) > Duration::from_secs(10) {
            anchor = WallAnchor::new();
        }
        if core
            .lost_at
            .is_some_and(|t| clock.now.saturating_duration_since(t) > REJOIN_LIMIT)
        {
            // Whether or not the broker answers: `make chaos` (broker-restart) saw an instance
            // stay unassigned for six minutes after the broker was back with nothing in its
            // log, where the only silent wait was this check's own metadata request failing
            // (then the condition to stop). A restart rejoins with a fresh client; a broker
            // still down makes the new instance's start fail loudly (its topic check), which
            // an orchestrator restarts with back-off.
            return Err(Error::MembershipLost(format!(
                "partitions lost with the group session and none assigned again within {REJOIN_LIMIT:?}; \
                 stopping so that a restart rejoins with a fresh client"
            )));
        }
    }
    tracing::info!("Shutting down: committing the open transaction");
    lock(&core).commit(&consumer)?;
    consumer.unsubscribe();
    if let Some(e) = lock(&core).fatal.take() {
        return Err(e);
    }
    Ok(())
}
