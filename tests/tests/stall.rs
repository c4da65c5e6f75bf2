//! A chain whose Kafka client cannot finish its transaction stops loudly (its watchdog,
//! `STALL_LIMIT`) instead of standing still, and its restart loses and doubles nothing; the
//! gateway, whose Kafka stops answering for its `STALL_LIMIT`, stops loudly too.
//!
//! The test freezes the broker (SIGSTOP), so it is a test binary of its own: `cargo test` runs
//! binaries one after another, and no other test talks to the broker meanwhile.

use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::topics;
use tributary_tests::chaos::infra::Component;
use tributary_tests::*;

#[test]
fn a_chain_stalled_past_its_limit_exits_and_its_restart_loses_nothing() -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 2)?;
    let raw = topic(&ns, topics::raw(chain));
    // A transaction stays open for up to a second, so one is open when the broker freezes.
    let env = [("COMMIT_INTERVAL", "1s"), ("STALL_LIMIT", "5s")];
    let mut svc = Service::start(chain, &ns, "0", &env)?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 40_000);
    spec.seed = 5;
    spec.duplicate_share = 0.1;
    spec.invalid_share = 0.01;
    // The load's producer meets the frozen broker too: past 3 s without an acknowledgement it
    // is replaced, and what it had not written goes again (read back once the broker answers).
    spec.replace_stuck_after = Some(Duration::from_secs(3));
    let (kafka_, raw_, spec_) = (kafka(), raw.clone(), spec.clone());
    let producer = std::thread::spawn(move || loadgen::send_paced(&kafka_, &raw_, spec_, Some(2_000), |_| {}));
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        svc.child.try_wait()?.is_none(),
        "the chain exited before the broker froze"
    );

    let mut gateway = Ingest::start(&ns, &[("STALL_LIMIT", "5s")])?;

    let frozen = Instant::now();
    let paused = Component::Kafka.pause()?;
    let (mut status, mut gateway_status) = (None, None);
    while status.is_none() || gateway_status.is_none() {
        status = status.or(svc.child.try_wait()?.map(|st| (st, frozen.elapsed())));
        gateway_status = gateway_status.or(gateway.child.try_wait()?.map(|st| (st, frozen.elapsed())));
        ensure!(
            frozen.elapsed() < Duration::from_secs(40),
            "{:?} after the broker froze, with a stall limit of 5 s, the chain has exited: {status:?}, the gateway: {gateway_status:?}",
            frozen.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(paused);
    let ((status, stopped_after), (gateway_status, gateway_after)) =
        (status.expect("exited"), gateway_status.expect("exited"));
    // Each stopped with the watchdog's status, saying why, and not before its limit (the
    // chain's transaction was open for up to its 1 s interval before the freeze; the gateway
    // checks every second, each check waiting up to 2 s).
    assert_stalled(
        status,
        stopped_after,
        &format!("{ns}-{chain}-0.log"),
        "Stalled: a transaction has been open for",
        3,
    );
    assert_stalled(
        gateway_status,
        gateway_after,
        &format!("{ns}-ingest.log"),
        "Stuck: Kafka has not answered for",
        5,
    );

    // The restart (and any later one: the broker may fence itself for a moment after the
    // freeze, which can stall a fresh client too) accounts for every record.
    svc.respawn()?;
    let summary = producer.join().expect("producer thread")?;
    assert!(
        summary.replaced_producers >= 1,
        "the load's producer was replaced: {summary:?}"
    );
    eprintln!(
        "load: {} sent, {} producer(s) replaced, {} records sent again",
        summary.sent, summary.replaced_producers, summary.resent
    );
    let audit = topic(&ns, topics::audit(chain));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut restarts = 1;
    let sums = loop {
        if let Some(st) = svc.child.try_wait()? {
            eprintln!("the chain exited again ({st}); restarting it");
            svc.respawn()?;
            restarts += 1;
        }
        let s = audit_sums(&audit)?;
        if s.received >= summary.sent {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {} records accounted for",
            s.received,
            summary.sent
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        sums.received, summary.sent,
        "audit covers every input record exactly once"
    );
    assert_exact_clean(&ns, chain, &summary.expected).with_context(|| format!("after {restarts} restarts"))?;
    svc.stop().context("stopping the chain")
}

/// A process stopped by its watchdog: exit status 3, its log (`log`, in the temp folder)
/// saying `why`, at least `limit_s` seconds after the broker froze.
fn assert_stalled(status: std::process::ExitStatus, after: Duration, log: &str, why: &str, limit_s: u64) {
    let text = std::fs::read_to_string(std::env::temp_dir().join(log)).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(tributary_engine::runner::STALLED_EXIT),
        "{log}: exit status {status}; log tail: {}",
        &text[text.len().saturating_sub(2_000)..]
    );
    assert!(text.contains(why), "{log} says why ({why})");
    assert!(
        after >= Duration::from_secs(limit_s),
        "{log}: stopped {after:?} after the freeze, before its limit"
    );
}
