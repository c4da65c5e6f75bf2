//! One scenario run: a fresh namespace, every chain service and the sink, the load generator
//! over all five chains in every source format (duplicates, invalid and poison records), one
//! kind of fault injected at random points while the load runs, quiescence, then the checker
//! over the whole history. What the run created is deleted when it passes and kept (with the
//! history as JSON and the services' logs) when it fails.

use super::checker::{self, At, Expect, Sent, Verdict};
use super::collect::{self, LiveReader};
use super::gateway::{self, Gateway};
use super::infra::{self, Component};
use super::suppression;
use crate::{
    audit_sums, hdfs, is_test_namespace, kafka, namespace_all, special_records, topic, wait_namespace_ready, Serve,
    Service, Sink,
};
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tributary_ctl::loadgen::{self, Format, Generator, Kind, Spec};
use tributary_engine::topics::{self, CHAINS};

/// The faults of the matrix, one kind a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scenario {
    BrokerKill9,
    BrokerRestart,
    ChainKill9,
    ChainZombie,
    RebalanceChurn,
    SinkKill9,
    TwoSinksOnePaused,
    NamenodeStopped,
    RegistryRestart,
    GatewayKill9,
    ServeKill9,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::BrokerKill9,
        Scenario::BrokerRestart,
        Scenario::ChainKill9,
        Scenario::ChainZombie,
        Scenario::RebalanceChurn,
        Scenario::SinkKill9,
        Scenario::TwoSinksOnePaused,
        Scenario::NamenodeStopped,
        Scenario::RegistryRestart,
        Scenario::GatewayKill9,
        Scenario::ServeKill9,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BrokerKill9 => "broker-kill9",
            Scenario::BrokerRestart => "broker-restart",
            Scenario::ChainKill9 => "chain-kill9",
            Scenario::ChainZombie => "chain-zombie",
            Scenario::RebalanceChurn => "rebalance-churn",
            Scenario::SinkKill9 => "sink-kill9",
            Scenario::TwoSinksOnePaused => "two-sinks-one-paused",
            Scenario::NamenodeStopped => "namenode-stopped",
            Scenario::RegistryRestart => "registry-restart",
            Scenario::GatewayKill9 => "gateway-kill9",
            Scenario::ServeKill9 => "serve-kill9",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::BrokerKill9 => "kill -9 of the Kafka broker, restarted by its launcher",
            Scenario::BrokerRestart => "clean stop and start of the Kafka broker",
            Scenario::ChainKill9 => {
                "kill -9 of one chain instance, restarted at once; each fault the next chain in turn (from a random one)"
            }
            Scenario::ChainZombie => {
                "one of two instances of a chain SIGSTOPped past its 10 s session, then SIGCONT (a zombie)"
            }
            Scenario::RebalanceChurn => "a third instance of a chain added and removed every few seconds",
            Scenario::SinkKill9 => "kill -9 of the sink, restarted at once",
            Scenario::TwoSinksOnePaused => "one of two sinks SIGSTOPped past its 10 s session, then SIGCONT",
            Scenario::NamenodeStopped => "the HDFS namenode stopped for 15 s (past the sink's session), lake on HDFS",
            Scenario::RegistryRestart => "the schema registry stopped for 5 s and started again",
            Scenario::GatewayKill9 => {
                "kill -9 of the gateway (ingest) under SendGrid webhook load, restarted at once; a request not answered \
                 2xx is sent again: every 2xx in raw once, every event clean once"
            }
            Scenario::ServeKill9 => {
                "kill -9 of serve (running over the lake and topics since the start) during the load, restarted; its \
                 answers after the restart against the model; recovery: kill to answering again"
            }
        }
    }
}

/// Sizes and pacing of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Events a scenario run, over the five chains together.
    pub events: u64,
    /// Records a second per chain the load generator sends at.
    pub rate: u64,
    pub partitions: i32,
    /// Faults injected a run.
    pub faults: usize,
    pub seed: u64,
    /// Where a failing run's history goes.
    pub history_dir: PathBuf,
}

