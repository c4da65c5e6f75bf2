//! The lake jobs (`tributary compact|vacuum|reconcile|erase`) against the real broker,
//! registry and HDFS, through the CLI as Airflow calls it: compaction keeps every row (all
//! columns compared row by row) on a local directory and on HDFS, also while the sink
//! writes the same partitions; `--plan` and a second run change nothing; reconciliation
//! passes on a clean run and names a gap, an audit mismatch and missing rows made on
//! purpose; erasure removes an address everywhere in the tenant and nothing else, and its
//! suppression record reaches `clean.blocklists`.

use anyhow::{Context, Result};
use arrow::util::display::array_value_to_string;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::topics;
use tributary_tests::*;

fn lake_dir(ns: &str) -> String {
    std::env::temp_dir()
        .join(format!("lake-{ns}"))
        .to_string_lossy()
        .into_owned()
}

/// Runs `tributary <args>` as Airflow would.
fn tributary(args: &[&str]) -> Result<CliRun> {
    run_tributary(args, &[("RUST_LOG", "warn")])
}

fn last_json(stdout: &str) -> Result<serde_json::Value> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON line")?;
    Ok(serde_json::from_str(line)?)
}

/// A namespace whose topics exist for several chains.
fn namespace_for(chains: &[&str], partitions: i32) -> Result<String> {
    let mut all: Vec<(String, bool)> = chains.iter().flat_map(|c| topics::chain_topics(c)).collect();
    all.push(("dlq.sink".into(), false));
    namespace_of(&all, partitions)
}

/// One runtime for the whole test binary: an HDFS table keeps connections bound to the
/// runtime it was opened on.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn open(lake: &str, chain: &str) -> Result<deltalake::DeltaTable> {
    let url = tributary_lake::Lake::new(lake)?.table_url(chain)?;
    Ok(rt().block_on(deltalake::open_table(url))?)
}

/// Every Parquet file stored under a tenant's partitions of a table, live or removed (what
/// time travel could read), that holds one of `targets` outside the ERASED tombstone.
fn stored_files_holding(
    lake: &str,
    chain: &str,
    tenant: &str,
    targets: &tributary_lake::erase::Targets,
) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let table = open(lake, chain)?;
    let store = table.object_store();
    let prefix = object_store::path::Path::from(format!("tenant_id={tenant}"));
    let objects: Vec<object_store::ObjectMeta> = rt().block_on(store.list(Some(&prefix)).try_collect())?;
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| o.location.as_ref().ends_with(".parquet")) {
        let bytes = rt().block_on(async { store.get(&o.location).await?.bytes().await })?;
        let n: usize = tributary_lake::table::decode_parquet(bytes, None)?
            .iter()
            .map(|b| {
                let m = targets.matches(b);
                (0..m.len()).filter(|i| m.value(*i)).count()
            })
            .sum();
        if n > 0 {
            out.push(format!("{} ({n} rows)", o.location));
        }
    }
    Ok(out)
}

/// Every row of a table, all columns by name (partition values included), sorted.
fn all_rows(lake: &str, chain: &str) -> Result<Vec<String>> {
    let table = open(lake, chain)?;
    let mut rows = Vec::new();
    for f in rt().block_on(tributary_lake::table::read_all(&table))? {
        for b in &f.batches {
            let schema = b.schema();
            let mut cols: Vec<(String, usize)> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, fl)| (fl.name().clone(), i))
                .collect();
            cols.sort();
            for r in 0..b.num_rows() {
                let mut s: Vec<String> = f.partition.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (name, i) in &cols {
                    let c = b.column(*i);
                    let v = if c.is_null(r) {
                        "∅".to_owned()
                    } else {
                        array_value_to_string(c, r)?
                    };
                    s.push(format!("{name}={v}"));
                }
                rows.push(s.join("|"));
            }
        }
    }
    rows.sort();
    Ok(rows)
}

fn files(lake: &str, chain: &str) -> Result<Vec<tributary_lake::table::LiveFile>> {
    Ok(tributary_lake::table::live_files(&open(lake, chain)?)?)
}

