//! The gateway (`ingest`) under webhook load, for the `gateway-kill9` scenario: the gateway
//! process (restartable on a new port), a driver posting SendGrid webhooks of one event each
//! the way a provider does (a request not answered 2xx is sent again, same event, new request
//! id, until it is), and the check of what the gateway acknowledged against the raw topic.
//!
//! The gateway's promise (services/ingest): a 2xx only after Kafka acknowledged every record of
//! the request. So every attempt answered 2xx is in the raw topic exactly once; an attempt cut
//! off by the kill is there at most once; and the chain's dedup by event id makes each event
//! clean exactly once (checked by [`super::checker`] with what this module adds to `sent`).

use super::checker::{Expect, Sent};
use crate::{bin, free_port, kafka, principal_env, read_all_with, topic, Record};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_engine::topics;

/// The chain SendGrid's delivery events go to.
pub const CHAIN: &str = "mailings";
const TENANT: &str = "acme";

/// The gateway process; its port is shared with the driver, which follows restarts.
pub struct Gateway {
    pub child: Child,
    pub port: Arc<AtomicU16>,
    ns: String,
}

impl Gateway {
    pub fn start(ns: &str) -> Result<Gateway> {
        let (child, port) = spawn(ns)?;
        let mut g = Gateway {
            child,
            port: Arc::new(AtomicU16::new(port)),
            ns: ns.to_owned(),
        };
        g.wait_ready(Duration::from_secs(60))?;
        Ok(g)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!("ingest exited early with {st}");
            }
            let url = format!("http://127.0.0.1:{}/health/ready", self.port.load(Ordering::SeqCst));
            if http.get(url).send().is_ok_and(|r| r.status().as_u16() == 200) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "ingest not ready within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, then start again (on a new port) and wait until it is ready.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        let (child, port) = spawn(&self.ns)?;
        self.child = child;
        self.port.store(port, Ordering::SeqCst);
        self.wait_ready(Duration::from_secs(60))
    }

    /// Starts it again when it exited on its own; whether it had.
    pub fn supervise(&mut self) -> Result<Option<String>> {
        let Some(st) = self.child.try_wait()? else {
            return Ok(None);
        };
        let (child, port) = spawn(&self.ns)?;
        self.child = child;
        self.port.store(port, Ordering::SeqCst);
        self.wait_ready(Duration::from_secs(60))?;
        Ok(Some(format!("ingest exited with {st}")))
    }

    pub fn stop(&mut self) -> Result<()> {
        crate::stop_child(&mut self.child, "ingest")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway binary of this build on a free port, appending to the run's `ingest` log.
fn spawn(ns: &str) -> Result<(Child, u16)> {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{ns}-ingest.log")))?;
    let child = Command::new(bin("ingest"))
        .env("KAFKA_BOOTSTRAP", kafka())
        .envs(principal_env("ingest")?)
        .env("TOPIC_NAMESPACE", ns)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting ingest")?;
    Ok((child, port))
}

/// One request the driver made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub request_id: String,
    /// The event's index (its id is `gw<event>`).
    pub event: u64,
    /// The answer's status; none: no answer (connection refused or cut, timeout).
    pub status: Option<u16>,
}

/// What the driver did.
#[derive(Debug, Default)]
pub struct DriverLog {
    pub attempts: Vec<Attempt>,
    /// Events it gave up on (never answered 2xx).
    pub abandoned: Vec<u64>,
    pub events: u64,
}

/// Posts `events` webhooks, paced at `rate` a second, with 16 concurrent senders.
pub struct Driver {
    handle: std::thread::JoinHandle<Result<DriverLog>>,
    accepted: Arc<AtomicU64>,
}

fn body(i: u64, now: i64) -> String {
    format!(
        r#"[{{"email":"chaos-gw-{i}@example.net","event":"delivered","timestamp":{now},"smtp-id":"<gw{i}@chaos>","sg_event_id":"gw{i}","sg_message_id":"gw-msg-{i}.filterdrecv-1-1-0","response":"250 OK"}}]"#
    )
}

