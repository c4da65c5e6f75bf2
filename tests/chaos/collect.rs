//! Collecting a run's history from the real topics and the lake: the live `read_committed`
//! reader that runs during the whole scenario, and the final reads the checker compares.

use super::checker::{At, Audit, ChainHistory, Sent};
use crate::{decode_clean, existing_table_rows, kafka, read_all_with, topic, watermarks, Record};
use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_engine::topics;

pub fn value_hash(v: Option<&[u8]>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn at(r: &Record) -> At {
    At {
        partition: r.partition,
        offset: r.offset,
        key: String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
        value_hash: value_hash(r.value.as_deref()),
    }
}

/// What the live reader saw: per chain the records, and when (since the reader started).
#[derive(Default)]
pub struct Observed {
    pub records: BTreeMap<String, Vec<At>>,
    /// Arrival time of every record, in seconds since the start, in arrival order.
    pub arrivals: Vec<f64>,
}

/// A `read_committed` consumer over every clean topic of a namespace, from the beginning,
/// for as long as the scenario runs; it rides out broker restarts (librdkafka reconnects).
pub struct LiveReader {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Observed>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    pub started: Instant,
}

impl LiveReader {
    pub fn start(ns: &str, chains: &[&str]) -> Result<LiveReader> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("group.id", format!("chaos-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        let mut chain_of = BTreeMap::new();
        for c in chains {
            let t = topic(ns, topics::clean(c));
            let md = consumer.fetch_metadata(Some(&t), Duration::from_secs(10))?;
            for p in md.topics()[0].partitions() {
                tpl.add_partition_offset(&t, p.id(), Offset::Beginning)?;
            }
            chain_of.insert(t, (*c).to_owned());
        }
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Observed::default()));
        let started = Instant::now();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || -> Result<()> {
            while !stop2.load(Ordering::Relaxed) {
                // Errors (the broker away and the like) are ridden out, as an application would.
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    let a = At {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        value_hash: value_hash(m.payload()),
                    };
                    let mut s = seen2.lock().expect("reader lock");
                    s.records.entry(chain_of[m.topic()].clone()).or_default().push(a);
                    s.arrivals.push(started.elapsed().as_secs_f64());
                }
            }
            Ok(())
        });
        Ok(LiveReader {
            stop,
            seen,
            thread: Some(thread),
            started,
        })
    }

    /// How many records it has seen so far.
    pub fn count(&self) -> usize {
        self.seen.lock().map(|s| s.arrivals.len()).unwrap_or(0)
    }

    /// Stops the reader and hands over what it saw.
    pub fn finish(mut self) -> Result<Observed> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| anyhow::anyhow!("the live reader panicked"))??;
        }
        Ok(std::mem::take(
            &mut *self.seen.lock().map_err(|_| anyhow::anyhow!("reader lock"))?,
        ))
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The rows of a chain's table, read again for up to 2 minutes while the read fails (HDFS
/// just back from a restart can refuse reads until its datanode has reported its blocks).
fn lake_rows(lake: &str, chain: &str) -> Result<std::collections::BTreeMap<String, u32>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match existing_table_rows(lake, chain) {
            Ok(rows) => return Ok(rows),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("chaos: {chain}: reading the lake failed, trying again: {e:#}");
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads one chain's history: raw, audit, DLQ, clean (committed and uncommitted), the lake.
pub fn chain_history(ns: &str, chain: &str, lake: &str, sent: Vec<Sent>, observed: Vec<At>) -> Result<ChainHistory> {
    let raw = read_all_with(&topic(ns, topics::raw(chain)), "read_committed")?;
    let audits = read_all_with(&topic(ns, topics::audit(chain)), "read_committed")?
        .iter()
        .map(|r| -> Result<Audit> {
            // The record as the chain wrote it, read as the same type reconciliation reads.
            let a: tributary_engine::audit::Audit = serde_json::from_slice(r.value.as_deref().unwrap_or(b"{}"))?;
            Ok(Audit {
                inputs: a
                    .inputs
                    .iter()
                    .map(|i| (i.partition, i.first_offset, i.next_offset))
                    .collect(),
                received: a.received,
                clean: a.clean,
                dlq: a.dlq,
                duplicate: a.duplicate,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dlq = read_all_with(&topic(ns, topics::dlq(chain)), "read_committed")?
        .iter()
        .map(|r| -> Result<(i32, i64)> {
            let h = |k: &str| -> Result<i64> {
                r.headers
                    .get(k)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("{chain}: a dead letter without a numeric {k} header"))
            };
            Ok((h("source.partition")? as i32, h("source.offset")?))
        })
        .collect::<Result<Vec<_>>>()?;
    let clean_topic = topic(ns, topics::clean(chain));
    let clean_records = read_all_with(&clean_topic, "read_committed")?;
    let decoded = decode_clean(&clean_records)?;
    let clean = clean_records
        .iter()
        .zip(decoded)
        .map(|(r, (_, _, tenant, id))| (at(r), format!("{tenant}/{id}")))
        .collect();
    let clean_uncommitted = read_all_with(&clean_topic, "read_uncommitted")?
        .iter()
        .map(at)
        .collect();
    let clean_ends = watermarks(&clean_topic)?
        .into_iter()
        .map(|(p, (_, h))| (p, h))
        .collect();
    let lake_rows = lake_rows(lake, chain)?.into_iter().collect();
    let lake_txn = lake_txn(lake, chain, &clean_topic)?;
    Ok(ChainHistory {
        chain: chain.to_owned(),
        sent,
        raw: raw.iter().map(at).collect(),
        audits,
        dlq,
        clean,
        clean_uncommitted,
        clean_ends,
        observed,
        lake_rows,
        lake_txn,
    })
}

/// The table's `txn` version per partition of `clean_topic` (none when the table does not
/// exist or has no version for a partition).
pub fn lake_txn(lake: &str, chain: &str, clean_topic: &str) -> Result<BTreeMap<i32, i64>> {
    let parts: Vec<i32> = watermarks(clean_topic)?.into_keys().collect();
    let rt = crate::lake_runtime();
    let l = tributary_lake::Lake::new(lake)?;
    let Some(table) = rt.block_on(tributary_lake::open_existing(&l, chain))? else {
        return Ok(BTreeMap::new());
    };
    let got = rt.block_on(tributary_lake::Lake::committed_offsets(&table, clean_topic, &parts))?;
    // A partition the table has no version for is reported as absent, not as 0.
    Ok(got.into_iter().filter(|(_, v)| *v >= 0).collect())
}
