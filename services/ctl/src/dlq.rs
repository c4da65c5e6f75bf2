//! `tributary dlq list|replay`: the dead letters of a chain, and their replay once their
//! cause is fixed.
//!
//! **Replay, exactly once.** `replay` sends the selected records of `dlq.<chain>` back to
//! `raw.<chain>` (their original key, payload and headers, without the six headers the chain
//! added when it dead-lettered them, plus `replay.of` = `dlq.<chain>/<partition>/<offset>`),
//! into the raw partition they first came from (`source.partition`), so they meet the same
//! dedup state. The chain then does what it always does: a record now valid goes to clean, one
//! still invalid goes back to the DLQ with its (possibly new) reason.
//!
//! Which dead letters were replayed is held in the compacted ledger topic `dlq.replayed`
//! (namespaced like every topic; created by the tool when missing), keyed
//! `dlq.<chain>/<partition>/<offset>`, its value a JSON object naming the raw record it became.
//! Each batch of raw records and its ledger entries are produced in **one Kafka transaction**
//! under the transactional id `tributary-dlq-replay-<chain>` (namespaced), fixed per chain:
//!
//! 1. `init_transactions` first. It fences any other run of the same chain (its next commit
//!    fails) and completes or aborts that run's last transaction, also one left open by a run
//!    killed with `kill -9`.
//! 2. Then the ledger is read to its high watermark with `read_committed`, waiting until no
//!    open transaction (another chain's replay) holds its last stable offset below that mark,
//!    so every entry committed so far is seen.
//! 3. The DLQ partitions are scanned from their start to their last stable offset as of the
//!    run's start (`read_committed`); what the ledger holds or the filters exclude is skipped.
//! 4. Per batch (`--batch`, default 500): begin, produce the raw records, then the ledger
//!    entries, commit. A batch is in raw and in the ledger, or in neither: a dead letter is
//!    never replayed twice, whatever kills the tool when, and however often it runs.
//!
//! **Filters.** `--reason S` keeps dead letters whose `error.reason` contains `S` (a substring,
//! case-insensitive: reasons name values, e.g. `tenant 'hooli' is not configured`); `--class C`
//! keeps those whose `error.class` is exactly one of `C` (comma-separated, e.g.
//! `unknown_tenant`); `--since T` keeps those dead-lettered at or after `T` (`error.time`, µs
//! since the epoch): an RFC 3339 time, Unix seconds, or a duration back from now (`2h`, `7d`).
//!
//! **Records that fail again.** A replayed record the chain still rejects comes back to the DLQ
//! as a new dead letter, with `replay.of` among its original headers. `replay` holds those back
//! (counted as `failed_again_held`) unless `--include-replayed` is given: otherwise a record
//! that can never be valid would be replayed again on every run, forever. `list` shows them
//! (`replay.of`). With the flag each is again replayed at most once, like any dead letter.
//!
//! **Not replayable.** A dead letter too large to keep whole (`error.truncated: true`, its
//! payload a summary of the record) is never replayed, whatever the flags (`not_replayable`).
//!
//! **Ledger size.** Entries of dead letters that retention has removed from the DLQ (offset
//! below the partition's low watermark) are tombstoned at the end of a replay, in the run's
//! last transaction, so the ledger stays as large as the DLQ it describes.
//!
//! The ledger is the one record of what was replayed: deleting it (or deleting and recreating
//! the DLQ topic, whose offsets then start over) breaks the guarantee.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tributary_engine::kafka::QuietEof;
use tributary_engine::topics;

/// The ledger of replayed dead letters (namespaced like every topic), compacted.
pub const LEDGER_TOPIC: &str = "dlq.replayed";
/// The header a replayed raw record carries: `dlq.<chain>/<partition>/<offset>`.
pub const REPLAY_OF: &str = "replay.of";
/// The headers the chain adds when it dead-letters a record (engine `kafka::dead_letter_within`),
/// in the order it adds them, after the record's own.
pub const DLQ_HEADERS: [&str; 6] = [
    "error.class",
    "error.reason",
    "error.time",
    "source.topic",
    "source.partition",
    "source.offset",
];
/// Longest a replay transaction may stay open, and how long a call on it may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Prints one JSON line per dead letter of `dlq.<chain>` matching the filters: partition,
    /// offset, error.class, error.reason, error.time (RFC 3339), size (payload bytes),
    /// tenant, replay.of (set when the record failed again after a replay) and replayed
    /// (whether the ledger says it was replayed).
    List(ListArgs),
    /// Sends the selected dead letters back to `raw.<chain>` (original key, payload and
    /// headers, plus `replay.of`), each exactly once across runs, kills and concurrent runs
    /// (a Kafka transaction per batch with the ledger topic `dlq.replayed`). Records that
    /// failed again after an earlier replay are held back unless `--include-replayed`.
    /// Prints a JSON summary.
    Replay(ReplayArgs),
}