impl Config {
    /// Defaults, each overridable by the environment: `CHAOS_EVENTS`, `CHAOS_RATE`,
    /// `CHAOS_PARTITIONS`, `CHAOS_FAULTS`, `CHAOS_SEED` (default random; printed),
    /// `CHAOS_HISTORY` (default `bench/results/chaos-history`).
    pub fn from_env(events: u64, rate: u64, faults: usize) -> Config {
        fn n<T: std::str::FromStr>(k: &str, d: T) -> T {
            std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
        }
        Config {
            events: n("CHAOS_EVENTS", events),
            rate: n("CHAOS_RATE", rate),
            partitions: n("CHAOS_PARTITIONS", 4),
            faults: n("CHAOS_FAULTS", faults),
            seed: n("CHAOS_SEED", rand::rng().random_range(0..1_000_000)),
            history_dir: std::env::var_os("CHAOS_HISTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| infra::repo_root().join("bench/results/chaos-history")),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FaultRecord {
    pub what: String,
    /// Seconds since the live reader started.
    pub at: f64,
    pub until: f64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub scenario: String,
    pub run: usize,
    pub namespace: String,
    pub events: u64,
    pub faults: Vec<FaultRecord>,
    /// Processes that exited on their own during the run (fenced zombies, services that gave
    /// up while the broker was away) and were started again, as an orchestrator would.
    pub service_exits: Vec<String>,
    pub lost: u64,
    pub duplicated: u64,
    pub aborted_reads: u64,
    pub aborted_in_topic: u64,
    pub lake_lost: u64,
    pub lake_duplicated: u64,
    pub dlq_recall: f64,
    /// The longest time the live reader saw nothing new, from the start of the load to the
    /// last clean record, seconds.
    pub max_stall: f64,
    /// The longest time from the end of a fault to the next clean record seen, seconds (faults
    /// after which no record was left to come are left out).
    pub recovery: f64,
    /// Seconds from the end of the load to quiescence (everything accounted and in the lake).
    pub drain: f64,
    pub seconds: f64,
    pub verdicts: Vec<Verdict>,
    /// Per service log, its lines that speak of fencing (a zombie's late commit refused).
    pub fencing: BTreeMap<String, Vec<String>>,
    /// The suppression view against the reference model.
    pub serve: Option<suppression::ServeVerdict>,
    /// `gateway-kill9`: what the gateway answered against the raw topic.
    #[serde(default)]
    pub gateway: Option<gateway::GatewayVerdict>,
    pub passed: bool,
    /// Where the history of a failing run was kept.
    pub history: Option<String>,
    pub error: Option<String>,
}

/// The processes of a run.
#[derive(Default)]
struct Fleet {
    chains: Vec<Service>,
    sinks: Vec<Sink>,
    /// `serve-kill9`: serve, running from the start of the load.
    serve: Option<Serve>,
    /// `gateway-kill9`: the gateway the webhook driver posts to.
    gateway: Option<Gateway>,
    exits: Vec<String>,
}

impl Fleet {
    /// Starts again every process that exited on its own, noting it.
    fn supervise(&mut self, t: f64) -> Result<()> {
        for s in &mut self.chains {
            if let Some(st) = s.child.try_wait()? {
                self.exits.push(format!("{:.1}s: {} exited with {st}", t, s.name()));
                s.respawn()?;
            }
        }
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Some(st) = s.child.try_wait()? {
                self.exits.push(format!("{t:.1}s: sink {i} exited with {st}"));
                s.respawn()?;
            }
        }
        if let Some(s) = &mut self.serve {
            if let Some(st) = s.child.try_wait()? {
                self.exits.push(format!("{t:.1}s: serve exited with {st}"));
                s.respawn()?;
            }
        }
        if let Some(g) = &mut self.gateway {
            if let Some(what) = g.supervise()? {
                self.exits.push(format!("{t:.1}s: {what}"));
            }
        }
        Ok(())
    }
}

/// Runs [`Fleet::supervise`] every 200 ms in a thread of its own, as an orchestrator would, so
/// that no step of the harness that blocks (a producer waiting for a broker, a fault that
/// takes minutes) leaves an exited service down. In broker-kill9 at 1 M the main thread sat
/// for 10 minutes in a join while the chains its watchdogs had stopped stayed zombies.
struct Supervisor {
    fleet: Arc<Mutex<Fleet>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Supervisor {
    fn start(fleet: Fleet, since: Instant) -> Supervisor {
        let fleet = Arc::new(Mutex::new(fleet));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fleet, stop) = (fleet.clone(), stop.clone());
            std::thread::spawn(move || -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    lock(&fleet).supervise(since.elapsed().as_secs_f64())?;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(())
            })
        };
        Supervisor {
            fleet,
            stop,
            thread: Some(thread),
        }
    }

    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        lock(&self.fleet)
    }

    /// The supervision's failure (a service it could not start again), if it stopped on one.
    fn check(&mut self) -> Result<()> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            self.join()?;
            bail!("supervision stopped");
        }
        Ok(())
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the supervision thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Stops supervising (what is stopped next stays stopped); the fleet back.
    fn finish(mut self) -> Result<Fleet> {
        self.join()?;
        let fleet = std::mem::replace(&mut self.fleet, Arc::new(Mutex::new(Fleet::default())));
        Arc::try_unwrap(fleet)
            .map_err(|_| anyhow::anyhow!("the fleet is still shared"))
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The raw key of a run's `i`-th poison record to a chain.
fn poison_key(i: usize) -> String {
    format!("special-{i}")
}

/// How long the load's producers (the sources) keep trying to deliver a record. At 1 M events
/// the two cores are saturated and a broker restart there took up to 80 s, three of them in a
/// row; a source that gave up after librdkafka's default 300 s failed half the broker runs
/// (`MessageTimedOut` on the harness's own producers, nothing lost by the services). A real
/// source retries; so does this one, for up to 15 minutes.
const SOURCE_DELIVERY_TIMEOUT: Duration = Duration::from_secs(900);
/// A load producer that has acknowledged nothing for this long, records on their way, is
/// stuck (librdkafka 2.12 after a broker restart, see `loadgen::send_paced`) and replaced:
/// longer than the slowest broker restart seen under load (80 s).
const SOURCE_STUCK_AFTER: Duration = Duration::from_secs(150);

const CHAIN_ENV: [(&str, &str); 2] = [("COMMIT_INTERVAL", "100ms"), ("MAX_RECORD_BYTES", "65536")];

/// Runs one scenario once. An `Err` is a harness failure (the infrastructure did not come
/// back, a process could not start); a failed check is an `Ok` outcome with `passed: false`.
pub fn run(scenario: Scenario, cfg: &Config, run_no: usize) -> Result<Outcome> {
    let started = Instant::now();
    // Each scenario and run its own random points and victims, repeatable from the seed.
    let which = Scenario::ALL.iter().position(|s| *s == scenario).unwrap_or(0) as u64;
    let mut rng = StdRng::seed_from_u64(
        cfg.seed
            .wrapping_mul(1_000_003)
            .wrapping_add(run_no as u64 * 7_919)
            .wrapping_add(which * 104_729),
    );
    let ns = namespace_all(cfg.partitions)?;
    wait_namespace_ready(&ns, Duration::from_secs(60))?;
    let lake = if scenario == Scenario::NamenodeStopped {
        format!("{}/tributary-chaos/{ns}", hdfs())
    } else {
        std::env::temp_dir()
            .join(format!("chaos-lake-{ns}"))
            .to_string_lossy()
            .into_owned()
    };
    eprintln!(
        "chaos: {} run {run_no}: namespace {ns}, lake {lake}, {} events",
        scenario.name(),
        cfg.events
    );
    // A panic inside the run is a failed run too: the infrastructure is restored all the same.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_in(scenario, cfg, run_no, &ns, &lake, &mut rng, started)
    }))
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(anyhow::anyhow!("the run panicked: {what}"))
    });
    // Whatever happened, the infrastructure runs again before the next scenario.
    let restored = [Component::Kafka, Component::Registry, Component::Hdfs]
        .into_iter()
        .map(|c| c.ensure_running().with_context(|| format!("restoring {}", c.name())))
        .collect::<Result<Vec<()>>>();
    let mut outcome = match result {
        Ok(o) => o,
        Err(e) => failed_outcome(scenario, run_no, &ns, cfg.events, &e, started),
    };
    restored?;
    outcome.fencing = fencing_in_logs(&ns);
    if outcome.passed {
        // A passed run in which a service exited keeps the services' logs (not the topics), so
        // an exit nobody injected can still be explained afterwards.
        if !outcome.service_exits.is_empty() {
            let dir = keep_history(cfg, scenario, run_no, &ns, &outcome)?;
            outcome.history = Some(format!("{} (logs only: the run passed)", dir.display()));
        }
        cleanup(&ns, &lake);
    } else {
        let dir = keep_history(cfg, scenario, run_no, &ns, &outcome)?;
        outcome.history = Some(format!(
            "{} (topics of namespace {ns} and the lake {lake} kept)",
            dir.display()
        ));
    }
    Ok(outcome)
}