fn txn_offsets(lake: &str, chain: &str, ns: &str) -> Result<BTreeMap<i32, i64>> {
    let table = open(lake, chain)?;
    Ok(rt().block_on(tributary_lake::Lake::committed_offsets(
        &table,
        &topic(ns, topics::clean(chain)),
        &(0..8).collect::<Vec<_>>(),
    ))?)
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn today() -> String {
    tributary_lake::convert::event_date(tributary_engine::normalize::now_micros())
}

/// Fills a table with many small files over several days, then compacts it through the CLI.
/// `flush_rows` rows a sink commit: each commit adds a file to most partitions.
fn compaction_keeps_every_row(lake: &str, flush_rows: &str) -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 2)?;
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, lake, chain, &[("FLUSH_MAX_ROWS", flush_rows)])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 6_000);
    spec.seed = 41;
    spec.spread_secs = 3 * 86_400;
    let s = loadgen::send_paced(&kafka(), &topic(&ns, topics::raw(chain)), spec, Some(3_000), |_| {})?;
    let rows = wait_table(lake, chain, s.expected.len(), Duration::from_secs(300))?;
    assert_exact_table(&rows, &s.expected);
    sink.stop()?;
    svc.stop()?;

    let before = all_rows(lake, chain)?;
    let files_before = files(lake, chain)?;
    let offsets_before = txn_offsets(lake, chain, &ns)?;
    let version_before = open(lake, chain)?.version();
    let today = today();
    let today_files: BTreeSet<String> = files_before
        .iter()
        .filter(|f| f.event_date() == today)
        .map(|f| f.path.clone())
        .collect();
    eprintln!(
        "{} rows in {} files before compaction",
        before.len(),
        files_before.len()
    );

    // --plan changes nothing.
    let plan = tributary(&[
        "compact",
        "--lake",
        lake,
        "--chain",
        chain,
        "--plan",
        "--min-files",
        "2",
        "--json",
    ])?;
    assert!(plan.ok);
    let p = last_json(&plan.stdout)?;
    let planned = p["chains"][0]["plan"]["files_to_rewrite"].as_u64().unwrap_or(0);
    assert!(planned > 0, "the plan rewrites something: {p}");
    assert_eq!(open(lake, chain)?.version(), version_before, "--plan committed nothing");
    assert_eq!(files(lake, chain)?.len(), files_before.len());

    // The run.
    let run = tributary(&[
        "compact",
        "--lake",
        lake,
        "--chain",
        chain,
        "--min-files",
        "2",
        "--json",
    ])?;
    assert!(run.ok, "{}", run.stderr);
    let m = &last_json(&run.stdout)?["chains"][0]["metrics"];
    assert_eq!(m["files_removed"].as_u64(), Some(planned), "{m}");
    assert!(run.stdout.contains("files ("), "summary printed: {}", run.stdout);
    let files_after = files(lake, chain)?;
    eprintln!(
        "compaction: {} -> {} files, {} -> {} bytes in {:.2}s",
        files_before.len(),
        files_after.len(),
        m["bytes_before"],
        m["bytes_after"],
        run.seconds
    );
    assert!(files_after.len() < files_before.len(), "fewer files");
    // Every closed partition is now one file; today's are untouched.
    let mut per_partition: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &files_after {
        *per_partition
            .entry((f.tenant().to_owned(), f.event_date().to_owned()))
            .or_default() += 1;
    }
    for ((t, d), n) in &per_partition {
        if *d != today {
            assert_eq!(*n, 1, "closed partition {t}/{d} compacted into one file");
        }
    }
    let today_after: BTreeSet<String> = files_after
        .iter()
        .filter(|f| f.event_date() == today)
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(
        today_after, today_files,
        "today's partitions are not closed: left alone"
    );
    let after = all_rows(lake, chain)?;
    assert_eq!(after.len(), before.len(), "same number of rows");
    assert!(after == before, "the same rows, column by column");
    assert_eq!(
        txn_offsets(lake, chain, &ns)?,
        offsets_before,
        "the sink's offsets kept"
    );
    // The output is sorted by email_sha256.
    let table = open(lake, chain)?;
    let f = files_after
        .iter()
        .find(|f| f.event_date() != today)
        .context("a compacted file")?;
    let batches = rt().block_on(tributary_lake::table::read_file(
        &table,
        &f.path,
        Some(&["email_sha256"]),
    ))?;
    let hashes: Vec<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|i| array_value_to_string(b.column(0), i).unwrap_or_default()))
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] <= w[1]), "rows sorted by email_sha256");

    // A second run does nothing.
    let version = open(lake, chain)?.version();
    let again = tributary(&[
        "compact",
        "--lake",
        lake,
        "--chain",
        chain,
        "--min-files",
        "2",
        "--json",
    ])?;
    assert!(again.ok);
    let m2 = &last_json(&again.stdout)?["chains"][0]["metrics"];
    assert_eq!(m2["partitions_planned"].as_u64(), Some(0), "{m2}");
    assert_eq!(open(lake, chain)?.version(), version, "no commit");

    // Vacuum with a zero retention deletes the files compaction removed; rows stay.
    let vac = tributary(&[
        "vacuum",
        "--lake",
        lake,
        "--chain",
        chain,
        "--retention",
        "0s",
        "--json",
    ])?;
    assert!(vac.ok, "{}", vac.stderr);
    let deleted = last_json(&vac.stdout)?["vacuum"][0]["files_deleted"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        deleted >= planned,
        "vacuum deleted {deleted} files, compaction removed {planned}"
    );
    assert!(all_rows(lake, chain)? == before, "rows after vacuum");
    Ok(())
}

