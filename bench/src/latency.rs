//! End-to-end latency of the mailings chain and the sink, with both running: a paced
//! producer writes raw records at a fixed rate; a `read_committed` consumer of the clean
//! topic notes when each record becomes visible; a watcher of the Delta log notes when the
//! sink's commit covering it appears.
//!
//! Method. The start of a record is the wall-clock time (µs) at which the producer hands it
//! to librdkafka, which is also its Kafka timestamp (CreateTime, set explicitly). Raw → clean
//! ends when the bench's `read_committed` consumer (fetch.wait.max.ms 10) receives the clean
//! record, i.e. once the chain's transaction has committed and the consumer has fetched it.
//! Raw → lake ends when a Delta commit file `_delta_log/<version>.json` whose `txn` action for
//! the record's clean partition has a version (the next Kafka offset) above the record's
//! clean offset is seen by the watcher, which polls every 10 ms: rows are then readable in
//! committed Parquet. Both ends are measured on the same machine and clock as the start.
//! Only the first copy of each valid event counts (duplicates are dropped by the chain,
//! invalid records go to the DLQ).

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_ctl::loadgen::{Generator, Kind, Spec};

/// One load level.
#[derive(Debug, Clone)]
pub struct Phase {
    pub label: String,
    pub rate: f64,
    pub secs: f64,
    /// Makes the phase's event ids its own (`mailings-<seed>-<i>`).
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseResult {
    pub label: String,
    pub target_rate: f64,
    /// Records produced per second of the phase, as achieved.
    pub produced_rate: f64,
    /// Records produced per second from the phase's start until its last clean record was
    /// seen: below `produced_rate` when the chain fell behind.
    pub drained_rate: f64,
    pub valid: usize,
    pub seen_clean: usize,
    pub in_lake: usize,
    pub p50_raw_to_clean_ms: f64,
    pub p99_raw_to_clean_ms: f64,
    pub max_raw_to_clean_ms: f64,
    pub p50_raw_to_lake_ms: f64,
    pub p99_raw_to_lake_ms: f64,
    pub max_raw_to_lake_ms: f64,
    /// CPU used per second of the phase (its start until every record is in the lake), in
    /// cores: each watched process's, and the whole machine's (`/proc/stat`).
    pub cores: std::collections::BTreeMap<String, f64>,
}

/// Busy and total CPU time of the whole machine (jiffies, `/proc/stat`'s first line).
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, total))
}

/// The CPU counters a phase starts from: each watched process's CPU seconds and the machine's.
struct CpuMark {
    at: Instant,
    procs: Vec<Option<f64>>,
    machine: Option<(u64, u64)>,
}

impl CpuMark {
    fn new(watched: &[(String, String)]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            procs: watched.iter().map(|(_, pid)| crate::cpu_seconds(pid)).collect(),
            machine: machine_jiffies(),
        }
    }

    /// Cores used since the mark, by name; `machine` is the machine's busy share times its cores.
    fn cores(&self, watched: &[(String, String)]) -> std::collections::BTreeMap<String, f64> {
        let wall = self.at.elapsed().as_secs_f64();
        let mut out = std::collections::BTreeMap::new();
        for ((name, pid), start) in watched.iter().zip(&self.procs) {
            if let (Some(a), Some(b)) = (start, crate::cpu_seconds(pid)) {
                out.insert(name.clone(), (b - a) / wall);
            }
        }
        if let (Some((b0, t0)), Some((b1, t1))) = (self.machine, machine_jiffies()) {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            if t1 > t0 {
                out.insert("machine".into(), (b1 - b0) as f64 / (t1 - t0) as f64 * n);
            }
        }
        out
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Reads an Avro `string` (zigzag varint length, bytes) at `*pos`.
fn avro_string<'a>(b: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(tributary_ctl::loadgen::identity::read_long(b, pos)?).ok()?;
    let s = b.get(*pos..*pos + len)?;
    *pos += len;
    Some(s)
}

/// The `event_id` of a clean record: the second field after the 5-byte Confluent header.
pub fn clean_event_id(value: &[u8]) -> Option<&[u8]> {
    let mut pos = 5;
    avro_string(value, &mut pos)?;
    avro_string(value, &mut pos)
}

