//! The dashboards and alert rules against a real Prometheus during an end-to-end run.
//!
//! All five chain services, the sink and the read side (`serve`) run in one fresh topic
//! namespace (local lake directory), beside a real Pushgateway; a real Prometheus (both Debian's packages, unpacked
//! into `.infra/tools/bin` by `bash dev/lint-deploy.sh tools`) scrapes every one of them each
//! second, one job per service (`tributary-<service>`, as k8s/base/monitoring/servicemonitor.yaml
//! names them; `tributary-pushgateway` with `honor_labels`, as
//! k8s/base/monitoring/pushgateway.yaml does) with the target label `namespace` (the topic
//! namespace, as the Kubernetes namespace would be), and loads grafana/alerts/tributary.rules.yml. The load makes every metric move: generated
//! records with duplicates and invalid ones, a hand-made record of each DLQ reason class, a
//! valid CSV record and a late event (DEDUP_WINDOW=1h) per chain, and a rebalance (a second
//! instance of each chain joins, takes a partition, and leaves; the first one takes the
//! partition back and restores its state again, which `increase()` can see: the first restores
//! of a process happen before its first scrape). Once the sink has committed every clean
//! record, the lake jobs run as Airflow runs them, each with `--pushgateway`:
//! `tributary compact` (today's partitions included, so it has small files to replace),
//! `tributary vacuum`, `tributary reconcile` and `tributary erase` (the late event's address of
//! tenant acme). Once `serve` has folded clean events of every chain into its view, it is asked
//! what its users ask (single and bulk suppression checks, profiles, an audience export) and
//! what they get wrong (a wrong token: 401, a bad address: 400), and one tenant goes over its
//! rate limit (`RATE_LIMIT`, low on purpose: 429). The HTTP gateway (`ingest`, job
//! `tributary-ingest`, as its ServiceMonitor names it) publishes into the same namespace; at the
//! end it gets webhooks as providers send them and what they get wrong or what goes wrong
//! (see `gateway_requests`): accepted webhooks and an upload with a broken line, a wrong token
//! (401), a signed Mailgun webhook replayed (403) with a replay cache of one entry (evictions),
//! an event larger than its Kafka producer takes (`KAFKA_PROP_MESSAGE_MAX_BYTES`: 503, a
//! produce error) and, with `MAX_CONCURRENT_REQUESTS=1`, a request while another one stalls
//! mid-body (503 shed at once, and the stalled one 503 at `REQUEST_TIMEOUT`).
//!
//! Then every target expression of every panel of grafana/dashboards/*.json is evaluated with
//! `GET /api/v1/query` and must succeed with data: a non-empty result with at least one value
//! that is not NaN (a ratio of two empty rates is NaN: no data in Grafana either). Each query
//! variable (`label_values(...)`) must find values too. Grafana's variables are replaced as
//! follows (printed by the test):
//!
//! - `$datasource`: not in any query (it picks the data source);
//! - `$namespace`: the topic namespace (the value of the target label `namespace`);
//! - `$chain` (single value, compared with `=`): each of the five chains in turn, so the chain
//!   dashboard is evaluated five times;
//! - `$instance`, `$table`: `.*` (their "All" value);
//! - `$__rate_interval`: the seconds since the load started plus 10, at least `2m` (so it
//!   spans the whole load, the jobs and the rebalance; Grafana derives it from the time range
//!   and the scrape interval);
//! - `$__range`: the seconds since Prometheus started (the dashboard's range covers the run).
//!
//! Every alert expression must evaluate without error, and `GET /api/v1/rules` must show the
//! file's groups loaded, each rule evaluated with health `ok`.

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::topics::{self, CHAINS};
use tributary_tests::*;

const PARTITIONS: i32 = 2;
/// The shortest `$__rate_interval` (see the module comment).
const MIN_RATE_INTERVAL_SECS: u64 = 120;
/// The job name of the Pushgateway's target, scraped with `honor_labels`.
const PUSHGATEWAY_JOB: &str = "tributary-pushgateway";
/// What each chain service gets: a 1 h window so that an event 90 minutes old is late, and a
/// record size limit the oversize record exceeds.
const CHAIN_ENV: &[(&str, &str)] = &[("DEDUP_WINDOW", "1h"), ("MAX_RECORD_BYTES", "65536")];
/// serve's requests per second per tenant: low, so that a burst gets 429s.
const SERVE_RATE_LIMIT: u32 = 40;
/// What the gateway gets: one request at a time (a second one while one stalls is shed), a
/// short request timeout (the stalled one is shed too), a replay cache of one Mailgun
/// signature (a second signature evicts the first), and a producer that refuses records over
/// 4000 bytes (the oversize event's 503). `TRIBUTARY_CONFIG` (tenant acme with a Mailgun
/// signing key) is added by `gateway_config`.
const GATEWAY_ENV: &[(&str, &str)] = &[
    ("MAX_CONCURRENT_REQUESTS", "1"),
    ("REQUEST_TIMEOUT", "5s"),
    ("REPLAY_CACHE_ENTRIES", "1"),
    ("KAFKA_PROP_MESSAGE_MAX_BYTES", "4000"),
];

