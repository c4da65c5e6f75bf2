//! `tributary reconcile`: reads what Kafka knows of each chain (audit records, the raw
//! topic's watermarks and the chain's committed offsets, the clean topic, the sink's dead
//! letters) and hands it to `tributary_lake::reconcile::check` with the table's facts.
//!
//! Order matters for a consistent answer while everything runs: the table's snapshot first
//! (its offsets bound the clean records compared), then the chain's committed offsets, then
//! the audit topic to its end (it holds at least every transaction those offsets commit).

use anyhow::{Context, Result};
use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tributary_engine::kafka::QuietEof;
use tributary_engine::topics;
use tributary_lake::reconcile::{self, AuditRecord, ChainReport, CleanFacts, RawPartition};
use tributary_lake::Lake;

pub struct Settings {
    pub bootstrap: String,
    pub registry: String,
    pub namespace: String,
    pub lake: String,
    pub chains: Vec<String>,
    /// How long reading a topic to its end may take.
    pub read_timeout: Duration,
}

/// Reaching a partition's end is not logged as an error (see `QuietEof`).
type Reader = BaseConsumer<QuietEof>;

fn consumer(bootstrap: &str, group: &str) -> Result<Reader> {
    Ok(tributary_engine::kafka::env_client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .create_with_context(QuietEof)?)
}

/// Partitions of a topic; None when it does not exist.
fn partitions(c: &Reader, topic: &str) -> Result<Option<Vec<i32>>> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(t.partitions().iter().map(|p| p.id()).collect()))
}

/// Reads `[from, to)` of each given partition `read_committed`, calling `f` per record.
/// `to` is usually the high watermark; a reader that stops at the last stable offset
/// (an open transaction) keeps polling until it passes or the timeout.
fn read_ranges(
    c: &Reader,
    topic: &str,
    ranges: &BTreeMap<i32, (i64, i64)>,
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    let mut open: HashSet<i32> = HashSet::new();
    for (p, (from, to)) in ranges {
        if from < to {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*from))?;
            open.insert(*p);
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} did not reach the end of partitions {open:?} within {timeout:?}"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let to = ranges[&m.partition()].1;
                if m.offset() < to {
                    f(&m);
                }
                if m.offset() + 1 >= to {
                    open.remove(&m.partition());
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                let pos = c
                    .position()?
                    .find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(0);
                if pos >= ranges.get(&p).map(|r| r.1).unwrap_or(0) {
                    open.remove(&p);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    c.unassign()?;
    Ok(())
}

fn watermarks(c: &Reader, topic: &str, parts: &[i32]) -> Result<BTreeMap<i32, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for p in parts {
        out.insert(*p, c.fetch_watermarks(topic, *p, Duration::from_secs(10))?);
    }
    Ok(out)
}

/// What a table must reach to hold everything its clean topic holds now: per partition
/// with committed records at or after the table's `txn` offset, the offset just past the
/// last of them and how many there are. `None` when the table has never taken a record from
/// this topic (no `txn` of it at all: a lake fed from another namespace, or not by a sink),
/// so there is nothing to catch up with. A partition the table has not taken from yet, while
/// it has from others, counts from offset 0. `offsets_of` reads the table's offsets for the
/// topic's partitions.
pub fn catch_up_targets(
    bootstrap: &str,
    clean_topic: &str,
    offsets_of: impl FnOnce(&[i32]) -> Result<BTreeMap<i32, i64>>,
    read_timeout: Duration,
) -> Result<Option<BTreeMap<i32, (i64, u64)>>> {
    let c = consumer(bootstrap, &format!("tributary-lag-{}", uuid::Uuid::new_v4()))?;
    let Some(parts) = partitions(&c, clean_topic)? else {
        return Ok(None);
    };
    let table_offsets = offsets_of(&parts)?;
    if table_offsets.is_empty() {
        return Ok(None);
    }
    let ranges: BTreeMap<i32, (i64, i64)> = watermarks(&c, clean_topic, &parts)?
        .into_iter()
        .map(|(p, (_, high))| (p, (table_offsets.get(&p).copied().unwrap_or(0), high)))
        .collect();
    // The end offsets count transaction markers too: only the records a read_committed
    // reader sees are behind, and the target is just past the last of them.
    let mut targets: BTreeMap<i32, (i64, u64)> = BTreeMap::new();
    read_ranges(&c, clean_topic, &ranges, read_timeout, |m| {
        let t = targets.entry(m.partition()).or_default();
        t.0 = t.0.max(m.offset() + 1);
        t.1 += 1;
    })?;
    Ok(Some(targets))
}

