//! The read side's figures (DESIGN "Performance targets", issue 12 "Figures for make bench"),
//! each beside a baseline measured in the same run:
//!
//! 1. memory of the view in bytes per key at 1 M and 10 M keys (RSS growth of a child
//!    process), beside a reference model keeping every event per address;
//! 2. single suppression checks over HTTP at 5 000 requests/s, open loop, beside
//!    `/health/live` of the same server;
//! 3. bulk checks, addresses per second per core of the server's own threads, beside
//!    normalizing and hashing the same addresses alone;
//! 4. audience export (CSV), members per second per core, beside iterating
//!    `TenantView::audience` without encoding;
//! 5. profile lookups on the real `serve` binary over a local lake of 10 M mailing events and
//!    1 M users, beside `/health/live`;
//! 6. freshness from `raw.unsubscribes` to `suppressed: true` through the real `unsubscribes`
//!    chain and `serve`, beside raw → clean as a `read_committed` consumer sees it.
//!
//! Parts 2-4 run the real router (`tributary_serve::router`) in this process on its own
//! tokio runtime (2 workers named `rs-server`, as `serve` runs); its CPU is the sum of those
//! threads' user + system time from `/proc/self/task/*/stat`.
//!
//! Writes `bench/results/readside.json` and appends the section "Read side" to
//! `bench/results/latest.md`. `BENCH_READSIDE_SCALE=small`: every size / 10.
//! Usage: readside            (internal: readside mem view|ref N)

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_bench::stop;
use tributary_view::event::{BlockAction, BlockKind, Event, Kind, Sha};
use tributary_view::View;

const TENANT: &str = "acme";
const TOKEN: &str = "acme-local-token";
const LIST: &str = "newsletter";
/// 2026-01-01T00:00:00Z in microseconds.
const T0: i64 = 1_767_225_600_000_000;
const HOUR: i64 = 3_600_000_000;

// ---------------------------------------------------------------------------------------
// The synthetic tenant of parts 1-4.

fn email_of(i: u64) -> String {
    format!("user{i}@d{}.example", i % 1000)
}

fn sha_of(email: &str) -> Sha {
    sha2::Sha256::digest(email.as_bytes()).into()
}

/// The events of address `i`: a subscription to `newsletter` (half with consent evidence),
/// a third also to `promo`; 5 % unsubscribed from `newsletter`, 5 % globally; 2 % blocked;
/// 1 % blocked then unblocked. About 1.47 events per address.
fn events_for(i: u64, out: &mut Vec<Event>) {
    let email = email_of(i);
    let sha = Some(sha_of(&email));
    let t = T0 + (i as i64 % 86_400) * 1_000_000;
    let ev = |time: i64, kind: Kind| Event {
        tenant: TENANT.to_owned(),
        sha,
        email: Some(email.clone()),
        time,
        kind,
    };
    let consent = i.is_multiple_of(2);
    out.push(ev(
        t,
        Kind::Subscribe {
            list: LIST.into(),
            consent_ip: consent.then(|| format!("10.0.{}.{}", (i >> 8) % 256, i % 256)),
            consent_at: consent.then_some(t),
        },
    ));
    if i.is_multiple_of(3) {
        out.push(ev(
            t + 1,
            Kind::Subscribe {
                list: "promo".into(),
                consent_ip: None,
                consent_at: None,
            },
        ));
    }
    match i % 20 {
        1 => out.push(ev(
            t + HOUR,
            Kind::Unsubscribe {
                list: Some(LIST.into()),
                reason: Some("too many".into()),
            },
        )),
        2 => out.push(ev(
            t + HOUR,
            Kind::Unsubscribe {
                list: None,
                reason: Some("not interested".into()),
            },
        )),
        _ => {}
    }
    let block = |action, time| {
        ev(
            time,
            Kind::Block {
                action,
                kind: BlockKind::Email,
                value: email.clone(),
                reason: "HARD_BOUNCE".into(),
                expires_at: None,
            },
        )
    };
    if i % 50 == 3 {
        out.push(block(BlockAction::Add, t + 2 * HOUR));
    }
    if i % 100 == 4 {
        out.push(block(BlockAction::Add, t + 2 * HOUR));
        out.push(block(BlockAction::Remove, t + 3 * HOUR));
    }
}

/// Two blocked domains (0.2 % of the addresses).
fn domain_events() -> Vec<Event> {
    [7, 13]
        .iter()
        .map(|d| Event {
            tenant: TENANT.to_owned(),
            sha: None,
            email: None,
            time: T0,
            kind: Kind::Block {
                action: BlockAction::Add,
                kind: BlockKind::Domain,
                value: format!("d{d}.example"),
                reason: "MANUAL".into(),
                expires_at: None,
            },
        })
        .collect()
}

fn fill_view(view: &mut View, keys: u64) -> u64 {
    let mut buf = Vec::with_capacity(8);
    let mut n = 0;
    for e in domain_events() {
        view.apply(e);
        n += 1;
    }
    for i in 0..keys {
        events_for(i, &mut buf);
        n += buf.len() as u64;
        for e in buf.drain(..) {
            view.apply(e);
        }
    }
    n
}

// ---------------------------------------------------------------------------------------
// Measuring.

fn rss_now() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn stat_cpu(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) / 100.0)
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let mut sum = 0.0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.starts_with(prefix) {
                sum += stat_cpu(&p.join("stat").to_string_lossy()).unwrap_or(0.0);
            }
        }
    }
    sum
}

