//! Compaction: bin-packs the small files of closed partitions (`tenant_id`, `event_date`)
//! into files near a target size, rows sorted by `email_sha256` then `event_time`, and
//! vacuum of the files no version references any more.
//!
//! Plan, then execute, then report (as delta-rs `operations/optimize.rs` does, without its
//! DataFusion dependency):
//! - [`plan`] lists, per partition whose day is closed and that holds at least
//!   `min_files` files smaller than the target, bins of those files (first-fit decreasing,
//!   each bin at most the target in bytes); a bin of one file is left alone.
//! - [`execute`] rewrites each bin into new files and commits, per partition, the Remove
//!   (`data_change: false`) and Add actions in one Delta commit (operation `OPTIMIZE`).
//!
//! Under concurrent writers: the sink only appends, so its commits never touch the files a
//! compaction removes; a compaction commit carries no `txn` action, so the sink's offsets
//! stay as they are; and [`table::commit_rewrite`] lands only if every removed file is
//! still live at the version it commits after (a concurrent compaction or erasure of the
//! same files makes this partition skip, to be compacted on the next run).
//!
//! Idempotence: first-fit leaves no two bins whose sizes together fit the target, so a
//! second run over what the first wrote finds only one-file bins and does nothing.

use crate::table::{self, LiveFile};
use crate::{Error, Result};
use arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn, SortOptions};
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Size in bytes the output files aim at; smaller files are candidates.
    pub target_size: u64,
    /// A partition is compacted once it holds at least this many small files.
    pub min_files: usize,
    /// A day is closed once it is at least this many days before today (UTC); 0 includes
    /// today.
    pub closed_before_days: u32,
    /// Today, `YYYY-MM-DD` (UTC); None for the clock's.
    pub today: Option<String>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_size: 256 * 1024 * 1024,
            min_files: 4,
            closed_before_days: 1,
            today: None,
        }
    }
}

/// Files rewritten together into one or more output files.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    pub files: Vec<String>,
    pub bytes: u64,
    #[serde(skip)]
    members: Vec<LiveFile>,
}

/// What compaction would do to one partition.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionPlan {
    pub tenant_id: String,
    pub event_date: String,
    pub bins: Vec<Bin>,
}

/// The plan of one table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompactPlan {
    pub chain: String,
    pub version: i64,
    pub partitions: Vec<PartitionPlan>,
    pub files_before: usize,
    pub bytes_before: u64,
    /// Files the plan would remove, and their bytes.
    pub files_to_rewrite: usize,
    pub bytes_to_rewrite: u64,
    #[serde(skip)]
    target_size: u64,
}

/// What compaction did to one table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompactMetrics {
    pub chain: String,
    pub partitions_planned: usize,
    pub partitions_compacted: usize,
    /// Partitions left for the next run (another writer rewrote their files first).
    pub partitions_skipped: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub bytes_removed: u64,
    pub bytes_added: u64,
    pub rows_rewritten: u64,
    /// Live files and bytes of the whole table before and after.
    pub files_before: usize,
    pub bytes_before: u64,
    pub files_after: usize,
    pub bytes_after: u64,
    pub commits: Vec<i64>,
    /// Commit attempts beyond the first (other writers committing in between).
    pub commit_retries: usize,
    pub seconds: f64,
}

/// The last closed day: `today - closed_before_days`, inclusive.
fn last_closed_day(opts: &CompactOptions) -> String {
    let today = opts
        .today
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    (today - chrono::Duration::days(i64::from(opts.closed_before_days)))
        .format("%Y-%m-%d")
        .to_string()
}

/// Plans the compaction of a table's loaded snapshot.
pub fn plan(chain: &str, table: &DeltaTable, opts: &CompactOptions) -> Result<CompactPlan> {
    let files = table::live_files(table)?;
    let last_closed = last_closed_day(opts);
    let mut by_partition: BTreeMap<(String, String), Vec<LiveFile>> = BTreeMap::new();
    for f in &files {
        if f.size < opts.target_size && f.event_date() <= last_closed.as_str() {
            by_partition
                .entry((f.tenant().to_owned(), f.event_date().to_owned()))
                .or_default()
                .push(f.clone());
        }
    }
    let mut out = CompactPlan {
        chain: chain.to_owned(),
        version: table.version().map(|v| v as i64).unwrap_or(-1),
        files_before: files.len(),
        bytes_before: files.iter().map(|f| f.size).sum(),
        target_size: opts.target_size,
        ..Default::default()
    };
    for ((tenant_id, event_date), mut small) in by_partition {
        if small.len() < opts.min_files.max(2) {
            continue;
        }
        // First-fit decreasing; ties by path so a plan is reproducible.
        small.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        let mut bins: Vec<Bin> = Vec::new();
        for f in small {
            match bins.iter_mut().find(|b| b.bytes + f.size <= opts.target_size) {
                Some(b) => {
                    b.bytes += f.size;
                    b.files.push(f.path.clone());
                    b.members.push(f);
                }
                None => bins.push(Bin {
                    files: vec![f.path.clone()],
                    bytes: f.size,
                    members: vec![f],
                }),
            }
        }
        bins.retain(|b| b.members.len() > 1);
        if bins.is_empty() {
            continue;
        }
        for b in &bins {
            out.files_to_rewrite += b.members.len();
            out.bytes_to_rewrite += b.bytes;
        }
        out.partitions.push(PartitionPlan {
            tenant_id,
            event_date,
            bins,
        });
    }
    Ok(out)
}

