//! `make chaos`: every scenario of the fault matrix, `CHAOS_RUNS` runs each (default 3), at
//! `CHAOS_EVENTS` events a run (default 1 000 000 over the five chains); `CHAOS_SCENARIOS`
//! (comma-separated names) picks some. Writes `bench/results/chaos.md` and `chaos.json` after
//! every run (`CHAOS_KEEP=1`: keeping the earlier runs of each scenario until this batch has
//! run it; with `CHAOS_RUNS=0` it only writes the report again from `chaos.json`); exits
//! non-zero when any run failed, naming where its history was kept.
//!
//! Runs against the infrastructure of `INFRA_DIR` (default `.infra`) and its port variables,
//! with `KAFKA_BOOTSTRAP`, `SCHEMA_REGISTRY_URL` and `HDFS_URL` from its `env` file.

use anyhow::{bail, Result};
use tributary_tests::chaos::{infra, scenario};

fn main() -> Result<()> {
    // The harness's own clients (the load generator's producers, the live reader) log
    // librdkafka's warnings and errors, so a stuck producer says why.
    tributary_engine::init_tracing();
    let cfg = scenario::Config::from_env(1_000_000, 10_000, 3);
    let runs: usize = std::env::var("CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let scenarios: Vec<scenario::Scenario> = match std::env::var("CHAOS_SCENARIOS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                scenario::Scenario::parse(s.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown scenario '{s}'; known: {}",
                        scenario::Scenario::ALL.map(|x| x.name()).join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?,
        _ => scenario::Scenario::ALL.to_vec(),
    };
    let report = std::env::var_os("CHAOS_REPORT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| infra::repo_root().join("bench/results"));
    eprintln!(
        "chaos: {} scenario(s) × {runs} run(s), {:?}; report in {}",
        scenarios.len(),
        cfg,
        report.display()
    );
    let gone = scenario::delete_leftover_namespaces()?;
    if gone > 0 {
        eprintln!("chaos: deleted {gone} topic(s) of earlier test namespaces");
    }
    // CHAOS_KEEP=1: the report keeps the earlier runs of each scenario until this batch has run it.
    let earlier = if runs == 0 || std::env::var("CHAOS_KEEP").is_ok_and(|v| v == "1") {
        tributary_tests::chaos::report::read_runs(&report)?
    } else {
        vec![]
    };
    if runs == 0 {
        tributary_tests::chaos::report::write(&report, &cfg, &earlier)?;
        println!("{}", std::fs::read_to_string(report.join("chaos.md"))?);
        return Ok(());
    }
    let outcomes = scenario::run_matrix_after(earlier, &scenarios, runs, &cfg, Some(&report))?;
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    println!("{}", std::fs::read_to_string(report.join("chaos.md"))?);
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed: {}",
            failed.len(),
            outcomes.len(),
            failed
                .iter()
                .map(|o| format!(
                    "{} run {} ({})",
                    o.scenario,
                    o.run,
                    o.history.as_deref().unwrap_or("no history")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
