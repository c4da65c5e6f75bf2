//! The lake sink: reads every `clean.<chain>` topic `read_committed` and writes one Delta
//! table per chain, exactly once.
//!
//! Invariants:
//! - A table commit carries, as `txn` actions, the next offset of every topic-partition whose
//!   records it holds (or dead-lettered); that is the only place the sink's progress lives.
//!   On every assignment the sink seeks to those offsets; Kafka's committed offsets are only
//!   written as a hint for lag monitoring.
//! - Records it cannot convert go to `dlq.sink` (acknowledged before the commit that covers
//!   their offsets) with the reason.
//! - A failed commit is retried with backoff while nothing more is read, so memory stays
//!   bounded; a commit that loses to another writer of the same partitions is dropped and
//!   those partitions are re-read from the table's offsets.

mod config;
pub mod decode;
pub mod error;
pub mod metrics;

pub use config::SinkConfig;
pub use error::{Error, RecordError, Result};

use apache_avro::Schema as AvroSchema;
use arrow::datatypes::Schema;
use deltalake::DeltaTable;
use error::{Context, FetchError, WriterSchemaError};
use metrics::SinkMetrics;
use prometheus::IntGaugeVec;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tributary_engine::metrics::Health;
use tributary_engine::topics;
use tributary_engine::watchdog::Connected;
use tributary_lake::convert;
use tributary_lake::{table, Lake};

/// What waits to be committed to one chain's table.
struct Table {
    chain: String,
    topic: String,
    table: DeltaTable,
    /// The waiting rows, decoded into builders of the table's columns.
    rows: decode::Rows,
    /// Avro bytes of the waiting rows (see [`Table::full`] for the bound).
    bytes: usize,
    /// Next offset per partition of this chain's topic.
    offsets: BTreeMap<i32, i64>,
    /// Per assigned partition, the table's `txn` version the waiting rows start from (None:
    /// the table holds none). A commit is fenced on it: when the table moved past it (another
    /// sink committed while this one stalled), the rows are dropped, never added twice.
    base: BTreeMap<i32, Option<i64>>,
    since: Option<Instant>,
    /// Kafka timestamp of the oldest waiting record, for the ingest-to-lake latency.
    oldest_ms: Option<i64>,
}

impl Table {
    /// `FLUSH_MAX_ROWS` rows wait, or `FLUSH_MAX_BYTES` bytes: of Avro as read or, when
    /// larger, of the decoded columns (what the flush holds in memory).
    fn full(&self, max_rows: usize, max_bytes: usize) -> bool {
        self.rows.len() >= max_rows || self.bytes.max(self.rows.bytes()) >= max_bytes
    }
}

struct Core {
    cfg: SinkConfig,
    rt: Runtime,
    tables: HashMap<String, Table>,
    /// Writer schemas by registry id, compiled for the decoder, with the Arrow schema they imply.
    schemas: HashMap<u32, (decode::Writer, Schema)>,
    dlq: ThreadedProducer<DefaultProducerContext>,
    dlq_topic: String,
    metrics: SinkMetrics,
    health: Health,
    fatal: Option<Error>,
    /// The consumer's `connected` and `settled` watches (see [`Ctx`]), excused while a commit
    /// waits on the lake: the loop does not poll then, so no statistics arrive, and
    /// `make chaos` (namenode-stopped) saw every such wait end the sink as "no broker up for
    /// 120s" with Kafka up.
    client_watches: [Arc<Connected>; 2],
}

struct Ctx {
    core: Arc<Mutex<Core>>,
    /// Whether the consumer has a broker up, from its statistics.
    connected: Arc<Connected>,
    /// Whether the consumer is a settled member of its group, from its statistics.
    settled: Arc<Connected>,
    /// Partitions assigned now, and since when none are, once it has had some: kept by the
    /// rebalance callback, read by the watchdog without a call into librdkafka.
    assigned: Arc<Mutex<(usize, Option<Instant>)>>,
    /// `sink_offset_lag_records`, set from the statistics.
    lag: IntGaugeVec,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.connected.observe(&statistics);
        self.settled.observe(&statistics);
        for (topic, partition, lag) in tributary_engine::watchdog::partition_lags(&statistics) {
            // `<ns>.clean.<chain>`: the table is the chain, the topic's last part.
            let table = topic.rsplit('.').next().unwrap_or_default();
            self.lag.with_label_values(&[table, &partition.to_string()]).set(lag);
        }
    }
}