/// Sorts rows by `email_sha256`, then `event_time` (nulls last), so lookups by address
/// read few row groups.
pub fn sort_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let keys: Vec<SortColumn> = ["email_sha256", "event_time"]
        .iter()
        .filter_map(|c| batch.column_by_name(c))
        .map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        })
        .collect();
    if keys.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Executes a plan made from `table`'s current snapshot: one commit per partition.
pub async fn execute(table: &mut DeltaTable, plan: &CompactPlan) -> Result<CompactMetrics> {
    use deltalake::protocol::DeltaOperation;
    let started = Instant::now();
    let mut m = CompactMetrics {
        chain: plan.chain.clone(),
        partitions_planned: plan.partitions.len(),
        files_before: plan.files_before,
        bytes_before: plan.bytes_before,
        ..Default::default()
    };
    let schema = table::table_arrow_schema(table)?;
    for p in &plan.partitions {
        let mut actions = Vec::new();
        let (mut removed, mut removed_bytes, mut added, mut added_bytes, mut rows) = (0, 0, 0, 0, 0u64);
        for bin in &p.bins {
            let mut batches = Vec::with_capacity(bin.members.len());
            for f in &bin.members {
                let read = table::read_file(table, &f.path, None).await?;
                if !read.is_empty() {
                    batches.push(table::conform(&read, &schema, &f.partition)?);
                }
            }
            let all = arrow::compute::concat_batches(&schema, &batches)?;
            rows += all.num_rows() as u64;
            let sorted = sort_rows(&all)?;
            // Roll at the target; one bin (≤ target in) gives one file in practice.
            let adds = table::write_files(table, sorted, plan.target_size.max(1), false).await?;
            for f in &bin.members {
                actions.push(f.remove(false));
                removed += 1;
                removed_bytes += f.size;
            }
            for a in adds {
                added += 1;
                added_bytes += a.size.max(0) as u64;
                actions.push(deltalake::kernel::Action::Add(a));
            }
        }
        let operation = DeltaOperation::Optimize {
            predicate: Some(format!(
                "tenant_id = '{}' AND event_date = '{}'",
                p.tenant_id, p.event_date
            )),
            target_size: plan.target_size as i64,
        };
        match table::commit_rewrite(table, actions, operation, 25).await {
            Ok((version, attempts)) => {
                m.partitions_compacted += 1;
                m.files_removed += removed;
                m.files_added += added;
                m.bytes_removed += removed_bytes;
                m.bytes_added += added_bytes;
                m.rows_rewritten += rows;
                m.commits.push(version);
                m.commit_retries += attempts - 1;
                tracing::info!(
                    chain = %plan.chain, tenant = %p.tenant_id, day = %p.event_date,
                    files_in = removed, files_out = added, bytes_in = removed_bytes, bytes_out = added_bytes, version,
                    "Partition compacted"
                );
            }
            Err(Error::Conflict(msg)) => {
                // The written files stay unreferenced until vacuum removes them.
                m.partitions_skipped += 1;
                tracing::warn!(chain = %plan.chain, tenant = %p.tenant_id, day = %p.event_date, reason = %msg, "Partition skipped; the next run compacts it");
            }
            Err(e) => return Err(e),
        }
    }
    table.update_incremental(None).await?;
    let after = table::live_files(table)?;
    m.files_after = after.len();
    m.bytes_after = after.iter().map(|f| f.size).sum();
    m.seconds = started.elapsed().as_secs_f64();
    Ok(m)
}

/// What vacuum deleted from one table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VacuumMetrics {
    pub chain: String,
    pub files_deleted: usize,
    pub dry_run: bool,
    pub seconds: f64,
}

/// Deletes files no version within `retention` references (and older than it).
pub async fn vacuum(
    chain: &str,
    table: DeltaTable,
    retention: std::time::Duration,
    dry_run: bool,
) -> Result<(DeltaTable, VacuumMetrics)> {
    let started = Instant::now();
    let hours = retention.as_secs().div_ceil(3600);
    let (table, metrics) = table
        .vacuum()
        .with_retention_period(chrono::Duration::seconds(retention.as_secs() as i64))
        // A retention below the table's default (7 days) is the caller's explicit choice.
        .with_enforce_retention_duration(false)
        // Full: also files no commit ever referenced (a compaction that lost its partition,
        // a sink commit that failed), once older than the retention.
        .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
        .with_dry_run(dry_run)
        .await?;
    tracing::info!(
        chain,
        retention_hours = hours,
        deleted = metrics.files_deleted.len(),
        dry_run,
        "Vacuum done"
    );
    Ok((
        table,
        VacuumMetrics {
            chain: chain.to_owned(),
            files_deleted: metrics.files_deleted.len(),
            dry_run,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_days() {
        let mut o = CompactOptions {
            today: Some("2025-03-01".into()),
            ..Default::default()
        };
        assert_eq!(last_closed_day(&o), "2025-02-28");
        o.closed_before_days = 0;
        assert_eq!(last_closed_day(&o), "2025-03-01");
    }
}