fn this_thread_cpu() -> f64 {
    stat_cpu("/proc/thread-self/stat").unwrap_or(0.0)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Latencies in milliseconds: p50, p99, p99.9, max, count.
fn summary(mut lat_us: Vec<f64>) -> Value {
    lat_us.sort_by(|a, b| a.total_cmp(b));
    json!({
        "p50_ms": pct(&lat_us, 0.5) / 1e3,
        "p99_ms": pct(&lat_us, 0.99) / 1e3,
        "p99_9_ms": pct(&lat_us, 0.999) / 1e3,
        "max_ms": lat_us.last().copied().unwrap_or(f64::NAN) / 1e3,
        "requests": lat_us.len(),
    })
}

fn rng(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// Open-loop GETs at `rate` per second for `secs`: request k is due at start + k/rate and
/// its latency runs from that due time to the end of its answer's body, whenever it was
/// actually sent (no coordinated omission). The schedule is kept by this thread with
/// `thread::sleep`; the requests run on `rt`.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    rate: f64,
    secs: f64,
    url: impl Fn(u64) -> String,
) -> Result<Value> {
    let total = (rate * secs) as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(total as usize);
    let mut worst_late = Duration::ZERO;
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            worst_late = worst_late.max(now - due);
        }
        let req = client.get(url(k)).bearer_auth(TOKEN);
        handles.push(rt.spawn(async move {
            let ok = match req.send().await {
                Ok(r) => {
                    let st = r.status().is_success();
                    r.bytes().await.is_ok() && st
                }
                Err(_) => false,
            };
            (due.elapsed().as_secs_f64() * 1e6, ok)
        }));
    }
    let sent_s = start.elapsed().as_secs_f64();
    let results = rt.block_on(async {
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await);
        }
        out
    });
    let mut lat = Vec::with_capacity(results.len());
    let mut errors = 0u64;
    for r in results {
        match r {
            Ok((l, true)) => lat.push(l),
            _ => errors += 1,
        }
    }
    let mut s = summary(lat);
    s["errors"] = json!(errors);
    s["rate_per_s"] = json!(rate);
    s["achieved_send_rate_per_s"] = json!(total as f64 / sent_s);
    s["seconds"] = json!(secs);
    s["scheduler_worst_late_ms"] = json!(worst_late.as_secs_f64() * 1e3);
    Ok(s)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------
// Part 1: memory, in a child process each so that RSS growth is this structure's alone.

fn mem_child(kind: &str, n: u64) -> Result<()> {
    let mut buf = Vec::with_capacity(8);
    // Generation alone, to subtract from the timed fold.
    let t = Instant::now();
    let mut events = 0u64;
    for i in 0..n {
        events_for(i, &mut buf);
        events += buf.len() as u64;
        buf.clear();
    }
    let gen_s = t.elapsed().as_secs_f64();
    let rss0 = rss_now();
    let t = Instant::now();
    let keys = match kind {
        "view" => {
            let mut v = View::default();
            fill_view(&mut v, n);
            let k = v.keys() as u64;
            let total_s = t.elapsed().as_secs_f64();
            let rss1 = rss_now();
            println!(
                "{}",
                json!({"kind": kind, "keys": k, "events": events, "rss_growth_bytes": rss1 - rss0,
                       "bytes_per_key": (rss1 - rss0) as f64 / k as f64,
                       "fold_seconds": total_s - gen_s, "generate_seconds": gen_s,
                       "events_per_s": events as f64 / (total_s - gen_s).max(1e-9)})
            );
            std::process::exit(0);
        }
        "ref" => {
            let mut m: HashMap<Sha, Vec<Event>> = HashMap::new();
            for e in domain_events() {
                m.entry([0u8; 32]).or_default().push(e);
            }
            for i in 0..n {
                events_for(i, &mut buf);
                for e in buf.drain(..) {
                    m.entry(e.sha.unwrap_or_default()).or_default().push(e);
                }
            }
            m.len() as u64
        }
        other => bail!("mem kind {other}"),
    };
    let total_s = t.elapsed().as_secs_f64();
    let rss1 = rss_now();
    println!(
        "{}",
        json!({"kind": kind, "keys": keys, "events": events, "rss_growth_bytes": rss1 - rss0,
               "bytes_per_key": (rss1 - rss0) as f64 / keys as f64,
               "fold_seconds": total_s - gen_s, "generate_seconds": gen_s,
               "events_per_s": events as f64 / (total_s - gen_s).max(1e-9),
               "size_of_event": std::mem::size_of::<Event>()})
    );
    std::process::exit(0);
}

fn mem_run(kind: &str, n: u64) -> Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["mem", kind, &n.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "mem {kind} {n}: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(text.lines().last().context("no output")?)?)
}

fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

fn part_memory(small: u64, large: u64) -> Result<Value> {
    let mut out = json!({});
    for n in [small, large] {
        eprintln!("readside: view memory at {n} keys");
        out[format!("view_{n}")] = mem_run("view", n)?;
    }
    eprintln!("readside: reference model (Vec of events per address) at {small} keys");
    let r1 = mem_run("ref", small)?;
    let need = f(&r1, &["rss_growth_bytes"]) * (large as f64 / small as f64) * 1.3;
    out[format!("reference_{small}")] = r1;
    if need < mem_available() as f64 * 0.7 {
        eprintln!("readside: reference model at {large} keys");
        out[format!("reference_{large}")] = mem_run("ref", large)?;
    } else {
        out[format!("reference_{large}")] = json!({"skipped": format!("needs ~{:.1} GiB, {:.1} GiB available",
            need / 1073741824.0, mem_available() as f64 / 1073741824.0)});
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parts 2-4: the real router in this process.

struct InProcess {
    app: Arc<tributary_serve::App>,
    port: u16,
    rt: tokio::runtime::Runtime,
}

fn start_in_process(keys: u64, audit: &Path) -> Result<(InProcess, f64)> {
    let env = BTreeMap::new();
    let mut settings = tributary_serve::config::Settings::load(tributary_serve::config::Config::defaults(), &env)
        .map_err(anyhow::Error::msg)?;
    // The per-tenant limit (20 000/s by default) is not what is measured here.
    settings.rate_limit = 10_000_000;
    // A file, as in production: the audit write of every read is part of the cost.
    settings.audit_log = audit.to_string_lossy().into_owned();
    let app = tributary_serve::App::new(settings)?;
    let t = Instant::now();
    let events = {
        let mut v = app.view.write().expect("view lock");
        fill_view(&mut v, keys)
    };
    let fill_s = t.elapsed().as_secs_f64();
    eprintln!("readside: in-process view: {keys} addresses, {events} events folded in {fill_s:.1} s");
    app.health.set_ready(true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rs-server")
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let router = tributary_serve::router(app.clone());
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("readside: in-process server: {e}");
        }
    });
    Ok((InProcess { app, port, rt }, fill_s))
}