/// Which dead letters: the chain and the filters.
#[derive(clap::Args, Debug, Clone)]
pub struct Filter {
    /// The chain whose `dlq.<chain>` is read.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
    pub chain: String,
    /// Only dead letters whose `error.reason` contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters of these error classes (exact, comma-separated, e.g. unknown_tenant).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(
        tributary_engine::ErrorClass::ALL.map(tributary_engine::ErrorClass::as_str)))]
    pub class: Vec<String>,
    /// Only dead letters written at or after this: RFC 3339, Unix seconds, or a duration back
    /// from now (`2h`, `7d`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,
    /// Topic namespace: `<ns>.dlq.<chain>`, `<ns>.raw.<chain>`, `<ns>.dlq.replayed`.
    #[arg(long, env = "TOPIC_NAMESPACE", default_value = "")]
    pub namespace: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Also replay dead letters that are themselves a replayed record that failed again
    /// (they carry `replay.of`); each is still replayed at most once.
    #[arg(long)]
    pub include_replayed: bool,
    /// Dead letters per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Replay at most this many dead letters in this run (the rest stay for a later run).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Count what would be replayed; write nothing (and fence no running replay).
    #[arg(long)]
    pub dry_run: bool,
}

/// `--since`: RFC 3339, Unix seconds, or a duration back from now; µs since the epoch.
pub fn parse_since(s: &str) -> std::result::Result<i64, String> {
    if let Ok(d) = humantime::parse_duration(s.trim()) {
        let back = i64::try_from(d.as_micros()).map_err(|_| format!("'{s}': too long a duration"))?;
        return Ok(tributary_engine::normalize::now_micros() - back);
    }
    tributary_view::parse_time(s).map_err(|e| format!("{e}, or a duration such as 2h or 7d"))
}

/// One header: key and value (None: a null value).
pub type RawHeader = (String, Option<Vec<u8>>);

/// One record of `dlq.<chain>`, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The headers of the record the chain rejected, in order.
    pub original_headers: Vec<RawHeader>,
    pub class: String,
    pub reason: String,
    /// `error.time`, µs since the epoch.
    pub time: Option<i64>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    /// `replay.of` of the rejected record: set when it was itself a replay.
    pub replay_of: Option<String>,
    /// `error.truncated: true`: the record was too large to dead-letter whole, and the payload
    /// is a summary of it, not its bytes. Never replayed: what it would send is not the record.
    pub truncated: bool,
}

impl DeadLetter {
    /// Splits the headers: the chain appends exactly [`DLQ_HEADERS`], in that order, after the
    /// record's own (then, for a summarized record, `error.truncated`), so from the last such
    /// run of six on they are the DLQ's and everything before is the original's (even an
    /// original header that happens to be called `error.reason`). A record not written that
    /// way (by hand, by another tool) falls back to by-name: the six and any `error.*`.
    pub fn from_parts(
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<RawHeader>,
    ) -> DeadLetter {
        let n = headers.len();
        let w = DLQ_HEADERS.len();
        // The six, followed by nothing but further `error.*` headers (`error.truncated`).
        let start = (0..=n.saturating_sub(w)).rev().find(|&i| {
            n >= w
                && headers[i..i + w]
                    .iter()
                    .zip(DLQ_HEADERS)
                    .all(|((k, _), want)| k == want)
                && headers[i + w..].iter().all(|(k, _)| k.starts_with("error."))
        });
        let (original_headers, dlq): (Vec<RawHeader>, Vec<RawHeader>) = match start {
            Some(i) => {
                let mut original = headers;
                let dlq = original.split_off(i);
                (original, dlq)
            }
            None => headers
                .into_iter()
                .partition(|(k, _)| !DLQ_HEADERS.contains(&k.as_str()) && !k.starts_with("error.")),
        };
        let get = |name: &str| -> Option<String> {
            dlq.iter()
                .rev()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let replay_of = original_headers
            .iter()
            .rev()
            .find(|(k, _)| k == REPLAY_OF)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        DeadLetter {
            partition,
            offset,
            key,
            payload,
            class: get("error.class").unwrap_or_default(),
            reason: get("error.reason").unwrap_or_default(),
            time: get("error.time").and_then(|t| t.trim().parse().ok()),
            source_topic: get("source.topic"),
            source_partition: get("source.partition").and_then(|p| p.trim().parse().ok()),
            truncated: get("error.truncated").is_some_and(|t| t.trim() == "true"),
            original_headers,
            replay_of,
        }
    }

    pub fn from_message(m: &BorrowedMessage<'_>) -> DeadLetter {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        DeadLetter::from_parts(
            m.partition(),
            m.offset(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec),
            headers,
        )
    }

