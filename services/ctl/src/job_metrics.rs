//! Metrics of the batch jobs (`tributary compact|vacuum|reconcile|erase`), pushed to a
//! Prometheus Pushgateway when `--pushgateway URL` (env `TRIBUTARY_PUSHGATEWAY`) is given.
//!
//! Each job pushes one group per table: `POST /metrics/job/<job>/table/<table>`, so the
//! grouping labels are `job` (`compact`, `vacuum`, `reconcile`, `erase`) and `table` (a
//! chain); Prometheus scrapes the Pushgateway with `honor_labels: true` to keep them. Label
//! values are bounded: jobs, chains, outcomes and discrepancy kinds are fixed sets, and no
//! tenant, address or path is ever a label.
//!
//! Invariants:
//! - POST replaces only the metric names of a push within its group, so a failed run (which
//!   pushes no `tributary_job_last_success_timestamp_seconds` and none of its job's result
//!   gauges) leaves the last success and the last good results as they were.
//! - The Pushgateway is a cache, not an aggregator: the `_total` counters are made monotonic
//!   by reading the group's previous values from the Pushgateway and adding this run's to
//!   them. Two runs of one job on one table at the same moment could lose one increment;
//!   the DAGs run one at a time (`max_active_runs=1`). A Pushgateway restart resets them,
//!   which `rate()` and `increase()` handle as any counter reset.
//! - A push that fails is reported on stderr and does not change the job's exit code: the
//!   lake work is done either way, and the missing push shows as a stale last success.
//!
//! (The prometheus crate's `push` feature is not used: it pulls in reqwest's blocking client
//! with default TLS features for the whole workspace and needs protobuf; the text format
//! over the async reqwest client the CLI already has does the same.)

use crate::lake_ops::{ChainCompaction, EraseOutcome};
use crate::reconcile::Outcome;
use anyhow::{Context, Result};
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tributary_engine::metrics::{self, text::Sample};
use tributary_lake::compact::{CompactMetrics, VacuumMetrics};
use tributary_lake::erase::EraseMetrics;
use tributary_lake::reconcile::ChainReport;

/// The jobs, as the `job` grouping label says them.
pub const JOBS: [&str; 4] = ["compact", "vacuum", "reconcile", "erase"];
/// The values of the `outcome` label.
pub const OUTCOMES: [&str; 2] = ["success", "failure"];
/// The discrepancy kinds of `tributary_lake::reconcile` (as its Prometheus text file has
/// them); each is pushed, zero when absent, so a query by kind always finds a series.
pub use tributary_lake::reconcile::DISCREPANCY_KINDS;
const NO_LABELS: &[&str] = &[];