fn failed_outcome(
    scenario: Scenario,
    run: usize,
    ns: &str,
    events: u64,
    e: &anyhow::Error,
    started: Instant,
) -> Outcome {
    Outcome {
        scenario: scenario.name().to_owned(),
        run,
        namespace: ns.to_owned(),
        events,
        faults: vec![],
        service_exits: vec![],
        lost: 0,
        duplicated: 0,
        aborted_reads: 0,
        aborted_in_topic: 0,
        lake_lost: 0,
        lake_duplicated: 0,
        dlq_recall: 0.0,
        max_stall: 0.0,
        recovery: 0.0,
        drain: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        verdicts: vec![],
        fencing: BTreeMap::new(),
        serve: None,
        gateway: None,
        passed: false,
        history: None,
        error: Some(format!("{e:#}")),
    }
}

fn run_in(
    scenario: Scenario,
    cfg: &Config,
    run_no: usize,
    ns: &str,
    lake: &str,
    rng: &mut StdRng,
    started: Instant,
) -> Result<Outcome> {
    let victim = CHAINS[rng.random_range(0..CHAINS.len())];
    let all_chains = CHAINS.join(",");
    let mut chains = Vec::new();
    for c in CHAINS {
        chains.push(Service::start(c, ns, "0", &CHAIN_ENV)?);
        if matches!(scenario, Scenario::ChainZombie) && c == victim {
            chains.push(Service::start(c, ns, "1", &CHAIN_ENV)?);
        }
    }
    let sink_count = if scenario == Scenario::TwoSinksOnePaused { 2 } else { 1 };
    // Small commits give the faults more commits to land in. On HDFS a commit costs about
    // 1.5 s here (three Parquet files and the log entry), so 5 000-row commits cap the sink at
    // about 3 300 rows/s: catching up a million rows after the namenode's restarts took past
    // the drain's 300 s, one table at a time, with nothing lost. On HDFS the sink commits up
    // to 50 000 rows (its default is 200 000); while the load runs, FLUSH_MAX_AGE still
    // commits every 300 ms.
    let flush_rows = if lake.starts_with("hdfs://") { "50000" } else { "5000" };
    let mut sinks = Vec::new();
    for i in 0..sink_count {
        sinks.push(Sink::start(
            ns,
            lake,
            &all_chains,
            &[("INSTANCE", &i.to_string()), ("FLUSH_MAX_ROWS", flush_rows)],
        )?);
    }
    for s in &mut chains {
        s.wait_ready(Duration::from_secs(120))?;
    }
    // serve-kill9: serve runs over the lake and the topics from before the load (its tables
    // do not exist yet); gateway-kill9: the gateway the webhooks go through.
    let serve = match scenario {
        Scenario::ServeKill9 => Some(Serve::start(ns, lake, &[])?),
        _ => None,
    };
    let gateway = match scenario {
        Scenario::GatewayKill9 => Some(Gateway::start(ns)?),
        _ => None,
    };
    let reader = LiveReader::start(ns, &CHAINS)?;
    let mut fleet = Supervisor::start(
        Fleet {
            chains,
            sinks,
            serve,
            gateway,
            exits: vec![],
        },
        reader.started,
    );
    let t = |r: &LiveReader| r.started.elapsed().as_secs_f64();
    // Where a run's time goes, phase by phase (the load itself is the small part at 1 M).
    let mut phase_at = started;
    let mut phase = |what: &str| {
        let now = Instant::now();
        eprintln!(
            "chaos: {} run {run_no}: {what} in {:.1} s",
            scenario.name(),
            (now - phase_at).as_secs_f64()
        );
        phase_at = now;
    };
    phase("services started");

    // The load: every chain in every format, and poison records beside it.
    let per_chain = (cfg.events / CHAINS.len() as u64).max(100);
    let epoch = loadgen::start_of_today().max(chrono::Utc::now().timestamp() - 60);
    let specs: Vec<Spec> = CHAINS
        .iter()
        .map(|c| {
            let mut s = Spec::new(c, per_chain).with_format(Format::Mix);
            s.duplicate_share = 0.1;
            s.invalid_share = 0.01;
            s.seed = cfg.seed + run_no as u64 * 7 + rng.random_range(0..1_000);
            s.epoch = Some(epoch);
            s.delivery_timeout = SOURCE_DELIVERY_TIMEOUT;
            s.replace_stuck_after = Some(SOURCE_STUCK_AFTER);
            s
        })
        .collect();
    let load_secs = per_chain as f64 / cfg.rate as f64;
    let mut loaders = Vec::new();
    for s in &specs {
        let (k, raw, s, rate) = (kafka(), topic(ns, topics::raw(&s.chain)), s.clone(), cfg.rate);
        loaders.push(std::thread::spawn(move || {
            loadgen::send_paced(&k, &raw, s, Some(rate), |_| {})
        }));
    }
    // gateway-kill9: SendGrid webhooks (one event a request) through the gateway beside the
    // load, a quarter of a chain's count, paced over the load (at most 1 000 a second).
    let driver = fleet.fleet().gateway.as_ref().map(|g| {
        let n = (per_chain / 4).max(200);
        let rate = (n as f64 / load_secs.max(0.1)).min(1_000.0);
        gateway::Driver::start(g.port.clone(), n, rate)
    });
    let poison_per_chain = (per_chain / 1_000).max(7) as usize;
    // The poison records, sent as the load is (a stuck producer replaced: a producer made
    // while the broker is away can stay stuck for good, and the run waits for these). Each has
    // a key of its own: a replaced producer's records are read back by key and value, and the
    // poison payloads repeat.
    let poison = {
        let ns = ns.to_owned();
        std::thread::spawn(move || -> Result<BTreeMap<&'static str, usize>> {
            let (k, raws) = (kafka(), CHAINS.map(|c| topic(&ns, topics::raw(c))));
            let mut out = Vec::new();
            for raw in &raws {
                out.push(loadgen::RawSender::new(
                    &k,
                    raw,
                    SOURCE_DELIVERY_TIMEOUT,
                    Some(SOURCE_STUCK_AFTER),
                )?);
            }
            let mut sent = BTreeMap::new();
            let steps = 10;
            for step in 0..steps {
                for (c, out) in CHAINS.iter().zip(&mut out) {
                    let all: Vec<_> = special_records(c).into_iter().filter(|s| s.class.is_some()).collect();
                    let n = poison_per_chain * (step + 1) / steps - poison_per_chain * step / steps;
                    let from = sent.get(c).copied().unwrap_or(0);
                    for i in from..from + n {
                        let s = &all[i % all.len()];
                        out.send(poison_key(i).as_bytes(), s.payload.clone(), s.tenant, s.source)?;
                    }
                    sent.insert(*c, from + n);
                }
                std::thread::sleep(Duration::from_secs_f64(load_secs / steps as f64));
            }
            for (c, out) in CHAINS.iter().zip(out) {
                let replaced = out.finish()?;
                if replaced > 0 {
                    eprintln!("chaos: poison to {c}: producer replaced {replaced} time(s)");
                }
            }
            Ok(sent)
        })
    };

    // The faults, at random points of the load.
    let mut points: Vec<f64> = (0..cfg.faults)
        .map(|_| rng.random_range(0.1..0.7) * load_secs)
        .collect();
    points.sort_by(f64::total_cmp);
    let mut faults = Vec::new();
    let mut churn: Option<Service> = None;
    let load_start = Instant::now();
    let load_start_t = t(&reader);
    for (i, at) in points.iter().enumerate() {
        while load_start.elapsed().as_secs_f64() < *at {
            fleet.check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        faults.push(timed(&reader, || {
            inject(scenario, &fleet.fleet, victim, rng, &mut churn, ns, i)
        })?);
    }
    // Rebalance churn goes on for the whole load.
    if scenario == Scenario::RebalanceChurn {
        let mut k = faults.len();
        while loaders.iter().any(|l| !l.is_finished()) {
            std::thread::sleep(Duration::from_millis(rng.random_range(2_000..4_000)));
            faults.push(timed(&reader, || {
                inject(scenario, &fleet.fleet, victim, rng, &mut churn, ns, k)
            })?);
            k += 1;
        }
        if let Some(mut c) = churn.take() {
            let _ = c.stop();
        }
    }
    let mut summaries = Vec::new();
    for l in loaders {
        while !l.is_finished() {
            fleet.check()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        summaries.push(l.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??);
    }
    let poison_sent = poison
        .join()
        .map_err(|_| anyhow::anyhow!("the poison thread panicked"))??;
    // gateway-kill9: every webhook answered 2xx (sent again until it was), then the gateway's
    // answers against the raw topic; its raw records join what the chain must account for.
    let (gateway_verdict, gateway_sent) = match driver {
        Some(d) => {
            while !d.is_finished() {
                fleet.check()?;
                std::thread::sleep(Duration::from_millis(200));
            }
            let log = d.finish()?;
            // Out of the fleet first, so that supervision does not start it again.
            let gw = fleet.fleet().gateway.take();
            if let Some(mut g) = gw {
                g.stop()?;
            }
            let (v, sent) = gateway::check(ns, &log)?;
            eprintln!(
                "chaos: gateway: {} events, {} requests, {} answered 2xx, {} unanswered or errors ({} of them landed), \
                 {} lost, {} twice",
                v.events, v.requests, v.answered_2xx, v.unanswered_or_error, v.landed_unanswered, v.lost, v.twice
            );
            (Some(v), sent)
        }
        None => (None, vec![]),
    };
    phase("load sent");
    let extra_raw = |c: &str| -> u64 {
        if c == gateway::CHAIN {
            gateway_sent.len() as u64
        } else {
            0
        }
    };

    // Quiescence: every raw record accounted for by the audit, every clean record in the lake.
    let drain_start = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    for (spec, s) in specs.iter().zip(&summaries) {
        let c = spec.chain.as_str();
        let want = s.sent + poison_sent.get(c).copied().unwrap_or(0) as u64 + extra_raw(c);
        loop {
            fleet.check()?;
            // A read that fails (the broker just back from a fault can refuse a new client's
            // metadata request for a while) is tried again until the deadline.
            let quiet = audit_sums(&topic(ns, topics::audit(c)))
                .and_then(|sums| Ok(sums.received >= want && crate::existing_table_row_count(lake, c)? >= sums.clean));
            match quiet {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => eprintln!("chaos: {c}: reading the audit or the lake failed, trying again: {e:#}"),
            }
            if Instant::now() > deadline {
                eprintln!("chaos: {c}: no quiescence within 300 s; checking what is there");
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // A doubled commit, if there were one, has a moment to land.
    std::thread::sleep(Duration::from_secs(3));
    let drain = drain_start.elapsed().as_secs_f64();
    let mut fleet = fleet.finish()?;
    for s in &mut fleet.chains {
        s.stop().or_else(|_| s.kill9_and_restart().and_then(|_| s.stop()))?;
    }
    for s in &mut fleet.sinks {
        let _ = s.stop();
    }
    let observed = reader.finish()?;
    phase("drained and stopped");

    // The read side against the model: started fresh over the lake and the topics, or (serve-
    // kill9) the instance killed and restarted during the load, once it has read everything
    // (it follows the topics: the comparison is repeated until it agrees, for up to 120 s).
    let serve_verdict = {
        let events = suppression::clean_events(ns)?;
        phase("clean events read for the model");
        match fleet.serve.take() {
            Some(mut serve) => {
                let deadline = Instant::now() + Duration::from_secs(120);
                let v = loop {
                    let v = suppression::check_serve(&serve, &events)?;
                    if v.violations.is_empty() || Instant::now() > deadline {
                        break v;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                };
                let _ = serve.stop();
                v
            }
            None => {
                let mut serve = Serve::start(ns, lake, &[])?;
                let v = suppression::check_serve(&serve, &events)?;
                let _ = serve.stop();
                v
            }
        }
    };

    phase("serve compared with the model");

    // The checker, over every chain: the five histories read side by side (each is mostly
    // waiting on the broker and the lake), then checked.
    let mut records = observed.records;
    let inputs: Vec<(&Spec, Vec<Sent>, Vec<At>)> = specs
        .iter()
        .map(|spec| {
            let c = spec.chain.as_str();
            let mut sent = expected(spec);
            sent.extend((0..poison_sent.get(c).copied().unwrap_or(0)).map(|i| Sent {
                key: poison_key(i),
                expect: Expect::Dlq,
                id: None,
            }));
            if c == gateway::CHAIN {
                sent.extend(gateway_sent.iter().cloned());
            }
            (spec, sent, records.remove(c).unwrap_or_default())
        })
        .collect();
    let histories: Vec<Result<(checker::ChainHistory, Verdict)>> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .into_iter()
            .map(|(spec, sent, seen)| {
                s.spawn(move || {
                    let c = spec.chain.as_str();
                    let h = collect::chain_history(ns, c, lake, sent, seen)?;
                    let v = checker::check(&h);
                    Ok((h, v))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a history thread panicked")))
            })
            .collect()
    });
    let mut verdicts = Vec::new();
    for r in histories {
        let (h, v) = r?;
        if !v.violations.is_empty() {
            let dir = history_dir(cfg, scenario, run_no, ns);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("history-{}.json", h.chain)), serde_json::to_vec(&h)?)?;
        }
        verdicts.push(v);
    }
    phase("histories collected and checked");
    // From the start of the load to the last record seen (a fault before the reader's first
    // record counts from the start of the load).
    let arrivals: Vec<f64> = std::iter::once(load_start_t)
        .chain(observed.arrivals.iter().copied().filter(|a| *a >= load_start_t))
        .collect();
    let max_stall = arrivals.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    // A fault after which no record came (everything was through already) has no recovery.
    // serve-kill9 (serve is off the write path): from the kill to answering again.
    let recovery = if scenario == Scenario::ServeKill9 {
        faults.iter().map(|f| f.until - f.at).fold(0.0, f64::max)
    } else {
        faults
            .iter()
            .filter_map(|f| observed.arrivals.iter().find(|a| **a >= f.until).map(|a| a - f.until))
            .fold(0.0, f64::max)
    };
    let sum = |f: fn(&Verdict) -> u64| verdicts.iter().map(f).sum::<u64>();
    let invalid: u64 = summaries.iter().map(|s| s.invalid).sum::<u64>() + poison_sent.values().sum::<usize>() as u64;
    let recalled: f64 = verdicts
        .iter()
        .zip(&summaries)
        .map(|(v, s)| {
            v.dlq_recall * (s.invalid + poison_sent.get(v.chain.as_str()).copied().unwrap_or(0) as u64) as f64
        })
        .sum();
    if !serve_verdict.violations.is_empty() {
        let dir = history_dir(cfg, scenario, run_no, ns);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("serve.json"), serde_json::to_vec_pretty(&serve_verdict)?)?;
    }
    if let Some(g) = gateway_verdict.as_ref().filter(|g| !g.violations.is_empty()) {
        let dir = history_dir(cfg, scenario, run_no, ns);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("gateway.json"), serde_json::to_vec_pretty(g)?)?;
    }
    let passed = verdicts.iter().all(|v| v.violations.is_empty())
        && serve_verdict.violations.is_empty()
        && gateway_verdict.as_ref().is_none_or(|g| g.violations.is_empty());
    Ok(Outcome {
        scenario: scenario.name().to_owned(),
        run: run_no,
        namespace: ns.to_owned(),
        events: verdicts.iter().map(|v| v.sent).sum(),
        faults,
        service_exits: fleet.exits.clone(),
        lost: sum(|v| v.lost),
        duplicated: sum(|v| v.duplicated),
        aborted_reads: sum(|v| v.aborted_reads),
        aborted_in_topic: sum(|v| v.aborted_in_topic),
        lake_lost: sum(|v| v.lake_lost),
        lake_duplicated: sum(|v| v.lake_duplicated),
        dlq_recall: if invalid == 0 { 1.0 } else { recalled / invalid as f64 },
        max_stall,
        recovery,
        drain,
        seconds: started.elapsed().as_secs_f64(),
        verdicts,
        fencing: BTreeMap::new(),
        serve: Some(serve_verdict),
        gateway: gateway_verdict,
        passed,
        history: None,
        error: None,
    })
}

/// Runs a fault, noting when it began and ended (seconds of the live reader's clock).
fn timed(reader: &LiveReader, fault: impl FnOnce() -> Result<String>) -> Result<FaultRecord> {
    let at = reader.started.elapsed().as_secs_f64();
    let what = fault()?;
    Ok(FaultRecord {
        what,
        at,
        until: reader.started.elapsed().as_secs_f64(),
    })
}

/// One fault of the scenario's kind; returns what it did.
fn inject(
    scenario: Scenario,
    fleet: &Mutex<Fleet>,
    victim: &str,
    rng: &mut StdRng,
    churn: &mut Option<Service>,
    ns: &str,
    i: usize,
) -> Result<String> {
    let pause = |pid: u32, secs: u64| -> Result<()> {
        infra::signal(pid, "STOP")?;
        std::thread::sleep(Duration::from_secs(secs));
        infra::signal(pid, "CONT")
    };
    Ok(match scenario {
        Scenario::BrokerKill9 => {
            Component::Kafka.kill9()?;
            Component::Kafka.start()?;
            "kafka kill -9 + start".into()
        }
        Scenario::BrokerRestart => {
            Component::Kafka.stop()?;
            Component::Kafka.start()?;
            "kafka stop + start".into()
        }
        Scenario::RegistryRestart => {
            Component::Registry.stop()?;
            std::thread::sleep(Duration::from_secs(5));
            Component::Registry.start()?;
            "registry stop 5 s + start".into()
        }
        Scenario::NamenodeStopped => {
            Component::Hdfs.stop()?;
            std::thread::sleep(Duration::from_secs(15));
            Component::Hdfs.start()?;
            "hdfs stop 15 s + start".into()
        }
        Scenario::ChainKill9 => {
            // One instance a fault: the chains in turn, from the run's random victim, so that
            // five faults cover all five.
            let from = CHAINS.iter().position(|c| *c == victim).unwrap_or(0);
            let chain = CHAINS[(from + i) % CHAINS.len()];
            let mut fleet = lock(fleet);
            let k = fleet
                .chains
                .iter()
                .position(|s| s.name() == chain)
                .context("no instance of the chain")?;
            fleet.chains[k].kill9_and_restart()?;
            format!("{chain} kill -9 + start")
        }
        Scenario::GatewayKill9 => {
            let mut fleet = lock(fleet);
            let g = fleet.gateway.as_mut().context("no gateway")?;
            let t0 = Instant::now();
            g.kill9_and_restart()?;
            format!(
                "gateway kill -9 + start, ready after {:.1} s",
                t0.elapsed().as_secs_f64()
            )
        }
        Scenario::ServeKill9 => {
            let mut fleet = lock(fleet);
            let s = fleet.serve.as_mut().context("no serve")?;
            let t0 = Instant::now();
            s.kill9_and_restart()?;
            // Answering again: a bulk check of the restarted instance answered.
            let (status, body) = s.post(
                "/v1/tenants/acme/suppression/check",
                Some("acme-local-token"),
                &serde_json::json!({"list": null, "emails": ["nobody@example.org"]}),
            )?;
            anyhow::ensure!(status == 200, "serve after its restart: {status} {body}");
            format!(
                "serve kill -9 + start, answering again after {:.1} s",
                t0.elapsed().as_secs_f64()
            )
        }
        Scenario::ChainZombie => {
            // The pid under the lock, the pause without it: a paused process has not exited.
            let (pid, instance) = {
                let fleet = lock(fleet);
                let mine: Vec<usize> = (0..fleet.chains.len())
                    .filter(|k| fleet.chains[*k].name() == victim)
                    .collect();
                let k = mine[rng.random_range(0..mine.len())];
                (fleet.chains[k].child.id(), fleet.chains[k].instance().to_owned())
            };
            pause(pid, 14)?;
            format!("{victim} instance {instance} SIGSTOP 14 s + SIGCONT")
        }
        Scenario::RebalanceChurn => match churn.take() {
            Some(mut c) => match c.stop() {
                Ok(()) => format!("{victim} instance 2 removed"),
                Err(e) => format!("{victim} instance 2 removed, not cleanly: {e:#}"),
            },
            None => {
                let mut c = Service::start(victim, ns, "2", &CHAIN_ENV)?;
                c.wait_ready(Duration::from_secs(60))?;
                *churn = Some(c);
                format!("{victim} instance 2 added ({i})")
            }
        },
        Scenario::SinkKill9 => {
            lock(fleet).sinks[0].kill9_and_restart()?;
            "sink kill -9".into()
        }
        Scenario::TwoSinksOnePaused => {
            let (k, pid) = {
                let fleet = lock(fleet);
                let k = rng.random_range(0..fleet.sinks.len());
                (k, fleet.sinks[k].child.id())
            };
            pause(pid, 14)?;
            format!("sink {k} SIGSTOP 14 s + SIGCONT")
        }
    })
}

/// What the generator sent for a spec, in order (it is deterministic for a spec).
pub fn expected(spec: &Spec) -> Vec<Sent> {
    Generator::new(spec.clone())
        .map(|g| Sent {
            key: g.key,
            expect: match g.kind {
                Kind::Valid => Expect::Clean,
                Kind::Duplicate => Expect::Duplicate,
                Kind::Invalid => Expect::Dlq,
            },
            id: g.event_id.map(|id| format!("{}/{id}", g.tenant)),
        })
        .collect()
}

fn history_dir(cfg: &Config, scenario: Scenario, run: usize, ns: &str) -> PathBuf {
    cfg.history_dir.join(format!("{}-run{run}-{ns}", scenario.name()))
}

fn keep_history(cfg: &Config, scenario: Scenario, run: usize, ns: &str, outcome: &Outcome) -> Result<PathBuf> {
    let dir = history_dir(cfg, scenario, run, ns);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("outcome.json"), serde_json::to_vec_pretty(outcome)?)?;
    for log in logs(ns) {
        if let Some(name) = log.file_name() {
            // serve logs every read of personal data (long lines): keep the end, cut.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let keep: Vec<String> = lines[lines.len().saturating_sub(2_000)..]
                .iter()
                .map(|l| l.chars().take(1_000).collect())
                .collect();
            let _ = std::fs::write(dir.join(name), keep.join("\n"));
        }
    }
    Ok(dir)
}