    /// The headers of the replayed raw record: the original's, without an earlier
    /// `replay.of`, then `replay.of` naming this dead letter.
    pub fn replay_headers(&self, chain: &str) -> Vec<RawHeader> {
        let mut out: Vec<RawHeader> = self
            .original_headers
            .iter()
            .filter(|(k, _)| k != REPLAY_OF)
            .cloned()
            .collect();
        out.push((
            REPLAY_OF.to_owned(),
            Some(ledger_key(chain, self.partition, self.offset).into_bytes()),
        ));
        out
    }

    fn header(&self, name: &str) -> Option<String> {
        self.original_headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl Filter {
    /// Whether `--reason`, `--class` and `--since` keep `d`.
    pub fn keeps(&self, d: &DeadLetter) -> bool {
        if let Some(r) = &self.reason {
            if !d.reason.to_lowercase().contains(&r.to_lowercase()) {
                return false;
            }
        }
        if !self.class.is_empty() && !self.class.iter().any(|c| c.trim() == d.class) {
            return false;
        }
        if let Some(since) = self.since {
            // A dead letter without a readable time is not known to be recent enough.
            if d.time.is_none_or(|t| t < since) {
                return false;
            }
        }
        true
    }
}

/// The ledger key (and `replay.of` value) of a dead letter: `dlq.<chain>/<partition>/<offset>`,
/// the contract's topic name, whatever the namespace (the ledger topic itself is namespaced).
pub fn ledger_key(chain: &str, partition: i32, offset: i64) -> String {
    format!("{}/{partition}/{offset}", topics::dlq(chain))
}

/// (partition, offset) of a ledger key of `chain`; None for another chain's key.
pub fn parse_ledger_key(chain: &str, key: &str) -> Option<(i32, i64)> {
    let rest = key.strip_prefix(&topics::dlq(chain))?.strip_prefix('/')?;
    let (p, o) = rest.split_once('/')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

pub fn ledger_topic(namespace: &str) -> String {
    topics::namespaced(namespace, LEDGER_TOPIC)
}

/// The fixed transactional id of `chain`'s replays: a second run fences the first.
pub fn transactional_id(namespace: &str, chain: &str) -> String {
    topics::namespaced(namespace, &format!("tributary-dlq-replay-{chain}"))
}

fn client(bootstrap: &str) -> ClientConfig {
    tributary_engine::kafka::env_client_config(bootstrap)
}

/// Creates the ledger topic when it does not exist: one partition, compacted.
pub async fn ensure_ledger(bootstrap: &str, namespace: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().context("Kafka admin client")?;
    let name = ledger_topic(namespace);
    let t = NewTopic::new(&name, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics([&t], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((n, e)) => bail!("creating topic {n}: {e}"),
        }
    }
    Ok(())
}

/// Reaching a partition's end is not logged as an error (see `QuietEof`).
type Reader = BaseConsumer<QuietEof>;

fn consumer(bootstrap: &str, read_committed: bool) -> Result<Reader> {
    client(bootstrap)
        .set("group.id", "tributary-ctl-dlq")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create_with_context(QuietEof)
        .context("Kafka consumer")
}

fn partitions(c: &Reader, topic: &str) -> Result<Vec<i32>> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("metadata of {topic}"))?;
    let t = md.topics().first().ok_or_else(|| anyhow!("{topic}: no metadata"))?;
    if let Some(e) = t.error() {
        bail!("{topic}: {e:?} (does the topic exist? `tributary topics` creates it)");
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    if ps.is_empty() {
        bail!("{topic}: no partitions (does the topic exist? `tributary topics` creates it)");
    }
    Ok(ps)
}

fn topic_exists(c: &Reader, topic: &str) -> Result<bool> {
    let md = c
        .fetch_metadata(None, Duration::from_secs(30))
        .context("cluster metadata")?;
    Ok(md.topics().iter().any(|t| t.name() == topic && t.error().is_none()))
}

/// Per partition: (low watermark, end), the end being the high watermark (a
/// `read_uncommitted` client) or the last stable offset (a `read_committed` one).
fn bounds(c: &Reader, topic: &str, ps: &[i32]) -> Result<BTreeMap<i32, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for p in ps {
        let w = tributary_engine::kafka::watermarks_patiently(c, topic, *p, Duration::from_secs(30), &|| false)
            .with_context(|| format!("watermarks of {topic}[{p}]"))?;
        out.insert(*p, w);
    }
    Ok(out)
}

/// Reads `topic` with `read_committed` from each partition's low watermark up to (not
/// including) its end in `bounds`, calling `each` per record.
fn read_range(
    c: &Reader,
    topic: &str,
    bounds: &BTreeMap<i32, (i64, i64)>,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    let mut open: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, (low, end)) in bounds {
        if end > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*low))?;
            open.insert(*p, *end);
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    c.assign(&tpl)?;
    // Fails only when nothing moves for this long: a large topic may take as long as it takes.
    let patience = Duration::from_secs(120);
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                let Some(end) = open.get(&p).copied() else { continue };
                if m.offset() < end {
                    each(&m)?;
                }
                if m.offset() + 1 >= end {
                    open.remove(&p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let pos = c
                    .position()?
                    .find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(0);
                if open.get(&p).is_some_and(|end| pos >= *end) {
                    open.remove(&p);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "Consumer error; retrying");
            }
            None => {}
        }
        if last_progress.elapsed() > patience {
            bail!("reading {topic}: no progress for {patience:?}; partitions left: {open:?}");
        }
    }
    c.unassign()?;
    Ok(())
}

