//! The short chaos matrix of `make test` (issue 16): broker `kill -9`, a zombie chain
//! instance (SIGSTOP past its session, then SIGCONT: its late commit must be fenced) and sink
//! `kill -9`, one after the other at a small scale, each checked end to end by the one checker
//! (`tributary_tests::chaos`). `make chaos` runs the whole matrix at full size.
//!
//! It kills and restarts the broker of the infrastructure it runs against (found through
//! `INFRA_DIR` and `KAFKA_PORT`), and brings it back even when a run fails.

use anyhow::Result;
use tributary_tests::chaos::scenario::{run_matrix, Config, Scenario};

#[test]
fn short_chaos_matrix() -> Result<()> {
    let cfg = Config::from_env(15_000, 500, 1);
    eprintln!("short chaos matrix: {cfg:?}");
    let outcomes = run_matrix(
        &[Scenario::BrokerKill9, Scenario::ChainZombie, Scenario::SinkKill9],
        1,
        &cfg,
        None,
    )?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| {
            format!(
                "{}: {}; history: {}",
                o.scenario,
                o.error.clone().unwrap_or_else(|| o
                    .verdicts
                    .iter()
                    .flat_map(|v| v.violations.clone())
                    .chain(o.serve.iter().flat_map(|v| v.violations.clone()))
                    .collect::<Vec<_>>()
                    .join("; ")),
                o.history.as_deref().unwrap_or("none")
            )
        })
        .collect();
    assert!(failed.is_empty(), "chaos runs failed:\n{}", failed.join("\n"));
    for o in &outcomes {
        assert!(!o.faults.is_empty(), "{}: no fault was injected", o.scenario);
        assert!(o.events > 10_000, "{}: only {} events", o.scenario, o.events);
        let serve = o.serve.as_ref().expect("serve compared");
        assert!(
            serve.answers > 1_000 && serve.suppressed > 100,
            "{}: the serve comparison is degenerate: {serve:?}",
            o.scenario
        );
    }
    Ok(())
}