/// Panel titles whose queries may return nothing in a healthy short run, with the reason.
/// Everything else must return data. Empty today: the load makes every panel's data
/// (aborted transactions are a zero-valued series, which is data; late events, restores and
/// every DLQ reason are produced on purpose).
const MAY_BE_EMPTY: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `.infra/tools/bin/prometheus`, after `bash dev/lint-deploy.sh tools` (quick when installed).
fn prometheus_bin() -> Result<PathBuf> {
    let out = Command::new("bash")
        .args(["dev/lint-deploy.sh", "tools"])
        .current_dir(root())
        .output()
        .context("bash dev/lint-deploy.sh tools")?;
    ensure!(
        out.status.success(),
        "bash dev/lint-deploy.sh tools failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let p = root().join(".infra/tools/bin/prometheus");
    ensure!(
        p.is_file(),
        "{} is not installed by dev/lint-deploy.sh tools",
        p.display()
    );
    Ok(p)
}

/// `.infra/tools/bin/pushgateway` (installed with prometheus by `prometheus_bin`).
fn pushgateway_bin() -> Result<PathBuf> {
    prometheus_bin()?;
    let p = root().join(".infra/tools/bin/pushgateway");
    ensure!(
        p.is_file(),
        "{} is not installed by dev/lint-deploy.sh tools",
        p.display()
    );
    Ok(p)
}

/// A binary of this build: `target/release/<name>` (this test executable is in its `deps/`).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").join(name)
}

/// A fresh namespace in which the topics of all five chains exist.
fn namespace_all_chains(partitions: i32) -> Result<String> {
    let all: Vec<(String, bool)> = CHAINS.iter().flat_map(|chain| topics::chain_topics(chain)).collect();
    namespace_of(&all, partitions)
}

// ------------------------------------------------------------------------------ load

// ------------------------------------------------------------------------------ http

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Result<Http> {
        Ok(Http {
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
            client: reqwest::Client::new(),
        })
    }

    fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<String> {
        self.rt.block_on(async {
            let r = self
                .client
                .get(url)
                .query(query)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            Ok(r.text().await?)
        })
    }

    /// A POST with headers; the status and body of the answer.
    fn post(&self, url: &str, headers: &[(&str, &str)], body: String) -> Result<(u16, String)> {
        self.rt.block_on(async {
            let mut req = self.client.post(url).timeout(Duration::from_secs(30)).body(body);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await?;
            Ok((r.status().as_u16(), r.text().await?))
        })
    }

    /// A Prometheus API call: its `data`, or the error it reports.
    fn api(&self, base: &str, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let body = self.get(&format!("{base}{path}"), query)?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        if v["status"] != "success" {
            bail!("{}: {}", v["errorType"].as_str().unwrap_or("error"), v["error"]);
        }
        Ok(v["data"].clone())
    }

    /// One metric's value (summed over its series) from a service's `/metrics`.
    fn metric(&self, port: u16, name: &str) -> Result<f64> {
        let text = self.get(&format!("http://127.0.0.1:{port}/metrics"), &[])?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!(" (last error: {e:#})"),
        }
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}{last}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ------------------------------------------------------------------------------ jobs

/// The Pushgateway as a child process.
struct Pushgateway {
    child: Child,
    port: u16,
    url: String,
}