#[test]
fn compaction_on_a_local_directory() -> Result<()> {
    let lake = lake_dir(&format!("compact-{}", uuid::Uuid::new_v4().simple()));
    compaction_keeps_every_row(&lake, "150")?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

#[test]
fn compaction_on_hdfs() -> Result<()> {
    let lake = format!("{}/tributary-test/compact-{}", hdfs(), uuid::Uuid::new_v4().simple());
    compaction_keeps_every_row(&lake, "600")
}

/// The sink keeps appending to the very partitions being compacted (today included): no
/// row lost or doubled, the sink never stops, and reconciliation then passes.
#[test]
fn compaction_while_the_sink_writes_on_hdfs_then_reconciliation_passes() -> Result<()> {
    let ns = namespace_for(&["users"], 4)?;
    compaction_while_the_sink_writes(&ns, &format!("{}/tributary-test/concurrent-{ns}", hdfs()))
}

#[test]
fn compaction_while_the_sink_writes_locally_then_reconciliation_passes() -> Result<()> {
    let ns = namespace_for(&["users"], 4)?;
    compaction_while_the_sink_writes(&ns, &lake_dir(&ns))
}

fn compaction_while_the_sink_writes(ns: &str, lake: &str) -> Result<()> {
    let (ns, lake) = (ns.to_owned(), lake.to_owned());
    let chain = "users";
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[("FLUSH_MAX_AGE", "1s")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 20_000);
    spec.seed = 43;
    // Across two days, but within the users chain's 24 h dedup window: older events are
    // "late", let through even when duplicated, and would be in the table twice by design.
    spec.spread_secs = 20 * 3600;
    let (k, raw, sp) = (kafka(), topic(&ns, topics::raw(chain)), spec);
    let mut producer = Some(std::thread::spawn(move || {
        loadgen::send_paced(&k, &raw, sp, Some(1_000), |_| {})
    }));
    // Compact repeatedly while the sink writes: from its first commit (on a loaded machine
    // that came more than 20 s after the load began, once, and no compaction had anything to
    // race) until the load is over and compaction has raced the sink at least twice, or the
    // sink has written everything.
    wait_table(&lake, chain, 1, Duration::from_secs(180))?;
    let (mut runs, mut removed, mut commits) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut summary = None;
    loop {
        if producer.as_ref().is_some_and(|p| p.is_finished()) {
            summary = Some(producer.take().expect("running").join().expect("producer")?);
        }
        if let Some(s) = &summary {
            let complete = table_rows(&lake, chain)?.len() >= s.expected.len();
            if commits >= 2 || complete || Instant::now() > deadline {
                break;
            }
        }
        let r = tributary(&[
            "compact",
            "--lake",
            &lake,
            "--chain",
            chain,
            "--min-files",
            "2",
            "--closed-before-days",
            "0",
            "--json",
        ])?;
        assert!(r.ok, "compaction failed while the sink writes: {}", r.stderr);
        let m = &last_json(&r.stdout)?["chains"][0]["metrics"];
        runs += 1;
        removed += m["files_removed"].as_u64().unwrap_or(0);
        commits += m["commits"].as_array().map(Vec::len).unwrap_or(0);
        sink.check_alive()?;
    }
    let summary = summary.expect("the load ended");
    eprintln!("{runs} compactions during the load: {commits} commits, {removed} files removed");
    assert!(runs >= 2 && commits >= 2, "compaction ran against the live sink");
    wait_exact_table(&lake, chain, &summary.expected, Duration::from_secs(300))?;
    sink.check_alive()?;
    // One more compaction with everything quiet, then reconcile.
    let r = tributary(&[
        "compact",
        "--lake",
        &lake,
        "--chain",
        chain,
        "--min-files",
        "2",
        "--closed-before-days",
        "0",
    ])?;
    assert!(r.ok);
    assert_exact_table(&table_rows(&lake, chain)?, &summary.expected);
    let dir = std::env::temp_dir().join(format!("reconcile-{ns}"));
    std::fs::create_dir_all(&dir)?;
    let (report, metrics) = (dir.join("report.json"), dir.join("metrics.prom"));
    let rec = tributary(&[
        "reconcile",
        "--lake",
        &lake,
        "--report",
        report.to_str().unwrap_or_default(),
        "--metrics-file",
        metrics.to_str().unwrap_or_default(),
        "--chains",
        chain,
        "--namespace",
        &ns,
    ])?;
    assert!(rec.ok, "reconciliation of a clean run: {}", rec.stderr);
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    assert_eq!(rep["ok"], true);
    let c = &rep["chains"][0];
    assert_eq!(c["rows_compared"].as_u64(), Some(summary.expected.len() as u64), "{c}");
    assert_eq!(c["totals"]["received"].as_u64(), Some(summary.sent));
    let text = std::fs::read_to_string(&metrics)?;
    assert!(text.contains(&format!(
        "tributary_reconcile_rows_compared{{chain=\"{chain}\"}} {}",
        summary.expected.len()
    )));
    assert!(text.contains("tributary_reconcile_last_success_timestamp_seconds"));
    assert!(text.contains(&format!(
        "tributary_reconcile_discrepancies{{chain=\"{chain}\",kind=\"gap\"}} 0"
    )));
    sink.stop()?;
    svc.stop()
}

/// Reconciliation names what is wrong: rows missing from the table (a file removed by a
/// commit), and, in a namespace without a chain service, a hole between audited ranges
/// and an audit record whose counts do not add up.
#[test]
fn reconciliation_names_the_exact_discrepancy() -> Result<()> {
    let chain = "unsubscribes";
    let ns = namespace_for(&[chain], 2)?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 3_000);
    spec.seed = 47;
    let s = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    wait_table(&lake, chain, s.expected.len(), Duration::from_secs(90))?;
    wait_accounted(&topic(&ns, topics::audit(chain)), s.sent, Duration::from_secs(60))?;
    let dir = std::env::temp_dir().join(format!("reconcile-{ns}"));
    std::fs::create_dir_all(&dir)?;
    let report = dir.join("report.json");
    let metrics = dir.join("metrics.prom");
    let args = |lake: &str, ns: &str| -> Vec<String> {
        [
            "reconcile",
            "--lake",
            lake,
            "--report",
            report.to_str().unwrap_or_default(),
            "--metrics-file",
            metrics.to_str().unwrap_or_default(),
            "--chains",
            chain,
            "--namespace",
            ns,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let a = args(&lake, &ns);
    let ok = tributary(&refs(&a))?;
    assert!(ok.ok, "clean run passes: {}", ok.stderr);
    let success = std::fs::read_to_string(&metrics)?;

    // Rows deleted behind the sink's back: a Remove of one file.
    let mut table = open(&lake, chain)?;
    let victim = tributary_lake::table::live_files(&table)?
        .into_iter()
        .max_by_key(|f| f.num_records)
        .context("a file")?;
    let n = victim.num_records.unwrap_or(0) as u64;
    rt().block_on(tributary_lake::table::commit_rewrite(
        &mut table,
        vec![victim.remove(true)],
        deltalake::protocol::DeltaOperation::Delete { predicate: None },
        5,
    ))?;
    let bad = tributary(&refs(&a))?;
    assert!(!bad.ok, "missing rows fail the reconciliation");
    let key = format!("{}/{}", victim.tenant(), victim.event_date());
    assert!(
        bad.stderr.contains("[row_count]") && bad.stderr.contains(&key),
        "names tenant/day {key}: {}",
        bad.stderr
    );
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let d = &rep["chains"][0]["discrepancies"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d[0]["kind"], "row_count");
    assert_eq!(d[0]["key"], key.as_str());
    assert_eq!(
        d[0]["expected"].as_u64().unwrap_or(0) - d[0]["actual"].as_u64().unwrap_or(0),
        n
    );
    let text = std::fs::read_to_string(&metrics)?;
    assert!(text.contains(&format!(
        "tributary_reconcile_discrepancies{{chain=\"{chain}\",kind=\"row_count\"}} 1"
    )));
    // The last success is carried over from the passing run.
    assert_eq!(
        tributary_lake::reconcile::previous_success(&text),
        tributary_lake::reconcile::previous_success(&success)
    );
    sink.stop()?;
    svc.stop()?;

    // A hole in the audit, made on purpose in a namespace no chain service reads: ten raw
    // records, audited as 0..4 and 6..10 (and one record whose counts do not add up).
    let ns2 = namespace_for(&[chain], 1)?;
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let raw = topic(&ns2, topics::raw(chain));
    for i in 0..10 {
        producer
            .send(
                BaseRecord::<str, str>::to(&raw)
                    .partition(0)
                    .payload(&format!("{{\"n\":{i}}}")),
            )
            .map_err(|(e, _)| e)?;
    }
    let audit = topic(&ns2, topics::audit(chain));
    for (first, next, dlq) in [(0, 4, 0), (6, 10, 1)] {
        let rec = serde_json::json!({"chain": chain, "instance": "0",
            "inputs": [{"topic": raw, "partition": 0, "first_offset": first, "next_offset": next}],
            "received": next - first, "clean": next - first, "dlq": dlq, "duplicate": 0, "late": 0});
        producer
            .send(
                BaseRecord::<str, str>::to(&audit)
                    .partition(0)
                    .payload(&rec.to_string()),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let lake2 = lake_dir(&ns2);
    let gap = tributary(&refs(&args(&lake2, &ns2)))?;
    assert!(!gap.ok);
    assert!(
        gap.stderr.contains(&format!(
            "[gap] {raw} partition 0: offsets 4..5 (2 records) not accounted for"
        )),
        "names the gap: {}",
        gap.stderr
    );
    assert!(gap.stderr.contains("[audit_sum]"), "{}", gap.stderr);
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let g = rep["chains"][0]["discrepancies"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == "gap").cloned())
        .context("a gap in the report")?;
    assert_eq!(
        (g["partition"].as_i64(), g["from"].as_i64(), g["to"].as_i64()),
        (Some(0), Some(4), Some(6))
    );
    let _ = std::fs::remove_dir_all(&lake);
    let _ = std::fs::remove_dir_all(&lake2);
    Ok(())
}

/// Sends canonical JSON raw records.
fn send_json(topic_: &str, records: &[(String, serde_json::Value)]) -> Result<()> {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    for (tenant, v) in records {
        let headers = tributary_engine::kafka::raw_headers(tenant.as_str(), "json");
        let key = format!("{tenant}:{}", v["email"].as_str().unwrap_or_default());
        producer
            .send(
                BaseRecord::to(topic_)
                    .key(&key)
                    .payload(&v.to_string())
                    .headers(headers),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

fn erasure(lake: &str, ns: &str) -> Result<()> {
    let chains = ["users", "blocklists"];
    let mut svcs: Vec<Service> = chains
        .iter()
        .map(|c| Service::start(c, ns, "0", &[]))
        .collect::<Result<_>>()?;
    let mut sink = Sink::start(ns, lake, "users,blocklists", &[])?;
    for s in &mut svcs {
        s.wait_ready(Duration::from_secs(60))?;
    }
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, n, seed) in [("users", 3_000, 51), ("blocklists", 1_000, 52)] {
        let mut spec = Spec::new(c, n);
        spec.seed = seed;
        spec.spread_secs = 20 * 3600;
        let s = loadgen::send(&kafka(), &topic(ns, topics::raw(c)), spec, |_| {})?;
        expected.insert(c, s.expected.len());
    }
    // The person: rows in both tables of acme, in two spellings, plus a globex row that
    // must stay (another tenant's data).
    let address = "Erase.Me@Example.COM";
    let normalized = "erase.me@example.com";
    let sha = tributary_engine::normalize::sha256_hex(normalized);
    let now = tributary_engine::normalize::now_micros() / 1_000_000;
    let person = |tenant: &str, id: &str, email: &str, t: i64| {
        let mut v = serde_json::json!({"event_id": id, "event_time": t, "email": email});
        if id == "p-4" {
            v["reason"] = "MANUAL".into();
        } else {
            v["user_id"] = "p1".into();
        }
        (tenant.to_owned(), v)
    };
    send_json(
        &topic(ns, topics::raw("users")),
        &[
            person("acme", "p-1", address, now - 100),
            person("acme", "p-2", normalized, now - 86_400),
            person("globex", "p-3", normalized, now - 200),
        ],
    )?;
    send_json(
        &topic(ns, topics::raw("blocklists")),
        &[person("acme", "p-4", address, now - 300)],
    )?;
    *expected.entry("users").or_default() += 3;
    *expected.entry("blocklists").or_default() += 1;
    let holds = |r: &str| {
        r.starts_with("event_date=")
            && r.contains("|tenant_id=acme")
            && (r.contains(&format!("|email={normalized}|")) || r.contains(&format!("|email_sha256={sha}|")))
    };
    for c in chains {
        wait_table(lake, c, expected[c], Duration::from_secs(120))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let before: BTreeMap<&str, Vec<String>> = loop {
        let before: BTreeMap<&str, Vec<String>> = chains
            .iter()
            .map(|c| Ok((*c, all_rows(lake, c)?)))
            .collect::<Result<_>>()?;
        let n: Vec<usize> = chains
            .iter()
            .map(|c| before[c].iter().filter(|r| holds(r)).count())
            .collect();
        if n == [2, 1] {
            break before;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the address's rows (users, blocklists): {n:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    let run = tributary(&[
        "erase",
        "--lake",
        lake,
        "--tenant",
        "acme",
        "--email",
        address,
        "--chains",
        "users,blocklists",
        "--namespace",
        ns,
        "--json",
    ])?;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("shares: the next share refresh rebuilds"));
    assert!(run.stdout.contains("verified: no live file"));
    let out = last_json(&run.stdout)?;
    eprintln!("erasure took {:.2}s: {}", run.seconds, out["tables"]);
    // Not by time travel either: no stored file of acme's partitions, live or removed, holds
    // the address (the rewritten files were deleted, whatever the retention).
    let targets = tributary_lake::erase::Targets::from_addresses([address])?;
    assert!(out["removed_files_deleted"].as_u64().unwrap_or(0) >= 2, "{out}");
    for c in chains {
        let left = stored_files_holding(lake, c, "acme", &targets)?;
        assert!(left.is_empty(), "{c}: stored files still hold the address: {left:?}");
    }

    // Everything else is still there, row by row; the address is gone from acme only.
    for c in chains {
        let after = all_rows(lake, c)?;
        let want: Vec<String> = before[c].iter().filter(|r| !holds(r)).cloned().collect();
        assert!(want.len() < before[c].len());
        assert!(after == want, "{c}: exactly the address's rows removed");
    }
    assert!(
        all_rows(lake, "users")?
            .iter()
            .any(|r| r.contains("|tenant_id=globex") && r.contains(&format!("|email={normalized}|"))),
        "the other tenant's row stays"
    );

    // The suppression record goes through the blocklists chain to clean.blocklists and the
    // table, by hash only; a later check still finds no address.
    let want_id = format!("erase-{sha}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clean = decode_clean(&read_all(&topic(ns, topics::clean("blocklists")))?)?;
        if clean.iter().any(|(_, _, t, id)| t == "acme" && *id == want_id) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ERASED record did not reach clean.blocklists"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let rows = wait_table(lake, "blocklists", expected["blocklists"], Duration::from_secs(60))?;
    assert!(rows.contains_key(&format!("acme/{want_id}")));
    let tomb = all_rows(lake, "blocklists")?
        .into_iter()
        .find(|r| r.contains(&format!("event_id={want_id}")))
        .context("the tombstone row")?;
    assert!(tomb.contains("|email=∅|") && tomb.contains("|reason=ERASED|") && tomb.contains(&sha));
    let table = open(lake, "blocklists")?;
    assert!(rt()
        .block_on(tributary_lake::erase::files_holding(&table, "acme", &targets))?
        .is_empty());
    sink.stop()?;
    for s in &mut svcs {
        s.stop()?;
    }
    Ok(())
}

#[test]
fn erasure_on_a_local_directory() -> Result<()> {
    let ns = namespace_for(&["users", "blocklists"], 2)?;
    let lake = lake_dir(&ns);
    erasure(&lake, &ns)?;
    // The ledger names the request by hash, never by address.
    let ledger = std::path::Path::new(&lake).join("_erasure_ledger");
    let entries: Vec<_> = std::fs::read_dir(&ledger)?.collect::<std::result::Result<_, _>>()?;
    assert_eq!(entries.len(), 1);
    let text = std::fs::read_to_string(entries[0].path())?;
    assert_eq!(text.lines().count(), 2, "request and outcome");
    assert!(text.contains("\"event\":\"erased\""));
    assert!(text.contains(&tributary_engine::normalize::sha256_hex("erase.me@example.com")));
    assert!(!text.to_lowercase().contains("erase.me@example.com"));
    // When the copies in Kafka expire: the topics were created with a 7-day retention.
    let outcome: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap_or_default())?;
    let expire_at = outcome["kafka_copies"]["expire_at"]
        .as_str()
        .context("kafka_copies.expire_at")?;
    let in_days = (chrono::DateTime::parse_from_rfc3339(expire_at)?.timestamp() - chrono::Utc::now().timestamp())
        as f64
        / 86_400.0;
    assert!((6.9..=7.01).contains(&in_days), "{outcome}");
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

#[test]
fn erasure_on_hdfs() -> Result<()> {
    let ns = namespace_for(&["users", "blocklists"], 2)?;
    let lake = format!("{}/tributary-test/erase-{ns}", hdfs());
    erasure(&lake, &ns)
}

/// Rows still on their way through the sink when an erasure begins would land after the
/// rewrite and bring the address back: the erasure waits for the sink to write what the
/// clean topic held, and with the sink stopped gives up without changing anything.
#[test]
fn an_erasure_waits_for_the_rows_still_on_their_way_to_the_lake() -> Result<()> {
    let ns = namespace_for(&["users", "blocklists"], 2)?;
    let lake = lake_dir(&ns);
    let mut users = Service::start("users", &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, "users", &[])?;
    users.wait_ready(Duration::from_secs(60))?;
    let address = "late.person@example.com";
    let now = tributary_engine::normalize::now_micros() / 1_000_000;
    let user = |id: &str, email: &str, t: i64| {
        let v = serde_json::json!({"event_id": id, "event_time": t, "email": email, "user_id": id});
        ("acme".to_owned(), v)
    };
    let raw = topic(&ns, topics::raw("users"));
    send_json(&raw, &[user("u-1", address, now - 100)])?;
    wait_table(&lake, "users", 1, Duration::from_secs(120))?;

    // The sink stops; two more rows reach the clean topic, one of them the person's.
    sink.stop()?;
    send_json(
        &raw,
        &[
            user("u-2", address, now - 50),
            user("u-3", "someone.else@example.com", now - 40),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clean = decode_clean(&read_all(&topic(&ns, topics::clean("users")))?)?;
        if clean.iter().filter(|(_, _, _, id)| id == "u-2" || id == "u-3").count() == 2 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "u-2 and u-3 did not reach clean.users");
        std::thread::sleep(Duration::from_millis(300));
    }
    let erase = |wait: &str| {
        tributary(&[
            "erase",
            "--lake",
            &lake,
            "--tenant",
            "acme",
            "--email",
            address,
            "--chains",
            "users",
            "--namespace",
            &ns,
            "--sink-wait",
            wait,
            "--json",
        ])
    };
    // Nothing writes them: the erasure gives up and leaves the table as it was.
    let before = all_rows(&lake, "users")?;
    let run = erase("3s")?;
    assert!(
        !run.ok,
        "an erasure with rows on their way must not pass: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("the sink has not written"),
        "the refusal names the sink: {}",
        run.stderr
    );
    assert_eq!(all_rows(&lake, "users")?, before, "a refused erasure changes nothing");

    // The sink back: the erasure waits for it, and the row that was on its way goes too.
    sink.respawn()?;
    let run = erase("2m")?;
    assert!(run.ok, "{}", run.stderr);
    let out = last_json(&run.stdout)?;
    eprintln!(
        "erasure with the sink catching up took {:.2}s: {}",
        run.seconds, out["tables"]
    );
    let targets = tributary_lake::erase::Targets::from_addresses([address])?;
    for _ in 0..2 {
        let rows = table_rows(&lake, "users")?;
        assert_eq!(
            rows.keys().cloned().collect::<Vec<_>>(),
            vec!["acme/u-3".to_owned()],
            "{rows:?}"
        );
        assert!(stored_files_holding(&lake, "users", "acme", &targets)?.is_empty());
        // Nothing brings it back later either.
        std::thread::sleep(Duration::from_secs(2));
    }
    sink.stop()?;
    users.stop()?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}