fn logs(ns: &str) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{ns}-")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The lines of the run's service logs that mention fencing (at most 3 a log).
fn fencing_in_logs(ns: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for log in logs(ns) {
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("fenc"))
            .take(3)
            .map(|l| l.chars().take(400).collect())
            .collect();
        if !lines.is_empty() {
            let name = log
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.insert(name, lines);
        }
    }
    out
}

/// Deletes what a passing run created: its topics, its lake, its logs.
fn cleanup(ns: &str, lake: &str) {
    if let Err(e) = delete_topics(ns) {
        eprintln!("chaos: deleting the topics of {ns}: {e:#}");
    }
    if lake.starts_with("hdfs://") {
        let _ = crate::lake_runtime().block_on(async {
            let client = hdfs_native::ClientBuilder::new().with_url(hdfs()).build()?;
            let path = lake
                .split_once("://")
                .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
                .unwrap_or("/tributary-chaos/none");
            client.delete(path, true).await
        });
    } else {
        let _ = std::fs::remove_dir_all(Path::new(lake));
    }
    for log in logs(ns) {
        let _ = std::fs::remove_file(log);
    }
}

fn delete_topics(ns: &str) -> Result<()> {
    let names: Vec<String> = CHAINS
        .iter()
        .flat_map(|c| topics::chain_topics(c))
        .map(|(t, _)| topic(ns, t))
        .collect();
    delete_topic_names(&names)
}