fn part_single(srv: &InProcess, client_rt: &tokio::runtime::Runtime, keys: u64, secs: f64) -> Result<Value> {
    let client = http_client()?;
    let base = format!("http://127.0.0.1:{}", srv.port);
    let check = |k: u64| {
        let i = rng(k) % keys;
        format!(
            "{base}/v1/tenants/{TENANT}/suppression?email={}&list={LIST}",
            email_of(i)
        )
    };
    let live = |_k: u64| format!("{base}/health/live");
    // Warm-up: connections open, caches warm.
    open_loop(client_rt, &client, 5000.0, 1.0, |k| check(k + 1_000_000_000))?;
    eprintln!("readside: single checks, 5 000/s for {secs} s (open loop)");
    let cpu0 = threads_cpu("rs-server");
    let checks = open_loop(client_rt, &client, 5000.0, secs, check)?;
    let cpu_checks = threads_cpu("rs-server") - cpu0;
    eprintln!("readside: baseline /health/live, 5 000/s for {secs} s");
    let cpu0 = threads_cpu("rs-server");
    let lives = open_loop(client_rt, &client, 5000.0, secs, live)?;
    let cpu_live = threads_cpu("rs-server") - cpu0;
    // One answer checked for shape.
    let sample: Value = client_rt.block_on(async {
        client
            .get(check(7))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json::<Value>()
            .await
    })?;
    anyhow::ensure!(sample.get("suppressed").is_some(), "unexpected answer {sample}");
    Ok(json!({
        "suppression": checks, "health_live_baseline": lives,
        "server_cpu_seconds": {"suppression": cpu_checks, "health_live": cpu_live},
        "server_cpu_us_per_request": {"suppression": cpu_checks / (5000.0 * secs) * 1e6,
                                      "health_live": cpu_live / (5000.0 * secs) * 1e6},
    }))
}

fn part_bulk(srv: &InProcess, client_rt: &tokio::runtime::Runtime, keys: u64, secs: f64) -> Result<Value> {
    const PER: usize = 10_000;
    let client = http_client()?;
    let url = format!("http://127.0.0.1:{}/v1/tenants/{TENANT}/suppression/check", srv.port);
    let mut all_emails: Vec<Vec<String>> = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..8u64)
        .map(|b| {
            let emails: Vec<String> = (0..PER as u64)
                .map(|j| email_of(rng(b * 1_000_003 + j) % keys))
                .collect();
            let body = serde_json::to_vec(&json!({"list": LIST, "emails": emails})).expect("json");
            all_emails.push(emails);
            body
        })
        .collect();
    // Shape and warm-up.
    let first: Value = client_rt.block_on(async {
        client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(bodies[0].clone())
            .send()
            .await?
            .json::<Value>()
            .await
    })?;
    anyhow::ensure!(
        first["checked"].as_u64() == Some(PER as u64),
        "bulk answer {first:.200}"
    );
    let suppressed_share = first["suppressed"].as_array().map_or(0, Vec::len) as f64 / PER as f64;
    eprintln!("readside: bulk checks of {PER} addresses, 2 concurrent requests for {secs} s");
    let bodies = Arc::new(bodies);
    let cpu0 = threads_cpu("rs-server");
    let t0 = Instant::now();
    let (requests, errors) = client_rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..2usize {
            let client = client.clone();
            let url = url.clone();
            let bodies = bodies.clone();
            tasks.push(tokio::spawn(async move {
                let (mut n, mut err) = (0u64, 0u64);
                let until = Instant::now() + Duration::from_secs_f64(secs);
                let mut k = w;
                while Instant::now() < until {
                    let r = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(bodies[k % bodies.len()].clone())
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        n += 1;
                    } else {
                        err += 1;
                    }
                    k += 2;
                }
                (n, err)
            }));
        }
        let mut tot = (0, 0);
        for t in tasks {
            let (n, e) = t.await.unwrap_or((0, 1));
            tot.0 += n;
            tot.1 += e;
        }
        tot
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = threads_cpu("rs-server") - cpu0;
    let addrs = requests as f64 * PER as f64;

    eprintln!("readside: baseline: normalize + sha256_hex of the same addresses, one thread");
    let c0 = this_thread_cpu();
    let t = Instant::now();
    let mut n = 0u64;
    let mut sink = 0usize;
    while t.elapsed().as_secs_f64() < 2.0 {
        for emails in &all_emails {
            for e in emails {
                let norm = tributary_engine::normalize::email(e).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
                sink = sink.wrapping_add(tributary_engine::normalize::sha256_hex(&norm).len());
                n += 1;
            }
        }
    }
    std::hint::black_box(sink);
    let base_cpu = (this_thread_cpu() - c0).max(0.01);
    Ok(json!({
        "addresses_per_request": PER, "requests": requests, "errors": errors, "wall_seconds": wall,
        "suppressed_share": suppressed_share,
        "addresses_per_s_wall": addrs / wall,
        "server_cpu_seconds": cpu,
        "addresses_per_s_per_core": addrs / cpu,
        "baseline_normalize_hash_per_s_per_core": n as f64 / base_cpu,
        "baseline_addresses": n, "baseline_cpu_seconds": base_cpu,
    }))
}