/// The dead letters of `chain` the ledger says were replayed.
///
/// `complete`: read to the high watermark, first waiting until no open transaction holds the
/// last stable offset below it, so that every committed entry is seen (what a replay needs,
/// after `init_transactions`). Otherwise to the last stable offset as it is now (`list`).
pub fn read_ledger(bootstrap: &str, namespace: &str, chain: &str, complete: bool) -> Result<HashSet<(i32, i64)>> {
    let topic = ledger_topic(namespace);
    let committed = consumer(bootstrap, true)?;
    let ps = match partitions(&committed, &topic) {
        Ok(ps) => ps,
        // No ledger yet (`list` before any replay): nothing was replayed. A replay creates it
        // first, so there a missing ledger is an error.
        Err(_) if !complete && !topic_exists(&committed, &topic)? => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let target = if complete {
        let uncommitted = consumer(bootstrap, false)?;
        let high = bounds(&uncommitted, &topic, &ps)?;
        let deadline = Instant::now() + TXN_TIMEOUT * 2 + Duration::from_secs(30);
        let mut told = false;
        loop {
            let stable = bounds(&committed, &topic, &ps)?;
            if high.iter().all(|(p, (_, h))| stable[p].1 >= *h) {
                break;
            }
            if !told {
                tracing::info!(
                    topic,
                    "An open transaction (another replay) holds the ledger; waiting for it to end"
                );
                told = true;
            }
            if Instant::now() > deadline {
                bail!("{topic}: an open transaction did not end within {:?}", TXN_TIMEOUT * 2);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        high
    } else {
        bounds(&committed, &topic, &ps)?
    };
    let mut out = HashSet::new();
    read_range(&committed, &topic, &target, |m| {
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Ok(());
        };
        if let Some(po) = parse_ledger_key(chain, key) {
            if m.payload().is_some() {
                out.insert(po);
            } else {
                out.remove(&po);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// `tributary dlq list`: one JSON line per matching dead letter on stdout.
pub fn list(bootstrap: &str, args: &ListArgs, out: &mut impl std::io::Write) -> Result<u64> {
    let f = &args.filter;
    let replayed = read_ledger(bootstrap, &f.namespace, &f.chain, false)?;
    let topic = topics::namespaced(&f.namespace, &topics::dlq(&f.chain));
    let c = consumer(bootstrap, true)?;
    let ps = partitions(&c, &topic)?;
    let b = bounds(&c, &topic, &ps)?;
    let mut n = 0u64;
    read_range(&c, &topic, &b, |m| {
        let d = DeadLetter::from_message(m);
        if !f.keeps(&d) {
            return Ok(());
        }
        n += 1;
        let line = serde_json::json!({
            "partition": d.partition,
            "offset": d.offset,
            "error.class": d.class,
            "error.reason": d.reason,
            "error.time": d.time.map(tributary_view::fmt_time),
            "size": d.payload.as_ref().map_or(0, Vec::len),
            "tenant": d.header("tenant"),
            "replay.of": d.replay_of,
            "truncated": d.truncated,
            "replayed": replayed.contains(&(d.partition, d.offset)),
        });
        writeln!(out, "{line}")?;
        Ok(())
    })?;
    Ok(n)
}

/// What a replay did. `scanned` = `selected` + `filtered_out` + `not_replayable` +
/// `failed_again_held`;
/// `selected` = `replayed` + `skipped_already_replayed` + `left_by_limit`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub chain: String,
    pub dlq_topic: String,
    pub raw_topic: String,
    pub dry_run: bool,
    /// Dead letters read (the DLQ from its start to its end as of the run's start).
    pub scanned: u64,
    /// Those the filters kept (and, without `--include-replayed`, that are no failed replay).
    pub selected: u64,
    /// Sent to raw in this run (with `--dry-run`: would be).
    pub replayed: u64,
    /// Selected, but the ledger says an earlier run replayed them.
    pub skipped_already_replayed: u64,
    /// Excluded by `--reason`, `--class` or `--since`.
    pub filtered_out: u64,
    /// Dead letters whose payload is a summary (`error.truncated`: too large to dead-letter
    /// whole): the original bytes are not there to replay.
    pub not_replayable: u64,
    /// Replayed records that failed again (`replay.of`), held back without `--include-replayed`.
    pub failed_again_held: u64,
    /// Selected and new, but beyond `--limit`.
    pub left_by_limit: u64,
    /// Ledger entries of dead letters retention removed, tombstoned.
    pub ledger_pruned: u64,
    pub transactions: u64,
    pub seconds: f64,
}

/// The transactional writer of one replay run.
struct Writer<'a> {
    producer: FutureProducer,
    rt: tokio::runtime::Runtime,
    chain: &'a str,
    raw_topic: String,
    raw_partitions: i32,
    ledger_topic: String,
    transactional_id: String,
    transactions: u64,
}

fn fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced
    )
}

impl Writer<'_> {
    fn owned_headers(hs: &[RawHeader]) -> OwnedHeaders {
        let mut out = OwnedHeaders::new_with_capacity(hs.len());
        for (k, v) in hs {
            out = out.insert(Header {
                key: k.as_str(),
                value: v.as_deref(),
            });
        }
        out
    }

    /// Sends one record, waiting while the local queue is full; the delivery future.
    fn send(&self, mut rec: FutureRecord<'_, [u8], [u8]>) -> Result<rdkafka::producer::DeliveryFuture> {
        loop {
            match self.producer.send_result(rec) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    fn wait(&self, futures: Vec<rdkafka::producer::DeliveryFuture>) -> Result<Vec<(i32, i64)>> {
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(futures.len());
            for f in futures {
                match f.await {
                    Ok(Ok(d)) => out.push((d.partition, d.offset)),
                    Ok(Err((e, _))) => return Err(anyhow::Error::from(e)),
                    Err(_) => bail!("the producer dropped a delivery"),
                }
            }
            Ok(out)
        })
    }

    /// One transaction: the raw records of `batch`, their ledger entries, and tombstones for
    /// the ledger keys in `prune`. An error that is neither fencing nor fatal aborts and tries
    /// again (up to three times): the aborted records are never read by the chain.
    fn commit(&mut self, batch: &[DeadLetter], prune: &[String]) -> Result<()> {
        if batch.is_empty() && prune.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_commit(batch, prune) {
                Ok(()) => {
                    self.transactions += 1;
                    return Ok(());
                }
                Err(e) => {
                    // Fenced or otherwise fatal, the producer says so itself, whichever call
                    // (a send, a delivery, the commit) met it first.
                    let fatal = self.producer.client().fatal_error();
                    let kafka = e.downcast_ref::<KafkaError>();
                    let fenced = fatal.as_ref().is_some_and(|(c, _)| fencing(*c))
                        || kafka.and_then(KafkaError::rdkafka_error_code).is_some_and(fencing);
                    if fenced {
                        bail!(
                            "another replay of chain {} took over (transactional id {}): this run stopped; its open batch is aborted, everything it committed stays replayed",
                            self.chain,
                            self.transactional_id
                        );
                    }
                    let fatal = fatal.is_some() || matches!(kafka, Some(KafkaError::Transaction(re)) if re.is_fatal());
                    if fatal || attempt >= 3 {
                        return Err(e.context(format!(
                            "replay transaction failed (attempt {attempt}); nothing of it was committed, run again to continue"
                        )));
                    }
                    tracing::warn!(error = %e, attempt, "Replay transaction failed; aborting and trying again");
                    if let Err(a) = self.producer.abort_transaction(TXN_TIMEOUT) {
                        return Err(anyhow::Error::from(a).context(format!("aborting after: {e}")));
                    }
                }
            }
        }
    }

    fn try_commit(&self, batch: &[DeadLetter], prune: &[String]) -> Result<()> {
        self.producer.begin_transaction()?;
        let mut futures = Vec::with_capacity(batch.len());
        let headers: Vec<OwnedHeaders> = batch
            .iter()
            .map(|d| Self::owned_headers(&d.replay_headers(self.chain)))
            .collect();
        for (d, h) in batch.iter().zip(headers) {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&self.raw_topic).headers(h);
            if let Some(k) = &d.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &d.payload {
                rec = rec.payload(v.as_slice());
            }
            // Back to the partition it first came from, where its dedup state lives.
            let from_here = d.source_topic.as_deref().is_none_or(|t| t == self.raw_topic);
            if let Some(p) = d
                .source_partition
                .filter(|p| from_here && (0..self.raw_partitions).contains(p))
            {
                rec = rec.partition(p);
            }
            futures.push(self.send(rec)?);
        }
        let delivered = self.wait(futures)?;
        let now = tributary_view::fmt_time(tributary_engine::normalize::now_micros());
        let keys: Vec<String> = batch
            .iter()
            .map(|d| ledger_key(self.chain, d.partition, d.offset))
            .collect();
        let values: Vec<Vec<u8>> = batch
            .iter()
            .zip(&delivered)
            .map(|(d, (p, o))| {
                serde_json::to_vec(&serde_json::json!({
                    "raw": format!("{}/{p}/{o}", self.raw_topic),
                    "error.class": d.class,
                    "error.reason": d.reason,
                    "replayed_at": now,
                    "transactional_id": self.transactional_id,
                }))
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut futures = Vec::with_capacity(keys.len() + prune.len());
        for (k, v) in keys.iter().zip(&values) {
            futures.push(
                self.send(
                    FutureRecord::<[u8], [u8]>::to(&self.ledger_topic)
                        .key(k.as_bytes())
                        .payload(v.as_slice()),
                )?,
            );
        }
        for k in prune {
            futures.push(self.send(FutureRecord::<[u8], [u8]>::to(&self.ledger_topic).key(k.as_bytes()))?);
        }
        self.wait(futures)?;
        loop {
            match self.producer.commit_transaction(TXN_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    tracing::warn!(error = %e, "Commit failed with a retriable error; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `tributary dlq replay`.
pub fn replay(bootstrap: &str, args: &ReplayArgs) -> Result<Summary> {
    let started = Instant::now();
    let f = &args.filter;
    let chain = f.chain.as_str();
    let ns = f.namespace.as_str();
    let dlq_topic = topics::namespaced(ns, &topics::dlq(chain));
    let raw_topic = topics::namespaced(ns, &topics::raw(chain));
    let mut summary = Summary {
        chain: chain.to_owned(),
        dlq_topic: dlq_topic.clone(),
        raw_topic: raw_topic.clone(),
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(ensure_ledger(bootstrap, ns))?;
    let txn_id = transactional_id(ns, chain);
    let producer: FutureProducer = client(bootstrap)
        .set("transactional.id", &txn_id)
        .set("enable.idempotence", "true")
        .set("transaction.timeout.ms", TXN_TIMEOUT.as_millis().to_string())
        .set("linger.ms", "5")
        .create()
        .context("Kafka producer")?;
    if !args.dry_run {
        // Before the ledger is read: fences every other run of this chain and settles its
        // last transaction, so the ledger read next is the whole truth.
        producer
            .init_transactions(TXN_TIMEOUT)
            .with_context(|| format!("init_transactions ({txn_id})"))?;
    }
    let replayed = read_ledger(bootstrap, ns, chain, !args.dry_run)?;
    tracing::info!(chain, already_replayed = replayed.len(), "Ledger read");
    let c = consumer(bootstrap, true)?;
    let raw_partitions = i32::try_from(partitions(&c, &raw_topic)?.len())?;
    let dlq_partitions = partitions(&c, &dlq_topic)?;
    let dlq_bounds = bounds(&c, &dlq_topic, &dlq_partitions)?;
    let mut prune: Vec<String> = replayed
        .iter()
        .filter(|(p, o)| dlq_bounds.get(p).is_some_and(|(low, _)| o < low))
        .map(|(p, o)| ledger_key(chain, *p, *o))
        .collect();
    prune.sort();
    let mut writer = Writer {
        producer,
        rt,
        chain,
        raw_topic,
        raw_partitions,
        ledger_topic: ledger_topic(ns),
        transactional_id: txn_id,
        transactions: 0,
    };
    let batch_size = args.batch as usize;
    let mut batch: Vec<DeadLetter> = Vec::with_capacity(batch_size);
    let mut last_report = Instant::now();
    read_range(&c, &dlq_topic, &dlq_bounds, |m| {
        let d = DeadLetter::from_message(m);
        summary.scanned += 1;
        if !f.keeps(&d) {
            summary.filtered_out += 1;
            return Ok(());
        }
        if d.truncated {
            summary.not_replayable += 1;
            return Ok(());
        }
        if d.replay_of.is_some() && !args.include_replayed {
            summary.failed_again_held += 1;
            return Ok(());
        }
        summary.selected += 1;
        if replayed.contains(&(d.partition, d.offset)) {
            summary.skipped_already_replayed += 1;
            return Ok(());
        }
        if args.limit.is_some_and(|l| summary.replayed >= l) {
            summary.left_by_limit += 1;
            return Ok(());
        }
        summary.replayed += 1;
        if args.dry_run {
            return Ok(());
        }
        batch.push(d);
        if batch.len() >= batch_size {
            writer.commit(&batch, &[])?;
            batch.clear();
            if last_report.elapsed() > Duration::from_secs(5) {
                tracing::info!(replayed = summary.replayed, scanned = summary.scanned, "Replaying");
                last_report = Instant::now();
            }
        }
        Ok(())
    })?;
    if !args.dry_run {
        // The last batch, with the ledger's pruning, in one transaction.
        writer.commit(&batch, &prune)?;
        summary.ledger_pruned = prune.len() as u64;
    }
    summary.transactions = writer.transactions;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Runs one `tributary dlq` subcommand.
pub fn run_cli(bootstrap: &str, command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List(args) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = list(bootstrap, &args, &mut out)?;
            std::io::Write::flush(&mut out)?;
            tracing::info!(chain = args.filter.chain, dead_letters = n, "Listed");
        }
        DlqCommand::Replay(args) => {
            let s = replay(bootstrap, &args)?;
            println!("{}", serde_json::to_string(&s)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> RawHeader {
        (k.to_owned(), Some(v.as_bytes().to_vec()))
    }

    fn dlq_tail() -> Vec<RawHeader> {
        vec![
            h("error.class", "unknown_tenant"),
            h("error.reason", "tenant 'hooli' is not configured"),
            h("error.time", "1763000000000000"),
            h("source.topic", "ns.raw.users"),
            h("source.partition", "2"),
            h("source.offset", "41"),
        ]
    }

    #[test]
    fn the_six_trailing_headers_are_the_dlq_ones() {
        let mut hs = vec![h("tenant", "hooli"), h("source", "json"), h("error.reason", "mine")];
        hs.extend(dlq_tail());
        let d = DeadLetter::from_parts(1, 7, Some(b"k".to_vec()), Some(b"{}".to_vec()), hs);
        assert_eq!(d.class, "unknown_tenant");
        assert_eq!(d.reason, "tenant 'hooli' is not configured");
        assert_eq!(d.time, Some(1_763_000_000_000_000));
        assert_eq!(d.source_partition, Some(2));
        assert_eq!(d.source_topic.as_deref(), Some("ns.raw.users"));
        assert_eq!(
            d.original_headers,
            vec![h("tenant", "hooli"), h("source", "json"), h("error.reason", "mine")]
        );
        assert_eq!(d.replay_of, None);
        let replay = d.replay_headers("users");
        assert_eq!(replay.last(), Some(&h("replay.of", "dlq.users/1/7")));
        assert_eq!(replay.len(), 4);
    }

    #[test]
    fn a_failed_replay_is_recognized_and_replayed_under_its_own_name() {
        let mut hs = vec![
            h("tenant", "hooli"),
            (String::from("x"), None),
            h("replay.of", "dlq.users/0/3"),
        ];
        hs.extend(dlq_tail());
        let d = DeadLetter::from_parts(0, 90, None, None, hs);
        assert_eq!(d.replay_of.as_deref(), Some("dlq.users/0/3"));
        assert_eq!(
            d.replay_headers("users"),
            vec![
                h("tenant", "hooli"),
                (String::from("x"), None),
                h("replay.of", "dlq.users/0/90")
            ]
        );
    }

    #[test]
    fn a_summarized_dead_letter_is_known_as_such() {
        let mut hs = vec![h("tenant", "acme")];
        hs.extend(dlq_tail());
        hs.push(h("error.truncated", "true"));
        let d = DeadLetter::from_parts(0, 5, None, Some(b"{\"truncated\":true}".to_vec()), hs);
        assert!(d.truncated);
        assert_eq!(d.class, "unknown_tenant");
        assert_eq!(d.original_headers, vec![h("tenant", "acme")]);
        let mut hs = vec![h("tenant", "acme")];
        hs.extend(dlq_tail());
        assert!(!DeadLetter::from_parts(0, 5, None, None, hs).truncated);
    }

    #[test]
    fn headers_not_in_the_chains_order_are_split_by_name() {
        let mut hs = dlq_tail();
        hs.reverse();
        hs.insert(2, h("tenant", "acme"));
        let d = DeadLetter::from_parts(0, 0, None, None, hs);
        assert_eq!(d.class, "unknown_tenant");
        assert_eq!(d.original_headers, vec![h("tenant", "acme")]);
    }

    fn filter() -> Filter {
        Filter {
            chain: "users".into(),
            reason: None,
            class: vec![],
            since: None,
            namespace: String::new(),
        }
    }

    #[test]
    fn filters() {
        let mut hs = vec![h("tenant", "hooli")];
        hs.extend(dlq_tail());
        let d = DeadLetter::from_parts(0, 0, None, None, hs);
        assert!(filter().keeps(&d));
        let f = |reason: Option<&str>, class: &[&str], since: Option<i64>| Filter {
            reason: reason.map(str::to_owned),
            class: class.iter().map(|c| (*c).to_owned()).collect(),
            since,
            ..filter()
        };
        assert!(f(Some("HOOLI"), &[], None).keeps(&d));
        assert!(!f(Some("globex"), &[], None).keeps(&d));
        assert!(f(None, &["invalid_email", "unknown_tenant"], None).keeps(&d));
        assert!(!f(None, &["unknown"], None).keeps(&d));
        assert!(f(None, &[], Some(1_763_000_000_000_000)).keeps(&d));
        assert!(!f(None, &[], Some(1_763_000_000_000_001)).keeps(&d));
        let timeless = DeadLetter::from_parts(0, 0, None, None, vec![]);
        assert!(!f(None, &[], Some(0)).keeps(&timeless));
    }

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(parse_since("2025-11-13T02:13:20Z"), Ok(1_763_000_000_000_000));
        assert_eq!(parse_since("1763000000"), Ok(1_763_000_000_000_000));
        let two_hours_ago = parse_since("2h").expect("duration");
        let want = tributary_engine::normalize::now_micros() - 7_200_000_000;
        assert!((two_hours_ago - want).abs() < 5_000_000);
        assert!(parse_since("7d").is_ok());
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn ledger_keys() {
        assert_eq!(ledger_key("users", 3, 12), "dlq.users/3/12");
        assert_eq!(parse_ledger_key("users", "dlq.users/3/12"), Some((3, 12)));
        assert_eq!(parse_ledger_key("users", "dlq.mailings/3/12"), None);
        assert_eq!(parse_ledger_key("users", "dlq.users2/3/12"), None);
        assert_eq!(parse_ledger_key("users", "dlq.users/x/12"), None);
        assert_eq!(transactional_id("ns", "users"), "ns.tributary-dlq-replay-users");
        assert_eq!(ledger_topic(""), "dlq.replayed");
    }
}