impl Driver {
    pub fn start(port: Arc<AtomicU16>, events: u64, rate: f64) -> Driver {
        let accepted = Arc::new(AtomicU64::new(0));
        let acc = accepted.clone();
        let handle = std::thread::spawn(move || -> Result<DriverLog> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let log = Arc::new(Mutex::new(DriverLog {
                events,
                ..Default::default()
            }));
            let next = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let now = chrono::Utc::now().timestamp();
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (log, next, port, client, acc) =
                    (log.clone(), next.clone(), port.clone(), client.clone(), acc.clone());
                tasks.push(rt.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= events {
                            break;
                        }
                        let slot = start + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(slot.into()).await;
                        let gave_up = Instant::now() + Duration::from_secs(180);
                        let mut a = 0;
                        loop {
                            a += 1;
                            let request_id = format!("gw{i}-a{a}");
                            let url = format!(
                                "http://127.0.0.1:{}/v1/tenants/{TENANT}/webhooks/sendgrid",
                                port.load(Ordering::SeqCst)
                            );
                            let r = client
                                .post(url)
                                .bearer_auth(format!("{TENANT}-local-token"))
                                .header("x-request-id", &request_id)
                                .header("content-type", "application/json")
                                .body(body(i, now))
                                .send()
                                .await;
                            let status = r.ok().map(|r| r.status().as_u16());
                            let ok = status.is_some_and(|s| (200..300).contains(&s));
                            log.lock().expect("driver log").attempts.push(Attempt {
                                request_id,
                                event: i,
                                status,
                            });
                            if ok {
                                acc.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            if Instant::now() > gave_up {
                                log.lock().expect("driver log").abandoned.push(i);
                                break;
                            }
                            // As a provider does: again a moment later.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }));
            }
            for t in tasks {
                rt.block_on(t)?;
            }
            let out = std::mem::take(&mut *log.lock().map_err(|_| anyhow::anyhow!("driver log"))?);
            Ok(out)
        });
        Driver { handle, accepted }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Result<DriverLog> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the webhook driver panicked"))?
    }
}

/// What the gateway check found.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GatewayVerdict {
    pub events: u64,
    pub requests: u64,
    pub answered_2xx: u64,
    /// Requests that got no answer or an error (then sent again).
    pub unanswered_or_error: u64,
    /// Of those, the ones whose record landed in the raw topic all the same.
    pub landed_unanswered: u64,
    /// Requests answered 2xx whose record is not in the raw topic.
    pub lost: u64,
    /// Requests whose record is in the raw topic more than once.
    pub twice: u64,
    pub violations: Vec<String>,
}

/// Checks the driver's log against the raw topic; returns the verdict and what was sent for
/// the chain's checker (one [`Sent`] a raw record of the driver's, in raw order: the first
/// record of an event must come out clean, any later one is a duplicate).
pub fn check(ns: &str, log: &DriverLog) -> Result<(GatewayVerdict, Vec<Sent>)> {
    let raw = read_all_with(&topic(ns, topics::raw(CHAIN)), "read_committed")?;
    check_records(&raw, log)
}