/// Deletes the topics of every test namespace (what `namespace_of` makes, see
/// `is_test_namespace`) left in the broker by earlier test runs and kept failed chaos runs: a
/// broker holding thousands of leftover partitions took minutes for a clean restart
/// (`broker-restart` run 1 once timed its load out that way). The kept histories stay in
/// `CHAOS_HISTORY`. Returns how many topics went.
pub fn delete_leftover_namespaces() -> Result<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|t| t.split_once('.').is_some_and(|(ns, _)| is_test_namespace(ns)))
        .collect();
    delete_topic_names(&names)?;
    Ok(names.len())
}

/// Deletes the named topics, 200 to a request; any topic the broker refuses to delete is an error.
fn delete_topic_names(names: &[String]) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for chunk in names.chunks(200) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for r in rt.block_on(admin.delete_topics(&refs, &AdminOptions::new()))? {
            if let Err((t, e)) = r {
                bail!("deleting topic {t}: {e}");
            }
        }
    }
    Ok(())
}

/// Runs scenarios one after the other (`runs` each), writing the report after each run.
/// With `earlier`, the report also holds those runs (of other scenarios) before the new ones.
pub fn run_matrix(scenarios: &[Scenario], runs: usize, cfg: &Config, report: Option<&Path>) -> Result<Vec<Outcome>> {
    run_matrix_after(vec![], scenarios, runs, cfg, report)
}