/// Writer schemas by registry id.
struct Schemas {
    registry: String,
    rt: tokio::runtime::Runtime,
    cache: HashMap<u32, apache_avro::Schema>,
}

impl Schemas {
    fn get(&mut self, id: u32) -> Result<&apache_avro::Schema> {
        if !self.cache.contains_key(&id) {
            let text = self.rt.block_on(tributary_lake::registry_schema(&self.registry, id))?;
            self.cache.insert(id, apache_avro::Schema::parse_str(&text)?);
        }
        Ok(&self.cache[&id])
    }

    /// `tenant/day` of a clean record.
    fn tenant_day(&mut self, payload: &[u8]) -> Result<String> {
        let (id, mut body) = tributary_engine::avro::split_wire(payload).context("not in the registry wire format")?;
        let schema = self.get(id)?;
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(schema, &mut body, None)?;
        let Value::Record(fields) = v else {
            anyhow::bail!("not a record")
        };
        let mut tenant = None;
        let mut micros = None;
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("tenant_id", Value::String(s)) => tenant = Some(s),
                ("event_time", Value::TimestampMicros(t) | Value::Long(t)) => micros = Some(t),
                ("event_time", Value::TimestampMillis(t)) => micros = Some(t * 1000),
                _ => {}
            }
        }
        Ok(format!(
            "{}/{}",
            tenant.context("no tenant_id")?,
            tributary_lake::convert::event_date(micros.context("no event_time")?)
        ))
    }
}

