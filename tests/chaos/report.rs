//! The report of a matrix: `chaos.md` (a table per scenario over its runs) and `chaos.json`
//! (every run as measured).

use super::scenario::{describe, Config, Outcome};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The runs of an earlier report (`<dir>/chaos.json`), none when there is none.
pub fn read_runs(dir: &Path) -> Result<Vec<Outcome>> {
    let Ok(text) = std::fs::read_to_string(dir.join("chaos.json")) else {
        return Ok(vec![]);
    };
    let mut v: serde_json::Value = serde_json::from_str(&text)?;
    // A recovery of no record after the fault was written as infinity (JSON null) by an
    // earlier version: read as "none" (-1).
    if let Some(runs) = v["runs"].as_array_mut() {
        for r in runs {
            for k in ["recovery", "max_stall"] {
                if r[k].is_null() {
                    r[k] = serde_json::json!(-1.0);
                }
            }
        }
    }
    Ok(serde_json::from_value(v["runs"].clone())?)
}

/// Writes `<dir>/chaos.md` and `<dir>/chaos.json`.
pub fn write(dir: &Path, cfg: &Config, outcomes: &[Outcome]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({
        "config": cfg,
        "written_at": chrono::Utc::now().to_rfc3339(),
        "runs": outcomes,
    });
    std::fs::write(dir.join("chaos.json"), serde_json::to_vec_pretty(&json)?)?;
    std::fs::write(dir.join("chaos.md"), markdown(cfg, outcomes))?;
    Ok(())
}

pub fn markdown(cfg: &Config, outcomes: &[Outcome]) -> String {
    let mut by: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    let mut order = Vec::new();
    for o in outcomes {
        if !by.contains_key(o.scenario.as_str()) {
            order.push(o.scenario.as_str());
        }
        by.entry(o.scenario.as_str()).or_default().push(o);
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# `make chaos`\n\nWritten {} by `tributary-tests`' `chaos` binary. Per run: {} events over the five \
         chains (every source format, 10 % duplicates, 1 % invalid, 0.1 % poison records incl. oversize), \
         {} records/s per chain, {} partitions, {} fault(s) at random points of the load; then quiescence \
         and one checker over the whole history (raw, audit, DLQ, clean topics, a read_committed reader \
         that ran throughout, the lake's rows and txn versions).\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        cfg.events,
        cfg.rate,
        cfg.partitions,
        cfg.faults
    );
    let _ = writeln!(
        md,
        "| scenario | runs | passed | events | faults | lost | duplicated | aborted reads | aborted records in topics | lake lost / doubled | DLQ recall | serve answers wrong / compared | max stall s | recovery s | drain s | process exits |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &order {
        let rs = &by[s];
        let sum = |f: fn(&Outcome) -> u64| rs.iter().map(|o| f(o)).sum::<u64>();
        let max = |f: fn(&Outcome) -> f64| rs.iter().map(|o| f(o)).fold(0.0, f64::max);
        let min_recall = rs.iter().map(|o| o.dlq_recall).fold(1.0, f64::min);
        let _ =
            writeln!(
            md,
            "| {s} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {:.2} % | {} / {} | {:.1} | {} | {:.1} | {} |",
            rs.len(),
            rs.iter().filter(|o| o.passed).count(),
            sum(|o| o.events),
            rs.iter().map(|o| o.faults.len()).sum::<usize>(),
            sum(|o| o.lost),
            sum(|o| o.duplicated),
            sum(|o| o.aborted_reads),
            sum(|o| o.aborted_in_topic),
            sum(|o| o.lake_lost),
            sum(|o| o.lake_duplicated),
            100.0 * min_recall,
            rs.iter().filter_map(|o| o.serve.as_ref()).map(|v| v.wrong).sum::<u64>(),
            rs.iter().filter_map(|o| o.serve.as_ref()).map(|v| v.answers).sum::<u64>(),
            max(|o| o.max_stall),
            match max(|o| o.recovery) {
                r if r > 0.0 || rs.iter().any(|o| o.recovery == 0.0) => format!("{r:.1}"),
                _ => "—".to_owned(),
            },
            max(|o| o.drain),
            rs.iter().map(|o| o.service_exits.len()).sum::<usize>(),
        );
    }
    let _ = writeln!(md, "\nScenarios:\n");
    for s in &order {
        let _ = writeln!(md, "- `{s}`: {}", describe(s));
    }
    let gateway: Vec<&Outcome> = outcomes.iter().filter(|o| o.gateway.is_some()).collect();
    if !gateway.is_empty() {
        let _ = writeln!(md, "\nThe gateway's answers against the raw topic (`gateway-kill9`):\n");
        for o in gateway {
            if let Some(g) = &o.gateway {
                let _ = writeln!(
                    md,
                    "- run {}: {} webhook events, {} requests, {} answered 2xx, {} unanswered or errors (sent \
                     again; {} of them had landed all the same), {} answered 2xx but not in raw, {} in raw twice",
                    o.run,
                    g.events,
                    g.requests,
                    g.answered_2xx,
                    g.unanswered_or_error,
                    g.landed_unanswered,
                    g.lost,
                    g.twice
                );
            }
        }
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for o in failed {
            let _ = writeln!(
                md,
                "- `{}` run {} (namespace `{}`): {}{}",
                o.scenario,
                o.run,
                o.namespace,
                o.error.clone().unwrap_or_else(|| o
                    .verdicts
                    .iter()
                    .flat_map(|v| v.violations.iter().cloned())
                    .chain(o.serve.iter().flat_map(|v| v.violations.iter().cloned()))
                    .chain(o.gateway.iter().flat_map(|v| v.violations.iter().cloned()))
                    .collect::<Vec<_>>()
                    .join("; ")),
                o.history
                    .as_deref()
                    .map(|h| format!(". History: {h}"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        md,
        "\nColumns: *lost* expected clean records missing from the clean topics; *duplicated* clean records \
         beyond the first of an identity; *aborted reads* records the live read_committed reader saw that are \
         no committed record; *aborted records in topics* records of rolled-back transactions found by a \
         final read_uncommitted read (what the reader could have seen wrongly); *DLQ recall* invalid and \
         poison records dead-lettered / sent (lowest run); *max stall* longest gap between records the \
         live reader saw, from the start of the load to the last record; *recovery* longest time from the end of a fault to the next \
         record seen (`serve-kill9`: from the kill to serve answering again); *drain* end of the load to quiescence; *process exits* services that exited on their \
         own (e.g. a fenced zombie) and were started again, as an orchestrator would; *serve answers* bulk \
         suppression checks of `serve` (started fresh over the run's lake and topics; in `serve-kill9` the \
         instance killed and restarted during the load) for every address the \
         run touched, for no list, every list its events name and two more of its tenant's lists, against DESIGN's rules read literally over \
         the set of clean events."
    );
    md
}