/// [`run_matrix`], the report keeping `earlier` runs of scenarios not run now.
pub fn run_matrix_after(
    earlier: Vec<Outcome>,
    scenarios: &[Scenario],
    runs: usize,
    cfg: &Config,
    report: Option<&Path>,
) -> Result<Vec<Outcome>> {
    // An earlier run of a scenario stays in the report until this batch has run that scenario
    // once: a batch stopped halfway keeps the earlier figures of the scenarios it never reached.
    let mut out: Vec<Outcome> = Vec::new();
    for s in scenarios {
        for r in 1..=runs {
            let o = run(*s, cfg, r)?;
            eprintln!(
                "chaos: {} run {r}: {} in {:.0} s: {} events, faults {:?}, lost {}, duplicated {}, aborted reads {} \
                 (aborted records in topics {}), lake lost {}, lake doubled {}, DLQ recall {:.4}, serve answers {} \
                 wrong {}, max stall {:.1} s, recovery {:.1} s, drain {:.1} s, process exits {:?}, fencing in logs {:?}{}",
                s.name(),
                if o.passed { "PASS" } else { "FAIL" },
                o.seconds,
                o.events,
                o.faults
                    .iter()
                    .map(|f| format!("{} at {:.1}-{:.1}s", f.what, f.at, f.until))
                    .collect::<Vec<_>>(),
                o.lost,
                o.duplicated,
                o.aborted_reads,
                o.aborted_in_topic,
                o.lake_lost,
                o.lake_duplicated,
                o.dlq_recall,
                o.serve.as_ref().map_or(0, |v| v.answers),
                o.serve.as_ref().map_or(0, |v| v.wrong),
                o.max_stall,
                o.recovery,
                o.drain,
                o.service_exits,
                o.fencing,
                o.history
                    .as_deref()
                    .map(|h| format!("; history: {h}"))
                    .unwrap_or_default()
            );
            for x in o
                .verdicts
                .iter()
                .flat_map(|v| &v.violations)
                .chain(o.serve.iter().flat_map(|v| &v.violations))
            {
                eprintln!("  {x}");
            }
            if let Some(e) = &o.error {
                eprintln!("  error: {e}");
            }
            out.push(o);
            if let Some(p) = report {
                let all: Vec<Outcome> = earlier
                    .iter()
                    .filter(|k| !out.iter().any(|o| o.scenario == k.scenario))
                    .chain(&out)
                    .cloned()
                    .collect();
                super::report::write(p, cfg, &all)?;
            }
        }
    }
    Ok(out)
}

/// Used by the report.
pub fn describe(s: &str) -> &'static str {
    Scenario::parse(s).map(Scenario::describe).unwrap_or("")
}