/// Reconciles one chain.
fn chain(s: &Settings, rt: &tokio::runtime::Runtime, schemas: &mut Schemas, chain: &str) -> Result<ChainReport> {
    let ns = |t: String| topics::namespaced(&s.namespace, &t);
    let (raw_topic, clean_topic, audit_topic) = (
        ns(topics::raw(chain)),
        ns(topics::clean(chain)),
        ns(topics::audit(chain)),
    );
    let group = ns(format!("tributary-{chain}"));
    let c = consumer(&s.bootstrap, &format!("tributary-reconcile-{}", uuid::Uuid::new_v4()))?;
    let clean_parts = partitions(&c, &clean_topic)?.with_context(|| format!("topic {clean_topic} does not exist"))?;
    let raw_parts = partitions(&c, &raw_topic)?.with_context(|| format!("topic {raw_topic} does not exist"))?;
    let audit_parts = partitions(&c, &audit_topic)?.with_context(|| format!("topic {audit_topic} does not exist"))?;

    // 1. The table, from one snapshot.
    let lake = Lake::new(&s.lake)?;
    // Bounded: a storage call that never answers fails this chain's check instead of
    // hanging the job.
    let facts = rt
        .block_on(async {
            let read = async {
                match tributary_lake::open_existing(&lake, chain).await? {
                    Some(t) => reconcile::table_facts(&t, &clean_topic, &clean_parts).await,
                    None => Ok(Default::default()),
                }
            };
            tokio::time::timeout(s.read_timeout, read).await
        })
        .map_err(|_| anyhow::anyhow!("reading the {chain} table did not finish within {:?}", s.read_timeout))??;

    // 2. The chain's committed offsets and the raw watermarks.
    let group_consumer = consumer(&s.bootstrap, &group)?;
    let mut tpl = TopicPartitionList::new();
    for p in &raw_parts {
        tpl.add_partition(&raw_topic, *p);
    }
    let committed = group_consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut raw = BTreeMap::new();
    for (p, (low, high)) in watermarks(&c, &raw_topic, &raw_parts)? {
        let committed = committed
            .find_partition(&raw_topic, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0);
        raw.insert(p, RawPartition { low, high, committed });
    }

    // 3. The audit records, to the end.
    let ends = watermarks(&c, &audit_topic, &audit_parts)?;
    let mut audits = Vec::new();
    let mut bad = Vec::new();
    read_ranges(
        &c,
        &audit_topic,
        &ends,
        s.read_timeout,
        |m| match serde_json::from_slice::<AuditRecord>(m.payload().unwrap_or_default()) {
            Ok(mut a) => {
                a.at = (m.partition(), m.offset());
                audits.push(a);
            }
            Err(e) => bad.push(format!("audit record at {}/{}: {e}", m.partition(), m.offset())),
        },
    )?;
    anyhow::ensure!(bad.is_empty(), "unreadable audit records: {bad:?}");

    // 4. The sink's dead letters of this clean topic, then the clean topic itself.
    let mut dead: HashSet<(i32, i64)> = HashSet::new();
    let dlq_sink = ns("dlq.sink".into());
    if let Some(parts) = partitions(&c, &dlq_sink)? {
        let ends = watermarks(&c, &dlq_sink, &parts)?;
        read_ranges(&c, &dlq_sink, &ends, s.read_timeout, |m| {
            let h = |k: &str| -> Option<String> {
                m.headers()?
                    .iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            if h("source.topic").as_deref() == Some(clean_topic.as_str()) {
                if let (Some(p), Some(o)) = (
                    h("source.partition").and_then(|p| p.parse().ok()),
                    h("source.offset").and_then(|o| o.parse().ok()),
                ) {
                    dead.insert((p, o));
                }
            }
        })?;
    }
    let clean_ends = watermarks(&c, &clean_topic, &clean_parts)?;
    let mut clean = CleanFacts {
        end_offsets: clean_ends.iter().map(|(p, (_, h))| (*p, *h)).collect(),
        ..Default::default()
    };
    let mut undecodable = Vec::new();
    for p in &clean_parts {
        clean.lag_records.insert(*p, 0);
    }
    read_ranges(&c, &clean_topic, &clean_ends, s.read_timeout, |m| {
        let below = m.offset() < facts.offsets.get(&m.partition()).copied().unwrap_or(0);
        if !below {
            *clean.lag_records.entry(m.partition()).or_default() += 1;
            return;
        }
        if dead.contains(&(m.partition(), m.offset())) {
            clean.sink_dead_letters += 1;
            return;
        }
        match schemas.tenant_day(m.payload().unwrap_or_default()) {
            Ok(k) => *clean.rows.entry(k).or_default() += 1,
            Err(e) => undecodable.push(format!("{}/{}: {e}", m.partition(), m.offset())),
        }
    })?;
    anyhow::ensure!(
        undecodable.is_empty(),
        "{clean_topic}: records the sink took that cannot be decoded: {:?}",
        &undecodable[..undecodable.len().min(5)]
    );

    // 5. Gaps are confirmed by reading the raw topic.
    let report = ChainReport {
        chain: chain.to_owned(),
        raw_topic: raw_topic.clone(),
        clean_topic,
        table: facts,
        clean,
        ..Default::default()
    };
    reconcile::check(report, &audits, &raw, |topic, p, from, to| {
        let mut n = 0u64;
        read_ranges(&c, topic, &[(p, (from, to))].into(), s.read_timeout, |_| n += 1)?;
        Ok(n)
    })
}

/// The outcome of a run: per chain a report, or the error that stopped its check.
pub struct Outcome {
    pub reports: Vec<ChainReport>,
    pub errors: Vec<(String, String)>,
}

impl Outcome {
    pub fn discrepancies(&self) -> usize {
        self.reports.iter().map(|r| r.discrepancies.len()).sum::<usize>() + self.errors.len()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "checked_at": tributary_engine::normalize::fmt_micros(tributary_engine::normalize::now_micros()),
            "ok": self.discrepancies() == 0,
            "discrepancies": self.discrepancies(),
            "chains": self.reports,
            "errors": self.errors.iter().map(|(c, e)| serde_json::json!({"chain": c, "error": e})).collect::<Vec<_>>(),
        })
    }
}

pub fn run(s: &Settings) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut schemas = Schemas {
        registry: s.registry.clone(),
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        cache: HashMap::new(),
    };
    let mut out = Outcome {
        reports: Vec::new(),
        errors: Vec::new(),
    };
    for c in &s.chains {
        match chain(s, &rt, &mut schemas, c) {
            Ok(r) => out.reports.push(r),
            Err(e) => out.errors.push((c.clone(), format!("{e:#}"))),
        }
    }
    Ok(out)
}