impl Pushgateway {
    fn start(ns: &str, http: &Http) -> Result<Pushgateway> {
        let port = free_port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{ns}-pushgateway.log")))?;
        let child = Command::new(pushgateway_bin()?)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the pushgateway")?;
        let url = format!("http://127.0.0.1:{port}");
        let me = Pushgateway { child, port, url };
        wait_for("pushgateway ready", Duration::from_secs(30), || {
            Ok(http.get(&format!("{}/-/ready", me.url), &[]).is_ok().then_some(()))
        })?;
        Ok(me)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tributary <args>` as Airflow would (settings in the environment); its exit status
/// and output.
fn tributary(args: &[&str], pushgateway: &str) -> Result<(bool, String)> {
    let r = run_tributary(args, &[("TRIBUTARY_PUSHGATEWAY", pushgateway), ("RUST_LOG", "warn")])?;
    Ok((r.ok, format!("{}{}", r.stdout, r.stderr)))
}

// ------------------------------------------------------------------------------ prometheus

/// Prometheus as a child process, with the scrape targets of its config file.
struct Prometheus {
    child: Child,
    base: String,
    config: PathBuf,
    data: PathBuf,
    ns: String,
    /// job → metrics ports.
    targets: BTreeMap<String, BTreeSet<u16>>,
    started: Instant,
}

impl Prometheus {
    fn start(ns: &str, targets: BTreeMap<String, BTreeSet<u16>>) -> Result<Prometheus> {
        let bin = prometheus_bin()?;
        let tmp = std::env::temp_dir();
        let config = tmp.join(format!("{ns}-prometheus.yml"));
        let data = tmp.join(format!("{ns}-prometheus-data"));
        let port = free_port();
        write_config(&config, ns, &targets)?;
        let log = std::fs::File::create(tmp.join(format!("{ns}-prometheus.log")))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        Ok(Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config,
            data,
            ns: ns.to_owned(),
            targets,
            started: Instant::now(),
        })
    }

    /// Rewrites the config with the current targets and has Prometheus reload it (SIGHUP).
    fn reload(&self) -> Result<()> {
        write_config(&self.config, &self.ns, &self.targets)?;
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()?;
        ensure!(st.success(), "kill -HUP prometheus");
        Ok(())
    }

    /// Waits until the active targets are exactly the configured ones, each scraped and up.
    fn wait_targets_up(&mut self, http: &Http) -> Result<()> {
        let want: BTreeSet<(String, String)> = self
            .targets
            .iter()
            .flat_map(|(job, ports)| ports.iter().map(move |p| (job.clone(), format!("127.0.0.1:{p}"))))
            .collect();
        let base = self.base.clone();
        let child = &mut self.child;
        wait_for("all targets up", Duration::from_secs(60), || {
            if let Some(st) = child.try_wait()? {
                bail!("prometheus exited with {st}");
            }
            let d = http.api(&base, "/api/v1/targets", &[("state", "active")])?;
            let mut got = BTreeSet::new();
            let mut down = Vec::new();
            for t in d["activeTargets"].as_array().into_iter().flatten() {
                let key = (
                    t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                    t["labels"]["instance"].as_str().unwrap_or_default().to_owned(),
                );
                if t["health"] != "up" {
                    down.push(format!("{}/{} {}", key.0, key.1, t["lastError"]));
                }
                got.insert(key);
            }
            if got == want && down.is_empty() {
                Ok(Some(()))
            } else {
                bail!("targets {got:?}, not up: {down:?}")
            }
        })
    }
}

/// One job per service, static targets, the topic namespace as target label `namespace`,
/// and the alert rules.
fn write_config(path: &Path, ns: &str, targets: &BTreeMap<String, BTreeSet<u16>>) -> Result<()> {
    let rules = root().join("grafana/alerts/tributary.rules.yml");
    let mut y = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\nscrape_configs:\n",
        rules.display()
    );
    for (job, ports) in targets {
        let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        // The Pushgateway's samples keep their pushed `job` and `table` labels.
        let honor = if job == PUSHGATEWAY_JOB {
            "    honor_labels: true\n"
        } else {
            ""
        };
        y += &format!(
            "  - job_name: {job}\n{honor}    static_configs:\n      - targets: [{}]\n        labels:\n          \
             namespace: {ns}\n",
            list.join(", ")
        );
    }
    std::fs::write(path, y)?;
    Ok(())
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

// ------------------------------------------------------------------------------ queries

/// One query of a dashboard: (dashboard file, panel title, variable name or panel target
/// expression, expression).
struct Query {
    dashboard: String,
    panel: String,
    expr: String,
}

/// The panel targets and the `label_values` variables of every dashboard.
fn dashboard_queries() -> Result<(Vec<Query>, Vec<Query>)> {
    fn walk(panels: &[Value], file: &str, out: &mut Vec<Query>) {
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        dashboard: file.to_owned(),
                        panel: p["title"].as_str().unwrap_or_default().to_owned(),
                        expr: expr.to_owned(),
                    });
                }
            }
            walk(p["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]), file, out);
        }
    }
    let mut panels = Vec::new();
    let mut variables = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("grafana/dashboards"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    ensure!(!files.is_empty(), "no dashboards in grafana/dashboards");
    for f in files {
        let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f)?)?;
        walk(
            d["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            &name,
            &mut panels,
        );
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
            variables.push(Query {
                dashboard: name.clone(),
                panel: format!("variable {}", v["name"].as_str().unwrap_or_default()),
                expr: q.to_owned(),
            });
        }
    }
    Ok((panels, variables))
}

/// The expression with Grafana's variables replaced (see the module comment).
fn substitute(expr: &str, ns: &str, chain: &str, grant: &str, range: &str, rate_interval: &str) -> Result<String> {
    let mut e = expr.to_owned();
    for (var, value) in [
        ("grant", grant),
        ("__rate_interval", rate_interval),
        ("__range", range),
        ("namespace", ns),
        ("chain", chain),
        ("instance", ".*"),
        ("table", ".*"),
    ] {
        e = e
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    ensure!(!e.contains('$'), "a variable this test does not know in {expr}");
    Ok(e)
}

/// Whether an instant query's result holds data: some value that is not NaN.
fn has_data(data: &Value) -> (usize, bool) {
    let value = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|x| !x.is_nan())
    };
    match data["resultType"].as_str() {
        Some("vector") => {
            let r = data["result"].as_array().cloned().unwrap_or_default();
            (r.len(), r.iter().any(|s| value(&s["value"])))
        }
        Some("scalar") => (1, value(&data["result"])),
        _ => (0, false),
    }
}

// ------------------------------------------------------------------------------ serve

/// What serve's users ask, and get wrong; then a burst over tenant globex's rate limit. Every
/// endpoint answers at least once (its status is not this test's business, serve.rs checks
/// the answers); the wrong token must get 401, the bad address 400 and the burst some 429s.
fn serve_requests(serve: &Serve) -> Result<()> {
    let token = Some("acme-local-token");
    let mut statuses: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    // Twice, a few scrapes apart: a series is born with its first request, and rate() sees
    // only what it gains after Prometheus first scraped it.
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let mut note = |what: &str, code: u16| {
            statuses.entry(what.to_owned()).or_default().insert(code);
        };
        for i in 0..10 {
            let email = format!("person{i}@example.com");
            let (code, _) = serve.get(&format!("/v1/tenants/acme/suppression?email={email}"), token)?;
            note("suppression", code);
            let (code, _) = serve.get(
                &format!("/v1/tenants/acme/suppression?email={email}&list=newsletter"),
                token,
            )?;
            note("suppression", code);
        }
        let emails: Vec<String> = (0..100).map(|i| format!("person{i}@example.com")).collect();
        let (code, _) = serve.post(
            "/v1/tenants/acme/suppression/check",
            token,
            &serde_json::json!({"list": null, "emails": emails}),
        )?;
        note("suppression_check", code);
        for who in ["email=late@example.com", "email=nobody@example.com", "user_id=u1"] {
            let (code, _) = serve.get(&format!("/v1/tenants/acme/profiles?{who}"), token)?;
            note("profiles", code);
        }
        let (code, _) = serve.get("/v1/tenants/acme/audiences/newsletter?format=ndjson", token)?;
        note("audiences", code);
        let (code, _) = serve.get(
            "/v1/tenants/acme/suppression?email=ann@example.com",
            Some("wrong-token"),
        )?;
        ensure!(code == 401, "a wrong token got {code}, not 401");
        let (code, _) = serve.get("/v1/tenants/acme/suppression?email=not-an-address", token)?;
        ensure!(code == 400, "a bad address got {code}, not 400");
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut limited = 0;
    for _ in 0..(3 * SERVE_RATE_LIMIT) {
        let (code, _) = serve.get(
            "/v1/tenants/globex/suppression?email=ann@example.com",
            Some("globex-local-token"),
        )?;
        limited += usize::from(code == 429);
    }
    ensure!(
        limited > 0,
        "{} requests of globex in a burst, none refused with 429 (RATE_LIMIT={SERVE_RATE_LIMIT})",
        3 * SERVE_RATE_LIMIT
    );
    println!("serve: statuses by endpoint {statuses:?}; wrong token 401, bad address 400, {limited} of the burst 429");
    Ok(())
}

/// An analytics grant of acme to globex, read over Delta Sharing as a client does, and a
/// request for a share the token does not hold: the per-grant panels' rows, requests and
/// refusals. Returns the grant id.
fn serve_share(serve: &Serve, ns: &str) -> Result<String> {
    let out = Command::new(bin("tributary"))
        .args([
            "grant",
            "create",
            "--from",
            "acme",
            "--to",
            "globex",
            "--chains",
            "users,mailings",
            "--columns",
            "country,event_type",
            "--purpose",
            "analytics",
            "--expires",
            "2099-12-31",
        ])
        .env("KAFKA_BOOTSTRAP", kafka())
        .env("TOPIC_NAMESPACE", ns)
        .env("SHARING_ENDPOINT", serve.url("/delta-sharing"))
        .env("RUST_LOG", "warn")
        .output()?;
    ensure!(
        out.status.success(),
        "grant create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: Value = serde_json::from_slice(&out.stdout)?;
    let id = g["grant_id"].as_str().context("grant_id")?.to_owned();
    let token = g["profile"]["bearerToken"].as_str().context("bearerToken")?.to_owned();
    let query = format!("/delta-sharing/shares/{id}/schemas/default/tables/users/query");
    // Twice, a few scrapes apart, as in serve_requests.
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        wait_for("the share is materialized", Duration::from_secs(60), || {
            Ok((serve.post(&query, Some(&token), &serde_json::json!({}))?.0 == 200).then_some(()))
        })?;
        let (code, _) = serve.get("/delta-sharing/shares/not-this-grant", Some(&token))?;
        ensure!(matches!(code, 403 | 404), "another share got {code}, not a refusal");
    }
    println!("serve: analytics grant {id} shared and read");
    Ok(id)
}

// ------------------------------------------------------------------------------ gateway

/// The gateway's settings file: tenant acme (token `acme-local-token`) with a Mailgun signing
/// key, so that a replayed signature is refused.
fn gateway_config(ns: &str, mailgun_key: &str) -> Result<PathBuf> {
    use sha2::Digest;
    let cfg = std::env::temp_dir().join(format!("{ns}-ingest.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[tenants.acme]\ntoken_sha256 = \"{}\"\n[tenants.acme.mailgun]\nsigning_key = \"{mailgun_key}\"\n",
            hex::encode(sha2::Sha256::digest(b"acme-local-token"))
        ),
    )?;
    Ok(cfg)
}

/// A Mailgun webhook (the documented permanent failure) signed as Mailgun signs it: hex
/// HMAC-SHA256 of timestamp and token under the signing key.
fn mailgun_signed(key: &str, token: &str) -> Result<String> {
    use hmac::Mac;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let mut body: Value = serde_json::from_str(&fixture("mailgun", "failed_permanent.json"))?;
    body["signature"] = serde_json::json!({
        "timestamp": timestamp.to_string(), "token": token, "signature": hex::encode(mac.finalize().into_bytes())
    });
    Ok(body.to_string())
}

/// What providers send the gateway and what goes wrong, twice a few scrapes apart (a series
/// is born with its first request, and rate() sees only what it gains after Prometheus first
/// scraped it): SendGrid webhooks (200), a wrong token (401), a signed Mailgun webhook (200)
/// and the same again (403, a replay), another signature (200; it evicts the first from the
/// replay cache of one), a JSON-lines upload with a broken line (200, one line rejected), an
/// event over the producer's message.max.bytes (503: Kafka refused it). Once, between the
/// rounds: a request while another one stalls mid-body (503 overload at once), and the
/// stalled one answered 503 at REQUEST_TIMEOUT. Each answer must be the expected one.
fn gateway_requests(http: &Http, gw: &Ingest, mailgun_key: &str) -> Result<()> {
    use std::io::{Read, Write};
    let sendgrid = gw.url("/v1/tenants/acme/webhooks/sendgrid");
    let json = ("content-type", "application/json");
    let auth = ("authorization", "Bearer acme-local-token");
    let expect = |what: &str, (code, body): (u16, String), want: u16| -> Result<String> {
        ensure!(code == want, "gateway: {what}: {code}, not {want}: {body}");
        Ok(body)
    };
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        for i in 0..3 {
            let event = format!(
                r#"[{{"email":"gw{i}@example.com","timestamp":1764000000,"event":"delivered","sg_event_id":"gw-{round}-{i}","sg_message_id":"gm-{i}"}}]"#
            );
            expect("a SendGrid webhook", http.post(&sendgrid, &[auth, json], event)?, 200)?;
        }
        expect(
            "a wrong token",
            http.post(&sendgrid, &[("authorization", "Bearer wrong-token"), json], "[]".into())?,
            401,
        )?;
        let mailgun = gw.url("/v1/tenants/acme/webhooks/mailgun");
        let signed = mailgun_signed(mailgun_key, &format!("gw-token-{round}-a"))?;
        expect(
            "a signed Mailgun webhook",
            http.post(&mailgun, &[auth, json], signed.clone())?,
            200,
        )?;
        let body = expect(
            "the same Mailgun webhook again",
            http.post(&mailgun, &[auth, json], signed)?,
            403,
        )?;
        ensure!(
            body.contains("already used"),
            "gateway: a replay refused for another reason: {body}"
        );
        let other = mailgun_signed(mailgun_key, &format!("gw-token-{round}-b"))?;
        expect(
            "another signed Mailgun webhook",
            http.post(&mailgun, &[auth, json], other)?,
            200,
        )?;
        let lines = "{\"email\":\"up1@example.com\"}\n{\"email\": broken\n{\"email\":\"up2@example.com\"}\n";
        let body = expect(
            "an upload with a broken line",
            http.post(
                &gw.url("/v1/tenants/acme/uploads/users"),
                &[auth, ("content-type", "application/x-ndjson")],
                lines.into(),
            )?,
            200,
        )?;
        ensure!(
            body.contains("\"rejected_count\":1"),
            "gateway: the broken line not rejected: {body}"
        );
        let oversize = format!(
            r#"[{{"email":"big@example.com","timestamp":1764000000,"event":"delivered","sg_event_id":"big-{round}","sg_message_id":"m","note":"{}"}}]"#,
            "x".repeat(6000)
        );
        let body = expect(
            "an event over message.max.bytes",
            http.post(&sendgrid, &[auth, json], oversize)?,
            503,
        )?;
        ensure!(
            body.contains("Kafka refused a record"),
            "gateway: 503 for another reason: {body}"
        );
        if round == 0 {
            // Shed: the one request slot held by a webhook stalled mid-body.
            let mut stalled = std::net::TcpStream::connect(("127.0.0.1", gw.port))?;
            write!(
                stalled,
                "POST /v1/tenants/acme/webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer acme-local-token\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"email\""
            )?;
            stalled.flush()?;
            std::thread::sleep(Duration::from_millis(500));
            let body = expect(
                "a webhook while another one stalls",
                http.post(&sendgrid, &[auth, json], "[]".into())?,
                503,
            )?;
            ensure!(
                body.contains("max_concurrent_requests"),
                "gateway: 503 for another reason: {body}"
            );
            stalled.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut answer = [0u8; 64];
            let n = stalled.read(&mut answer)?;
            let head = String::from_utf8_lossy(&answer[..n]).into_owned();
            ensure!(
                head.starts_with("HTTP/1.1 503"),
                "gateway: the stalled webhook got {head:?}, not 503"
            );
        }
    }
    let evictions = http.metric(gw.port, "tributary_ingest_replay_cache_evictions_total")?;
    ensure!(
        evictions >= 2.0,
        "gateway: {evictions} replay cache evictions, not 2 or more"
    );
    let shed = http.metric(gw.port, "tributary_ingest_shed_total")?;
    ensure!(shed >= 2.0, "gateway: {shed} requests shed, not 2 or more");
    println!(
        "gateway: webhooks 200, wrong token 401, Mailgun replay 403 (cache of one: evictions), \
         an upload with a broken line, an oversize event 503 (produce error), one request shed at once and one at its timeout"
    );
    Ok(())
}

// ------------------------------------------------------------------------------ the test

#[test]
fn every_dashboard_query_and_alert_against_a_real_prometheus() -> Result<()> {
    let http = Http::new()?;
    let ns = namespace_all_chains(PARTITIONS)?;
    let lake = std::env::temp_dir()
        .join(format!("lake-{ns}"))
        .to_string_lossy()
        .into_owned();
    println!("namespace {ns}, lake {lake}");

    // Every service, then Prometheus scraping each of them.
    let mut first: Vec<(&str, Service)> = Vec::new();
    for chain in CHAINS {
        first.push((chain, Service::start(chain, &ns, "0", CHAIN_ENV)?));
    }
    let sink = Sink::start(&ns, &lake, &CHAINS.join(","), &[])?;
    for (_, svc) in &mut first {
        svc.wait_ready(Duration::from_secs(60))?;
    }
    let rate_limit = SERVE_RATE_LIMIT.to_string();
    let serve = Serve::start(
        &ns,
        &lake,
        &[("RATE_LIMIT", rate_limit.as_str()), ("SHARING_REFRESH", "1s")],
    )?;
    let mailgun_key = format!("key-{}", uuid::Uuid::new_v4().simple());
    let gateway_cfg = gateway_config(&ns, &mailgun_key)?;
    let mut gateway_env = GATEWAY_ENV.to_vec();
    gateway_env.push(("TRIBUTARY_CONFIG", gateway_cfg.to_str().context("config path")?));
    let gateway = Ingest::start(&ns, &gateway_env)?;
    let mut targets: BTreeMap<String, BTreeSet<u16>> = first
        .iter()
        .map(|(chain, svc)| (format!("tributary-{chain}"), BTreeSet::from([svc.port])))
        .collect();
    targets.insert("tributary-sink".into(), BTreeSet::from([sink.port]));
    targets.insert("tributary-serve".into(), BTreeSet::from([serve.metrics_port]));
    // The gateway's one port serves /metrics too.
    targets.insert("tributary-ingest".into(), BTreeSet::from([gateway.port]));
    let pushgateway = Pushgateway::start(&ns, &http)?;
    targets.insert(PUSHGATEWAY_JOB.into(), BTreeSet::from([pushgateway.port]));
    let mut prom = Prometheus::start(&ns, targets)?;
    prom.wait_targets_up(&http)?;
    println!("prometheus at {} scrapes {} targets", prom.base, prom.targets.len());

    // The load: generated records (10 % duplicates, 5 % invalid) and the hand-made ones.
    let load_started = Instant::now();
    let mut sent = BTreeMap::new();
    for chain in CHAINS {
        let raw = topic(&ns, topics::raw(chain));
        let mut spec = Spec::new(chain, 3_000);
        spec.seed = 41;
        spec.invalid_share = 0.05;
        spec.spread_secs = 600;
        let s = loadgen::send(&kafka(), &raw, spec, |_| {})?;
        let mut specials = special_records(chain);
        specials.push(late_record());
        produce_special(&raw, &specials)?;
        sent.insert(chain, s.sent + specials.len() as u64);
    }
    let mut clean = 0;
    for chain in CHAINS {
        let sums = wait_accounted(&topic(&ns, topics::audit(chain)), sent[chain], Duration::from_secs(120))?;
        ensure!(sums.late >= 1, "{chain}: no late event accounted: {sums:?}");
        println!("{chain}: {sums:?}");
        clean += sums.clean;
    }

    // The read side: once serve has folded clean events of every chain, its users' requests.
    let serve_port = serve.metrics_port;
    wait_for(
        "serve folds clean events of every chain",
        Duration::from_secs(120),
        || {
            let text = http.get(&format!("http://127.0.0.1:{serve_port}/metrics"), &[])?;
            Ok(CHAINS
                .iter()
                .all(|c| {
                    metric_value(&text, &format!("tributary_serve_events_applied_total{{chain=\"{c}\"}}"))
                        .is_some_and(|v| v > 0.0)
                })
                .then_some(()))
        },
    )?;
    serve_requests(&serve)?;

    // The lake jobs, once the sink has committed every clean record, each pushing its metrics.
    let sink_port = sink.port;
    wait_for("the sink commits every clean record", Duration::from_secs(120), || {
        let rows = http.metric(sink_port, "tributary_sink_rows_total")?
            + http.metric(sink_port, "tributary_sink_dlq_records_total")?;
        Ok((rows >= clean as f64).then_some(()))
    })?;
    let grant = serve_share(&serve, &ns)?;
    let pg = pushgateway.url.as_str();
    let (ok, out) = tributary(
        &[
            "compact",
            "--lake",
            &lake,
            "--min-files",
            "2",
            "--closed-before-days",
            "0",
        ],
        pg,
    )?;
    ensure!(ok, "tributary compact failed: {out}");
    let (ok, out) = tributary(&["vacuum", "--lake", &lake], pg)?;
    ensure!(ok, "tributary vacuum failed: {out}");
    let report = std::env::temp_dir().join(format!("{ns}-reconciliation.json"));
    let report_arg = report.to_string_lossy().into_owned();
    // Its verdict is not this test's business (chains.rs and lake_ops.rs check it); its
    // metrics are, passed or not.
    let (_, out) = tributary(
        &[
            "reconcile",
            "--lake",
            &lake,
            "--report",
            &report_arg,
            "--namespace",
            &ns,
        ],
        pg,
    )?;
    ensure!(report.is_file(), "tributary reconcile wrote no report: {out}");
    let (ok, out) = tributary(
        &[
            "erase",
            "--lake",
            &lake,
            "--tenant",
            "acme",
            "--email",
            "late@example.com",
            "--namespace",
            &ns,
        ],
        pg,
    )?;
    ensure!(ok, "tributary erase failed: {out}");
    let pushed = http.get(&format!("{pg}/metrics"), &[])?;
    for job in tributary_ctl::job_metrics::JOBS {
        ensure!(
            pushed.contains(&format!("job=\"{job}\"")),
            "the pushgateway holds no metrics of job {job}"
        );
    }

    // A rebalance: a second instance of each chain joins and takes a partition, then leaves;
    // once its session expires, the first instance takes the partition back and restores it.
    let mut second: Vec<(&str, Service)> = Vec::new();
    for chain in CHAINS {
        let svc = Service::start(chain, &ns, "1", CHAIN_ENV)?;
        prom.targets
            .get_mut(&format!("tributary-{chain}"))
            .expect("job")
            .insert(svc.port);
        second.push((chain, svc));
    }
    prom.reload()?;
    for (chain, svc) in &mut second {
        svc.wait_ready(Duration::from_secs(60))?;
        let port = svc.port;
        wait_for(
            &format!("{chain} instance 1 owns a partition"),
            Duration::from_secs(60),
            || Ok((http.metric(port, "tributary_chain_assigned_partitions")? >= 1.0).then_some(())),
        )?;
    }
    prom.wait_targets_up(&http)?;
    for (chain, svc) in &mut second {
        svc.stop()?;
        prom.targets
            .get_mut(&format!("tributary-{chain}"))
            .expect("job")
            .remove(&svc.port);
    }
    prom.reload()?;
    for (chain, svc) in &first {
        let port = svc.port;
        wait_for(
            &format!("{chain} instance 0 owns all partitions again"),
            Duration::from_secs(90),
            || Ok((http.metric(port, "tributary_chain_assigned_partitions")? >= f64::from(PARTITIONS)).then_some(())),
        )?;
    }
    prom.wait_targets_up(&http)?;
    // The gateway's webhooks (into the same namespace: the chains take them as any others).
    gateway_requests(&http, &gateway, &mailgun_key)?;
    // A few more scrapes and rule evaluations of the final state.
    std::thread::sleep(Duration::from_secs(4));

    // Every panel query, every variable, every alert.
    let range = format!("{}s", prom.started.elapsed().as_secs() + 1);
    let rate_interval = format!(
        "{}s",
        (load_started.elapsed().as_secs() + 10).max(MIN_RATE_INTERVAL_SECS)
    );
    println!(
        "substitutions: $namespace={ns}, $chain=each of {CHAINS:?}, $grant={grant}, $instance=.*, $table=.*, \
         $__rate_interval={rate_interval}, $__range={range}"
    );
    println!(
        "panels that may be empty: {}",
        if MAY_BE_EMPTY.is_empty() {
            "none".to_owned()
        } else {
            MAY_BE_EMPTY
                .iter()
                .map(|(t, why)| format!("{t:?} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let (panels, variables) = dashboard_queries()?;
    let mut failures = Vec::new();
    let (mut with_data, mut allowed_empty, mut n_variables) = (0, 0, 0);
    for q in panels.iter().chain(&variables) {
        let chains: Vec<&str> = if q.expr.contains("$chain") || q.expr.contains("${chain}") {
            CHAINS.to_vec()
        } else {
            vec![""]
        };
        for chain in chains {
            let what = format!(
                "{} / {}{}",
                q.dashboard,
                q.panel,
                if chain.is_empty() {
                    String::new()
                } else {
                    format!(" [chain={chain}]")
                }
            );
            let expr = match substitute(&q.expr, &ns, chain, &grant, &range, &rate_interval) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            if let Some(inner) = expr.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')) {
                // A variable: label_values(selector, label).
                let Some((selector, label)) = inner.rsplit_once(',') else {
                    failures.push(format!("{what}: cannot read {expr}"));
                    continue;
                };
                let label = label.trim();
                match http.api(
                    &prom.base,
                    &format!("/api/v1/label/{label}/values"),
                    &[("match[]", selector.trim())],
                ) {
                    Ok(d) if d.as_array().is_some_and(|a| !a.is_empty()) => {
                        println!("  ok    {what}: {d}");
                        with_data += 1;
                        n_variables += 1;
                    }
                    Ok(d) => failures.push(format!("{what}: no values: {expr} → {d}")),
                    Err(e) => failures.push(format!("{what}: {expr}: {e:#}")),
                }
                continue;
            }
            match http.api(&prom.base, "/api/v1/query", &[("query", &expr)]) {
                Ok(d) => {
                    let (series, data) = has_data(&d);
                    if data {
                        println!("  ok    {what}: {series} series");
                        with_data += 1;
                    } else if MAY_BE_EMPTY.iter().any(|(t, _)| *t == q.panel) {
                        println!("  empty {what} (allowed)");
                        allowed_empty += 1;
                    } else {
                        failures.push(format!("{what}: no data ({series} series, all NaN or none): {expr}"));
                    }
                }
                Err(e) => failures.push(format!("{what}: {expr}: {e:#}")),
            }
        }
    }

    // A control: the same check finds no data for a chain that does not exist, so the data
    // above is not an artefact of the substitutions.
    if let Some(q) = panels.iter().find(|q| q.expr.contains("$chain")) {
        let expr = substitute(&q.expr, &ns, "no-such-chain", &grant, &range, &rate_interval)?;
        let d = http.api(&prom.base, "/api/v1/query", &[("query", &expr)])?;
        ensure!(!has_data(&d).1, "control query {expr} returned data: {d}");
    }

    // The alert rules: each expression evaluates, and Prometheus has them loaded and healthy.
    let rules_text = std::fs::read_to_string(root().join("grafana/alerts/tributary.rules.yml"))?;
    let rules: Value = serde_yaml_ng::from_str(&rules_text)?;
    let mut groups_in_file = BTreeMap::new();
    let mut alerts = 0;
    for g in rules["groups"].as_array().into_iter().flatten() {
        let group = g["name"].as_str().unwrap_or_default().to_owned();
        let mut names = BTreeSet::new();
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or_default();
            names.insert(name.to_owned());
            let expr = r["expr"].as_str().unwrap_or_default();
            match http.api(&prom.base, "/api/v1/query", &[("query", expr)]) {
                Ok(d) => {
                    println!("  ok    alert {name}: {} series", has_data(&d).0);
                    alerts += 1;
                }
                Err(e) => failures.push(format!("alert {name}: {e:#}")),
            }
        }
        groups_in_file.insert(group, names);
    }
    let loaded = wait_for("every rule evaluated with health ok", Duration::from_secs(30), || {
        let d = http.api(&prom.base, "/api/v1/rules", &[])?;
        let mut loaded = BTreeMap::new();
        let mut unhealthy = Vec::new();
        for g in d["groups"].as_array().into_iter().flatten() {
            let mut names = BTreeSet::new();
            for r in g["rules"].as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or_default().to_owned();
                if r["health"] != "ok" {
                    unhealthy.push(format!("{name}: {} {}", r["health"], r["lastError"]));
                }
                names.insert(name);
            }
            loaded.insert(g["name"].as_str().unwrap_or_default().to_owned(), names);
        }
        if unhealthy.is_empty() && loaded == groups_in_file {
            Ok(Some(loaded))
        } else {
            bail!("loaded {loaded:?}, unhealthy {unhealthy:?}")
        }
    });
    match loaded {
        Ok(l) => println!(
            "rule groups loaded and healthy: {:?}",
            l.iter()
                .map(|(g, r)| format!("{g} ({} rules)", r.len()))
                .collect::<Vec<_>>()
        ),
        Err(e) => failures.push(format!("{e:#}")),
    }

    println!(
        "{with_data} queries returned data ({} panel queries, {n_variables} variable queries), \
         {allowed_empty} allowed empty, {alerts} alerts evaluated",
        with_data - n_variables
    );
    println!("{with_data} queries returned data, {allowed_empty} allowed empty, {alerts} alerts evaluated");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    drop(prom);
    drop(pushgateway);
    let _ = std::fs::remove_file(&report);
    drop(sink);
    drop(serve);
    drop(gateway);
    let _ = std::fs::remove_file(&gateway_cfg);
    for (_, mut svc) in first {
        svc.stop()?;
    }
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}
