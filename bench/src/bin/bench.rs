//! `make bench`: one chain service against a bare rdkafka transactional pass-through on the
//! same broker and the same preloaded data, plus dedup state memory per key and restore time.
//! Writes `bench/results/latest.md` (and `.json`).
//!
//! Usage: bench [EVENTS]   (default 1 000 000; env KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL)

use anyhow::{Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tributary_bench::{cpu_seconds, peak_rss_bytes};
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::dedup::DedupState;
use tributary_engine::topics;

const CHAIN: &str = "mailings";

fn main() -> Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let kafka = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let registry =
        std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://localhost:8081/apis/ccompat/v7".into());
    let bin = std::env::current_exe()?.parent().context("bin dir")?.to_path_buf();
    let ns = format!(
        "bench{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let t = |x: String| topics::namespaced(&ns, &x);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut all: Vec<(String, bool)> = topics::chain_topics(CHAIN)
        .into_iter()
        .map(|(n, c)| (t(n), c))
        .collect();
    all.push((t("copy".into()), false));
    rt.block_on(topics::create(&kafka, &Default::default(), &all, 4))?;

    eprintln!(
        "bench: preloading {events} {CHAIN} events (10 % duplicates, 1 % invalid) into {}",
        t(topics::raw(CHAIN))
    );
    let mut spec = Spec::new(CHAIN, events);
    spec.invalid_share = 0.01;
    spec.seed = 2026;
    let started = Instant::now();
    let summary = loadgen::send(&kafka, &t(topics::raw(CHAIN)), spec, |_| {})?;
    let preload_s = started.elapsed().as_secs_f64();

    eprintln!("bench: baseline: rdkafka transactional pass-through");
    let out = Command::new(bin.join("passthrough"))
        .args([&kafka, &t(topics::raw(CHAIN)), &t("copy".into()), &events.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "passthrough failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let base_wall = base["wall_seconds"].as_f64().unwrap_or(f64::NAN);
    let base_cpu = base["cpu_seconds"].as_f64().unwrap_or(f64::NAN);

    eprintln!("bench: the {CHAIN} service");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let spawn = |port: u16| {
        Command::new(bin.join(CHAIN))
            .env("KAFKA_BOOTSTRAP", &kafka)
            .env("SCHEMA_REGISTRY_URL", &registry)
            .env("TOPIC_NAMESPACE", &ns)
            .env("METRICS_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
    };
    let started = Instant::now();
    let mut svc = spawn(port)?;
    let pid = svc.id().to_string();
    let metric = |port: u16, name: &str| -> f64 {
        scrape(port)
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    while metric(port, "tributary_chain_records_total") < events as f64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the service did not drain the topic in 30 min"
        );
        anyhow::ensure!(svc.try_wait()?.is_none(), "the service exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let svc_wall = started.elapsed().as_secs_f64();
    let svc_cpu = cpu_seconds(&pid).unwrap_or(f64::NAN);
    let svc_rss = peak_rss_bytes(&pid).unwrap_or(0);
    let state_keys = metric(port, "tributary_chain_dedup_state_keys");
    let commit_p = metric(port, "tributary_chain_commit_duration_seconds_sum")
        / metric(port, "tributary_chain_commit_duration_seconds_count").max(1.0);
    Command::new("kill").args(["-TERM", &pid]).status()?;
    svc.wait()?;

    eprintln!("bench: restoring the dedup state from the changelog");
    let port2 = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut svc2 = spawn(port2)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while metric(port2, "tributary_chain_state_restore_duration_seconds_count") < 4.0 {
        anyhow::ensure!(Instant::now() < deadline, "restore did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let restore_s = metric(port2, "tributary_chain_state_restore_duration_seconds_sum");
    let restored_keys = metric(port2, "tributary_chain_dedup_state_keys");
    Command::new("kill").args(["-TERM", &svc2.id().to_string()]).status()?;
    svc2.wait()?;

    eprintln!("bench: the sink, into a local directory and into HDFS");
    let clean_count = (events - summary.duplicates - summary.invalid) as f64;
    let hdfs = std::env::var("HDFS_URL").unwrap_or_else(|_| "hdfs://localhost:9000".into());
    let local_lake = std::env::temp_dir()
        .join(format!("{ns}-lake"))
        .to_string_lossy()
        .into_owned();
    let mut sink_runs = Vec::new();
    for (label, lake) in [
        ("local directory", local_lake.clone()),
        ("HDFS", format!("{hdfs}/bench/{ns}")),
    ] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let started = Instant::now();
        let mut sink = Command::new(bin.join("sink"))
            .env("KAFKA_BOOTSTRAP", &kafka)
            .env("SCHEMA_REGISTRY_URL", &registry)
            .env("TOPIC_NAMESPACE", &ns)
            .env("CHAINS", CHAIN)
            .env("LAKE_URI", &lake)
            .env("GROUP_ID", format!("bench-sink-{label}"))
            .env("METRICS_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let pid = sink.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(1800);
        while metric(port, "tributary_sink_rows_total") < clean_count {
            anyhow::ensure!(Instant::now() < deadline, "the sink did not drain the clean topic");
            anyhow::ensure!(sink.try_wait()?.is_none(), "the sink exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid).unwrap_or(f64::NAN);
        let rss = peak_rss_bytes(&pid).unwrap_or(0);
        let files = metric(port, "tributary_sink_files_total");
        let bytes = metric(port, "tributary_sink_bytes_total");
        Command::new("kill").args(["-TERM", &pid]).status()?;
        sink.wait()?;
        sink_runs.push((label, wall, cpu, rss, files, bytes));
    }
    let _ = std::fs::remove_dir_all(&local_lake);

    eprintln!("bench: Parquet encoding of the same Arrow batches in memory (the encoder's limit)");
    let encode_rate = parquet_in_memory(clean_count as usize)?;

    eprintln!("bench: dedup state memory at 1 M and 10 M keys");
    let mem = |n: u64| {
        let mut s = DedupState::new(7 * 86_400);
        let mut log = Vec::new();
        for k in 0..n {
            s.observe(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()), 1_000, &mut log);
            log.clear();
        }
        s.allocated_bytes() as f64 / s.len() as f64
    };
    let (mem1, mem10) = (mem(1_000_000), mem(10_000_000));

    let ev = events as f64;
    let svc_us = svc_cpu / ev * 1e6;
    let base_us = base_cpu / ev * 1e6;
    let md = format!(
        "# Benchmark: {CHAIN} chain service vs. bare rdkafka transactional pass-through\n\n\
         Run {date} on this machine (2 cores), `make bench`, {events} preloaded events \
         ({dups} duplicates, {inv} invalid), 4 partitions, one process each, same broker, same data.\n\
         Preload by `tributary loadgen`: {preload:.1} s.\n\n\
         | measure | chain service | pass-through baseline | ratio / target |\n|---|---|---|---|\n\
         | wall time to drain (incl. start) | {sw:.1} s | {bw:.1} s | |\n\
         | throughput | {stp:.0} events/s | {btp:.0} events/s | {tpr:.0} % of baseline (target ≥ 60 %) |\n\
         | own CPU per event | {svc_us:.2} µs | {base_us:.2} µs | target ≤ 3 µs |\n\
         | peak RSS | {srss:.0} MiB | {brss:.0} MiB | |\n\
         | mean transaction commit | {cp:.1} ms | | |\n\
         | dedup keys after the run | {keys:.0} | | |\n\
         | dedup state, bytes per key at 1 M keys | {mem1:.1} | | target ≤ 32 |\n\
         | dedup state, bytes per key at 10 M keys | {mem10:.1} | | target ≤ 32 |\n\
         | restore of {rk:.0} keys from the changelog | {rs:.2} s | | 10 M keys ≤ 10 s: extrapolated {r10:.1} s |\n\n\
         CPU is user + system time of the process from /proc, start-up included for both.\n\
         {sink_table}\n\
         Not measured yet: the Kafka Streams peer, p99 latency at half peak load.\n",
        sink_table = sink_section(&sink_runs, clean_count, encode_rate),
        date = std::process::Command::new("date")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        dups = summary.duplicates,
        inv = summary.invalid,
        preload = preload_s,
        sw = svc_wall,
        bw = base_wall,
        stp = ev / svc_wall,
        btp = ev / base_wall,
        tpr = 100.0 * base_wall / svc_wall,
        srss = svc_rss as f64 / 1048576.0,
        brss = base["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        cp = commit_p * 1e3,
        keys = state_keys,
        rk = restored_keys,
        rs = restore_s,
        r10 = restore_s / restored_keys.max(1.0) * 1e7,
    );
    std::fs::create_dir_all("bench/results")?;
    std::fs::write("bench/results/latest.md", &md)?;
    println!("{md}");
    Ok(())
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

type SinkRun<'a> = (&'a str, f64, f64, u64, f64, f64);

fn sink_section(runs: &[SinkRun<'_>], n: f64, encode_rate: f64) -> String {
    let mut s = String::from(
        "## The sink: the clean topic into committed Parquet (Delta)\n\n\
         | lake | wall | rows/s | rows/s per core (CPU) | peak RSS | files | Parquet bytes |\n|---|---|---|---|---|---|---|\n",
    );
    for (label, wall, cpu, rss, files, bytes) in runs {
        s.push_str(&format!(
            "| {label} | {wall:.1} s | {:.0} | {:.0} (target ≥ 500 000) | {:.0} MiB | {files:.0} | {:.1} MiB |\n",
            n / wall,
            n / cpu,
            *rss as f64 / 1048576.0,
            bytes / 1048576.0
        ));
    }
    s.push_str(&format!(
        "| in-memory Parquet encoding of the same Arrow batches (baseline) | | {encode_rate:.0} rows/s per core | | | | |\n"
    ));
    s
}

/// Builds `n` realistic mailings rows as Arrow batches and times their Parquet encoding in
/// memory with the lake's writer properties.
fn parquet_in_memory(n: usize) -> Result<f64> {
    use apache_avro::types::Value;
    use std::sync::Arc;
    let schema = Arc::new(tributary_lake::convert::arrow_schema(
        tributary_lake::chain_schema(CHAIN).context("schema")?,
    )?);
    let mut batches = Vec::new();
    let mut rows = Vec::with_capacity(100_000);
    for i in 0..n {
        let s = |x: String| Value::String(x);
        let o = |x: String| Value::Union(1, Box::new(Value::String(x)));
        rows.push(vec![
            ("tenant_id".to_owned(), s(["acme", "globex", "initech"][i % 3].into())),
            ("event_id".to_owned(), s(format!("mailings-1-{i}"))),
            (
                "event_time".to_owned(),
                Value::TimestampMicros(1_764_000_000_000_000 + i as i64 * 1000),
            ),
            (
                "ingested_at".to_owned(),
                Value::TimestampMicros(1_764_000_000_000_000 + i as i64 * 1000),
            ),
            ("source".to_owned(), s("json".into())),
            ("email".to_owned(), o(format!("user.{}@example.com", i % 100_000))),
            (
                "email_sha256".to_owned(),
                o(format!("{:064x}", xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()))),
            ),
            ("message_id".to_owned(), s(format!("msg-{}", i / 3))),
            ("campaign_id".to_owned(), o(format!("c-{}", i % 11))),
            (
                "event_type".to_owned(),
                Value::Enum(
                    (i % 5) as u32,
                    ["SENT", "DELIVERED", "DEFERRED", "BOUNCED", "DROPPED"][i % 5].into(),
                ),
            ),
        ]);
        if rows.len() == 100_000 {
            batches.push(tributary_lake::convert::to_batch(schema.clone(), &rows)?);
            rows.clear();
        }
    }
    if !rows.is_empty() {
        batches.push(tributary_lake::convert::to_batch(schema.clone(), &rows)?);
    }
    let started = std::time::Instant::now();
    let cpu0 = cpu_seconds("self").unwrap_or(0.0);
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(tributary_lake::table::writer_properties()))?;
    for b in &batches {
        w.write(b)?;
    }
    w.close()?;
    // Encoding is single-threaded: its CPU time is its wall time when /proc says less.
    let cpu = (cpu_seconds("self").unwrap_or(0.0) - cpu0)
        .max(0.01)
        .min(started.elapsed().as_secs_f64());
    Ok(n as f64 / cpu)
}