/// Labels every pushed series gets from its group.
pub const GROUPING_LABELS: [&str; 2] = ["job", "table"];

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One table's metrics of one run of one job: one Pushgateway group.
pub struct TableRun {
    job: &'static str,
    table: String,
    registry: Registry,
    /// Counters, by full metric name, with their label names: their previous values are
    /// added before the push.
    counters: Vec<(String, CounterVec, Vec<&'static str>)>,
}

impl TableRun {
    fn new(job: &'static str, table: &str) -> TableRun {
        TableRun {
            job,
            table: table.to_owned(),
            registry: Registry::new(),
            counters: Vec::new(),
        }
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[&'static str]) -> CounterVec {
        let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.registry.register(Box::new(c.clone())).expect("registered once");
        self.counters.push((name.to_owned(), c.clone(), labels.to_vec()));
        c
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        let g = Gauge::new(name, help).expect("valid metric");
        self.registry.register(Box::new(g.clone())).expect("registered once");
        g
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.registry.register(Box::new(g.clone())).expect("registered once");
        g
    }

    /// The metrics every job pushes: runs by outcome, this run's duration, its time, and
    /// on success the time of the last success.
    fn common(&mut self, success: bool, seconds: f64) {
        let outcome = if success { "success" } else { "failure" };
        let runs = self.counter("tributary_job_runs_total", "Runs of the job by outcome", &["outcome"]);
        for o in OUTCOMES {
            runs.with_label_values(&[o]);
        }
        runs.with_label_values(&[outcome]).inc();
        self.gauge_vec(
            "tributary_job_duration_seconds",
            "Duration of the job's last run on the table, labelled with its outcome",
            &["outcome"],
        )
        .with_label_values(&[outcome])
        .set(seconds);
        let now = now_secs();
        self.gauge(
            "tributary_job_last_run_timestamp_seconds",
            "Unix time the job's last run on the table ended",
        )
        .set(now);
        self.gauge(
            "tributary_job_last_run_success",
            "1 when the job's last run on the table succeeded, else 0",
        )
        .set(if success { 1.0 } else { 0.0 });
        if success {
            self.gauge(
                "tributary_job_last_success_timestamp_seconds",
                "Unix time the job's last successful run on the table ended",
            )
            .set(now);
        }
    }

    fn compaction(&mut self, m: &CompactMetrics) {
        let add = |run: &mut TableRun, name: &str, help: &str, v: f64| {
            run.counter(name, help, &[]).with_label_values(NO_LABELS).inc_by(v);
        };
        add(
            self,
            "tributary_compaction_files_removed_total",
            "Small files compaction replaced",
            m.files_removed as f64,
        );
        add(
            self,
            "tributary_compaction_files_added_total",
            "Files compaction wrote",
            m.files_added as f64,
        );
        add(
            self,
            "tributary_compaction_bytes_removed_total",
            "Bytes of the files compaction replaced",
            m.bytes_removed as f64,
        );
        add(
            self,
            "tributary_compaction_bytes_added_total",
            "Bytes of the files compaction wrote",
            m.bytes_added as f64,
        );
        add(
            self,
            "tributary_compaction_rows_rewritten_total",
            "Rows compaction rewrote",
            m.rows_rewritten as f64,
        );
        add(
            self,
            "tributary_compaction_commit_retries_total",
            "Compaction commit attempts beyond the first (other writers in between)",
            m.commit_retries as f64,
        );
        let parts = self.counter(
            "tributary_compaction_partitions_total",
            "Partitions compaction planned, by result (compacted, skipped: left for the next run)",
            &["result"],
        );
        parts
            .with_label_values(&["compacted"])
            .inc_by(m.partitions_compacted as f64);
        parts
            .with_label_values(&["skipped"])
            .inc_by(m.partitions_skipped as f64);
        let files = self.gauge_vec(
            "tributary_compaction_table_files",
            "Live files of the table before and after the last compaction",
            &["when"],
        );
        files.with_label_values(&["before"]).set(m.files_before as f64);
        files.with_label_values(&["after"]).set(m.files_after as f64);
        let bytes = self.gauge_vec(
            "tributary_compaction_table_bytes",
            "Live bytes of the table before and after the last compaction",
            &["when"],
        );
        bytes.with_label_values(&["before"]).set(m.bytes_before as f64);
        bytes.with_label_values(&["after"]).set(m.bytes_after as f64);
    }

    fn vacuum(&mut self, m: &VacuumMetrics) {
        self.counter("tributary_vacuum_files_deleted_total", "Data files vacuum deleted", &[])
            .with_label_values(NO_LABELS)
            .inc_by(m.files_deleted as f64);
    }

    /// `report` is None when the chain's check stopped on an error.
    fn reconciliation(&mut self, report: Option<&ChainReport>) {
        let kinds = self.gauge_vec(
            "tributary_reconciliation_discrepancies",
            "Discrepancies the last reconciliation found, by kind",
            &["kind"],
        );
        for k in DISCREPANCY_KINDS {
            kinds.with_label_values(&[k]);
        }
        let ok = match report {
            Some(r) => {
                for d in &r.discrepancies {
                    kinds.with_label_values(&[d.kind.as_str()]).inc();
                }
                self.gauge(
                    "tributary_reconciliation_rows_compared",
                    "Rows the last reconciliation compared between the clean topic and the table",
                )
                .set(r.rows_compared as f64);
                self.gauge(
                    "tributary_reconciliation_sink_lag_records",
                    "Clean records not yet in the table at the last reconciliation",
                )
                .set(r.clean.lag_records.values().sum::<u64>() as f64);
                r.discrepancies.is_empty()
            }
            None => {
                kinds.with_label_values(&["error"]).set(1.0);
                false
            }
        };
        self.gauge(
            "tributary_reconciliation_ok",
            "1 when the last reconciliation of the table found nothing wrong, else 0",
        )
        .set(if ok { 1.0 } else { 0.0 });
    }

    fn erasure(&mut self, m: &EraseMetrics, remaining_files: usize) {
        self.counter("tributary_erasure_rows_removed_total", "Rows erasure removed", &[])
            .with_label_values(NO_LABELS)
            .inc_by(m.rows_removed as f64);
        self.counter("tributary_erasure_files_rewritten_total", "Files erasure rewrote", &[])
            .with_label_values(NO_LABELS)
            .inc_by(m.files_rewritten as f64);
        self.gauge(
            "tributary_erasure_last_rows_removed",
            "Rows the last erasure removed from the table",
        )
        .set(m.rows_removed as f64);
        self.gauge(
            "tributary_erasure_remaining_files",
            "Live files still holding an erased address after the last erasure (0 when verified)",
        )
        .set(remaining_files as f64);
    }

    /// The text exposition of this group (what is pushed, before the previous counters are
    /// added).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Adds the group's previous counter values (from the Pushgateway's `/metrics`).
    fn carry_over(&self, previous: &[Sample]) {
        for s in previous {
            if s.label("job") != Some(self.job)
                || s.label("table") != Some(self.table.as_str())
                || !s.value.is_finite()
                || s.value <= 0.0
            {
                continue;
            }
            let Some((_, c, names)) = self.counters.iter().find(|(n, _, _)| *n == s.name) else {
                continue;
            };
            let values: Option<Vec<&str>> = names.iter().map(|n| s.label(n)).collect();
            if let Some(values) = values {
                c.with_label_values(&values).inc_by(s.value);
            }
        }
    }
}

/// What one run of a job did, per table.
pub struct JobRun {
    job: &'static str,
    started: Instant,
    tables: BTreeMap<String, TableRun>,
}

impl JobRun {
    /// `job` is one of `JOBS`.
    pub fn start(job: &'static str) -> JobRun {
        debug_assert!(JOBS.contains(&job));
        JobRun {
            job,
            started: Instant::now(),
            tables: BTreeMap::new(),
        }
    }