/// [`check`] over the raw topic's records (pure).
pub fn check_records(raw: &[Record], log: &DriverLog) -> Result<(GatewayVerdict, Vec<Sent>)> {
    let mut mine: Vec<_> = raw
        .iter()
        .filter(|r| r.headers.get("request-id").is_some_and(|id| id.starts_with("gw")))
        .collect();
    mine.sort_by_key(|r| (r.partition, r.offset));
    let mut count: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &mine {
        *count.entry(r.headers["request-id"].as_str()).or_default() += 1;
    }
    let mut v = GatewayVerdict {
        events: log.events,
        requests: log.attempts.len() as u64,
        ..Default::default()
    };
    let (mut lost, mut twice) = (Vec::new(), Vec::new());
    for a in &log.attempts {
        let n = count.get(a.request_id.as_str()).copied().unwrap_or(0);
        let ok = a.status.is_some_and(|s| (200..300).contains(&s));
        if ok {
            v.answered_2xx += 1;
            if n == 0 {
                lost.push(a.request_id.clone());
            }
        } else {
            v.unanswered_or_error += 1;
            v.landed_unanswered += u64::from(n > 0);
        }
        if n > 1 {
            twice.push(format!("{}×{n}", a.request_id));
        }
    }
    v.lost = lost.len() as u64;
    v.twice = twice.len() as u64;
    let attempted: std::collections::BTreeSet<&str> = log.attempts.iter().map(|a| a.request_id.as_str()).collect();
    let unknown: Vec<&&str> = count.keys().filter(|k| !attempted.contains(**k)).collect();
    if !lost.is_empty() {
        v.violations.push(format!(
            "gateway: {} requests answered 2xx are not in the raw topic: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if !twice.is_empty() {
        v.violations.push(format!(
            "gateway: {} requests are in the raw topic more than once: {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        ));
    }
    if !unknown.is_empty() {
        v.violations.push(format!(
            "gateway: {} raw records of requests never made: {:?}",
            unknown.len(),
            &unknown[..unknown.len().min(5)]
        ));
    }
    if !log.abandoned.is_empty() {
        v.violations.push(format!(
            "gateway: {} events never answered 2xx within 180 s: {:?}",
            log.abandoned.len(),
            &log.abandoned[..log.abandoned.len().min(5)]
        ));
    }
    let accepted_events: std::collections::BTreeSet<u64> = log
        .attempts
        .iter()
        .filter(|a| a.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|a| a.event)
        .collect();
    if (accepted_events.len() as u64) + (log.abandoned.len() as u64) != log.events {
        v.violations.push(format!(
            "gateway: {} events accepted and {} abandoned of {} sent",
            accepted_events.len(),
            log.abandoned.len(),
            log.events
        ));
    }
    // What the chain must make of the driver's raw records.
    let mut seen = std::collections::BTreeSet::new();
    let mut sent = Vec::new();
    for r in &mine {
        let rid = &r.headers["request-id"];
        let event = rid
            .trim_start_matches("gw")
            .split('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("a raw record of request id {rid}"))?;
        sent.push(Sent {
            key: String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
            expect: if seen.insert(event) {
                Expect::Clean
            } else {
                Expect::Duplicate
            },
            id: Some(format!("{TENANT}/gw{event}")),
        });
    }
    // An event accepted (2xx) must have landed: it is expected clean even when its record is
    // missing (the checker then reports it lost).
    for e in accepted_events {
        if !seen.contains(&e) {
            sent.push(Sent {
                key: format!("{TENANT}:chaos-gw-{e}@example.net"),
                expect: Expect::Clean,
                id: Some(format!("{TENANT}/gw{e}")),
            });
        }
    }
    Ok((v, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(partition: i32, offset: i64, request_id: &str, event: u64) -> Record {
        Record {
            partition,
            offset,
            key: Some(format!("{TENANT}:chaos-gw-{event}@example.net").into_bytes()),
            value: Some(body(event, 0).into_bytes()),
            headers: [("request-id".to_owned(), request_id.to_owned())].into(),
        }
    }

    fn attempt(event: u64, a: u32, status: Option<u16>) -> Attempt {
        Attempt {
            request_id: format!("gw{event}-a{a}"),
            event,
            status,
        }
    }

    /// Event 0 accepted at once; event 1 cut off by the kill (its record landed all the same)
    /// and accepted when sent again: consistent, and the second record of event 1 must be a
    /// duplicate for the chain.
    #[test]
    fn a_resent_request_that_had_landed_is_a_duplicate() {
        let log = DriverLog {
            attempts: vec![attempt(0, 1, Some(200)), attempt(1, 1, None), attempt(1, 2, Some(200))],
            abandoned: vec![],
            events: 2,
        };
        let records = [raw(0, 0, "gw0-a1", 0), raw(1, 0, "gw1-a1", 1), raw(1, 1, "gw1-a2", 1)];
        let (v, sent) = check_records(&records, &log).unwrap();
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.answered_2xx, v.unanswered_or_error, v.landed_unanswered), (2, 1, 1));
        let kinds: Vec<Expect> = sent.iter().map(|s| s.expect).collect();
        assert_eq!(kinds, [Expect::Clean, Expect::Clean, Expect::Duplicate]);
        assert_eq!(sent[2].id.as_deref(), Some("acme/gw1"));
    }

    #[test]
    fn an_acknowledged_request_missing_or_doubled_is_caught() {
        let log = DriverLog {
            attempts: vec![attempt(0, 1, Some(200)), attempt(1, 1, Some(202))],
            abandoned: vec![],
            events: 2,
        };
        // gw1-a1 answered 2xx but never landed; gw0-a1 landed twice; gw9-a1 was never sent.
        let records = [raw(0, 0, "gw0-a1", 0), raw(0, 1, "gw0-a1", 0), raw(2, 0, "gw9-a1", 9)];
        let (v, sent) = check_records(&records, &log).unwrap();
        assert_eq!((v.lost, v.twice), (1, 1));
        assert_eq!(v.violations.len(), 3, "{:?}", v.violations);
        // The lost event is still expected clean, so the chain's checker reports it too.
        assert!(sent
            .iter()
            .any(|s| s.id.as_deref() == Some("acme/gw1") && s.expect == Expect::Clean));
    }
}