impl ConsumerContext for Ctx {
    /// Sets each newly assigned partition's position to the offset its table holds before
    /// the assignment takes effect; commits what waits before partitions are revoked.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut core = lock(&self.core);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = core.position_from_tables(tpl) {
                    core.fatal.get_or_insert(e);
                }
                if let Err(e) = consumer.incremental_assign(tpl).ctx("assigning partitions") {
                    core.fatal.get_or_insert(e);
                }
                core.health.set_ready(true);
                let mut a = lock(&self.assigned);
                *a = (a.0 + tpl.count(), None);
                tracing::info!(partitions = tpl.count(), "Partitions assigned at the tables' offsets");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = core.flush_all(consumer, true) {
                    core.fatal.get_or_insert(e);
                }
                if let Err(e) = consumer.incremental_unassign(tpl).ctx("unassigning partitions") {
                    core.fatal.get_or_insert(e);
                }
                let mut a = lock(&self.assigned);
                let left = a.0.saturating_sub(tpl.count());
                *a = (left, (left == 0).then(|| a.1.unwrap_or_else(Instant::now)));
                tracing::info!(
                    partitions = tpl.count(),
                    lost = consumer.assignment_lost(),
                    "Partitions revoked"
                );
            }
            other => tracing::error!(error = ?other, "Rebalance failed"),
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