fn part_audience(srv: &InProcess, client_rt: &tokio::runtime::Runtime) -> Result<Value> {
    let client = http_client()?;
    let url = format!(
        "http://127.0.0.1:{}/v1/tenants/{TENANT}/audiences/{LIST}?format=csv",
        srv.port
    );
    let mut runs = Vec::new();
    for run in 0..3 {
        eprintln!("readside: audience export, run {}", run + 1);
        let cpu0 = threads_cpu("rs-server");
        let rss0 = rss_now();
        let t = Instant::now();
        let (lines, bytes, first_byte) = client_rt.block_on(async {
            let mut r = client.get(&url).bearer_auth(TOKEN).send().await?;
            let first_byte = t.elapsed().as_secs_f64();
            anyhow::ensure!(r.status().is_success(), "audience: {}", r.status());
            let (mut lines, mut bytes) = (0u64, 0u64);
            while let Some(c) = r.chunk().await? {
                bytes += c.len() as u64;
                lines += c.iter().filter(|b| **b == b'\n').count() as u64;
            }
            Ok((lines, bytes, first_byte))
        })?;
        let wall = t.elapsed().as_secs_f64();
        let cpu = threads_cpu("rs-server") - cpu0;
        let members = lines.saturating_sub(1);
        runs.push(json!({"members": members, "bytes": bytes, "wall_seconds": wall,
            "time_to_first_byte_seconds": first_byte,
            "server_cpu_seconds": cpu, "members_per_s_per_core": members as f64 / cpu.max(0.01),
            "members_per_s_wall": members as f64 / wall,
            "process_rss_growth_bytes": rss_now().saturating_sub(rss0)}));
    }
    eprintln!("readside: baseline: iterating TenantView::audience without encoding");
    let mut base = Vec::new();
    for _ in 0..3 {
        let view = srv.app.view.read().expect("view lock");
        let t = view.tenant(TENANT).context("tenant")?;
        let now = tributary_engine::normalize::now_micros();
        let c0 = this_thread_cpu();
        let w = Instant::now();
        let mut n = 0u64;
        let mut sink = 0i64;
        for m in t.audience(LIST, now) {
            n += 1;
            sink = sink.wrapping_add(m.subscribed_at);
        }
        std::hint::black_box(sink);
        let wall = w.elapsed().as_secs_f64();
        let cpu = (this_thread_cpu() - c0).max(wall.min(0.01));
        base.push(json!({"members": n, "cpu_seconds": cpu, "wall_seconds": wall,
            "members_per_s_per_core": n as f64 / cpu}));
    }
    let best = |v: &[Value], k: &str| v.iter().map(|x| f(x, &[k])).fold(f64::NAN, f64::max);
    Ok(json!({
        "runs": runs, "baseline_runs": base,
        "members": runs[0]["members"],
        "best_members_per_s_per_core": best(&runs, "members_per_s_per_core"),
        "best_baseline_members_per_s_per_core": best(&base, "members_per_s_per_core"),
    }))
}

// ---------------------------------------------------------------------------------------
// Part 5: the lake and the real `serve` binary.

fn lake_user_email(u: u64) -> String {
    format!("person{u}@mail{}.example", u % 100)
}

fn ensure_lake(dir: &Path, events: u64, users: u64) -> Result<Value> {
    use apache_avro::types::Value as V;
    let marker = dir.join(".readside-complete");
    if marker.exists() {
        eprintln!("readside: reusing the lake {}", dir.display());
        return Ok(json!({"reused": true}));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "readside: writing a lake of {users} users and {events} mailing events into {}",
        dir.display()
    );
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let lake = tributary_lake::Lake::new(&dir.to_string_lossy())?;
    let emails: Vec<(String, String)> = (0..users)
        .map(|u| {
            let e = lake_user_email(u);
            let h = tributary_engine::normalize::sha256_hex(&e);
            (e, h)
        })
        .collect();
    let s = |x: String| V::String(x);
    let o = |x: String| V::Union(1, Box::new(V::String(x)));
    let ts = V::TimestampMicros;
    let chunk = 500_000u64;
    let write = |chain: &str, n: u64, row: &dyn Fn(u64) -> tributary_lake::convert::Row| -> Result<()> {
        let schema = Arc::new(tributary_lake::convert::arrow_schema(
            tributary_lake::chain_schema(chain).context("schema")?,
        )?);
        let mut table = rt.block_on(lake.open_or_create(chain, &schema))?;
        let mut from = 0;
        while from < n {
            let to = (from + chunk).min(n);
            let rows: Vec<_> = (from..to).map(row).collect();
            let batch = tributary_lake::convert::to_batch(schema.clone(), &rows)?;
            drop(rows);
            rt.block_on(tributary_lake::Lake::commit(
                &mut table,
                batch,
                &BTreeMap::new(),
                &BTreeMap::new(),
                128 << 20,
            ))?;
            from = to;
            eprintln!("readside:   {chain}: {to}/{n}");
        }
        Ok(())
    };
    write("users", users, &|u| {
        let (e, h) = &emails[u as usize];
        let t = T0 + u as i64 * 1000;
        vec![
            ("tenant_id".into(), s(TENANT.into())),
            ("event_id".into(), s(format!("u-{u}"))),
            ("event_time".into(), ts(t)),
            ("ingested_at".into(), ts(t)),
            ("source".into(), s("json".into())),
            ("email".into(), o(e.clone())),
            ("email_sha256".into(), o(h.clone())),
            ("user_id".into(), o(format!("u{u}"))),
            ("first_name".into(), o(format!("First{}", u % 997))),
            ("last_name".into(), o(format!("Last{}", u % 991))),
            ("country".into(), o("DE".into())),
            ("city".into(), o(format!("City{}", u % 50))),
            (
                "attributes".into(),
                V::Map([("plan".to_owned(), V::String(["free", "pro"][(u % 2) as usize].into()))].into()),
            ),
        ]
    })?;
    const TYPES: [(u32, &str); 6] = [
        (0, "SENT"),
        (1, "DELIVERED"),
        (5, "OPENED"),
        (0, "SENT"),
        (6, "CLICKED"),
        (3, "BOUNCED"),
    ];
    // Event times spread over 30 days, increasing with the row: each commit holds a few days.
    let step = 30 * 24 * HOUR / events.max(1) as i64;
    write("mailings", events, &|r| {
        let u = rng(r) % users;
        let (e, h) = &emails[u as usize];
        let t = T0 + r as i64 * step;
        let (idx, ty) = TYPES[(r % TYPES.len() as u64) as usize];
        vec![
            ("tenant_id".into(), s(TENANT.into())),
            ("event_id".into(), s(format!("m-{r}"))),
            ("event_time".into(), ts(t)),
            ("ingested_at".into(), ts(t)),
            ("source".into(), s("json".into())),
            ("email".into(), o(e.clone())),
            ("email_sha256".into(), o(h.clone())),
            ("message_id".into(), s(format!("msg-{}", r / 3))),
            ("campaign_id".into(), o(format!("c-{}", r % 50))),
            ("event_type".into(), V::Enum(idx, ty.into())),
        ]
    })?;
    std::fs::write(&marker, format!("{events} mailing events, {users} users\n"))?;
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({"reused": false, "write_seconds": secs}))
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            n += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
        }
    }
    n
}