    fn table(&mut self, table: &str) -> &mut TableRun {
        let job = self.job;
        self.tables
            .entry(table.to_owned())
            .or_insert_with(|| TableRun::new(job, table))
    }

    /// The run failed as a whole (before any table's result): a failure for each table.
    pub fn failed(&mut self, tables: &[String]) {
        let secs = self.started.elapsed().as_secs_f64();
        for t in tables_or_all(tables) {
            self.table(&t).common(false, secs);
        }
    }

    pub fn compaction(&mut self, chains: &[String], result: &Result<Vec<ChainCompaction>>) {
        match result {
            Ok(out) => {
                for m in out.iter().filter_map(|c| c.metrics.as_ref()) {
                    let t = self.table(&m.chain);
                    t.common(true, m.seconds);
                    t.compaction(m);
                }
            }
            Err(_) => self.failed(chains),
        }
    }

    pub fn vacuum(&mut self, chains: &[String], result: &Result<Vec<VacuumMetrics>>) {
        match result {
            Ok(out) => {
                for m in out {
                    let t = self.table(&m.chain);
                    t.common(true, m.seconds);
                    t.vacuum(m);
                }
            }
            Err(_) => self.failed(chains),
        }
    }

    pub fn reconciliation(&mut self, chains: &[String], result: &Result<Outcome>) {
        let secs = self.started.elapsed().as_secs_f64();
        match result {
            Ok(out) => {
                for r in &out.reports {
                    let t = self.table(&r.chain);
                    t.common(r.discrepancies.is_empty(), secs);
                    t.reconciliation(Some(r));
                }
                for (chain, _) in &out.errors {
                    let t = self.table(chain);
                    t.common(false, secs);
                    t.reconciliation(None);
                }
            }
            Err(_) => self.failed(chains),
        }
    }

    pub fn erasure(&mut self, chains: &[String], result: &Result<EraseOutcome>) {
        match result {
            Ok(out) => {
                for m in &out.tables {
                    let prefix = format!("{}: ", m.chain);
                    let remaining = out.remaining.iter().filter(|r| r.starts_with(&prefix)).count();
                    let t = self.table(&m.chain);
                    t.common(remaining == 0, m.seconds);
                    t.erasure(m, remaining);
                }
            }
            Err(_) => self.failed(chains),
        }
    }

    /// The groups this run pushes, by table.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &TableRun)> {
        self.tables.iter().map(|(t, r)| (t.as_str(), r))
    }

