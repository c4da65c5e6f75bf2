//! A chain whose Kafka client cannot finish its transaction stops loudly (its watchdog,
//! `STALL_LIMIT`) instead of standing still, and its restart loses and doubles nothing.
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

    let frozen = Instant::now();
    let paused = Component::Kafka.pause()?;
    let status = loop {
        if let Some(st) = svc.child.try_wait()? {
            break st;
        }
        ensure!(
            frozen.elapsed() < Duration::from_secs(40),
            "the chain still runs {:?} after the broker froze, with a stall limit of 5 s",
            frozen.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stopped_after = frozen.elapsed();
    drop(paused);
    let log = std::fs::read_to_string(std::env::temp_dir().join(format!("{ns}-{chain}-0.log")))?;
    assert_eq!(
        status.code(),
        Some(tributary_engine::runner::STALLED_EXIT),
        "exit status {status}; log tail: {}",
        &log[log.len().saturating_sub(2_000)..]
    );
    assert!(
        log.contains("Stalled: a transaction has been open for"),
        "the log says why"
    );
    // The transaction was open for up to its 1 s interval before the freeze.
    assert!(
        stopped_after >= Duration::from_secs(3),
        "stopped {stopped_after:?} after the freeze, well before its limit"
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