impl Core {
    fn position_from_tables(&mut self, tpl: &mut TopicPartitionList) -> Result<()> {
        let elements: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, p) in elements {
            let rt = &self.rt;
            let Some(t) = self.tables.values_mut().find(|t| t.topic == topic) else {
                continue;
            };
            rt.block_on(t.table.update_incremental(None))
                .ctx("reloading the table")?;
            let offsets = rt
                .block_on(Lake::committed_offsets(&t.table, &topic, &[p]))
                .ctx("reading the table's offsets")?;
            let offset = offsets.get(&p).map(|o| Offset::Offset(*o)).unwrap_or(Offset::Beginning);
            tpl.set_partition_offset(&topic, p, offset)
                .ctx("positioning an assigned partition")?;
            // Rows of a partition wait only while it is assigned; its revocation commits or
            // drops them. Rows still waiting here cannot be told from the others: stop, and
            // restart from the tables' offsets.
            if t.offsets.contains_key(&p) {
                return Err(Error::Internal(format!(
                    "{topic}[{p}] assigned again while rows of it wait uncommitted"
                )));
            }
            t.base.insert(p, offsets.get(&p).copied());
        }
        Ok(())
    }

    /// Converts one clean record into a row, or dead-letters it with the reason
    /// (`unusable`: its writer schema's, known already). Returns the chain whose table now
    /// holds `FLUSH_MAX_ROWS` rows or `FLUSH_MAX_BYTES` bytes, if so.
    fn accept(&mut self, m: &BorrowedMessage<'_>, unusable: Option<RecordError>) -> Result<Option<String>> {
        let topic = m.topic();
        let Some(t) = self.tables.values_mut().find(|t| t.topic == topic) else {
            return Err(Error::Internal(format!("record from unexpected topic {topic}")));
        };
        let row = match unusable {
            Some(e) => Err(e),
            None => decode(&self.schemas, t, m),
        };
        let (max_rows, max_bytes) = (self.cfg.max_rows, self.cfg.max_bytes);
        t.offsets.insert(m.partition(), m.offset() + 1);
        t.since.get_or_insert_with(Instant::now);
        if let Some(ts) = m.timestamp().to_millis() {
            t.oldest_ms = Some(t.oldest_ms.map_or(ts, |o| o.min(ts)));
        }
        if row.is_ok() {
            t.bytes += m.payload_len();
        }
        let full = t.full(max_rows, max_bytes).then(|| t.chain.clone());
        match row {
            Ok(()) => Ok(full),
            Err(reason) => self.dead_letter(m, &reason).map(|()| full),
        }
    }

    /// Fetches a writer schema from the registry, compiled for the decoder, with the Arrow
    /// schema it implies. Only a definite answer makes it [`FetchError::Unusable`].
    fn fetch_schema(&mut self, id: u32) -> std::result::Result<(decode::Writer, Schema), FetchError> {
        let unusable = |source: WriterSchemaError| {
            FetchError::Unusable(RecordError::WriterSchema {
                id,
                source: Box::new(source),
            })
        };
        let text = match self
            .rt
            .block_on(tributary_lake::registry_schema(&self.cfg.schema_registry_url, id))
        {
            Ok(text) => text,
            Err(source @ tributary_lake::Error::Unavailable(_)) => {
                return Err(FetchError::Unavailable {
                    id,
                    source: Box::new(source),
                })
            }
            Err(e) => return Err(unusable(WriterSchemaError::Registry(e))),
        };
        // A schema Apache Avro rejects stays rejected, as when it decoded the records.
        AvroSchema::parse_str(&text).map_err(|e| unusable(e.into()))?;
        let arrow = convert::arrow_schema(&text).map_err(|e| unusable(WriterSchemaError::Arrow(e)))?;
        let writer = decode::Writer::parse(&text).map_err(|e| unusable(e.into()))?;
        Ok((writer, arrow))
    }

    /// Widens the topic's table when writer schema `id` has fields the table lacks (a new
    /// optional field becomes a nullable column), committing what waits first.
    fn evolve_if_needed(&mut self, consumer: &BaseConsumer<Ctx>, topic: &str, id: u32) -> Result<()> {
        let Some((_, writer)) = self.schemas.get(&id) else {
            return Ok(());
        };
        let Some(t) = self.tables.values().find(|t| t.topic == topic) else {
            return Ok(());
        };
        let missing: Vec<arrow::datatypes::Field> = writer
            .fields()
            .iter()
            .filter(|f| t.rows.schema().field_with_name(f.name()).is_err())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let chain = t.chain.clone();
        self.flush(consumer, &chain, false)?;
        let rt = &self.rt;
        let t = self.tables.get_mut(&chain).ok_or_else(|| no_table(&chain))?;
        t.table = rt
            .block_on(Lake::evolve(t.table.clone(), &Schema::new(missing)))
            .ctx("adding columns to the table")?;
        // The flush above left no rows waiting: new builders for the wider schema.
        t.rows = rows_for(&t.table, &chain)?;
        Ok(())
    }

    fn table_mut(&mut self, chain: &str) -> Result<&mut Table> {
        self.tables.get_mut(chain).ok_or_else(|| no_table(chain))
    }

    fn dead_letter(&mut self, m: &BorrowedMessage<'_>, reason: &RecordError) -> Result<()> {
        let reason = reason.to_string();
        // Within the producer's default message.max.bytes (with room for the framing): a
        // clean record near the topic's limit plus the error headers goes as a summary.
        let dl = tributary_engine::kafka::dead_letter_within(m, error::DEAD_LETTER_CLASS, &reason, 1_000_000 - 512);
        self.dlq
            .send(dl.record(&self.dlq_topic))
            .map_err(|(e, _)| e)
            .ctx("producing to dlq.sink")?;
        self.metrics.dlq.inc();
        tracing::warn!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            reason = %reason,
            "Record dead-lettered"
        );
        Ok(())
    }

    fn due(&self) -> Vec<String> {
        self.tables
            .values()
            .filter(|t| {
                !t.offsets.is_empty()
                    && (t.full(self.cfg.max_rows, self.cfg.max_bytes)
                        || t.since.is_some_and(|s| s.elapsed() >= self.cfg.max_age))
            })
            .map(|t| t.chain.clone())
            .collect()
    }

    fn flush_all(&mut self, consumer: &BaseConsumer<Ctx>, once: bool) -> Result<()> {
        let chains: Vec<String> = self.tables.keys().cloned().collect();
        for c in chains {
            self.flush(consumer, &c, once)?;
        }
        Ok(())
    }

    /// Commits one table's waiting rows with their offsets. Retries with backoff until it
    /// lands (unless `once`); on a conflict drops them and re-reads from the table.
    fn flush(&mut self, consumer: &BaseConsumer<Ctx>, chain: &str, once: bool) -> Result<()> {
        let Some(t) = self.tables.get(chain) else { return Ok(()) };
        if t.offsets.is_empty() {
            return Ok(());
        }
        tributary_engine::kafka::flush_deliveries(&self.dlq, Duration::from_secs(60))
            .ctx("flushing dlq.sink before the commit")?;
        let mut delay = Duration::from_millis(200);
        // Built once, a batch per partition: a retry commits the same batches (the builders
        // are empty again).
        let parts = self.table_mut(chain)?.rows.finish_partitions()?;
        loop {
            let t = self.tables.get_mut(chain).ok_or_else(|| no_table(chain))?;
            let started = Instant::now();
            let parts = parts.clone();
            let offsets: BTreeMap<(String, i32), i64> =
                t.offsets.iter().map(|(p, o)| ((t.topic.clone(), *p), *o)).collect();
            let from = t
                .offsets
                .keys()
                .map(|p| {
                    let start = t
                        .base
                        .get(p)
                        .ok_or_else(|| Error::Internal(format!("{}[{p}] read but never positioned", t.topic)))?;
                    Ok(((t.topic.clone(), *p), *start))
                })
                .collect::<Result<BTreeMap<_, _>>>()?;
            match self.rt.block_on(Lake::commit_partitions(
                &mut t.table,
                parts,
                &offsets,
                &from,
                self.cfg.target_file_size,
            )) {
                Ok(s) => {
                    self.metrics.committed(chain, &s, started.elapsed());
                    if let Some(ms) = t.oldest_ms.take() {
                        let now_ms = tributary_engine::normalize::now_micros() / 1000;
                        self.metrics.latency(chain, (now_ms - ms).max(0) as f64 / 1e3);
                    }
                    let mut hint = TopicPartitionList::new();
                    for ((topic, p), o) in &offsets {
                        hint.add_partition_offset(topic, *p, Offset::Offset(*o))
                            .ctx("the committed offsets hint")?;
                    }
                    let _ = consumer.commit(&hint, rdkafka::consumer::CommitMode::Async);
                    for ((_, p), o) in &offsets {
                        t.base.insert(*p, Some(*o));
                    }
                    t.rows.clear();
                    t.bytes = 0;
                    t.offsets.clear();
                    t.since = None;
                    return Ok(());
                }
                Err(tributary_lake::Error::Conflict(msg)) => {
                    tracing::warn!(chain, error = %msg, "Another writer committed these partitions; re-reading from the table");
                    self.metrics.commits.with_label_values(&[chain, "conflict"]).inc();
                    let parts: Vec<i32> = t.offsets.keys().copied().collect();
                    t.rows.clear();
                    t.bytes = 0;
                    t.offsets.clear();
                    t.since = None;
                    t.oldest_ms = None;
                    self.rt
                        .block_on(t.table.update_incremental(None))
                        .ctx("reloading the table after a conflict")?;
                    let at = self
                        .rt
                        .block_on(Lake::committed_offsets(&t.table, &t.topic, &parts))
                        .ctx("reading the table's offsets after a conflict")?;
                    for p in parts {
                        t.base.insert(p, at.get(&p).copied());
                        let o = at.get(&p).map(|o| Offset::Offset(*o)).unwrap_or(Offset::Beginning);
                        if let Err(e) = consumer.seek(&t.topic, p, o, Duration::from_secs(10)) {
                            tracing::info!(chain, partition = p, error = %e, "Partition no longer ours");
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.retries.with_label_values(&[chain]).inc();
                    self.metrics.commits.with_label_values(&[chain, "failed"]).inc();
                    let e = Error::Lake {
                        context: format!("commit to {chain}"),
                        source: Box::new(e),
                    };
                    // Once (at a revocation), or an error waiting cannot clear: stop, and
                    // restart from the tables' offsets.
                    if once || !e.is_transient() {
                        return Err(e);
                    }
                    tracing::warn!(chain, error = %e, retry_in_ms = delay.as_millis() as u64, "Commit failed; retrying");
                    for w in &self.client_watches {
                        w.excuse();
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    // The table may have moved (or the namenode restarted): reload before retrying.
                    let _ = self.rt.block_on(t.table.update_incremental(None));
                    for w in &self.client_watches {
                        w.excuse();
                    }
                }
            }
        }
    }
}

/// Decodes one clean record into its table's waiting rows (see [`decode`]), or says why it
/// cannot be written there. Its writer schema was loaded (or found unusable) before.
fn decode(
    schemas: &HashMap<u32, (decode::Writer, Schema)>,
    t: &mut Table,
    m: &BorrowedMessage<'_>,
) -> std::result::Result<(), RecordError> {
    let payload = m.payload().ok_or(RecordError::Tombstone)?;
    let (id, datum) = tributary_engine::avro::split_wire(payload).ok_or(RecordError::NotWireFormat)?;
    let Some((writer, _)) = schemas.get(&id) else {
        // The loop loads every new id before the record is accepted.
        return Err(RecordError::WriterSchema {
            id,
            source: Box::new(WriterSchemaError::NotLoaded),
        });
    };
    t.rows.append(id, writer, datum)
}

fn no_table(chain: &str) -> Error {
    Error::Internal(format!("no table for chain {chain}"))
}

/// Empty column builders for the table's schema.
fn rows_for(table: &DeltaTable, chain: &str) -> Result<decode::Rows> {
    let schema = table::table_arrow_schema(table).ctx("the table's schema")?;
    decode::Rows::new(schema).map_err(|source| Error::Table {
        chain: chain.to_owned(),
        source,
    })
}

/// How long the sink waits for partitions back after a revocation took them all (a lapsed
/// session across a broker restart) before it stops, as a chain does (`REJOIN_LIMIT`).
const REJOIN_LIMIT: Duration = Duration::from_secs(60);
/// How often the loop checks what depends on time (see `run_loop`).
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Stops the process (exit status 3, as a chain's watchdog does) when its consumer is stuck:
/// all partitions revoked and none assigned again within [`REJOIN_LIMIT`], no broker up or
/// not a settled member of its group (joined, whether given partitions or not) for
/// `STALL_LIMIT` (`limit`, 120 s; a commit waiting on the lake excuses the silence, see
/// `Core::client_watches`), or the main loop standing still past
/// [`tributary_engine::metrics::STALL_AFTER`]. A thread of its own: `make chaos`
/// (broker-restart at 1 M events) saw the sink's partitions revoked across a broker restart
/// and never assigned again, twice, and its main loop blocked for good (it never saw the
/// SIGTERM that came 10 minutes later): a check in that loop never ran. The exit is a kill -9
/// in effect: what waits uncommitted is read again from the tables' offsets.
fn watch_stuck(
    assigned: Arc<Mutex<(usize, Option<Instant>)>>,
    connected: Arc<Connected>,
    settled: Arc<Connected>,
    limit: Duration,
    health: Health,
    stop: CancellationToken,
) -> Result<()> {
    let probe = move |now: Instant| {
        if let Some(since) = lock(&assigned).1 {
            let none = now.saturating_duration_since(since);
            if none > REJOIN_LIMIT {
                return Some(format!("all partitions revoked and none assigned again for {none:.0?}"));
            }
        }
        if let Some(down) = connected.down_past(now, limit) {
            return Some(format!("the consumer has had no broker up for {down:.0?}"));
        }
        if let Some(out) = settled.down_past(now, limit) {
            return Some(format!(
                "the consumer has not been a settled member of its group for {out:.0?}"
            ));
        }
        health
            .stalled()
            .map(|d| format!("the main loop has not come round for {d:.0?}"))
    };
    tributary_engine::watchdog::watch(Duration::from_secs(1), stop, probe, |why| {
        tracing::error!(
            "Stuck: {why}; exiting so that a restart gets a fresh client (librdkafka 2.12 can \
             keep a decommissioned broker's handle, see tributary_engine::watchdog); what waits \
             uncommitted is read again"
        );
        std::process::exit(tributary_engine::runner::STALLED_EXIT);
    })
    .map(drop)
    .map_err(|e| Error::Internal(format!("cannot start the watchdog thread: {e}")))
}

/// The consumer's prefetch queue, unless set through `KAFKA_PROP_`.
const QUEUE_LIMITS: [(&str, &str); 2] = [("queued.max.messages.kbytes", "4096"), ("fetch.queue.backoff.ms", "10")];

fn client_config(cfg: &SinkConfig) -> ClientConfig {
    tributary_engine::kafka::client_config(&cfg.kafka_bootstrap, &cfg.kafka)
}

pub fn run(cfg: SinkConfig, shutdown: CancellationToken) -> Result<()> {
    let metrics = SinkMetrics::new(&cfg.chains);
    let health = Health::with_gauge(metrics.ready.clone());
    let http = tributary_engine::metrics::serve(
        cfg.metrics_port,
        metrics.registry.clone(),
        health.clone(),
        shutdown.clone(),
    )?;
    let result = run_loop(cfg, metrics, health, shutdown.clone());
    shutdown.cancel();
    let _ = http.join();
    result
}

fn run_loop(cfg: SinkConfig, metrics: SinkMetrics, health: Health, shutdown: CancellationToken) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lake = Lake::new(&cfg.lake_uri).ctx("the lake's address")?;
    let mut tables = HashMap::new();
    for chain in &cfg.chains {
        let avsc = tributary_lake::chain_schema(chain).ok_or_else(|| Error::UnknownChain(chain.clone()))?;
        let arrow = convert::arrow_schema(avsc).ctx("the chain's schema")?;
        // The lake may be unreachable for a while (a namenode restarting): back off and retry.
        let mut delay = Duration::from_millis(500);
        let table = loop {
            let e = match rt.block_on(lake.open_or_create(chain, &arrow)) {
                Ok(t) => break t,
                Err(source) => Error::Lake {
                    context: format!("opening the {chain} table"),
                    source: Box::new(source),
                },
            };
            if shutdown.is_cancelled() || !e.is_transient() {
                return Err(e);
            }
            tracing::warn!(chain, error = %e, retry_in_ms = delay.as_millis() as u64, "Cannot open the table; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        };
        let rows = rows_for(&table, chain)?;
        let topic = topics::namespaced(&cfg.topic_namespace, &topics::clean(chain));
        tracing::info!(chain, table = %lake.table_url(chain).ctx("the table's address")?, version = ?table.version(), "Table open");
        tables.insert(
            chain.clone(),
            Table {
                chain: chain.clone(),
                topic,
                table,
                rows,
                bytes: 0,
                offsets: BTreeMap::new(),
                base: BTreeMap::new(),
                since: None,
                oldest_ms: None,
            },
        );
    }
    let dlq: ThreadedProducer<DefaultProducerContext> = client_config(&cfg)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .ctx("creating the dlq.sink producer")?;
    let topics_: Vec<String> = tables.values().map(|t| t.topic.clone()).collect();
    let (connected, settled) = (Arc::new(Connected::default()), Arc::new(Connected::group()));
    let core_arc = Arc::new(Mutex::new(Core {
        dlq_topic: topics::namespaced(&cfg.topic_namespace, "dlq.sink"),
        cfg: cfg.clone(),
        rt,
        tables,
        schemas: HashMap::new(),
        dlq,
        metrics,
        health: health.clone(),
        fatal: None,
        client_watches: [connected.clone(), settled.clone()],
    }));
    let assigned = Arc::new(Mutex::new((0usize, None)));
    let mut consumer_config = client_config(&cfg);
    // librdkafka prefetches per partition up to 64 MiB of records (or 100 000) by default,
    // held decompressed with an op per record: with 16 MiB, heaptrack still showed 59 MiB of
    // decompressed batches and 37 MiB of ops at the peak over 4 partitions. The rows waiting
    // in the builders are the sink's memory, not a queue ahead of them. A full queue delays
    // the partition's next fetch by fetch.queue.backoff.ms (default 1 s, which starved the
    // sink with a small queue): 10 ms. KAFKA_PROP_<NAME> overrides each.
    for (k, v) in QUEUE_LIMITS {
        if !cfg.kafka.contains_key(k) {
            consumer_config.set(k, v);
        }
    }
    let consumer: BaseConsumer<Ctx> = consumer_config
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .set("statistics.interval.ms", tributary_engine::watchdog::STATS_INTERVAL)
        .create_with_context(Ctx {
            core: core_arc.clone(),
            connected: connected.clone(),
            settled: settled.clone(),
            assigned: assigned.clone(),
            lag: lock(&core_arc).metrics.lag.clone(),
        })
        .ctx("creating the consumer")?;
    watch_stuck(
        assigned,
        connected,
        settled,
        cfg.stall_limit,
        health.clone(),
        shutdown.clone(),
    )?;
    let refs: Vec<&str> = topics_.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).ctx("subscribing to the clean topics")?;
    tracing::info!(topics = ?topics_, lake = %cfg.lake_uri, "Sink consuming");
    let mut last_check = Instant::now();
    let mut unchecked = 0u32;
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(50));
        // The liveness beat, the age of the waiting rows and the lag every CHECK_EVERY or
        // when the poll comes back without a record, not per record: clock reads and the scan
        // of every table took ~8 % of the sink's CPU at full speed. The clock itself is read
        // once per 256 records (read per record, it was still 2 %).
        unchecked += 1;
        let mut check = !matches!(polled, Some(Ok(_)));
        if !check && unchecked >= 256 {
            unchecked = 0;
            check = last_check.elapsed() >= CHECK_EVERY;
        }
        if check {
            last_check = Instant::now();
            unchecked = 0;
            health.beat();
        }
        let mut core = lock(&core_arc);
        if let Some(e) = core.fatal.take() {
            return Err(e);
        }
        match polled {
            Some(Ok(m)) => {
                let id = m
                    .payload()
                    .and_then(tributary_engine::avro::split_wire)
                    .map(|(id, _)| id);
                let new_schema = id.is_some_and(|id| !core.schemas.contains_key(&id));
                let mut unread = false;
                let mut unusable = None;
                if let (true, Some(id)) = (new_schema, id) {
                    let topic = m.topic().to_owned();
                    // Load the writer schema first so the table can widen before the row. A
                    // registry that does not answer is waited for: the record is not read on
                    // until it does (never dead-lettered for it). Only a definite answer that
                    // the id is unknown makes the record a dead letter (in `accept`).
                    let mut delay = Duration::from_millis(200);
                    loop {
                        match core.fetch_schema(id) {
                            Ok(s) => {
                                core.schemas.insert(id, s);
                                core.evolve_if_needed(&consumer, &topic, id)?;
                                break;
                            }
                            Err(e @ FetchError::Unavailable { .. }) => {
                                if shutdown.is_cancelled() {
                                    // Not accepted: the table's offsets still point before it.
                                    tracing::info!("Shutting down while the registry is unavailable");
                                    unread = true;
                                    break;
                                }
                                core.metrics.registry_waits.inc();
                                tracing::warn!(id, error = %e, retry_in_ms = delay.as_millis() as u64,
                                    "Registry unavailable; waiting before reading on");
                                health.beat();
                                drop(core);
                                std::thread::sleep(delay);
                                delay = (delay * 2).min(Duration::from_secs(5));
                                core = lock(&core_arc);
                            }
                            Err(FetchError::Unusable(e)) => {
                                tracing::warn!(id, error = %e, "Writer schema unknown to the registry");
                                unusable = Some(e);
                                break;
                            }
                        }
                    }
                }
                if unread {
                    continue;
                }
                if let Some(chain) = core.accept(&m, unusable)? {
                    core.flush(&consumer, &chain, false)?;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "Consumer error"),
            None => {}
        }
        if !check {
            continue;
        }
        for chain in core.due() {
            core.flush(&consumer, &chain, false)?;
        }
    }
    tracing::info!("Shutting down: committing what waits");
    lock(&core_arc).flush_all(&consumer, false)?;
    Ok(())
}

pub fn main() -> ExitCode {
    tributary_engine::init_tracing();
    let loaded = tributary_engine::settings::load::<SinkConfig>(config::tweak);
    if loaded.matches.get_flag(config::LIST_METRICS_ARG) {
        print!("{}", SinkMetrics::catalog());
        return ExitCode::SUCCESS;
    }
    let print = loaded.print;
    let resolved = SinkConfig::resolve(loaded);
    if print {
        return tributary_engine::settings::print_config(
            "sink",
            resolved.map(|c| tributary_engine::settings::to_toml(&c)),
        );
    }
    let cfg = match resolved {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Invalid configuration");
            return ExitCode::from(2);
        }
    };
    let shutdown = match tributary_engine::shutdown_on_signals() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    match run(cfg, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Stopping on an error it cannot handle");
            ExitCode::FAILURE
        }
    }
}