/// (partition, next offset) of each `txn` action of a Delta commit file, read by name
/// (`<topic>-<partition>`, the sink's app ids).
fn commit_offsets(text: &str, clean_topic: &str) -> Vec<(i32, i64)> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let t = v.get("txn")?;
            let app = t.get("appId")?.as_str()?;
            let p = app.strip_prefix(clean_topic)?.strip_prefix('-')?.parse().ok()?;
            Some((p, t.get("version")?.as_i64()?))
        })
        .collect()
}

type Seen = Arc<Mutex<Vec<(Vec<u8>, i64, i32, i64)>>>;
type Commits = Arc<Mutex<Vec<(i64, i32, i64)>>>;

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs phases one after the other against a chain service reading `raw` and a sink
/// writing the Delta table at `table_dir` (both already running), and measures each: `next`
/// gives the next phase from the results so far (so a phase's rate may follow a measured
/// one), `None` ends. `watched`: (name, pid or `self`) of the processes whose CPU each phase
/// reports.
pub fn run(
    kafka: &str,
    raw: &str,
    clean: &str,
    table_dir: &Path,
    watched: &[(String, String)],
    mut next: impl FnMut(&[PhaseResult]) -> Option<Phase>,
) -> Result<Vec<PhaseResult>> {
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let commits: Commits = Arc::default();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", format!("latency-{clean}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[clean])?;
    let consumer_thread = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut local = Vec::new();
            let mut flushed = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                    let t = now_us();
                    if let Some(id) = m.payload().and_then(clean_event_id) {
                        local.push((id.to_vec(), t, m.partition(), m.offset()));
                    }
                }
                if flushed.elapsed() > Duration::from_millis(50) {
                    seen.lock().expect("seen").append(&mut local);
                    flushed = Instant::now();
                }
            }
            seen.lock().expect("seen").append(&mut local);
        })
    };
    let watcher_thread = {
        let (stop, commits) = (stop.clone(), commits.clone());
        let log_dir: PathBuf = table_dir.join("_delta_log");
        let clean = clean.to_owned();
        std::thread::spawn(move || {
            let mut version = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = log_dir.join(format!("{version:020}.json"));
                match std::fs::read_to_string(&path) {
                    Ok(text) if text.ends_with('\n') || text.contains("commitInfo") => {
                        let t = now_us();
                        let mut c = commits.lock().expect("commits");
                        for (p, v) in commit_offsets(&text, &clean) {
                            c.push((t, p, v));
                        }
                        version += 1;
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut results = Vec::new();
    let outcome = (|| -> Result<()> {
        while let Some(phase) = next(&results) {
            let count = (phase.rate * phase.secs).round() as u64;
            let mut spec = Spec::new("mailings", count);
            spec.invalid_share = 0.01;
            spec.seed = phase.seed;
            let mut sent: HashMap<Vec<u8>, i64> = HashMap::with_capacity(count as usize);
            eprintln!("bench: latency, {}: {count} events at {:.0}/s", phase.label, phase.rate);
            let started = Instant::now();
            let start_us = now_us();
            let cpu = CpuMark::new(watched);
            for (i, g) in Generator::new(spec).enumerate() {
                let due = started + Duration::from_secs_f64(i as f64 / phase.rate);
                let now = Instant::now();
                if due > now + Duration::from_micros(500) {
                    std::thread::sleep(due - now);
                }
                let headers = tributary_engine::kafka::raw_headers(g.tenant.as_str(), g.source.as_str());
                let t = now_us();
                let rec = BaseRecord::to(raw)
                    .key(g.key.as_bytes())
                    .payload(&g.payload[..])
                    .headers(headers)
                    .timestamp(t / 1000);
                crate::send_waiting(&producer, rec)?;
                producer.poll(Duration::ZERO);
                if g.kind == Kind::Valid {
                    if let Some(id) = g.event_id {
                        sent.entry(id.into_bytes()).or_insert(t);
                    }
                }
            }
            producer.flush(Duration::from_secs(60))?;
            let produced_rate = count as f64 / started.elapsed().as_secs_f64();
            // Wait until every valid record is clean and in the lake (or give up after a while).
            let deadline = Instant::now() + Duration::from_secs_f64((phase.secs * 4.0).max(60.0));
            let (clean_ms, lake_ms) = loop {
                let (clean_ms, lake_ms) = measure(&sent, &seen, &commits);
                if (clean_ms.len() >= sent.len() && lake_ms.len() >= sent.len()) || Instant::now() > deadline {
                    break (clean_ms, lake_ms);
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            let cores = cpu.cores(watched);
            let last_seen = seen
                .lock()
                .expect("seen")
                .iter()
                .filter(|(id, ..)| sent.contains_key(id))
                .map(|(_, t, ..)| *t)
                .max()
                .unwrap_or(start_us);
            let r = PhaseResult {
                label: phase.label.clone(),
                target_rate: phase.rate,
                produced_rate,
                drained_rate: count as f64 / ((last_seen - start_us) as f64 / 1e6),
                valid: sent.len(),
                seen_clean: clean_ms.len(),
                in_lake: lake_ms.len(),
                p50_raw_to_clean_ms: pct(&clean_ms, 0.5),
                p99_raw_to_clean_ms: pct(&clean_ms, 0.99),
                max_raw_to_clean_ms: clean_ms.last().copied().unwrap_or(f64::NAN),
                p50_raw_to_lake_ms: pct(&lake_ms, 0.5),
                p99_raw_to_lake_ms: pct(&lake_ms, 0.99),
                max_raw_to_lake_ms: lake_ms.last().copied().unwrap_or(f64::NAN),
                cores,
            };
            eprintln!(
                "bench: latency, {}: raw → clean p50 {:.0} / p99 {:.0} ms ({} of {}), raw → lake p50 {:.0} / p99 {:.0} ms ({})",
                r.label,
                r.p50_raw_to_clean_ms,
                r.p99_raw_to_clean_ms,
                r.seen_clean,
                r.valid,
                r.p50_raw_to_lake_ms,
                r.p99_raw_to_lake_ms,
                r.in_lake
            );
            results.push(r);
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = consumer_thread.join();
    let _ = watcher_thread.join();
    outcome?;
    Ok(results)
}

/// The sorted raw → clean and raw → lake latencies (ms) of the records in `sent` seen so far.
fn measure(sent: &HashMap<Vec<u8>, i64>, seen: &Seen, commits: &Commits) -> (Vec<f64>, Vec<f64>) {
    // Per clean partition: (next offset, time seen), in commit order.
    let mut lake: HashMap<i32, Vec<(i64, i64)>> = HashMap::new();
    for (t, p, v) in commits.lock().expect("commits").iter() {
        lake.entry(*p).or_default().push((*v, *t));
    }
    let mut clean_ms = Vec::new();
    let mut lake_ms = Vec::new();
    let mut counted = std::collections::HashSet::new();
    for (id, t, p, off) in seen.lock().expect("seen").iter() {
        let Some(start) = sent.get(id) else { continue };
        if !counted.insert(id.as_slice()) {
            continue;
        }
        clean_ms.push((t - start) as f64 / 1e3);
        if let Some(list) = lake.get(p) {
            let i = list.partition_point(|(v, _)| *v <= *off);
            if let Some((_, lt)) = list.get(i) {
                lake_ms.push((lt - start) as f64 / 1e3);
            }
        }
    }
    clean_ms.sort_by(f64::total_cmp);
    lake_ms.sort_by(f64::total_cmp);
    (clean_ms, lake_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_read_from_a_framed_clean_record() {
        let mut v = vec![0, 0, 0, 0, 7];
        tributary_engine::avro::AvroWriter::new(&mut v).string("acme");
        tributary_engine::avro::AvroWriter::new(&mut v).string("mailings-9-12345");
        v.extend_from_slice(b"rest");
        assert_eq!(clean_event_id(&v), Some(&b"mailings-9-12345"[..]));
        assert_eq!(clean_event_id(&v[..8]), None);
    }

    #[test]
    fn txn_actions_give_partition_and_next_offset() {
        let text = concat!(
            r#"{"commitInfo":{"timestamp":1}}"#,
            "\n",
            r#"{"txn":{"appId":"b1.clean.mailings-3","version":120,"lastUpdated":1}}"#,
            "\n",
            r#"{"txn":{"appId":"b1.clean.users-0","version":5}}"#,
            "\n",
            r#"{"add":{"path":"x.parquet"}}"#,
            "\n"
        );
        assert_eq!(commit_offsets(text, "b1.clean.mailings"), vec![(3, 120)]);
    }

    #[test]
    fn percentiles_of_sorted_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert!(pct(&[], 0.5).is_nan());
    }
}
