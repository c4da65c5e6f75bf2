//! `make bench`: one chain service against a bare rdkafka transactional pass-through and the
//! Kafka Streams peer (`bench/peers/kstreams-dedup`) on the same broker and the same
//! preloaded data; dedup state memory per key; restore of 10 M keys from a changelog; the
//! sink into a local directory and HDFS; latency raw → clean and raw → lake at half of the
//! chain's measured peak rate and at that peak; the chain alone again at 3 M and 10 M events
//! (growth: CPU per event should stay flat). Writes `bench/results/latest.md`,
//! `latest.json`, appends to `history.csv` and redraws `history.svg`. Every topic it made is
//! deleted at the end, whatever happened.
//!
//! Usage: bench [EVENTS]   (default 1 000 000; env KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL,
//! HDFS_URL; BENCH_PEER=0 skips the peer, BENCH_PEER_DIR its build (default
//! bench/peers/kstreams-dedup), PEER_JAVA_OPTS its JVM options (default -Xmx1g);
//! BENCH_RESTORE_KEYS the keys of the restore run (default 10 000 000; 0 skips it);
//! BENCH_LATENCY_SECS the length of each latency phase (default 15; 0 skips them);
//! BENCH_LATENCY_PEAK the rate (events/s) the latency's peak phase asks for (default: the
//! chain's drain rate);
//! BENCH_GROWTH the sizes of the growth runs (default 3000000,10000000; 0 skips them);
//! BENCH_RESULTS the results folder (default bench/results))
//!        bench --redraw   (only redraws history.svg from history.csv)

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary_bench::latency::{self, Phase, PhaseResult};
use tributary_bench::{cpu_seconds, history, peak_rss_bytes, send_waiting, stop};
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::dedup::{self, DedupState};
use tributary_engine::topics;

const CHAIN: &str = "mailings";
const PARTITIONS: i32 = 4;

struct Ctx {
    kafka: String,
    registry: String,
    bin: PathBuf,
    ns: String,
    rt: tokio::runtime::Runtime,
}

/// The preloaded raw events of `events` (10 % duplicates, 1 % invalid), the same for every
/// run of the same size.
fn preload_spec(events: u64) -> Spec {
    let mut spec = Spec::new(CHAIN, events);
    spec.invalid_share = 0.01;
    spec.seed = 2026;
    spec
}

fn env_num(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("{name}={v}")),
        _ => Ok(default),
    }
}

