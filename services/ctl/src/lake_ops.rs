//! `tributary compact|vacuum|erase`: the lake jobs Airflow runs, over
//! `tributary_lake::{compact, erase}`. Each returns what it did; `main` prints it.

use anyhow::{Context, Result};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tributary_engine::topics;
use tributary_lake::compact::{self, CompactMetrics, CompactOptions, CompactPlan, VacuumMetrics};
use tributary_lake::erase::{self, EraseMetrics, Targets};
use tributary_lake::Lake;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `256MiB`, `64MB`, `1GiB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size like 256MiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit '{other}' (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    Ok((n * mult) as u64)
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn chains_or_all(chains: &[String]) -> Vec<String> {
    if chains.is_empty() {
        topics::CHAINS.iter().map(|c| (*c).to_owned()).collect()
    } else {
        chains.to_vec()
    }
}

/// One chain's compaction: its plan, and what executing it did (None with `plan_only` or
/// when the table does not exist).
pub struct ChainCompaction {
    pub plan: Option<CompactPlan>,
    pub metrics: Option<CompactMetrics>,
}

pub fn compact(
    lake_uri: &str,
    chains: &[String],
    opts: &CompactOptions,
    plan_only: bool,
) -> Result<Vec<ChainCompaction>> {
    let rt = runtime()?;
    let lake = Lake::new(lake_uri)?;
    let mut out = Vec::new();
    for chain in chains_or_all(chains) {
        let Some(mut table) = rt.block_on(tributary_lake::open_existing(&lake, &chain))? else {
            out.push(ChainCompaction {
                plan: None,
                metrics: None,
            });
            continue;
        };
        let plan = compact::plan(&chain, &table, opts)?;
        let metrics = if plan_only {
            None
        } else {
            Some(
                rt.block_on(compact::execute(&mut table, &plan))
                    .with_context(|| format!("compacting {chain}"))?,
            )
        };
        out.push(ChainCompaction {
            plan: Some(plan),
            metrics,
        });
    }
    Ok(out)
}

pub fn vacuum(lake_uri: &str, chains: &[String], retention: Duration, dry_run: bool) -> Result<Vec<VacuumMetrics>> {
    let rt = runtime()?;
    let lake = Lake::new(lake_uri)?;
    let mut out = Vec::new();
    for chain in chains_or_all(chains) {
        if let Some(table) = rt.block_on(tributary_lake::open_existing(&lake, &chain))? {
            let (_, m) = rt
                .block_on(compact::vacuum(&chain, table, retention, dry_run))
                .with_context(|| format!("vacuuming {chain}"))?;
            out.push(m);
        }
    }
    Ok(out)
}

pub struct EraseRequest {
    pub lake: String,
    pub tenant: String,
    pub addresses: Vec<String>,
    pub bootstrap: String,
    pub namespace: String,
    pub ledger: Option<String>,
    pub chains: Vec<String>,
    /// Leave the files the tables removed for time travel (their retention deletes them).
    pub keep_history: bool,
    /// How long to wait for the sink to write what the clean topics held when the erasure
    /// began; zero: do not wait.
    pub sink_wait: Duration,
}

/// Waits until each chain's table holds every record its clean topic held when called: rows
/// still on their way through the sink would land after the rewrite and bring the address
/// back. Gives up after `wait`, before anything is changed, naming what the sink has not
/// written. A table that never took a record of its topic is not waited for. Returns, per
/// chain, what was waited for.
fn wait_for_sink(rt: &tokio::runtime::Runtime, lake: &Lake, req: &EraseRequest) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    if req.sink_wait.is_zero() {
        return Ok(serde_json::Value::String("not waited for (--sink-wait 0)".into()));
    }
    let started = Instant::now();
    let deadline = started + req.sink_wait;
    let read_timeout = Duration::from_secs(60);
    for chain in chains_or_all(&req.chains) {
        let topic = topics::namespaced(&req.namespace, &topics::clean(&chain));
        let offsets = |table: &tributary_lake::DeltaTable, parts: &[i32]| {
            Ok::<_, anyhow::Error>(rt.block_on(Lake::committed_offsets(table, &topic, parts))?)
        };
        let Some(table) = rt.block_on(tributary_lake::open_existing(lake, &chain))? else {
            out.insert(chain, "no table".into());
            continue;
        };
        let mut parts: Vec<i32> = Vec::new();
        let targets = crate::reconcile::catch_up_targets(
            &req.bootstrap,
            &topic,
            |p| {
                parts = p.to_vec();
                offsets(&table, p)
            },
            read_timeout,
        )
        .with_context(|| format!("reading what {topic} holds beyond the {chain} table"))?;
        let Some(targets) = targets else {
            out.insert(chain, format!("the table holds no record of {topic}").into());
            continue;
        };
        let behind: u64 = targets.values().map(|(_, n)| n).sum();
        loop {
            let table = rt
                .block_on(tributary_lake::open_existing(lake, &chain))?
                .with_context(|| format!("the {chain} table disappeared"))?;
            let now = offsets(&table, &parts)?;
            let missing: BTreeMap<i32, i64> = targets
                .iter()
                .filter(|(p, (to, _))| now.get(p).copied().unwrap_or(0) < *to)
                .map(|(p, (to, _))| (*p, to - now.get(p).copied().unwrap_or(0)))
                .collect();
            if missing.is_empty() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the sink has not written into the {chain} table what {topic} held when the erasure began \
                 (offsets still to go per partition: {missing:?}) after {:?}; nothing was erased: rows on \
                 their way would bring the address back. Is the sink running? Retry, or raise --sink-wait",
                req.sink_wait
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        out.insert(chain, serde_json::json!({"records_waited_for": behind}));
    }
    out.insert("seconds".into(), started.elapsed().as_secs_f64().into());
    Ok(serde_json::Value::Object(out))
}

pub struct EraseOutcome {
    pub request_id: String,
    pub tables: Vec<EraseMetrics>,
    /// `chain: path (rows)` of live files that still hold an address after the erasure.
    pub remaining: Vec<String>,
    pub suppressions_sent: usize,
    /// Files of the tenant's partitions the tables had removed, deleted from storage.
    pub removed_files_deleted: usize,
    pub ledger_entry: String,
    pub seconds: f64,
}

/// The canonical JSON record that keeps an erased address suppressed, by hash only.
pub fn suppression_record(tenant: &str, sha: &str, now_secs: i64) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": tenant,
        "event_time": now_secs,
        "email_sha256": sha,
        "reason": "ERASED",
        "kind": "EMAIL",
        "event_id": format!("erase-{sha}"),
    })
}

pub fn erase(req: &EraseRequest) -> Result<EraseOutcome> {
    let started = Instant::now();
    tributary_engine::normalize::tenant_id(&req.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let targets = Targets::from_addresses(req.addresses.iter().map(String::as_str))?;
    anyhow::ensure!(!targets.hashes.is_empty(), "no address to erase");
    let mut hashes: Vec<String> = targets.hashes.iter().cloned().collect();
    hashes.sort();
    let rt = runtime()?;
    let lake = Lake::new(&req.lake)?;
    // 0. The sink first (see wait_for_sink).
    let sink = wait_for_sink(&rt, &lake, req)?;
    let ledger = req
        .ledger
        .clone()
        .unwrap_or_else(|| format!("{}/_erasure_ledger", req.lake.trim_end_matches('/')));
    let request_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let name = format!("{request_id}.jsonl");
    let request = serde_json::json!({
        "event": "requested",
        "request_id": request_id,
        "at": chrono::Utc::now().to_rfc3339(),
        "tenant_id": req.tenant,
        "email_sha256": hashes,
        "lake": req.lake,
        "sink": sink,
        "shares": "grantees' shared files are rebuilt without the address by the next share refresh (serve's timer or the tributary_sharing DAG)",
    });
    rt.block_on(erase::write_ledger(&ledger, &name, std::slice::from_ref(&request)))?;

    // 1. The tables: the chains', and the read side's materialized audiences (they hold
    // addresses too) unless only some chains were asked for.
    let mut names = chains_or_all(&req.chains);
    if req.chains.is_empty() {
        names.push(tributary_view::export::AUDIENCES_TABLE.to_owned());
    }
    let mut tables = Vec::new();
    for chain in &names {
        if let Some(mut table) = rt.block_on(tributary_lake::open_existing(&lake, chain))? {
            let m = rt
                .block_on(erase::erase_table(chain, &mut table, &req.tenant, &targets))
                .with_context(|| format!("erasing from {chain}"))?;
            tables.push(m);
        }
    }

    // 2. The suppression record, through the normal path of the blocklists chain.
    let kafka = tributary_engine::kafka::env_client_config(&req.bootstrap);
    let producer: BaseProducer<crate::loadgen::Deliveries> = kafka
        .clone()
        .set("acks", "all")
        .create_with_context(Default::default())?;
    let topic = topics::namespaced(&req.namespace, &topics::raw("blocklists"));
    let now = chrono::Utc::now().timestamp();
    for sha in &hashes {
        let payload = suppression_record(&req.tenant, sha, now).to_string();
        let key = format!("{}:{sha}", req.tenant);
        let headers = tributary_engine::kafka::raw_headers(req.tenant.as_str(), "json");
        producer
            .send(
                BaseRecord::with_opaque_to(&topic, 0)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing the suppression record to {topic}"))?;
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("delivering the suppression records to {topic}"))?;
    producer
        .context()
        .check(&format!("the suppression records to {topic}"))?;

    // 3. Verification from fresh snapshots, then the files the tables removed (this erasure's
    // and any earlier replacement's, still readable by time travel) deleted from storage.
    let mut remaining = Vec::new();
    let mut purged = 0;
    for chain in &names {
        if let Some(table) = rt.block_on(tributary_lake::open_existing(&lake, chain))? {
            for (f, n) in rt.block_on(erase::files_holding(&table, &req.tenant, &targets))? {
                remaining.push(format!("{chain}: {} ({n} rows)", f.path));
            }
            if !req.keep_history {
                purged += rt
                    .block_on(erase::purge_removed(&table, &req.tenant))
                    .with_context(|| format!("deleting the removed files of {chain}"))?;
            }
        }
    }
    // When the copies in Kafka expire: the raw and clean topics of the erased chains keep the
    // address until their retention has passed.
    let kafka_topics: Vec<String> = chains_or_all(&req.chains)
        .iter()
        .flat_map(|c| [topics::raw(c), topics::clean(c)])
        .map(|t| topics::namespaced(&req.namespace, &t))
        .collect();
    let refs: Vec<&str> = kafka_topics.iter().map(String::as_str).collect();
    let retention =
        tributary_engine::kafka::topic_config_numbers::<i64>(&kafka, &refs, "retention.ms").unwrap_or_default();
    let kafka_copies = if retention.len() < refs.len() {
        serde_json::json!({"expire_at": null, "why": "the retention of some topics could not be read"})
    } else if let Some((t, _)) = retention.iter().find(|(_, ms)| **ms < 0) {
        tracing::warn!(topic = %t, "retention.ms=-1: the address stays in this topic until its retention is made finite");
        serde_json::json!({"expire_at": null, "why": format!("{t} keeps records forever (retention.ms=-1)")})
    } else {
        let longest = retention.values().copied().max().unwrap_or(0);
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(longest);
        serde_json::json!({"expire_at": at.to_rfc3339(), "retention_ms": retention})
    };
    let outcome = serde_json::json!({
        "event": if remaining.is_empty() { "erased" } else { "verification_failed" },
        "request_id": request_id,
        "at": chrono::Utc::now().to_rfc3339(),
        "tables": tables,
        "rows_removed": tables.iter().map(|t| t.rows_removed).sum::<u64>(),
        "suppression_topic": topic,
        "suppressions_sent": hashes.len(),
        "remaining_files": remaining,
        "removed_files_deleted": purged,
        "kafka_copies": kafka_copies,
    });
    let ledger_entry = rt.block_on(erase::write_ledger(&ledger, &name, &[request, outcome]))?;
    Ok(EraseOutcome {
        request_id,
        tables,
        remaining,
        suppressions_sent: hashes.len(),
        removed_files_deleted: purged,
        ledger_entry,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("1kb"), Ok(1000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