fn create_topics(bin: &Path, ns: &str) -> Result<()> {
    let out = Command::new(bin.join("tributary"))
        .args(["topics", "--namespace", ns])
        .output()
        .context("target/release/tributary topics")?;
    anyhow::ensure!(
        out.status.success(),
        "tributary topics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn spawn_service(bin: &Path, name: &str, env: &[(&str, String)], log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    let mut c = Command::new(bin.join(name));
    c.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(log);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().with_context(|| format!("starting {name}"))
}

fn wait_ok(rt: &tokio::runtime::Runtime, child: &mut Child, url: &str, timeout: Duration) -> Result<f64> {
    let client = http_client()?;
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            bail!("{url}: the process exited with {st}");
        }
        let ok = rt.block_on(async { client.get(url).send().await.map(|r| r.status().is_success()) });
        if ok.unwrap_or(false) {
            return Ok(t.elapsed().as_secs_f64());
        }
        anyhow::ensure!(t.elapsed() < timeout, "{url} not OK within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(client_rt: &tokio::runtime::Runtime, url: &str, series: &str) -> Option<f64> {
    let text = client_rt
        .block_on(async { reqwest::get(url).await?.text().await })
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn env_base() -> Vec<(&'static str, String)> {
    vec![
        (
            "KAFKA_BOOTSTRAP",
            std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ),
        (
            "SCHEMA_REGISTRY_URL",
            std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://localhost:8081/apis/ccompat/v7".into()),
        ),
    ]
}

fn part_profiles(
    bin: &Path,
    client_rt: &tokio::runtime::Runtime,
    lake_dir: &Path,
    events: u64,
    users: u64,
    secs: f64,
    run_id: &str,
) -> Result<Value> {
    let lake = ensure_lake(lake_dir, events, users)?;
    let ns = format!("rs{run_id}p");
    create_topics(bin, &ns)?;
    let (port, mport) = (free_port()?, free_port()?);
    let tmp = std::env::temp_dir();
    let mut env = env_base();
    env.extend([
        ("LAKE_URI", lake_dir.to_string_lossy().into_owned()),
        ("TOPIC_NAMESPACE", ns.clone()),
        ("PORT", port.to_string()),
        ("METRICS_PORT", mport.to_string()),
        ("RATE_LIMIT", "1000000".into()),
        (
            "AUDIT_LOG",
            tmp.join(format!("{ns}-audit.log")).to_string_lossy().into_owned(),
        ),
    ]);
    eprintln!("readside: serve over the lake (namespace {ns})");
    let mut serve = spawn_service(bin, "serve", &env, &tmp.join(format!("{ns}-serve.log")))?;
    let result = (|| -> Result<Value> {
        let ready_s = wait_ok(
            client_rt,
            &mut serve,
            &format!("http://127.0.0.1:{port}/health/ready"),
            Duration::from_secs(1800),
        )?;
        let pid = serve.id().to_string();
        let rss = tributary_bench::peak_rss_bytes(&pid).unwrap_or(0);
        let cur_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            * 1024;
        let metrics = format!("http://127.0.0.1:{mport}/metrics");
        let lake_s = scrape(client_rt, &metrics, "tributary_serve_lake_load_seconds");
        let lake_events = scrape(client_rt, &metrics, "tributary_serve_lake_events");
        let addresses = scrape(client_rt, &metrics, "tributary_serve_state_addresses");
        let client = http_client()?;
        let base = format!("http://127.0.0.1:{port}");
        let url = |k: u64| {
            format!(
                "{base}/v1/tenants/{TENANT}/profiles?email={}",
                lake_user_email(rng(k ^ 0xabcdef) % users)
            )
        };
        let sample: Value = client_rt.block_on(async {
            client
                .get(url(1))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json::<Value>()
                .await
        })?;
        anyhow::ensure!(sample.get("mailings").is_some(), "profile answer {sample:.300}");
        open_loop(client_rt, &client, 1000.0, 1.0, |k| url(k + 1_000_000_000))?;
        eprintln!("readside: profile lookups, 1 000/s for {secs} s (open loop)");
        let cpu0 = tributary_bench::cpu_seconds(&pid).unwrap_or(0.0);
        let prof = open_loop(client_rt, &client, 1000.0, secs, url)?;
        let cpu_prof = tributary_bench::cpu_seconds(&pid).unwrap_or(0.0) - cpu0;
        eprintln!("readside: baseline /health/live, 1 000/s for {secs} s");
        let live = open_loop(client_rt, &client, 1000.0, secs, |_| format!("{base}/health/live"))?;
        Ok(json!({
            "lake": lake, "lake_dir": lake_dir, "lake_bytes": dir_size(lake_dir),
            "mailing_events": events, "users": users,
            "serve_start_to_ready_seconds": ready_s,
            "serve_lake_load_seconds": lake_s, "serve_lake_events": lake_events,
            "serve_addresses": addresses,
            "serve_rss_bytes_after_ready": cur_rss, "serve_peak_rss_bytes_after_ready": rss,
            "profiles": prof, "health_live_baseline": live,
            "serve_cpu_us_per_profile": cpu_prof / (1000.0 * secs) * 1e6,
            "sample_profile_mailings": sample["mailings"],
        }))
    })();
    stop(&mut serve);
    result
}

// ---------------------------------------------------------------------------------------
// Part 6: freshness through the unsubscribes chain and serve.

fn part_freshness(
    bin: &Path,
    client_rt: &tokio::runtime::Runtime,
    rate: f64,
    secs: f64,
    run_id: &str,
) -> Result<Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    let kafka = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let ns = format!("rs{run_id}f");
    create_topics(bin, &ns)?;
    let tmp = std::env::temp_dir();
    let lake_dir = tmp.join(format!("{ns}-lake"));
    std::fs::create_dir_all(&lake_dir)?;
    let (uport, port, mport) = (free_port()?, free_port()?, free_port()?);
    let mut env_u = env_base();
    env_u.extend([
        ("TOPIC_NAMESPACE", ns.clone()),
        ("INSTANCE_ID", "readside".into()),
        ("METRICS_PORT", uport.to_string()),
    ]);
    let mut env_s = env_base();
    env_s.extend([
        ("LAKE_URI", lake_dir.to_string_lossy().into_owned()),
        ("TOPIC_NAMESPACE", ns.clone()),
        ("PORT", port.to_string()),
        ("METRICS_PORT", mport.to_string()),
        ("RATE_LIMIT", "1000000".into()),
        (
            "AUDIT_LOG",
            tmp.join(format!("{ns}-audit.log")).to_string_lossy().into_owned(),
        ),
    ]);
    eprintln!("readside: freshness: unsubscribes + serve on namespace {ns}");
    let mut chain = spawn_service(bin, "unsubscribes", &env_u, &tmp.join(format!("{ns}-unsubscribes.log")))?;
    let mut serve = match spawn_service(bin, "serve", &env_s, &tmp.join(format!("{ns}-serve.log"))) {
        Ok(s) => s,
        Err(e) => {
            stop(&mut chain);
            return Err(e);
        }
    };
    let result = (|| -> Result<Value> {
        wait_ok(
            client_rt,
            &mut chain,
            &format!("http://127.0.0.1:{uport}/health/ready"),
            Duration::from_secs(120),
        )?;
        wait_ok(
            client_rt,
            &mut serve,
            &format!("http://127.0.0.1:{port}/health/ready"),
            Duration::from_secs(120),
        )?;
        let raw = tributary_engine::topics::namespaced(&ns, &tributary_engine::topics::raw("unsubscribes"));
        let clean = tributary_engine::topics::namespaced(&ns, &tributary_engine::topics::clean("unsubscribes"));

        // The baseline: when each clean record becomes visible to a read_committed consumer.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set("group.id", format!("readside-{ns}"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[&clean])?;
        let stop_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let consumer_thread = {
            let stop_flag = stop_flag.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                        let now = Instant::now();
                        if let Some(p) = m.payload() {
                            if let Some(k) = find_marker(p) {
                                seen.lock().expect("seen").entry(k).or_insert(now);
                            }
                        }
                    }
                }
            })
        };

        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()?;
        let total = (rate * secs) as u64;
        let pending: Arc<Mutex<HashMap<String, (u64, Instant)>>> = Arc::default();
        let produced: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(vec![Instant::now(); total as usize]));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = run_id.to_owned();
        let producer_thread = {
            let pending = pending.clone();
            let produced = produced.clone();
            let done = done.clone();
            std::thread::spawn(move || -> Result<()> {
                let start = Instant::now() + Duration::from_millis(200);
                for k in 0..total {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let email = format!("fresh{k}x.{run}@example.com");
                    let event_id = format!("readside-{run}-{k}");
                    let body = serde_json::to_vec(&json!({
                        "tenant_id": TENANT, "email": email,
                        "event_time": tributary_view::fmt_time(tributary_engine::normalize::now_micros()),
                        "list_id": LIST, "reason": "bench", "event_id": event_id,
                    }))?;
                    let key = format!("{TENANT}:{event_id}");
                    let headers = tributary_engine::kafka::raw_headers(TENANT, "json");
                    let at = Instant::now();
                    pending.lock().expect("pending").insert(email, (k, at));
                    produced.lock().expect("produced")[k as usize] = at;
                    let mut rec = BaseRecord::<[u8], [u8]>::to(&raw)
                        .key(key.as_bytes())
                        .payload(&body)
                        .headers(headers);
                    loop {
                        match producer.send(rec) {
                            Ok(()) => break,
                            Err((e, r)) => {
                                anyhow::ensure!(
                                    matches!(
                                        e,
                                        rdkafka::error::KafkaError::MessageProduction(
                                            rdkafka::types::RDKafkaErrorCode::QueueFull
                                        )
                                    ),
                                    "produce: {e}"
                                );
                                producer.poll(Duration::from_millis(5));
                                rec = r;
                            }
                        }
                    }
                    producer.poll(Duration::ZERO);
                }
                producer.flush(Duration::from_secs(30))?;
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        };

        // Poll serve every 10 ms with a bulk check of every pending address.
        eprintln!("readside: producing {total} unsubscribes at {rate}/s, polling serve every 10 ms");
        let client = http_client()?;
        let url = format!("http://127.0.0.1:{port}/v1/tenants/{TENANT}/suppression/check");
        let mut lat_ms: Vec<f64> = Vec::new();
        let mut polls = 0u64;
        let mut poll_errors = 0u64;
        let mut done_at: Option<Instant> = None;
        loop {
            let next = Instant::now() + Duration::from_millis(10);
            let emails: Vec<String> = pending.lock().expect("pending").keys().take(10_000).cloned().collect();
            if !emails.is_empty() {
                polls += 1;
                let r: Result<Value> = client_rt.block_on(async {
                    Ok(client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .json(&json!({"list": LIST, "emails": emails}))
                        .send()
                        .await?
                        .error_for_status()?
                        .json::<Value>()
                        .await?)
                });
                let now = Instant::now();
                match r {
                    Ok(v) => {
                        let mut p = pending.lock().expect("pending");
                        for s in v["suppressed"].as_array().into_iter().flatten() {
                            if let Some(e) = s["email"].as_str() {
                                if let Some((_, at)) = p.remove(e) {
                                    lat_ms.push((now - at).as_secs_f64() * 1e3);
                                }
                            }
                        }
                    }
                    Err(_) => poll_errors += 1,
                }
            }
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                let d = *done_at.get_or_insert_with(Instant::now);
                if pending.lock().expect("pending").is_empty() || d.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            if producer_thread.is_finished() && !done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let produce_result = producer_thread
            .join()
            .map_err(|_| anyhow::anyhow!("producer panicked"))?;
        produce_result?;
        // Let the consumer see the last commits.
        std::thread::sleep(Duration::from_millis(500));
        stop_flag.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = consumer_thread.join();
        let missing = pending.lock().expect("pending").len();
        let produced = produced.lock().expect("produced").clone();
        let mut clean_ms: Vec<f64> = seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|(k, _)| (**k as usize) < produced.len())
            .map(|(k, at)| at.saturating_duration_since(produced[*k as usize]).as_secs_f64() * 1e3)
            .collect();
        let clean_seen = clean_ms.len();
        lat_ms.sort_by(|a, b| a.total_cmp(b));
        clean_ms.sort_by(|a, b| a.total_cmp(b));
        let q = |v: &[f64], x: f64| pct(v, x);
        Ok(json!({
            "produced": total, "rate_per_s": rate, "seconds": secs,
            "answered_suppressed": lat_ms.len(), "never_answered": missing,
            "polls": polls, "poll_errors": poll_errors, "poll_interval_ms": 10,
            "raw_to_suppressed_ms": {"p50": q(&lat_ms, 0.5), "p99": q(&lat_ms, 0.99), "max": lat_ms.last()},
            "baseline_raw_to_clean_visible_ms": {"records_seen": clean_seen, "p50": q(&clean_ms, 0.5),
                "p99": q(&clean_ms, 0.99), "max": clean_ms.last()},
            "chain_commit_interval_ms": 100,
        }))
    })();
    stop(&mut serve);
    stop(&mut chain);
    let _ = std::fs::remove_dir_all(&lake_dir);
    result
}