/// A comma-separated list of numbers (`0` or empty: none).
fn env_list(name: &str, default: &[u64]) -> Result<Vec<u64>> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty() && *x != "0")
            .map(|x| x.parse().with_context(|| format!("{name}={v}")))
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--redraw") {
        // Only redraws history.svg from history.csv (after the CSV was edited by hand).
        let dir = results_dir();
        let rows = history::read(&std::fs::read_to_string(dir.join("history.csv"))?);
        std::fs::write(dir.join("history.svg"), history::svg(&rows))?;
        return Ok(());
    }
    let events: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let ctx = Ctx {
        kafka: std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        registry: std::env::var("SCHEMA_REGISTRY_URL")
            .unwrap_or_else(|_| "http://localhost:8081/apis/ccompat/v7".into()),
        bin: std::env::current_exe()?.parent().context("bin dir")?.to_path_buf(),
        ns: format!(
            "bench{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        ),
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    let outcome = run(&ctx, events);
    // Whatever happened: the topics of this run go, so repeated runs do not fill the disk,
    // and so do its consumer groups.
    match delete_leftovers(&ctx) {
        Ok((t, g)) => eprintln!(
            "bench: deleted the {t} topics and {g} consumer groups of this run ({}*)",
            ctx.ns
        ),
        Err(e) => eprintln!("bench: deleting the topics and groups of this run failed: {e:#}"),
    }
    outcome
}

fn run(ctx: &Ctx, events: u64) -> Result<()> {
    let ns = &ctx.ns;
    let t = |x: String| topics::namespaced(ns, &x);
    create_topics(
        ctx,
        ns,
        &[
            "copy".into(),
            format!("peer.clean.{CHAIN}"),
            format!("peer.dlq.{CHAIN}"),
        ],
    )?;
    let raw = t(topics::raw(CHAIN));

    eprintln!("bench: preloading {events} {CHAIN} events (10 % duplicates, 1 % invalid) into {raw}");
    let started = Instant::now();
    let summary = loadgen::send(&ctx.kafka, &raw, preload_spec(events), |_| {})?;
    let preload_s = started.elapsed().as_secs_f64();
    let expected_clean = events - summary.duplicates - summary.invalid;
    let load_start = loadavg();

    eprintln!("bench: baseline: rdkafka transactional pass-through");
    let out = Command::new(ctx.bin.join("passthrough"))
        .args([&ctx.kafka, &raw, &t("copy".into()), &events.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "passthrough failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base: Value = serde_json::from_slice(&out.stdout)?;
    let base_wall = base["wall_seconds"].as_f64().unwrap_or(f64::NAN);
    let base_cpu = base["cpu_seconds"].as_f64().unwrap_or(f64::NAN);

    eprintln!("bench: the {CHAIN} service");
    let drain = drain_chain(ctx, ns, events)?;
    let base_row = drain.row(events);
    let Drain {
        wall: svc_wall,
        cpu: svc_cpu,
        steady_us: svc_steady_us,
        rss: svc_rss,
        keys: state_keys,
        commit_s: commit_p,
    } = drain;

    let peer = if env_num("BENCH_PEER", 1)? == 0 {
        None
    } else {
        eprintln!("bench: the Kafka Streams peer");
        Some(run_peer(ctx, &raw, events)?)
    };
    let load_after_drains = loadavg();

    eprintln!("bench: counting what each wrote (read_committed)");
    let ours_clean = count_records(ctx, &t(topics::clean(CHAIN)))?;
    let ours_dlq = count_records(ctx, &t(topics::dlq(CHAIN)))?;
    let peer_counts = match &peer {
        Some(_) => Some((
            count_records(ctx, &t(format!("peer.clean.{CHAIN}")))?,
            count_records(ctx, &t(format!("peer.dlq.{CHAIN}")))?,
        )),
        None => None,
    };

    eprintln!("bench: restoring the dedup state from the changelog");
    let port2 = free_port()?;
    let mut svc2 = spawn_chain(ctx, ns, port2)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while metric(port2, "tributary_chain_state_restore_duration_seconds_count") < PARTITIONS as f64 {
        anyhow::ensure!(Instant::now() < deadline, "restore did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let restore_s = metric(port2, "tributary_chain_state_restore_duration_seconds_sum");
    let restored_keys = metric(port2, "tributary_chain_dedup_state_keys");
    stop(&mut svc2);

    let restore_keys = env_num("BENCH_RESTORE_KEYS", 10_000_000)?;
    let big_restore = if restore_keys > 0 {
        Some(restore_run(ctx, restore_keys)?)
    } else {
        None
    };

    let growth = growth_runs(ctx, &env_list("BENCH_GROWTH", &[3_000_000, 10_000_000])?)?;

    eprintln!("bench: the sink, into a local directory and into HDFS");
    let clean_count = expected_clean as f64;
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
        let port = free_port()?;
        let started = Instant::now();
        let group = format!("{ns}-sink-{}", label.replace(' ', "-"));
        let mut sink = spawn_sink(ctx, ns, &lake, &group, port)?;
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
        stop(&mut sink);
        sink_runs.push((label, wall, cpu, rss, files, bytes));
    }
    let _ = std::fs::remove_dir_all(&local_lake);

    let ev = events as f64;
    let peak_rate = match env_num("BENCH_LATENCY_PEAK", 0)? {
        0 => base_row.rate,
        r => r as f64,
    };
    let latency_secs = env_num("BENCH_LATENCY_SECS", 15)? as f64;
    let lat = if latency_secs > 0.0 {
        latency_run(ctx, peak_rate, latency_secs)?
    } else {
        Vec::new()
    };

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
    let load_end = loadavg();

    // ----------------------------------------------------------------------------------
    // Reports.
    let svc_us = base_row.cpu_us;
    let base_us = base_cpu / ev * 1e6;
    let date = utc_now();
    let commit = git_head();
    let local_sink = sink_runs.first().map(|r| clean_count / r.2).unwrap_or(f64::NAN);
    let phase = |label: &str| lat.iter().find(|p| p.label == label);
    let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    let mut report = json!({
        "date": date,
        "commit": commit,
        "events": events,
        "duplicates": summary.duplicates,
        "invalid": summary.invalid,
        "partitions": PARTITIONS,
        "load1": num(load_start.0),
        "loadavg_at_start": load_start.1,
        "loadavg_after_drains": load_after_drains.1,
        "loadavg_at_end": load_end.1,
        "chain_cpu_us_per_event": num(svc_us),
        "chain_events_per_s": num(peak_rate),
        "chain_peak_rss_bytes": svc_rss,
        "chain_cpu_us_per_event_after_first_commit": num(svc_steady_us),
        "chain_mean_commit_ms": num(commit_p * 1e3),
        "chain_clean_records": ours_clean,
        "chain_dlq_records": ours_dlq,
        "expected_clean_records": expected_clean,
        "passthrough_cpu_us_per_event": num(base_us),
        "passthrough_events_per_s": num(ev / base_wall),
        "passthrough_ratio": num(base_wall / svc_wall),
        "sink_rows_per_core_s": num(local_sink),
        "sink_hdfs_rows_per_core_s": num(sink_runs.get(1).map(|r| clean_count / r.2).unwrap_or(f64::NAN)),
        "sink_peak_rss_bytes": sink_runs.first().map(|r| r.3).unwrap_or(0),
        "dedup_bytes_per_key_1m": num(mem1),
        "dedup_bytes_per_key_10m": num(mem10),
        "restore_keys_after_run": num(restored_keys),
        "restore_s_after_run": num(restore_s),
    });
    let o = report.as_object_mut().context("report")?;
    if let Some(b) = &big_restore {
        o.insert("restore_keys".into(), json!(b.keys));
        o.insert("restore_keys_restored".into(), num(b.restored));
        if b.keys == 10_000_000 {
            // From the service's start to every partition restored: the partitions restore
            // side by side, so the sum of their restore times is no longer the wait.
            o.insert("restore_10m_keys_s".into(), num(b.wall_s));
            o.insert("restore_10m_keys_partition_sum_s".into(), num(b.restore_s));
        } else {
            o.insert("restore_n_keys_s".into(), num(b.wall_s));
            o.insert("restore_n_keys_partition_sum_s".into(), num(b.restore_s));
        }
    }
    if let Some(p) = &peer {
        let peer_us = p.cpu / ev * 1e6;
        o.insert("peer_cpu_us_per_event".into(), num(peer_us));
        o.insert("peer_cpu_ratio".into(), num(peer_us / svc_us));
        o.insert("peer_events_per_s".into(), num(ev / p.wall));
        o.insert("peer_peak_rss_bytes".into(), json!(p.rss));
        o.insert("peer_cpu_us_per_event_after_first_commit".into(), num(p.steady_us));
        o.insert(
            "peer_cpu_ratio_after_first_commit".into(),
            num(p.steady_us / svc_steady_us),
        );
        if let Some((c, d)) = peer_counts {
            o.insert("peer_clean_records".into(), json!(c));
            o.insert("peer_dlq_records".into(), json!(d));
        }
    }
    if let Some(p) = phase("peak") {
        o.insert("latency_pipeline_peak_rate".into(), num(pipeline_peak(p)));
    }
    for (label, suffix) in [
        ("half load", "half_load"),
        ("peak", "peak"),
        ("half of the chain's drain rate", "half_chain_rate"),
    ] {
        if let Some(p) = phase(label) {
            o.insert(format!("p50_raw_to_clean_ms_{suffix}"), num(p.p50_raw_to_clean_ms));
            o.insert(format!("p99_raw_to_clean_ms_{suffix}"), num(p.p99_raw_to_clean_ms));
            o.insert(format!("p50_raw_to_lake_ms_{suffix}"), num(p.p50_raw_to_lake_ms));
            o.insert(format!("p99_raw_to_lake_ms_{suffix}"), num(p.p99_raw_to_lake_ms));
            o.insert(format!("latency_rate_{suffix}"), num(p.target_rate));
        }
    }
    o.insert("latency_phases".into(), serde_json::to_value(&lat)?);
    if !growth.is_empty() {
        let rows: Vec<Value> = std::iter::once(&base_row)
            .chain(&growth)
            .map(|g| {
                json!({
                    "events": g.events,
                    "cpu_us_per_event": num(g.cpu_us),
                    "cpu_us_per_event_after_first_commit": num(g.steady_us),
                    "events_per_s": num(g.rate),
                    "peak_rss_bytes": g.rss,
                })
            })
            .collect();
        o.insert("growth".into(), Value::Array(rows));
        o.insert(
            "growth_cpu_max_deviation".into(),
            num(max_deviation(base_row.cpu_us, growth.iter().map(|g| g.cpu_us))),
        );
        o.insert(
            "growth_cpu_after_first_commit_max_deviation".into(),
            num(max_deviation(base_row.steady_us, growth.iter().map(|g| g.steady_us))),
        );
    }

    let md = format!(
        "# Benchmark: {CHAIN} chain service vs. bare rdkafka transactional pass-through and the Kafka Streams peer\n\n\
         Run {date} at commit {short} on this machine (2 cores, shared), `make bench`, {events} preloaded events \
         ({dups} duplicates, {inv} invalid), {PARTITIONS} partitions, one process each, same broker, same data, \
         one after the other. Load average (1/5/15 min) at the start {l0}, after the drains {l1}, at the end {l2}.\n\
         Preload by `tributary loadgen`: {preload:.1} s. Also in `latest.json`; every run in `history.csv` / `history.svg`.\n\n\
         | measure | chain service | pass-through baseline | ratio / target |\n|---|---|---|---|\n\
         | wall time to drain (incl. start) | {sw:.1} s | {bw:.1} s | |\n\
         | throughput | {stp:.0} events/s | {btp:.0} events/s | {tpr:.0} % of baseline (target ≥ 60 %) |\n\
         | own CPU per event | {svc_us:.2} µs | {base_us:.2} µs | target ≤ 3 µs |\n\
         | peak RSS | {srss:.0} MiB | {brss:.0} MiB | |\n\
         | mean transaction commit | {cp:.1} ms | | |\n\
         | records written, read back `read_committed` | clean {ours_clean}, DLQ {ours_dlq} | | expected clean {expected_clean} |\n\
         | dedup keys after the run | {keys:.0} | | |\n\
         | dedup state, bytes per key at 1 M keys | {mem1:.1} | | target ≤ 32 |\n\
         | dedup state, bytes per key at 10 M keys | {mem10:.1} | | target ≤ 32 |\n\
         | restore of {rk:.0} keys from the changelog (after the run), the partitions' restore times summed | {rs:.2} s | | the partitions restore side by side, so this sum is more than the wall time; the 10 M-key target is measured in the row below |\n\
         {big}\n\
         CPU is user + system time of the process from /proc, start-up included for every process.\n\
         {peer_table}\
         {sink_table}\
         {lat_table}\
         {growth_table}",
        short = commit.get(..7).unwrap_or(&commit),
        l0 = load_start.1,
        l1 = load_after_drains.1,
        l2 = load_end.1,
        big = big_restore
            .as_ref()
            .map(|b| format!(
                "| restore of {} keys written to a fresh changelog: service start to every partition restored (the partitions' own restore times, side by side, summed) | {:.2} s ({:.2} s) | | target 10 M keys ≤ 10 s; {:.0} keys restored |\n",
                b.keys, b.wall_s, b.restore_s, b.restored
            ))
            .unwrap_or_default(),
        peer_table = peer_section(
            peer.as_ref(),
            peer_counts,
            ev,
            svc_wall,
            svc_cpu,
            svc_rss,
            svc_steady_us,
            expected_clean,
            ours_clean
        ),
        sink_table = sink_section(&sink_runs, clean_count, encode_rate),
        lat_table = latency_section(&lat, peak_rate),
        growth_table = growth_section(&base_row, &growth),
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
    );
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    // The read side's section (bench/src/bin/readside.rs, run after this) is kept as it was
    // until that run replaces it.
    let old = std::fs::read_to_string(dir.join("latest.md")).unwrap_or_default();
    let readside = old
        .find("<!-- readside:begin")
        .map(|b| format!("\n{}", &old[b..]))
        .unwrap_or_default();
    std::fs::write(dir.join("latest.md"), format!("{md}{readside}"))?;
    std::fs::write(dir.join("latest.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    history::append(&dir.join("history.csv"), &report)?;
    let rows = history::read(&std::fs::read_to_string(dir.join("history.csv"))?);
    std::fs::write(dir.join("history.svg"), history::svg(&rows))?;
    println!("{md}");
    Ok(())
}

/// Creates the chain's topics (and `extra` ones) under the namespace `ns`.
fn create_topics(ctx: &Ctx, ns: &str, extra: &[String]) -> Result<()> {
    let mut all: Vec<(String, bool)> = topics::chain_topics(CHAIN)
        .into_iter()
        .map(|(n, c)| (topics::namespaced(ns, &n), c))
        .collect();
    all.extend(extra.iter().map(|n| (topics::namespaced(ns, n), false)));
    ctx.rt
        .block_on(topics::create(&ctx.kafka, &Default::default(), &all, PARTITIONS))?;
    Ok(())
}

fn results_dir() -> PathBuf {
    PathBuf::from(std::env::var("BENCH_RESULTS").unwrap_or_else(|_| "bench/results".into()))
}

// ---------------------------------------------------------------------------------------
// Processes.

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_chain(ctx: &Ctx, ns: &str, port: u16) -> Result<Child> {
    Ok(Command::new(ctx.bin.join(CHAIN))
        .env("KAFKA_BOOTSTRAP", &ctx.kafka)
        .env("SCHEMA_REGISTRY_URL", &ctx.registry)
        .env("TOPIC_NAMESPACE", ns)
        .env("METRICS_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

fn spawn_sink(ctx: &Ctx, ns: &str, lake: &str, group: &str, port: u16) -> Result<Child> {
    Ok(Command::new(ctx.bin.join("sink"))
        .env("KAFKA_BOOTSTRAP", &ctx.kafka)
        .env("SCHEMA_REGISTRY_URL", &ctx.registry)
        .env("TOPIC_NAMESPACE", ns)
        .env("CHAINS", CHAIN)
        .env("LAKE_URI", lake)
        .env("GROUP_ID", group)
        .env("METRICS_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_ready(child: &mut Child, port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let resp = http_get(port, "/health/ready");
        if resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200") {
            return Ok(());
        }
        anyhow::ensure!(child.try_wait()?.is_none(), "{what} exited");
        anyhow::ensure!(Instant::now() < deadline, "{what} not ready in 3 min");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "0.52 0.80 1.10" and its first figure.
fn loadavg() -> (f64, String) {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = s.split_whitespace().take(3).collect();
    (
        three.first().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN),
        three.join(" "),
    )
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn git_head() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// Kafka helpers.

fn client(ctx: &Ctx, group: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &ctx.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?)
}

/// Records of a topic as a `read_committed` consumer sees them, read to the end.
fn count_records(ctx: &Ctx, topic: &str) -> Result<u64> {
    let c = client(ctx, &format!("{}-count", ctx.ns))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (mut n, mut eof) = (0u64, std::collections::HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(300);
    while eof.len() < PARTITIONS as usize {
        anyhow::ensure!(Instant::now() < deadline, "counting {topic} took over 5 min");
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => n += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(n)
}

/// Deletes every topic and consumer group of the run (see [`delete_namespace`]).
fn delete_leftovers(ctx: &Ctx) -> Result<(usize, usize)> {
    delete_namespace(ctx, &ctx.ns, true)
}

/// Deletes every topic named `<ns>.…` or `<ns>-…` (the namespace, the ones made from it and
/// the peer's internal topics) and, with `groups`, every consumer group whose name holds
/// `<ns>`; returns how many of each.
fn delete_namespace(ctx: &Ctx, ns: &str, groups: bool) -> Result<(usize, usize)> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let c = client(ctx, &format!("{}-admin", ctx.ns))?;
    let topics: Vec<String> = c
        .fetch_metadata(None, Duration::from_secs(30))?
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.strip_prefix(ns).is_some_and(|rest| rest.starts_with(['.', '-'])))
        .collect();
    let groups: Vec<String> = if groups {
        c.fetch_group_list(None, Duration::from_secs(30))?
            .groups()
            .iter()
            .map(|g| g.name().to_owned())
            .filter(|n| n.contains(ns))
            .collect()
    } else {
        Vec::new()
    };
    drop(c);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &ctx.kafka).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let mut failed = Vec::new();
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        for r in ctx.rt.block_on(admin.delete_topics(&names, &opts))? {
            if let Err((n, e)) = r {
                failed.push(format!("topic {n}: {e}"));
            }
        }
    }
    // A chain's static member stays in its group until its 10 s session lapses after the
    // service stopped: such a group is tried again for 30 s.
    let group_count = groups.len();
    let mut left = groups;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !left.is_empty() {
        let names: Vec<&str> = left.iter().map(String::as_str).collect();
        let mut busy = Vec::new();
        for r in ctx.rt.block_on(admin.delete_groups(&names, &opts))? {
            match r {
                Err((n, rdkafka::types::RDKafkaErrorCode::NonEmptyGroup)) if Instant::now() < deadline => busy.push(n),
                Err((n, e)) => failed.push(format!("group {n}: {e}")),
                Ok(_) => {}
            }
        }
        left = busy;
        if !left.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join(", "));
    Ok((topics.len(), group_count))
}

// ---------------------------------------------------------------------------------------
// The chain service draining a preloaded raw topic, and the same at other sizes.

/// One drain of a preloaded raw topic by the chain service, start-up included.
struct Drain {
    wall: f64,
    cpu: f64,
    /// CPU µs per event after the first record (start-up and the first fetch excluded).
    steady_us: f64,
    rss: u64,
    keys: f64,
    /// Mean transaction commit, seconds.
    commit_s: f64,
}

/// Starts the chain service on namespace `ns` and waits until it has taken in `events`
/// records.
fn drain_chain(ctx: &Ctx, ns: &str, events: u64) -> Result<Drain> {
    let port = free_port()?;
    let started = Instant::now();
    let mut svc = spawn_chain(ctx, ns, port)?;
    let pid = svc.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first: Option<(f64, f64)> = None;
    let outcome = loop {
        let done = metric(port, "tributary_chain_records_total");
        if done >= events as f64 {
            break Ok(());
        }
        if first.is_none() && done > 0.0 {
            first = Some((done, cpu_seconds(&pid).unwrap_or(f64::NAN)));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("the service did not drain the topic in 30 min"));
        }
        if svc.try_wait()?.is_some() {
            break Err(anyhow::anyhow!("the service exited"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pid).unwrap_or(f64::NAN);
    let drain = Drain {
        wall,
        cpu,
        steady_us: first.map_or(f64::NAN, |(n, c)| (cpu - c) / (events as f64 - n) * 1e6),
        rss: peak_rss_bytes(&pid).unwrap_or(0),
        keys: metric(port, "tributary_chain_dedup_state_keys"),
        commit_s: metric(port, "tributary_chain_commit_duration_seconds_sum")
            / metric(port, "tributary_chain_commit_duration_seconds_count").max(1.0),
    };
    stop(&mut svc);
    outcome.map(|()| drain)
}

impl Drain {
    /// The drain of `events` as a row of the growth table.
    fn row(&self, events: u64) -> GrowthRow {
        GrowthRow {
            events,
            cpu_us: self.cpu / events as f64 * 1e6,
            steady_us: self.steady_us,
            rate: events as f64 / self.wall,
            rss: self.rss,
        }
    }
}

/// The chain at one size of the growth runs.
struct GrowthRow {
    events: u64,
    cpu_us: f64,
    steady_us: f64,
    rate: f64,
    rss: u64,
}

/// The chain service alone at each of `sizes` events (`BENCH_GROWTH`), each preloaded as the
/// main run's (same generator and seed) into a namespace of its own that is deleted right
/// after, so that 10 M events never sit on the disk beside the next size.
fn growth_runs(ctx: &Ctx, sizes: &[u64]) -> Result<Vec<GrowthRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let ns = format!("{}-g{n}", ctx.ns);
        create_topics(ctx, &ns, &[])?;
        let raw = topics::namespaced(&ns, &topics::raw(CHAIN));
        eprintln!("bench: growth: preloading {n} events into {raw}");
        let run = loadgen::send(&ctx.kafka, &raw, preload_spec(n), |_| {}).and_then(|_| drain_chain(ctx, &ns, n));
        // Its topics only: the chain's static member stays in its group until its session
        // lapses, so the group goes with the run's at the end.
        let deleted = delete_namespace(ctx, &ns, false);
        let row = run?.row(n);
        deleted?;
        eprintln!(
            "bench: growth: {n} events: {:.2} µs/event ({:.2} after the first record), {:.0} events/s",
            row.cpu_us, row.steady_us, row.rate
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The largest relative distance of `others` from `base`.
fn max_deviation(base: f64, others: impl Iterator<Item = f64>) -> f64 {
    others.map(|x| (x / base - 1.0).abs()).fold(0.0, f64::max)
}

fn growth_section(base: &GrowthRow, growth: &[GrowthRow]) -> String {
    if growth.is_empty() {
        return "\nThe growth runs were skipped (BENCH_GROWTH=0).\n".into();
    }
    let n = base.events;
    let mut out = format!(
        "\n## Growth: the chain at more events\n\n\
         The chain service alone, as in the drain above, on raw topics of more events from the same \
         generator (10 % duplicates, 1 % invalid: about 0.89 dedup keys per event), each in a namespace of \
         its own, deleted after it. Target: CPU per event flat within 15 % of the {n}-event run.\n\n\
         | events | own CPU per event | after the first record | vs. {n} events | throughput | peak RSS |\n\
         |---|---|---|---|---|---|\n"
    );
    for g in std::iter::once(base).chain(growth) {
        let vs = if std::ptr::eq(g, base) {
            String::new()
        } else {
            format!(
                "{:+.1} % ({:+.1} %)",
                100.0 * (g.cpu_us / base.cpu_us - 1.0),
                100.0 * (g.steady_us / base.steady_us - 1.0)
            )
        };
        out.push_str(&format!(
            "| {} | {:.2} µs | {:.2} µs | {vs} | {:.0} events/s | {:.0} MiB |\n",
            g.events,
            g.cpu_us,
            g.steady_us,
            g.rate,
            g.rss as f64 / 1048576.0
        ));
    }
    out.push_str(&format!(
        "\nLargest distance from the {n}-event run: {:.1} % (after the first record {:.1} %); target ≤ 15 %.\n",
        100.0 * max_deviation(base.cpu_us, growth.iter().map(|g| g.cpu_us)),
        100.0 * max_deviation(base.steady_us, growth.iter().map(|g| g.steady_us)),
    ));
    out
}

// ---------------------------------------------------------------------------------------
// The Kafka Streams peer.

struct PeerRun {
    wall: f64,
    cpu: f64,
    rss: u64,
    /// CPU µs per event after its first commit (start-up, JIT warm-up excluded).
    steady_us: f64,
}

/// Runs the peer on the preloaded raw topic until its committed input offsets reach the
/// end of every partition (Kafka Streams commits them in its transactions, exactly_once_v2).
fn run_peer(ctx: &Ctx, raw: &str, events: u64) -> Result<PeerRun> {
    let dir = PathBuf::from(std::env::var("BENCH_PEER_DIR").unwrap_or_else(|_| "bench/peers/kstreams-dedup".into()));
    let classes = dir.join("target/classes");
    anyhow::ensure!(
        classes.is_dir(),
        "{} is missing: build the peer first (mvn -q -B -f {}/pom.xml package), or BENCH_PEER=0",
        classes.display(),
        dir.display()
    );
    let ns = &ctx.ns;
    let app_id = format!("{ns}-peer");
    let state_dir = std::env::temp_dir().join(format!("{ns}-peer-state"));
    let log = std::env::temp_dir().join(format!("{ns}-peer.log"));
    let cp = format!("{}:{}/*", classes.display(), dir.join("target/lib").display());
    let opts = std::env::var("PEER_JAVA_OPTS").unwrap_or_else(|_| "-Xmx1g".into());
    let mut cmd = Command::new("java");
    cmd.args(opts.split_whitespace())
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .args(["-cp", &cp, "dev.tributary.peer.DedupApp"])
        .env("KAFKA_BOOTSTRAP", &ctx.kafka)
        .env("SCHEMA_REGISTRY_URL", &ctx.registry)
        .env("PEER_APP_ID", &app_id)
        .env("PEER_RAW", raw)
        .env("PEER_CLEAN", topics::namespaced(ns, &format!("peer.clean.{CHAIN}")))
        .env("PEER_DLQ", topics::namespaced(ns, &format!("peer.dlq.{CHAIN}")))
        .env("PEER_SCHEMA", format!("schemas/{CHAIN}.avsc"))
        .env("PEER_STATE_DIR", &state_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let offsets = client(ctx, &app_id)?;
    let mut ends = TopicPartitionList::new();
    let mut total_end = 0i64;
    for p in 0..PARTITIONS {
        let (_, high) = offsets.fetch_watermarks(raw, p, Duration::from_secs(30))?;
        total_end += high;
        ends.add_partition(raw, p);
    }
    anyhow::ensure!(total_end as u64 >= events, "the raw topic holds {total_end} records");
    let started = Instant::now();
    let mut peer = cmd.spawn().context("starting java (the peer)")?;
    let pid = peer.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first: Option<(i64, f64)> = None;
    let result = loop {
        if let Some(st) = peer.try_wait()? {
            break Err(anyhow::anyhow!("the peer exited with {st}; log: {}", log.display()));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("the peer did not drain the topic in 30 min"));
        }
        let committed: i64 = offsets
            .committed_offsets(ends.clone(), Duration::from_secs(10))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| e.offset().to_raw())
                    .filter(|o| *o > 0)
                    .sum()
            })
            .unwrap_or(0);
        if committed >= total_end {
            let cpu = cpu_seconds(&pid).unwrap_or(f64::NAN);
            break Ok(PeerRun {
                wall: started.elapsed().as_secs_f64(),
                cpu,
                rss: peak_rss_bytes(&pid).unwrap_or(0),
                steady_us: first.map_or(f64::NAN, |(n, c)| (cpu - c) / (total_end - n) as f64 * 1e6),
            });
        }
        if first.is_none() && committed > 0 {
            first = Some((committed, cpu_seconds(&pid).unwrap_or(f64::NAN)));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop(&mut peer);
    let _ = std::fs::remove_dir_all(&state_dir);
    if result.is_ok() {
        let _ = std::fs::remove_file(&log);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn peer_section(
    peer: Option<&PeerRun>,
    counts: Option<(u64, u64)>,
    ev: f64,
    svc_wall: f64,
    svc_cpu: f64,
    svc_rss: u64,
    svc_steady_us: f64,
    expected: u64,
    ours_clean: u64,
) -> String {
    let Some(p) = peer else {
        return "\nThe Kafka Streams peer was not run (BENCH_PEER=0).\n".into();
    };
    let (pc, pd) = counts.unwrap_or_default();
    format!(
        "\n## The Kafka Streams peer (`bench/peers/kstreams-dedup`)\n\n\
         Kafka Streams 4.1.1 on the same raw topic right after the chain service: the same parse, \
         validation and normalization of the canonical JSON, dedup by tenant + event id in a persistent \
         window store (RocksDB, 7 days, changelog), `exactly_once_v2`, commit interval 100 ms, Avro by \
         Apache Avro's Java library behind the Confluent 5-byte header, invalid records to its DLQ topic. \
         One stream thread, JVM options `{opts}`; its CPU is the JVM's from /proc (every thread, start-up, \
         JIT and GC included). Done when its committed input offsets reach the end of the raw topic.\n\n\
         | measure | chain service | Kafka Streams peer | peer / chain |\n|---|---|---|---|\n\
         | wall time to drain (incl. start) | {sw:.1} s | {pw:.1} s | |\n\
         | throughput | {stp:.0} events/s | {ptp:.0} events/s | {tr:.2}× |\n\
         | own CPU per event | {sus:.2} µs | {pus:.2} µs | **{cr:.2}×** (target ≥ 3×) |\n\
         | own CPU per event after the first commit (start-up excluded) | {sst:.2} µs | {pst:.2} µs | {scr:.2}× |\n\
         | peak RSS | {srss:.0} MiB | {prss:.0} MiB | {rr:.2}× |\n\
         | clean records written (expected {expected}) | {ours_clean} | {pc} | |\n\
         | dead letters written | | {pd} | |\n",
        opts = std::env::var("PEER_JAVA_OPTS").unwrap_or_else(|_| "-Xmx1g".into()),
        sw = svc_wall,
        pw = p.wall,
        stp = ev / svc_wall,
        ptp = ev / p.wall,
        tr = svc_wall / p.wall,
        sus = svc_cpu / ev * 1e6,
        pus = p.cpu / ev * 1e6,
        cr = p.cpu / svc_cpu,
        sst = svc_steady_us,
        pst = p.steady_us,
        scr = p.steady_us / svc_steady_us,
        srss = svc_rss as f64 / 1048576.0,
        prss = p.rss as f64 / 1048576.0,
        rr = p.rss as f64 / svc_rss.max(1) as f64,
    )
}

// ---------------------------------------------------------------------------------------
// Restore of many keys.

struct BigRestore {
    keys: u64,
    restored: f64,
    /// Sum of the partitions' restore times (the service's own metric).
    restore_s: f64,
    /// From the start of the process until every partition is restored.
    wall_s: f64,
}

/// Writes `keys` distinct dedup keys into the changelog of a fresh namespace (through the
/// engine's own changelog encoding, as the service writes them, zstd), then starts the
/// service there and times its restore.
fn restore_run(ctx: &Ctx, keys: u64) -> Result<BigRestore> {
    let ns = format!("{}-restore", ctx.ns);
    create_topics(ctx, &ns, &[])?;
    let changelog = topics::namespaced(&ns, &topics::changelog(CHAIN));
    eprintln!("bench: restore: writing {keys} keys into {changelog}");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &ctx.kafka)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let secs = dedup::micros_to_secs2000(tributary_engine::normalize::now_micros());
    let value = dedup::changelog_value(secs);
    let started = Instant::now();
    for i in 0..keys {
        let key = dedup::changelog_key(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()));
        let rec = BaseRecord::<[u8], [u8]>::to(&changelog)
            .partition((i % PARTITIONS as u64) as i32)
            .key(&key[..])
            .payload(&value[..]);
        send_waiting(&producer, rec)?;
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "bench: restore: written in {:.1} s; starting the service",
        started.elapsed().as_secs_f64()
    );
    let port = free_port()?;
    let started = Instant::now();
    let mut svc = spawn_chain(ctx, &ns, port)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let result = loop {
        if metric(port, "tributary_chain_state_restore_duration_seconds_count") >= PARTITIONS as f64 {
            break Ok(BigRestore {
                keys,
                wall_s: started.elapsed().as_secs_f64(),
                restore_s: metric(port, "tributary_chain_state_restore_duration_seconds_sum"),
                restored: metric(port, "tributary_chain_dedup_state_keys"),
            });
        }
        if svc.try_wait()?.is_some() {
            break Err(anyhow::anyhow!("the service exited during the restore"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("the restore of {keys} keys took over 15 min"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop(&mut svc);
    if let Ok(b) = &result {
        eprintln!(
            "bench: restore: {:.0} keys, start to restored {:.2} s (partitions' restore times summed {:.2} s)",
            b.restored, b.wall_s, b.restore_s
        );
    }
    result
}

// ---------------------------------------------------------------------------------------
// Latency.

/// The chain and the sink (local lake) on a fresh namespace, then the latency phases at half
/// of `peak` and at `peak` events/s.
fn latency_run(ctx: &Ctx, peak: f64, secs: f64) -> Result<Vec<PhaseResult>> {
    let ns = format!("{}-latency", ctx.ns);
    create_topics(ctx, &ns, &[])?;
    let lake = std::env::temp_dir().join(format!("{ns}-lake"));
    let (cport, sport) = (free_port()?, free_port()?);
    let mut chain = spawn_chain(ctx, &ns, cport)?;
    let mut sink = match spawn_sink(ctx, &ns, &lake.to_string_lossy(), &format!("{ns}-sink"), sport) {
        Ok(s) => s,
        Err(e) => {
            stop(&mut chain);
            return Err(e);
        }
    };
    let result = (|| {
        wait_ready(&mut chain, cport, "the chain service")?;
        wait_ready(&mut sink, sport, "the sink")?;
        // The chain's drain (`peak`) is the chain alone on a preloaded topic. Here the producer,
        // the chain, the sink and Kafka share the machine, so the pipeline's own peak is
        // measured first (the chain's drain rate asked of it; what it sustains is the peak),
        // and half load is half of that. Half of the chain's drain rate is measured last, as
        // before 2026-12-02 ("half load" in the history until then).
        let watched = {
            let mut w = vec![
                ("chain".to_owned(), chain.id().to_string()),
                ("sink".to_owned(), sink.id().to_string()),
                ("bench (producer, consumer)".to_owned(), "self".to_owned()),
            ];
            if let Some(pid) = kafka_pid() {
                w.push(("Kafka".to_owned(), pid));
            }
            w
        };
        latency::run(
            &ctx.kafka,
            &topics::namespaced(&ns, &topics::raw(CHAIN)),
            &topics::namespaced(&ns, &topics::clean(CHAIN)),
            &lake.join(CHAIN),
            &watched,
            |done| {
                let phase = |label: &str, rate: f64, secs: f64, seed: u64| Phase {
                    label: label.into(),
                    rate,
                    secs,
                    seed,
                };
                match done.len() {
                    // Not reported: the first seconds of a new chain and sink (connections,
                    // the first Delta commits) are not the steady state the target is about.
                    0 => Some(phase("warm-up", peak / 4.0, 3.0, 500)),
                    1 => Some(phase("peak", peak, secs, 502)),
                    2 => Some(phase("half load", pipeline_peak(&done[1]) / 2.0, secs, 501)),
                    3 => Some(phase("half of the chain's drain rate", peak / 2.0, secs, 503)),
                    _ => None,
                }
            },
        )
    })();
    stop(&mut chain);
    stop(&mut sink);
    let _ = std::fs::remove_dir_all(&lake);
    result
}

/// What the whole pipeline sustained in a phase asked for more than it could take: the lower
/// of the rate produced and the rate at which the clean records came out.
fn pipeline_peak(p: &PhaseResult) -> f64 {
    p.produced_rate.min(p.drained_rate)
}

/// The broker's pid, from the local infrastructure's pid file (`$INFRA_DIR/pids/kafka.pid`,
/// default `.infra`): its CPU is reported beside the services'.
fn kafka_pid() -> Option<String> {
    let dir = std::env::var("INFRA_DIR").unwrap_or_else(|_| ".infra".into());
    let pid = std::fs::read_to_string(PathBuf::from(dir).join("pids/kafka.pid")).ok()?;
    let pid = pid.trim().to_owned();
    std::path::Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn latency_section(lat: &[PhaseResult], peak: f64) -> String {
    if lat.is_empty() {
        return "\nLatency was not measured (BENCH_LATENCY_SECS=0).\n".into();
    }
    let pipeline = lat.iter().find(|p| p.label == "peak").map_or(f64::NAN, pipeline_peak);
    let mut s = format!(
        "\n## Latency: raw → clean and raw → lake\n\n\
         The chain service and the sink (local lake, `FLUSH_MAX_AGE` 1 s) run together on a fresh namespace; \
         a producer in the bench writes raw `mailings` events (canonical JSON, 10 % duplicates, 1 % invalid) \
         paced at a fixed rate. The phases, each after the previous one is fully in the lake (a 3 s warm-up at a \
         quarter of the peak phase's rate first, not counted): **peak**, asking for the rate the chain reached alone in \
         the drain above ({peak:.0} events/s, unless `BENCH_LATENCY_PEAK` sets it); what the pipeline sustains there (producer, chain, sink, \
         Kafka and the bench on the same 2 cores: {pipeline:.0} events/s, the lower of produced and drained) is its \
         peak; **half load**, half of that peak (the target's row); then half of the chain's drain rate (what \
         \"half load\" meant in the history before 2026-12-02: beyond what this machine sustains with everything \
         on it, when that half is above the pipeline's peak). Start: the wall-clock time the producer hands a \
         record to librdkafka (also its Kafka timestamp). Raw → clean ends when a `read_committed` consumer in \
         the bench receives the clean record (`fetch.wait.max.ms` 10): the chain's transaction has committed. \
         Raw → lake ends when the bench sees the sink's Delta commit file (`_delta_log/N.json`, polled every \
         10 ms) whose `txn` offset for the record's clean partition lies beyond the record. First copies of valid \
         events only. Cores: CPU seconds per second of the phase (its start until its last record is in the \
         lake) of each process, and the machine's busy share of its 2 cores.\n\n\
         | load | target rate | produced | produced until the last clean record | raw → clean p50 / p99 / max | raw → lake p50 / p99 / max | seen clean / in lake / valid sent | cores: chain / sink / Kafka / bench / machine | target |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for p in lat.iter().filter(|p| p.label != "warm-up") {
        let core = |k: &str| p.cores.get(k).map_or("–".to_owned(), |c| format!("{c:.2}"));
        s.push_str(&format!(
            "| {} | {:.0}/s | {:.0}/s | {:.0}/s | {:.0} / **{:.0}** / {:.0} ms | {:.0} / **{:.0}** / {:.0} ms | {} / {} / {} | {} / {} / {} / {} / {} | {} |\n",
            p.label,
            p.target_rate,
            p.produced_rate,
            p.drained_rate,
            p.p50_raw_to_clean_ms,
            p.p99_raw_to_clean_ms,
            p.max_raw_to_clean_ms,
            p.p50_raw_to_lake_ms,
            p.p99_raw_to_lake_ms,
            p.max_raw_to_lake_ms,
            p.seen_clean,
            p.in_lake,
            p.valid,
            core("chain"),
            core("sink"),
            core("Kafka"),
            core("bench (producer, consumer)"),
            core("machine"),
            if p.label == "half load" {
                "p99 raw → clean ≤ 2 × commit interval (100 ms) = 200 ms"
            } else {
                ""
            }
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------
// The sink.

type SinkRun<'a> = (&'a str, f64, f64, u64, f64, f64);

fn sink_section(runs: &[SinkRun<'_>], n: f64, encode_rate: f64) -> String {
    let mut s = String::from(
        "\n## The sink: the clean topic into committed Parquet (Delta)\n\n\
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

/// Times the Parquet encoding in memory, with the lake's writer properties, of `n` realistic
/// mailings rows as Arrow batches ([`tributary_bench::mailings_batches`]).
fn parquet_in_memory(n: usize) -> Result<f64> {
    let (schema, batches) = tributary_bench::mailings_batches(n)?;
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