    /// Pushes every table's group when `pushgateway` is set (and not empty); a failure is
    /// printed, not returned (see the module comment).
    pub fn push(&self, pushgateway: Option<&str>) {
        let Some(url) = pushgateway.map(str::trim).filter(|u| !u.is_empty()) else {
            return;
        };
        if self.tables.is_empty() {
            return;
        }
        match push_all(url, self) {
            Ok(n) => tracing::info!(job = self.job, groups = n, pushgateway = url, "Job metrics pushed"),
            Err(e) => eprintln!("tributary {}: pushing the job metrics to {url} failed: {e:#}", self.job),
        }
    }
}

fn tables_or_all(tables: &[String]) -> Vec<String> {
    if tables.is_empty() {
        tributary_engine::topics::CHAINS
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    } else {
        tables.to_vec()
    }
}

fn push_all(url: &str, run: &JobRun) -> Result<usize> {
    let base = if url.contains("://") {
        url.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    rt.block_on(async {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {base}/metrics"))?
            .text()
            .await?;
        let previous = samples(&text);
        for (table, t) in &run.tables {
            t.carry_over(&previous);
            let group = format!("{base}/metrics/job/{}/table/{table}", run.job);
            let r = client
                .post(&group)
                .header("content-type", "text/plain; version=0.0.4")
                .body(t.render())
                .send()
                .await
                .with_context(|| format!("POST {group}"))?;
            let status = r.status();
            if !status.is_success() {
                let body = r.text().await.unwrap_or_default();
                anyhow::bail!("POST {group}: {status}: {}", body.trim());
            }
        }
        Ok(run.tables.len())
    })
}

/// The `tributary_*_total` samples of a text exposition (the only ones carried over).
fn samples(text: &str) -> Vec<Sample> {
    metrics::text::parse(text)
        .into_iter()
        .filter(|s| s.name.starts_with("tributary_") && s.name.ends_with("_total"))
        .collect()
}

/// The text exposition of every series the jobs can push, each with its grouping labels
/// (`job`, `table="users"`), as Prometheus shows them after scraping the Pushgateway: what
/// tests/tests/deploy/ checks the dashboards and alert rules against.
pub fn catalog() -> String {
    let mut text = String::new();
    let chain = "users".to_owned();
    let report = ChainReport {
        chain: chain.clone(),
        ..Default::default()
    };
    for job in JOBS {
        let mut t = TableRun::new(job, &chain);
        t.common(true, 1.0);
        match job {
            "compact" => t.compaction(&CompactMetrics {
                chain: chain.clone(),
                ..Default::default()
            }),
            "vacuum" => t.vacuum(&VacuumMetrics {
                chain: chain.clone(),
                files_deleted: 0,
                dry_run: false,
                seconds: 0.0,
            }),
            "reconcile" => t.reconciliation(Some(&report)),
            _ => t.erasure(
                &EraseMetrics {
                    chain: chain.clone(),
                    files_scanned: 0,
                    files_rewritten: 0,
                    rows_removed: 0,
                    rows_kept: 0,
                    version: None,
                    attempts: 0,
                    seconds: 0.0,
                },
                0,
            ),
        }
        let grouping = format!("job=\"{job}\",table=\"{chain}\"");
        for line in t.render().lines() {
            if line.starts_with('#') {
                text.push_str(line);
            } else if let Some(i) = line.find('{') {
                text.push_str(&format!("{}{{{grouping},{}", &line[..i], &line[i + 1..]));
            } else if let Some(i) = line.find(' ') {
                text.push_str(&format!("{}{{{grouping}}}{}", &line[..i], &line[i..]));
            }
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_over_and_failures_keep_the_last_success() {
        let mut ok = TableRun::new("compact", "users");
        ok.common(true, 2.0);
        ok.compaction(&CompactMetrics {
            chain: "users".into(),
            files_removed: 7,
            files_added: 1,
            files_before: 9,
            files_after: 3,
            ..Default::default()
        });
        let previous = samples(
            "tributary_job_runs_total{instance=\"\",job=\"compact\",outcome=\"success\",table=\"users\"} 4\n\
             tributary_job_runs_total{instance=\"\",job=\"compact\",outcome=\"success\",table=\"mailings\"} 100\n\
             tributary_compaction_files_removed_total{instance=\"\",job=\"compact\",table=\"users\"} 10\n\
             tributary_job_last_success_timestamp_seconds{job=\"compact\",table=\"users\"} 17\n",
        );
        assert_eq!(previous.len(), 3);
        ok.carry_over(&previous);
        let text = ok.render();
        assert!(
            text.contains("tributary_job_runs_total{outcome=\"success\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("tributary_job_runs_total{outcome=\"failure\"} 0"),
            "{text}"
        );
        assert!(text.contains("tributary_compaction_files_removed_total 17"), "{text}");
        assert!(
            text.contains("tributary_compaction_table_files{when=\"after\"} 3"),
            "{text}"
        );
        assert!(text.contains("tributary_job_last_success_timestamp_seconds "), "{text}");

        let mut run = JobRun::start("reconcile");
        run.failed(&["users".to_owned()]);
        let (_, t) = run.groups().next().expect("one group");
        let text = t.render();
        assert!(
            text.contains("tributary_job_runs_total{outcome=\"failure\"} 1"),
            "{text}"
        );
        assert!(!text.contains("last_success"), "{text}");
        assert!(!text.contains("tributary_reconciliation_ok"), "{text}");
    }

    #[test]
    fn catalog_has_every_job_with_its_grouping_labels() {
        let c = catalog();
        for job in JOBS {
            assert!(
                c.contains(&format!(
                    "tributary_job_runs_total{{job=\"{job}\",table=\"users\",outcome=\"success\"}}"
                )),
                "{c}"
            );
        }
        assert!(
            c.contains("tributary_reconciliation_ok{job=\"reconcile\",table=\"users\"} 1"),
            "{c}"
        );
        assert!(
            c.contains("tributary_erasure_rows_removed_total{job=\"erase\",table=\"users\"} 0"),
            "{c}"
        );
    }
}
