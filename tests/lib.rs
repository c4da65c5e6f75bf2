//! Helpers for the tests against the real infrastructure: addresses, fresh topic namespaces,
//! the service binaries as child processes, and exact reads of what they wrote.

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary_engine::topics;

#[path = "chaos/mod.rs"]
pub mod chaos;

pub fn kafka() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn registry() -> String {
    std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://localhost:8081/apis/ccompat/v7".into())
}

/// Services started by these helpers talk to Kafka as their own principal over SASL_SSL, under
/// its ACLs (made by dev/kafka/run.sh), when the infrastructure has principals
/// (`KAFKA_PRINCIPALS_DIR`, which .infra/env sets) and `KAFKA_SECURE` is not `0`. The tests'
/// own clients use the plaintext listener, whose anonymous principal may do everything.
pub fn principals_dir() -> Option<PathBuf> {
    if std::env::var("KAFKA_SECURE").is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    std::env::var_os("KAFKA_PRINCIPALS_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
}

/// The Kafka client settings of `service`'s principal (`KAFKA_BOOTSTRAP` of the SASL_SSL
/// listener and `KAFKA_PROP_*`); none when [`principals_dir`] is off.
pub fn principal_env(service: &str) -> Result<Vec<(String, String)>> {
    let Some(dir) = principals_dir() else {
        return Ok(Vec::new());
    };
    let path = dir.join(format!("tributary-{service}.env"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: dev/kafka/run.sh makes it when Kafka starts", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The ACLs of every principal for the topics, groups and transactional ids of namespace
/// `ns` (`dev/kafka/run.sh acls <ns>`, against the broker of `KAFKA_BOOTSTRAP`).
pub fn secure_namespace(ns: &str) -> Result<()> {
    let Some(dir) = principals_dir() else {
        return Ok(());
    };
    let port = |addr: String| addr.rsplit(':').next().unwrap_or_default().to_owned();
    let sasl = std::env::var("KAFKA_SASL_BOOTSTRAP").context("KAFKA_SASL_BOOTSTRAP (.infra/env) is not set")?;
    let out = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dev/kafka/run.sh"))
        .args(["acls", ns])
        .env("INFRA_DIR", dir.parent().context("KAFKA_PRINCIPALS_DIR has no parent")?)
        .env("KAFKA_PORT", port(kafka()))
        .env("KAFKA_SASL_PORT", port(sasl))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "dev/kafka/run.sh acls {ns}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A random namespace in which `topics` (names without the namespace, and whether each is
/// compacted) exist, `partitions` each, with every principal's ACLs for it.
pub fn namespace_of(topics: &[(String, bool)], partitions: i32) -> Result<String> {
    let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    debug_assert!(is_test_namespace(&ns));
    let all: Vec<(String, bool)> = topics.iter().map(|(t, c)| (topics::namespaced(&ns, t), *c)).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(topics::create(&kafka(), &Default::default(), &all, partitions))?;
    secure_namespace(&ns)?;
    Ok(ns)
}

/// Whether `ns` has the shape of the namespaces `namespace_of` makes: `t` and 10 hex digits.
pub fn is_test_namespace(ns: &str) -> bool {
    ns.len() == 11 && ns.starts_with('t') && ns[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A random namespace whose chain topics exist, `partitions` each.
pub fn namespace(chain: &str, partitions: i32) -> Result<String> {
    namespace_of(&topics::chain_topics(chain), partitions)
}

/// A random namespace in which the topics of every chain exist, `partitions` each (the raw
/// topics the gateway writes and everything the chain services and the sink use).
pub fn namespace_all(partitions: i32) -> Result<String> {
    let all: Vec<(String, bool)> = topics::CHAINS.iter().flat_map(|c| topics::chain_topics(c)).collect();
    namespace_of(&all, partitions)
}

pub fn topic(ns: &str, t: String) -> String {
    topics::namespaced(ns, &t)
}

/// The path of one of the project's release binaries, beside the test binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>; a binary of this crate
    // (target/<profile>/chaos) sits beside the services already.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A port for a service a test starts. Taken below Linux's ephemeral range (32768-60999):
/// a port the kernel hands out for `bind(0)` is just as likely to be handed to the next
/// outgoing Kafka connection before the service binds it (a CI run lost the race: "Address
/// already in use"). Each call in a process gets a new one, starting at an offset from the
/// pid, and only a port nothing listens on now (on any address) is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97);
    for _ in 0..SPAN {
        let port = (FIRST + offset.wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// One chain service process.
pub struct Service {
    pub child: Child,
    pub port: u16,
    chain: String,
    ns: String,
    instance: String,
    env: Vec<(String, String)>,
}

impl Service {
    pub fn start(chain: &str, ns: &str, instance: &str, env: &[(&str, &str)]) -> Result<Service> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let (child, port) = spawn(chain, ns, instance, &env)?;
        Ok(Service {
            child,
            port,
            chain: chain.into(),
            ns: ns.into(),
            instance: instance.into(),
            env,
        })
    }

    /// The chain this instance serves.
    pub fn name(&self) -> &str {
        &self.chain
    }

    /// Its `INSTANCE_ID`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Starts the instance again (after it exited or was killed), under the same id.
    pub fn respawn(&mut self) -> Result<()> {
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        (self.child, self.port) = spawn(&self.chain, &self.ns, &self.instance, &self.env)?;
        Ok(())
    }

    /// `kill -9`, then start again under the same instance id.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.spawn()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        stop_child(&mut self.child, &self.chain)
    }

    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                bail!("{} exited early with {st}", self.chain);
            }
            if let Ok(r) = reqwest::blocking_get(&format!("http://127.0.0.1:{}/health/ready", self.port)) {
                if r {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("{} not ready within {timeout:?}", self.chain)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the chain's binary from this build, on a free metrics port, logging to a file
/// named after the namespace in the temp dir.
fn spawn(chain: &str, ns: &str, instance: &str, env: &[(String, String)]) -> Result<(Child, u16)> {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{ns}-{chain}-{instance}.log")))?;
    let child = Command::new(bin_dir().join(chain))
        .env("KAFKA_BOOTSTRAP", kafka())
        .envs(principal_env(chain)?)
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("TOPIC_NAMESPACE", ns)
        .env("INSTANCE_ID", instance)
        .env("METRICS_PORT", port.to_string())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {chain}"))?;
    Ok((child, port))
}

mod reqwest {
    /// A minimal GET returning whether the status is 200, without an async runtime.
    pub fn blocking_get(url: &str) -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"))
    }
}

/// The gateway binary of this build as a child process, on a free port, over a namespace.
pub struct Ingest {
    pub child: Child,
    pub port: u16,
}

impl Ingest {
    pub fn start(ns: &str, env: &[(&str, &str)]) -> Result<Ingest> {
        let port = free_port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{ns}-ingest.log")))?;
        let child = Command::new(bin_dir().join("ingest"))
            .env("KAFKA_BOOTSTRAP", kafka())
            .envs(principal_env("ingest")?)
            .env("TOPIC_NAMESPACE", ns)
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ingest (cargo build -p tributary-ingest first)")?;
        let mut me = Ingest { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = me.child.try_wait()? {
                bail!("ingest exited early with {st}");
            }
            if let Ok(true) = reqwest::blocking_get(&me.url("/health/ready")) {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("ingest not ready within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider's documented payload (`providers/<provider>/fixtures/<name>`).
pub fn fixture(provider: &str, name: &str) -> String {
    let p = tributary_engine::testing::fixtures_dir(provider).join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Percent-encoding of a form value (`application/x-www-form-urlencoded`).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every record of a topic, read `read_committed` from the beginning up to its end.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

pub fn read_all(topic: &str) -> Result<Vec<Record>> {
    read_all_with(topic, "read_committed")
}

/// [`read_all`] at an `isolation.level` (`read_committed` or `read_uncommitted`, which also
/// returns the records of aborted transactions).
pub fn read_all_with(topic: &str, isolation: &str) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        ends.insert(*p, high);
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut done: BTreeMap<i32, bool> = parts.iter().map(|p| (*p, ends[p] == 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.values().any(|d| !d) {
        anyhow::ensure!(Instant::now() < deadline, "reading {topic} did not reach its end");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                let pos = consumer
                    .position()?
                    .find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(0);
                if pos >= ends[&p] {
                    done.insert(p, true);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(out)
}

/// Sums of the audit records of a namespace's chain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditSums {
    pub received: u64,
    pub clean: u64,
    pub dlq: u64,
    pub duplicate: u64,
    pub late: u64,
}

pub fn audit_sums(topic: &str) -> Result<AuditSums> {
    let mut s = AuditSums::default();
    for r in read_all(topic)? {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b"{}"))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        s.received += n("received");
        s.clean += n("clean");
        s.dlq += n("dlq");
        s.duplicate += n("duplicate");
        s.late += n("late");
    }
    Ok(s)
}

/// Waits until the audit records account for `expected` input records.
pub fn wait_accounted(audit_topic: &str, expected: u64, timeout: Duration) -> Result<AuditSums> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = audit_sums(audit_topic)?;
        if s.received >= expected {
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {expected} records accounted for after {timeout:?}",
            s.received
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// (partition, key, tenant_id, event_id) of one clean record.
pub type CleanRow = (i32, Vec<u8>, String, String);

/// Decodes clean values through the registry, the way any Confluent consumer would, into
/// (tenant_id, event_id) in topic order per partition.
pub fn decode_clean(records: &[Record]) -> Result<Vec<CleanRow>> {
    use schema_registry_converter::async_impl::avro::AvroDecoder;
    use schema_registry_converter::async_impl::schema_registry::SrSettings;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let decoder = AvroDecoder::new(SrSettings::new(registry()));
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let d = rt.block_on(decoder.decode(r.value.as_deref()))?;
        let apache_avro::types::Value::Record(fields) = d.value else {
            bail!("not a record")
        };
        let get = |n: &str| -> Result<String> {
            match fields.iter().find(|(k, _)| k == n).map(|(_, v)| v) {
                Some(apache_avro::types::Value::String(s)) => Ok(s.clone()),
                other => bail!("field {n}: {other:?}"),
            }
        };
        out.push((
            r.partition,
            r.key.clone().unwrap_or_default(),
            get("tenant_id")?,
            get("event_id")?,
        ));
    }
    Ok(out)
}

/// One run of the `tributary` CLI.
pub struct CliRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

/// Runs `tributary <args>` against the local Kafka and registry, with `env` on top, bounded
/// (10 min): a command that hangs (an HDFS write waiting forever on an ack, say) fails the
/// test with what it printed instead of hanging the suite. Prints the command and its output.
pub fn run_tributary(args: &[&str], env: &[(&str, &str)]) -> Result<CliRun> {
    const LIMIT: Duration = Duration::from_secs(600);
    let started = Instant::now();
    let base = std::env::temp_dir().join(format!("tributary-cli-{}", uuid::Uuid::new_v4().simple()));
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let mut child = Command::new(bin("tributary"))
        .args(args)
        .env("KAFKA_BOOTSTRAP", kafka())
        .env("SCHEMA_REGISTRY_URL", registry())
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("running tributary (cargo build --release -p tributary-ctl first)")?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &std::path::Path| {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        text
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    let Some(status) = status else {
        bail!(
            "tributary {} did not finish within {LIMIT:?}; it printed:\n{stdout}{stderr}",
            args.join(" ")
        );
    };
    let r = CliRun {
        ok: status.success(),
        stdout,
        stderr,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "$ tributary {} ({:.1}s, {})\n{}{}",
        args.join(" "),
        r.seconds,
        if r.ok { "ok" } else { "failed" },
        r.stdout,
        r.stderr
    );
    Ok(r)
}

/// `tributary <args>` (see [`run_tributary`]) that must succeed: its stdout.
pub fn tributary_ok(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let r = run_tributary(args, env)?;
    anyhow::ensure!(r.ok, "tributary {args:?}: {}", r.stderr);
    Ok(r.stdout)
}

/// SIGTERM, then waits (at most 60 s) for a clean exit: a service that does not stop fails
/// the test, killed, instead of hanging the suite.
pub fn stop_child(child: &mut Child, name: &str) -> Result<()> {
    const LIMIT: Duration = Duration::from_secs(60);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            anyhow::ensure!(st.success(), "{name} exited with {st}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("{name} did not stop within {LIMIT:?} of SIGTERM (killed)")
}

/// The sink as a child process.
pub struct Sink {
    pub child: Child,
    pub port: u16,
    env: Vec<(String, String)>,
    log: String,
}

impl Sink {
    pub fn start(ns: &str, lake_uri: &str, chains: &str, extra: &[(&str, &str)]) -> Result<Sink> {
        let mut env: Vec<(String, String)> = vec![
            ("TOPIC_NAMESPACE".into(), ns.into()),
            ("LAKE_URI".into(), lake_uri.into()),
            ("CHAINS".into(), chains.into()),
        ];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let log = format!(
            "{ns}-sink-{}",
            extra
                .iter()
                .find(|(k, _)| *k == "INSTANCE")
                .map(|(_, v)| *v)
                .unwrap_or("0")
        );
        let (child, port) = spawn_sink(&env, &log)?;
        Ok(Sink { child, port, env, log })
    }

    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.respawn()
    }

    /// Starts the sink again (after it exited or was killed) with the same settings.
    pub fn respawn(&mut self) -> Result<()> {
        (self.child, self.port) = spawn_sink(&self.env, &self.log)?;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
        stop_child(&mut self.child, "sink")
    }

    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("sink exited with {st}");
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_sink(env: &[(String, String)], log: &str) -> Result<(Child, u16)> {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{log}.log")))?;
    let child = Command::new(bin_dir().join("sink"))
        .env("KAFKA_BOOTSTRAP", kafka())
        .envs(principal_env("sink")?)
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("METRICS_PORT", port.to_string())
        .env("FLUSH_MAX_AGE", "300ms")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the sink")?;
    Ok((child, port))
}

pub fn hdfs() -> String {
    std::env::var("HDFS_URL").unwrap_or_else(|_| "hdfs://localhost:9000".into())
}

/// The one runtime every lake read and write of the tests runs on:
/// [`tributary_lake::io_runtime`] (why one, not one per thread: there).
pub fn lake_runtime() -> &'static tokio::runtime::Runtime {
    tributary_lake::io_runtime()
}

/// `tenant/event_id` of every row of a chain's table, counted; no rows while there is no
/// table yet. A table that cannot be read is an error, never "no rows": `make chaos` once
/// counted every row of a table as lost while HDFS refused its reads after a restart.
pub fn table_rows(lake_uri: &str, chain: &str) -> Result<BTreeMap<String, u32>> {
    read_table_rows(lake_uri, chain, true)
}

/// [`table_rows`] of a table that must exist (the sink created it): no table is an error too.
pub fn existing_table_rows(lake_uri: &str, chain: &str) -> Result<BTreeMap<String, u32>> {
    read_table_rows(lake_uri, chain, false)
}

/// The rows of a table that must exist, from its log: the record counts the sink wrote into
/// each live file's add action, summed, without reading a data file (the whole table when a
/// file has no count). What a wait for the lake to catch up polls: reading every row of
/// every table every 500 ms to count them was the slow part of `make chaos`'s drain on HDFS.
pub fn existing_table_row_count(lake_uri: &str, chain: &str) -> Result<u64> {
    let table =
        open_table(lake_uri, chain)?.with_context(|| format!("the {chain} table of {lake_uri} does not exist"))?;
    let counts: Option<Vec<usize>> = tributary_lake::table::live_files(&table)?
        .iter()
        .map(|f| f.num_records)
        .collect();
    match counts {
        Some(c) => Ok(c.iter().map(|n| *n as u64).sum()),
        None => Ok(rows_of(&table)?.values().map(|n| u64::from(*n)).sum()),
    }
}

/// The table of `chain` in the lake, `None` when there is none yet; any other failure is an error.
fn open_table(lake_uri: &str, chain: &str) -> Result<Option<tributary_lake::DeltaTable>> {
    let lake = tributary_lake::Lake::new(lake_uri)?;
    lake_runtime()
        .block_on(tributary_lake::open_existing(&lake, chain))
        .with_context(|| format!("opening the {chain} table of {lake_uri}"))
}

fn read_table_rows(lake_uri: &str, chain: &str, none_is_empty: bool) -> Result<BTreeMap<String, u32>> {
    let Some(table) = open_table(lake_uri, chain)? else {
        anyhow::ensure!(none_is_empty, "the {chain} table of {lake_uri} does not exist");
        return Ok(BTreeMap::new());
    };
    rows_of(&table)
}

/// `tenant/event_id` of every row of an open table, counted.
fn rows_of(table: &tributary_lake::DeltaTable) -> Result<BTreeMap<String, u32>> {
    use arrow::array::{Array, StringArray};
    let mut out = BTreeMap::new();
    for f in lake_runtime().block_on(tributary_lake::table::read_all(table))? {
        let tenant = f.partition.get("tenant_id").cloned().unwrap_or_default();
        for b in &f.batches {
            let ids = b
                .column_by_name("event_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .context("event_id column")?;
            for i in 0..ids.len() {
                *out.entry(format!("{tenant}/{}", ids.value(i))).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// Waits until the table holds `want` distinct rows (or fails with what it holds).
pub fn wait_table(lake_uri: &str, chain: &str, want: usize, timeout: Duration) -> Result<BTreeMap<String, u32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = table_rows(lake_uri, chain)?;
        if rows.values().map(|n| *n as usize).sum::<usize>() >= want {
            return Ok(rows);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "table has {} rows, want {want}, after {timeout:?}",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the table holds every expected row, gives a doubled commit (if there were
/// one, after a kill -9 or a racing compaction) two more seconds to land, and asserts the
/// table holds exactly `expected`, once each.
pub fn wait_exact_table(
    lake_uri: &str,
    chain: &str,
    expected: &std::collections::BTreeSet<String>,
    timeout: Duration,
) -> Result<()> {
    let rows = wait_table(lake_uri, chain, expected.len(), timeout)?;
    std::thread::sleep(Duration::from_secs(2));
    let rows = if rows.len() == expected.len() {
        table_rows(lake_uri, chain)?
    } else {
        rows
    };
    assert_exact_table(&rows, expected);
    Ok(())
}

/// Asserts a table holds exactly `expected`, once each.
pub fn assert_exact_table(rows: &BTreeMap<String, u32>, expected: &std::collections::BTreeSet<String>) {
    let twice: Vec<_> = rows
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| format!("{k}×{n}"))
        .take(5)
        .collect();
    let got: std::collections::BTreeSet<String> = rows.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(expected).take(5).collect();
    assert!(twice.is_empty(), "rows twice in the table: {twice:?}");
    assert!(
        missing.is_empty() && extra.is_empty(),
        "table: missing {missing:?}, unexpected {extra:?}"
    );
}

/// A hand-made raw record: its `tenant` and `source` headers, payload, and the DLQ class the
/// chain must give it (`None`: clean).
pub struct Special {
    pub tenant: &'static str,
    pub source: &'static str,
    pub payload: Vec<u8>,
    pub class: Option<&'static str>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// One record of each DLQ reason class the generator does not make, and a valid CSV record
/// (`globex/csv-1`) with its upload's header row in the record.
pub fn special_records(chain: &str) -> Vec<Special> {
    let s = |tenant, source, payload: &[u8], class| Special {
        tenant,
        source,
        payload: payload.to_vec(),
        class,
    };
    let csv = match chain {
        "users" => "Email Address,First Name,event_id,Timestamp\ncsv@example.com,Csv,csv-1,NOW",
        "unsubscribes" => "Email Address,UNSUB_TIME,event_id\ncsv@example.com,NOW,csv-1",
        "blocklists" => "Email,Timestamp,event_id,reason\ncsv@example.com,NOW,csv-1,spam",
        "subscriptions" => "Email Address,OPTIN_TIME,event_id,list\ncsv@example.com,NOW,csv-1,news",
        _ => "recipient,timestamp,event_id,msg_id,event\ncsv@example.com,NOW,csv-1,m-csv,delivered",
    };
    let valid = b"{\"event_time\":1763000000,\"email\":\"a@b.com\"}";
    vec![
        s("acme", "json", &[b'x'; 70_000], Some("oversize")),
        s("acme", "fax", b"{}", Some("unknown_source")),
        s("acme", "json", b"{\"event_time\": 1", Some("malformed")),
        s("Bad Tenant", "json", valid, Some("invalid_tenant")),
        s("hooli", "json", valid, Some("unknown_tenant")),
        s(
            "acme",
            "json",
            b"{\"event_time\":1763000000,\"email\":\"not-an-address\"}",
            Some("invalid_email"),
        ),
        s(
            "acme",
            "json",
            b"{\"event_time\":\"1999-01-01T00:00:00Z\",\"email\":\"a@b.com\"}",
            Some("invalid_timestamp"),
        ),
        s(
            "globex",
            "csv",
            csv.replace("NOW", &unix_now().to_string()).as_bytes(),
            None,
        ),
    ]
}

/// A clean event (`acme/late-1`) an hour and a half older than now: late with a 1 h window.
pub fn late_record() -> Special {
    let late = format!(
        "{{\"event_id\":\"late-1\",\"event_time\":{},\"email\":\"late@example.com\",\"list_id\":\"l\",\
         \"message_id\":\"m\",\"event_type\":\"SENT\"}}",
        unix_now() - 5_400
    );
    Special {
        tenant: "acme",
        source: "json",
        payload: late.into_bytes(),
        class: None,
    }
}

/// Produces hand-made records with the key `special`, and waits until Kafka has them.
pub fn produce_special(topic: &str, records: &[Special]) -> Result<()> {
    produce_special_with(topic, records, &[])
}

/// The read side (`serve`) of this build as a child process over a namespace and a lake, on
/// free API and metrics ports, with a blocking HTTP client for its API.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    ns: String,
    env: Vec<(String, String)>,
    http: ::reqwest::blocking::Client,
}

impl Serve {
    /// Starts `serve` and waits until it answers `/health/ready` (caught up).
    pub fn start(ns: &str, lake_uri: &str, extra: &[(&str, &str)]) -> Result<Serve> {
        let mut env: Vec<(String, String)> = vec![("LAKE_URI".into(), lake_uri.into())];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let (child, port, metrics_port) = spawn_serve(ns, &env)?;
        let http = ::reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut me = Serve {
            child,
            port,
            metrics_port,
            ns: ns.into(),
            env,
            http,
        };
        me.wait_ready(Duration::from_secs(120))?;
        Ok(me)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/health/ready` answers 200; fails at once if the process exited.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!("serve exited early with {st}");
            }
            if let Ok(r) = self.http.get(self.url("/health/ready")).send() {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "serve not ready within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -9`, then start again (on new ports) and wait until it is ready.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.respawn()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        stop_child(&mut self.child, "serve")
    }

    /// Starts a stopped (or killed) instance again and waits until it is ready.
    pub fn respawn(&mut self) -> Result<()> {
        (self.child, self.port, self.metrics_port) = spawn_serve(&self.ns, &self.env)?;
        self.wait_ready(Duration::from_secs(120))
    }

    /// `GET path` with `token` as the Bearer token (none: no Authorization header):
    /// (status, body).
    pub fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String)> {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send()?;
        Ok((r.status().as_u16(), r.text()?))
    }

    /// `POST path` with a JSON body: (status, body).
    pub fn post(&self, path: &str, token: Option<&str>, body: &serde_json::Value) -> Result<(u16, String)> {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send()?;
        Ok((r.status().as_u16(), r.text()?))
    }

    /// The value of one series of the metrics port's `/metrics`, written as in the text
    /// format (`name{label="v"}`); None when the series is not there.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()?
            .text()?;
        Ok(metric_value(&text, series))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `series` (`name` or `name{labels}`, as the text format writes it).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    tributary_engine::metrics::text::value(text, series)
}

fn spawn_serve(ns: &str, env: &[(String, String)]) -> Result<(Child, u16, u16)> {
    let port = free_port();
    let metrics_port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{ns}-serve.log")))?;
    let child = Command::new(bin_dir().join("serve"))
        .env("KAFKA_BOOTSTRAP", kafka())
        .envs(principal_env("serve")?)
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("TOPIC_NAMESPACE", ns)
        .env("PORT", port.to_string())
        .env("METRICS_PORT", metrics_port.to_string())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting serve (cargo build --release -p tributary-serve first)")?;
    Ok((child, port, metrics_port))
}

/// One canonical-JSON event for `raw.<chain>`: headers `tenant` and `source: json`, keyed
/// `<tenant>:<key>` (the identity, so a resent copy lands in the partition of the first).
#[derive(Debug, Clone)]
pub struct JsonEvent {
    pub chain: &'static str,
    pub tenant: String,
    pub key: String,
    pub value: serde_json::Value,
}

/// A producer of [`JsonEvent`]s to a namespace's raw topics (idempotent, so a retry never
/// reorders or doubles a record).
pub struct JsonProducer {
    ns: String,
    producer: rdkafka::producer::BaseProducer,
}

impl JsonProducer {
    pub fn new(ns: &str) -> Result<JsonProducer> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()?;
        Ok(JsonProducer {
            ns: ns.into(),
            producer,
        })
    }

    pub fn send(&self, e: &JsonEvent) -> Result<()> {
        use rdkafka::producer::BaseRecord;
        let topic = topic(&self.ns, topics::raw(e.chain));
        let key = format!("{}:{}", e.tenant, e.key);
        let payload = serde_json::to_vec(&e.value)?;
        let headers = tributary_engine::kafka::raw_headers(e.tenant.as_str(), "json");
        let mut record = BaseRecord::<[u8], [u8]>::to(&topic)
            .key(key.as_bytes())
            .payload(&payload)
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    self.producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until Kafka acknowledged everything sent.
    pub fn flush(&self) -> Result<()> {
        use rdkafka::producer::Producer;
        self.producer.flush(Duration::from_secs(30))?;
        Ok(())
    }
}

/// Produces `events` in order and waits until Kafka has them.
pub fn produce_json(ns: &str, events: &[JsonEvent]) -> Result<()> {
    let p = JsonProducer::new(ns)?;
    for e in events {
        p.send(e)?;
    }
    p.flush()
}

/// Per partition of `topic`: (low, high) watermarks.
pub fn watermarks(topic: &str) -> Result<BTreeMap<i32, (i64, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka()).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = BTreeMap::new();
    for p in md.topics()[0].partitions() {
        out.insert(
            p.id(),
            consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?,
        );
    }
    Ok(out)
}

/// Deletes every record of `topic` (DeleteRecords up to each partition's high watermark),
/// as retention would once they expired; returns the high watermarks deleted up to.
pub fn delete_all_records(topic: &str) -> Result<BTreeMap<i32, i64>> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", kafka()).create()?;
    let ends: BTreeMap<i32, i64> = watermarks(topic)?.into_iter().map(|(p, (_, h))| (p, h)).collect();
    let mut tpl = TopicPartitionList::new();
    for (p, h) in &ends {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*h))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let res = rt.block_on(admin.delete_records(&tpl, &AdminOptions::new()))?;
    for e in res.elements() {
        if let Err(err) = e.error() {
            bail!("delete_records {topic}[{}]: {err}", e.partition());
        }
    }
    Ok(ends)
}

/// Waits until every partition of every topic of a namespace answers its watermarks: a
/// partition of a topic created a moment ago can answer `NotLeaderForPartition` for a while,
/// and a chain service that meets that during its state restore stops.
pub fn wait_namespace_ready(ns: &str, timeout: Duration) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka()).create()?;
    let deadline = Instant::now() + timeout;
    for (t, _) in topics::CHAINS.iter().flat_map(|c| topics::chain_topics(c)) {
        let t = topics::namespaced(ns, &t);
        loop {
            let ok = consumer
                .fetch_metadata(Some(&t), Duration::from_secs(10))
                .ok()
                .and_then(|md| {
                    let parts: Vec<i32> = md.topics().first()?.partitions().iter().map(|p| p.id()).collect();
                    (!parts.is_empty()
                        && parts
                            .iter()
                            .all(|p| consumer.fetch_watermarks(&t, *p, Duration::from_secs(5)).is_ok()))
                    .then_some(())
                })
                .is_some();
            if ok {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{t}: partitions without a leader after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// A TCP forwarder in front of a real dependency (the registry, the namenode's RPC port) that
/// a test can take down and bring back: while down it accepts and at once closes every
/// connection, and cuts the ones open, as a dependency that went away does.
pub struct Outage {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Outage {
    /// Forwards `127.0.0.1:<port>` to `target` (`host:port`), up at first.
    pub fn start(target: &str) -> Result<Outage> {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind(("127.0.0.1", free_port()))?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let (up2, gen2, target) = (up.clone(), generation.clone(), target.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let born = gen2.load(Ordering::SeqCst);
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    let (up3, gen3) = (up2.clone(), gen2.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if !up3.load(Ordering::SeqCst) || gen3.load(Ordering::SeqCst) != born {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Ok(Outage { port, up, generation })
    }

    /// Takes the dependency away: open connections are cut, new ones closed at once.
    pub fn down(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The `max.message.bytes` in effect for `topic` (its own, or the broker's
/// `message.max.bytes` it inherits), as the broker describes it.
pub fn topic_max_message_bytes(topic: &str) -> Result<usize> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", kafka());
    tributary_engine::kafka::max_message_bytes(&cfg, &[topic])?
        .remove(topic)
        .with_context(|| format!("{topic}: no max.message.bytes described"))
}

/// [`produce_special`] with extra producer properties (e.g. a larger `message.max.bytes`
/// for a record near the topic's limit), failing if Kafka refuses any record.
pub fn produce_special_with(topic: &str, records: &[Special], props: &[(&str, &str)]) -> Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", kafka());
    for (k, v) in props {
        cfg.set(*k, *v);
    }
    let p: FutureProducer = cfg.create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for r in records {
        let headers = tributary_engine::kafka::raw_headers(r.tenant, r.source);
        let rec = FutureRecord::<[u8], [u8]>::to(topic)
            .key(b"special")
            .payload(&r.payload)
            .headers(headers);
        rt.block_on(p.send(rec, Duration::from_secs(30)))
            .map_err(|(e, _)| anyhow::anyhow!("producing a {}-byte record to {topic}: {e}", r.payload.len()))?;
    }
    Ok(())
}

/// Checks the clean topic holds exactly `expected` (tenant/event_id), once each.
pub fn assert_exact_clean(
    ns: &str,
    chain: &str,
    expected: &std::collections::BTreeSet<String>,
) -> Result<Vec<CleanRow>> {
    let clean = decode_clean(&read_all(&topic(ns, topics::clean(chain)))?)?;
    let mut seen = BTreeMap::<String, u32>::new();
    for (_, _, t, id) in &clean {
        *seen.entry(format!("{t}/{id}")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.clone()).collect();
    let got: std::collections::BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(expected).take(5).collect();
    assert!(
        twice.is_empty(),
        "{chain}: {} records twice in the clean topic, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{chain}: missing {missing:?}, unexpected {extra:?}"
    );
    Ok(clean)
}

#[cfg(test)]
mod tests {
    /// No table yet is no rows for `table_rows` and an error for `existing_table_rows`; a
    /// table that cannot be read is an error for both (never "no rows").
    #[test]
    fn a_lake_read_fails_loudly_unless_there_is_no_table_yet() {
        let dir = std::env::temp_dir().join(format!("tributary-table-rows-{}", std::process::id()));
        let lake = dir.to_string_lossy().into_owned();
        assert!(super::table_rows(&lake, "users").unwrap().is_empty());
        assert!(super::existing_table_rows(&lake, "users").is_err());
        assert!(super::existing_table_row_count(&lake, "users").is_err());
        std::fs::create_dir_all(dir.join("users")).unwrap();
        assert!(
            super::table_rows(&lake, "users").unwrap().is_empty(),
            "a directory without a log"
        );
        // A log that is not a Delta log: the read fails, and says so.
        let log = dir.join("users").join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("00000000000000000000.json"), "not json").unwrap();
        assert!(super::table_rows(&lake, "users").is_err());
        assert!(super::existing_table_row_count(&lake, "users").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