/// `k` of an address `fresh<k>x.` in a record's bytes (Avro strings are stored as UTF-8).
fn find_marker(p: &[u8]) -> Option<u64> {
    let pos = p.windows(5).position(|w| w == b"fresh")?;
    let digits: Vec<u8> = p[pos + 5..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    if p.get(pos + 5 + digits.len()) != Some(&b'x') {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("mem") {
        let kind = args.get(2).context("mem view|ref N")?;
        let n: u64 = args.get(3).context("mem view|ref N")?.parse()?;
        return mem_child(kind, n);
    }
    let started = Instant::now();
    let small = std::env::var("BENCH_READSIDE_SCALE").is_ok_and(|s| s == "small");
    let div = if small { 10 } else { 1 };
    let mem_small = 1_000_000 / div;
    let mem_large = 10_000_000 / div;
    let http_keys = 1_200_000 / div;
    let lake_events: u64 = std::env::var("BENCH_LAKE_EVENTS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000_000)
        / div;
    let lake_users = 1_000_000 / div;
    let secs = if small { 3.0 } else { 10.0 };
    let fresh_secs = if small { 5.0 } else { 20.0 };
    let bin = std::env::current_exe()?.parent().context("bin dir")?.to_path_buf();
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let lake_dir: PathBuf = std::env::var("BENCH_READSIDE_LAKE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("tributary-readside-lake-{lake_events}-{lake_users}")));
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut out = json!({
        "machine": {"nproc": nproc, "cpu_model": cpu_model},
        "commit": commit, "date": date, "scale": if small { "small" } else { "full" },
        "sizes": {"memory_keys": [mem_small, mem_large], "in_process_view_keys": http_keys,
                  "lake_mailing_events": lake_events, "lake_users": lake_users,
                  "load_seconds": secs, "freshness_seconds": fresh_secs},
    });
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rs-client")
        .enable_all()
        .build()?;
    let record = |out: &mut Value, name: &str, r: Result<Value>| match r {
        Ok(v) => out[name] = v,
        Err(e) => {
            eprintln!("readside: {name} failed: {e:#}");
            out[name] = json!({"error": format!("{e:#}")});
        }
    };

    let r = part_memory(mem_small, mem_large);
    record(&mut out, "memory", r);

    let audit = std::env::temp_dir().join(format!("readside-{run_id}-audit.log"));
    match start_in_process(http_keys, &audit) {
        Ok((srv, fill_s)) => {
            out["in_process"] = json!({"keys": http_keys, "fill_seconds": fill_s,
                "how": "tributary_serve::router on a 2-worker tokio runtime in this process; CPU = /proc/self/task/* of its threads"});
            let r = part_single(&srv, &client_rt, http_keys, secs);
            record(&mut out, "single_checks", r);
            let r = part_bulk(&srv, &client_rt, http_keys, secs);
            record(&mut out, "bulk_checks", r);
            let r = part_audience(&srv, &client_rt);
            record(&mut out, "audience_export", r);
            drop(srv.rt);
            drop(srv.app);
            let _ = std::fs::remove_file(&audit);
        }
        Err(e) => out["in_process"] = json!({"error": format!("{e:#}")}),
    }

    let r = part_profiles(&bin, &client_rt, &lake_dir, lake_events, lake_users, secs, &run_id);
    record(&mut out, "profiles", r);
    let r = part_freshness(&bin, &client_rt, 200.0, fresh_secs, &run_id);
    record(&mut out, "freshness", r);
    out["wall_seconds"] = json!(started.elapsed().as_secs_f64());

    std::fs::create_dir_all("bench/results")?;
    std::fs::write(
        "bench/results/readside.json",
        serde_json::to_string_pretty(&out)? + "\n",
    )?;
    let md = markdown(&out);
    let path = "bench/results/latest.md";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let kept = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{}", &old[..b], old[e + END.len()..].trim_start_matches('\n')),
        _ => old,
    };
    let sep = if kept.is_empty() || kept.ends_with("\n\n") {
        ""
    } else if kept.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    std::fs::write(path, format!("{kept}{sep}{BEGIN}\n{md}{END}\n"))?;
    println!("{md}");
    Ok(())
}

const BEGIN: &str = "<!-- readside:begin (bench/src/bin/readside.rs) -->";
const END: &str = "<!-- readside:end -->";

fn markdown(o: &Value) -> String {
    let g = |p: &[&str]| f(o, p);
    let err = |k: &str| {
        o[k]["error"]
            .as_str()
            .map(|e| format!("\n**{k} failed:** {e}\n"))
            .unwrap_or_default()
    };
    let m = &o["memory"];
    let sizes = &o["sizes"];
    let (k1, k10) = (
        sizes["memory_keys"][0].as_u64().unwrap_or(0),
        sizes["memory_keys"][1].as_u64().unwrap_or(0),
    );
    let mem_row = |k: u64| {
        let v = &m[format!("view_{k}")];
        let r = &m[format!("reference_{k}")];
        let rtxt = match r["skipped"].as_str() {
            Some(s) => format!("not run ({s})"),
            None => format!(
                "{:.0} B/key ({:.2} M events/s)",
                f(r, &["bytes_per_key"]),
                f(r, &["events_per_s"]) / 1e6
            ),
        };
        format!(
            "| view memory at {k} keys | {:.0} B/key; folding {:.2} M events/s ({} events) | {rtxt} | {:.1}× less |\n",
            f(v, &["bytes_per_key"]),
            f(v, &["events_per_s"]) / 1e6,
            v["events"],
            f(r, &["bytes_per_key"]) / f(v, &["bytes_per_key"]),
        )
    };
    let lat = |v: &Value| {
        format!(
            "p50 {:.3} / p99 {:.3} / p99.9 {:.3} ms ({} req, {} errors)",
            f(v, &["p50_ms"]),
            f(v, &["p99_ms"]),
            f(v, &["p99_9_ms"]),
            v["requests"],
            v["errors"]
        )
    };
    let s = &o["single_checks"];
    let b = &o["bulk_checks"];
    let a = &o["audience_export"];
    let p = &o["profiles"];
    let fr = &o["freshness"];
    let mut md = format!(
        "## Read side\n\n\
         Run {date} by `bench/run.sh` (`target/release/readside`, scale {scale}) at commit {commit}; \
         {nproc} cores ({cpu}), shared by server, client and Kafka. Wall time of the run: {wall:.0} s. \
         Figures also in `bench/results/readside.json`.\n\n\
         Synthetic tenant `acme` (parts 1-4): every address subscribed to `newsletter` (half with consent \
         evidence), a third also to `promo`, 5 % unsubscribed from `newsletter`, 5 % globally, 2 % blocked, \
         1 % blocked then unblocked, 2 of 1 000 domains blocked (≈ 1.47 events per address). Parts 2-4 run the \
         real router (`tributary_serve::router`) in the bench process on its own 2-worker tokio runtime over \
         a view of {hk} addresses, audit log to a file; server CPU is the user + system time of those threads \
         (`/proc/self/task/*/stat`). Latencies are open loop: each request is due at a fixed time and timed \
         from then (no coordinated omission).\n\n\
         | measure | read side | baseline (same run) | ratio / target |\n|---|---|---|---|\n",
        date = o["date"].as_str().unwrap_or(""),
        scale = o["scale"].as_str().unwrap_or(""),
        commit = o["commit"].as_str().unwrap_or(""),
        nproc = o["machine"]["nproc"],
        cpu = o["machine"]["cpu_model"].as_str().unwrap_or(""),
        wall = g(&["wall_seconds"]),
        hk = o["in_process"]["keys"],
    );
    if m.get("error").is_none() {
        md.push_str(&mem_row(k1));
        md.push_str(&mem_row(k10));
    }
    if s.get("error").is_none() && !s.is_null() {
        md.push_str(&format!(
            "| single check `GET …/suppression?email&list` at 5 000/s, {:.0} s | {} | `/health/live`: {} | target p99 ≤ 2 ms |\n",
            f(s, &["suppression", "seconds"]),
            lat(&s["suppression"]),
            lat(&s["health_live_baseline"]),
        ));
        md.push_str(&format!(
            "| server CPU per request | {:.1} µs | {:.1} µs | |\n",
            f(s, &["server_cpu_us_per_request", "suppression"]),
            f(s, &["server_cpu_us_per_request", "health_live"]),
        ));
    }
    if b.get("error").is_none() && !b.is_null() {
        md.push_str(&format!(
            "| bulk check, 10 000 addresses a request, 2 in flight, {:.0} s | {:.0} addresses/s per core of server CPU ({:.0}/s wall, {} requests, {} errors) | normalize + sha256_hex alone: {:.0} addresses/s per core | {:.0} % of baseline; target ≥ 500 000/s per core |\n",
            f(b, &["wall_seconds"]),
            f(b, &["addresses_per_s_per_core"]),
            f(b, &["addresses_per_s_wall"]),
            b["requests"], b["errors"],
            f(b, &["baseline_normalize_hash_per_s_per_core"]),
            100.0 * f(b, &["addresses_per_s_per_core"]) / f(b, &["baseline_normalize_hash_per_s_per_core"]),
        ));
    }
    if a.get("error").is_none() && !a.is_null() {
        let r0 = &a["runs"][0];
        md.push_str(&format!(
            "| audience export CSV of `newsletter` ({} members), best of 3 | {:.0} members/s per core of server CPU (first run: {:.2} s wall, first byte after {:.2} s, {:.0} MiB) | iterating `TenantView::audience` alone: {:.0} members/s per core | target ≥ 1 000 000/s per core |\n",
            a["members"],
            f(a, &["best_members_per_s_per_core"]),
            f(r0, &["wall_seconds"]),
            f(r0, &["time_to_first_byte_seconds"]),
            f(r0, &["bytes"]) / 1048576.0,
            f(a, &["best_baseline_members_per_s_per_core"]),
        ));
    }
    if p.get("error").is_none() && !p.is_null() {
        md.push_str(&format!(
            "| `serve` binary over a local lake of {} mailing events + {} users ({:.0} MiB): start to ready | {:.1} s (lake read {:.1} s, {} events, {} addresses), RSS {:.0} MiB | | |\n",
            p["mailing_events"], p["users"], f(p, &["lake_bytes"]) / 1048576.0,
            f(p, &["serve_start_to_ready_seconds"]),
            f(p, &["serve_lake_load_seconds"]),
            p["serve_lake_events"], p["serve_addresses"],
            f(p, &["serve_rss_bytes_after_ready"]) / 1048576.0,
        ));
        md.push_str(&format!(
            "| profile lookup by email at 1 000/s, {:.0} s | {} | `/health/live`: {} | target p99 ≤ 50 ms |\n",
            f(p, &["profiles", "seconds"]),
            lat(&p["profiles"]),
            lat(&p["health_live_baseline"]),
        ));
    }
    if fr.get("error").is_none() && !fr.is_null() {
        md.push_str(&format!(
            "| freshness: `raw.unsubscribes` → `suppressed: true` (unsubscribes chain + `serve` binaries, {} events at {}/s, bulk-check poll every 10 ms) | p50 {:.0} ms / p99 {:.0} ms ({} answered, {} never) | raw → clean visible to a read_committed consumer: p50 {:.0} ms / p99 {:.0} ms ({} seen); chain commit interval 100 ms | target p99 ≤ 1 000 ms |\n",
            fr["produced"], fr["rate_per_s"],
            f(fr, &["raw_to_suppressed_ms", "p50"]), f(fr, &["raw_to_suppressed_ms", "p99"]),
            fr["answered_suppressed"], fr["never_answered"],
            f(fr, &["baseline_raw_to_clean_visible_ms", "p50"]), f(fr, &["baseline_raw_to_clean_visible_ms", "p99"]),
            fr["baseline_raw_to_clean_visible_ms"]["records_seen"],
        ));
    }
    for k in [
        "memory",
        "in_process",
        "single_checks",
        "bulk_checks",
        "audience_export",
        "profiles",
        "freshness",
    ] {
        md.push_str(&err(k));
    }
    md.push('\n');
    md
}
