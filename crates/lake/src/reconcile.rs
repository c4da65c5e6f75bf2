//! Reconciliation of one chain: the accounting of the chain service (`audit.<chain>`), the
//! clean topic and the chain's table agree.
//!
//! Checks, each a [`Discrepancy`] when it fails:
//! - `gap` / `overlap`: every raw offset below the checked point (the chain's committed
//!   offset, else the highest `next_offset` audited) is inside exactly one audited input
//!   range. A hole between ranges is a gap only if it holds records a `read_committed`
//!   reader sees (transaction markers and aborted records take offsets too).
//! - `audit_sum`: in every audit record `received = clean + dlq + duplicate`.
//! - `row_count`: per tenant and day, the clean records below the table's `txn` offsets
//!   (minus those the sink dead-lettered) equal the table's rows.
//! - `duplicate_event_id`: no `(tenant_id, event_id)` twice in the table.
//! - `table_ahead`: the table's offset of a partition is past the clean topic's end.
//!
//! Kafka is read by the caller (the `tributary` CLI), which hands the facts in; the table is
//! read here from one snapshot, so its offsets and rows are consistent with each other.

use crate::table;
use crate::Result;
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub use tributary_engine::audit::{Audit, AuditInput};

/// One audit record (the type the chain services write), with where it was read from.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AuditRecord {
    #[serde(flatten)]
    pub audit: Audit,
    /// Partition and offset of the record in the audit topic.
    #[serde(skip_deserializing)]
    pub at: (i32, i64),
}

impl std::ops::Deref for AuditRecord {
    type Target = Audit;
    fn deref(&self) -> &Audit {
        &self.audit
    }
}

/// A raw partition as Kafka sees it at the check.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct RawPartition {
    pub low: i64,
    pub high: i64,
    /// The chain's consumer group's committed offset.
    pub committed: Option<i64>,
}

/// What the table holds, from one snapshot.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableFacts {
    pub version: i64,
    /// Next clean offset per partition (`txn` actions).
    pub offsets: BTreeMap<i32, i64>,
    /// Rows per `tenant/day`.
    pub rows: BTreeMap<String, u64>,
    pub rows_total: u64,
    pub files: usize,
    /// `(tenant/event_id, count)` of rows more than once.
    pub duplicates: Vec<(String, u64)>,
}

/// What the clean topic holds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CleanFacts {
    /// High watermark per partition.
    pub end_offsets: BTreeMap<i32, i64>,
    /// Records (read_committed) at or after the table's offset, per partition: sink lag.
    pub lag_records: BTreeMap<i32, u64>,
    /// Records below the table's offsets, per `tenant/day`, without the sink's dead letters.
    pub rows: BTreeMap<String, u64>,
    pub sink_dead_letters: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Discrepancy {
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Offset range `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<u64>,
}

impl Discrepancy {
    fn new(kind: &str, message: String) -> Discrepancy {
        Discrepancy {
            kind: kind.to_owned(),
            message,
            topic: None,
            partition: None,
            from: None,
            to: None,
            key: None,
            expected: None,
            actual: None,
        }
    }

    fn range(kind: &str, topic: &str, partition: i32, from: i64, to: i64, message: String) -> Discrepancy {
        Discrepancy {
            topic: Some(topic.to_owned()),
            partition: Some(partition),
            from: Some(from),
            to: Some(to),
            ..Discrepancy::new(kind, message)
        }
    }
}

/// Per raw partition: the range checked and how it is covered.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Coverage {
    pub partition: i32,
    pub checked_to: i64,
    pub audited_ranges: usize,
    pub low: i64,
    pub high: i64,
    pub committed: Option<i64>,
}

/// The outcome for one chain.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ChainReport {
    pub chain: String,
    pub raw_topic: String,
    pub clean_topic: String,
    pub audit_records: usize,
    pub totals: BTreeMap<String, u64>,
    pub coverage: Vec<Coverage>,
    pub table: TableFacts,
    pub clean: CleanFacts,
    /// Rows compared between the clean topic and the table.
    pub rows_compared: u64,
    pub discrepancies: Vec<Discrepancy>,
}

/// Reads the table's offsets, rows per tenant and day, and duplicate event ids, one
/// partition at a time (only `event_id` is read from the files).
pub async fn table_facts(table: &DeltaTable, clean_topic: &str, partitions: &[i32]) -> Result<TableFacts> {
    use arrow::array::{Array, StringArray};
    let offsets = crate::Lake::committed_offsets(table, clean_topic, partitions).await?;
    let files = table::live_files(table)?;
    let mut by_partition: BTreeMap<String, Vec<&table::LiveFile>> = BTreeMap::new();
    for f in &files {
        by_partition
            .entry(format!("{}/{}", f.tenant(), f.event_date()))
            .or_default()
            .push(f);
    }
    let mut facts = TableFacts {
        version: table.version().map(|v| v as i64).unwrap_or(-1),
        offsets,
        files: files.len(),
        ..Default::default()
    };
    for (key, fs) in by_partition {
        let tenant = fs.first().map(|f| f.tenant().to_owned()).unwrap_or_default();
        let mut ids: HashMap<String, u64> = HashMap::new();
        let mut rows = 0u64;
        for f in fs {
            for b in table::read_file(table, &f.path, Some(&["event_id"])).await? {
                rows += b.num_rows() as u64;
                if let Some(col) = b
                    .column_by_name("event_id")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                {
                    for i in 0..col.len() {
                        *ids.entry(col.value(i).to_owned()).or_default() += 1;
                    }
                }
            }
        }
        facts.rows_total += rows;
        facts.rows.insert(key, rows);
        let mut dups: Vec<(String, u64)> = ids
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| (format!("{tenant}/{id}"), n))
            .collect();
        dups.sort();
        facts.duplicates.extend(dups);
    }
    Ok(facts)
}

/// Checks a chain's facts. `visible(topic, partition, from, to)` counts the records a
/// `read_committed` reader sees in `[from, to)` of a raw partition: a hole between audited
/// ranges with none is not a gap.
pub fn check(
    mut report: ChainReport,
    audits: &[AuditRecord],
    raw: &BTreeMap<i32, RawPartition>,
    mut visible: impl FnMut(&str, i32, i64, i64) -> anyhow::Result<u64>,
) -> anyhow::Result<ChainReport> {
    let mut d = Vec::new();
    // Sums.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for a in audits {
        for (k, v) in [
            ("received", a.received),
            ("clean", a.clean),
            ("dlq", a.dlq),
            ("duplicate", a.duplicate),
            ("late", a.late),
        ] {
            *totals.entry(k.to_owned()).or_default() += v;
        }
        if a.received != a.clean + a.dlq + a.duplicate {
            d.push(Discrepancy {
                expected: Some(a.received),
                actual: Some(a.clean + a.dlq + a.duplicate),
                partition: Some(a.at.0),
                from: Some(a.at.1),
                to: Some(a.at.1 + 1),
                ..Discrepancy::new(
                    "audit_sum",
                    format!(
                        "audit record at partition {} offset {}: received {} != clean {} + dlq {} + duplicate {}",
                        a.at.0, a.at.1, a.received, a.clean, a.dlq, a.duplicate
                    ),
                )
            });
        }
    }
    let sum = totals.get("clean").copied().unwrap_or(0)
        + totals.get("dlq").copied().unwrap_or(0)
        + totals.get("duplicate").copied().unwrap_or(0);
    if totals.get("received").copied().unwrap_or(0) != sum {
        d.push(Discrepancy {
            expected: totals.get("received").copied(),
            actual: Some(sum),
            ..Discrepancy::new(
                "audit_sum",
                format!(
                    "{}: received {} in total != clean + dlq + duplicate {sum}",
                    report.chain,
                    totals.get("received").copied().unwrap_or(0)
                ),
            )
        });
    }
    report.totals = totals;
    report.audit_records = audits.len();

    // Coverage of the raw offsets.
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for a in audits {
        for i in &a.inputs {
            if i.topic == report.raw_topic {
                ranges
                    .entry(i.partition)
                    .or_default()
                    .push((i.first_offset, i.next_offset));
            }
        }
    }
    let mut parts: Vec<i32> = raw.keys().copied().collect();
    parts.extend(ranges.keys().copied());
    parts.sort_unstable();
    parts.dedup();
    let topic = report.raw_topic.clone();
    for p in parts {
        let mut rs = ranges.remove(&p).unwrap_or_default();
        rs.sort_unstable();
        let info = raw.get(&p).copied().unwrap_or_default();
        let max_next = rs.iter().map(|r| r.1).max().unwrap_or(0);
        let checked = info.committed.unwrap_or(max_next);
        let mut holes = Vec::new();
        let mut pos = 0i64;
        for &(first, next) in &rs {
            if first >= checked {
                break;
            }
            if first > pos {
                holes.push((pos, first));
            } else if first < pos {
                d.push(Discrepancy::range(
                    "overlap",
                    &topic,
                    p,
                    first,
                    pos.min(next),
                    format!(
                        "{topic} partition {p}: offsets {first}..{} audited twice",
                        pos.min(next) - 1
                    ),
                ));
            }
            pos = pos.max(next);
        }
        if pos < checked {
            holes.push((pos, checked));
        }
        for (from, to) in holes {
            let n = visible(&topic, p, from, to)?;
            if n > 0 {
                d.push(Discrepancy {
                    actual: Some(n),
                    ..Discrepancy::range(
                        "gap",
                        &topic,
                        p,
                        from,
                        to,
                        format!(
                            "{topic} partition {p}: offsets {from}..{} ({n} records) not accounted for by any audit record",
                            to - 1
                        ),
                    )
                });
            }
        }
        report.coverage.push(Coverage {
            partition: p,
            checked_to: checked,
            audited_ranges: rs.len(),
            low: info.low,
            high: info.high,
            committed: info.committed,
        });
    }

    // The table against the clean topic.
    for (p, o) in &report.table.offsets {
        let end = report.clean.end_offsets.get(p).copied().unwrap_or(0);
        if *o > end {
            d.push(Discrepancy::range(
                "table_ahead",
                &report.clean_topic,
                *p,
                end,
                *o,
                format!(
                    "{} partition {p}: the table's offset {o} is past the topic's end {end}",
                    report.clean_topic
                ),
            ));
        }
    }
    let mut keys: Vec<&String> = report.clean.rows.keys().chain(report.table.rows.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut compared = 0;
    for k in keys {
        let want = report.clean.rows.get(k).copied().unwrap_or(0);
        let got = report.table.rows.get(k).copied().unwrap_or(0);
        compared += want.min(got);
        if want != got {
            d.push(Discrepancy {
                key: Some(k.clone()),
                expected: Some(want),
                actual: Some(got),
                ..Discrepancy::new(
                    "row_count",
                    format!(
                        "{} tenant/day {k}: {want} clean records below the table's offsets, {got} rows in the table",
                        report.chain
                    ),
                )
            });
        }
    }
    report.rows_compared = compared;
    for (k, n) in &report.table.duplicates {
        d.push(Discrepancy {
            key: Some(k.clone()),
            actual: Some(*n),
            ..Discrepancy::new(
                "duplicate_event_id",
                format!("{} table: {k} is in {n} rows", report.chain),
            )
        });
    }
    report.discrepancies = d;
    Ok(report)
}

/// Every kind of discrepancy, as the metrics name them (`error`: a chain could not be checked).
pub const DISCREPANCY_KINDS: [&str; 7] = [
    "gap",
    "overlap",
    "audit_sum",
    "row_count",
    "duplicate_event_id",
    "table_ahead",
    "error",
];

/// Prometheus text-format gauges of a run. `last_success` is the Unix time of the last
/// run without discrepancies (this one's, or carried over from the previous file).
pub fn prometheus(reports: &[ChainReport], errors: &[(String, String)], last_success: Option<f64>, now: f64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP tributary_reconcile_discrepancies Discrepancies found by the last reconciliation, by chain and kind."
    );
    let _ = writeln!(s, "# TYPE tributary_reconcile_discrepancies gauge");
    for r in reports {
        for k in DISCREPANCY_KINDS {
            let n = r.discrepancies.iter().filter(|d| d.kind == k).count();
            let _ = writeln!(
                s,
                "tributary_reconcile_discrepancies{{chain=\"{}\",kind=\"{k}\"}} {n}",
                r.chain
            );
        }
    }
    for (chain, _) in errors {
        let _ = writeln!(
            s,
            "tributary_reconcile_discrepancies{{chain=\"{chain}\",kind=\"error\"}} 1"
        );
    }
    let _ = writeln!(
        s,
        "# HELP tributary_reconcile_sink_lag_records Clean records not yet in the table, per partition."
    );
    let _ = writeln!(s, "# TYPE tributary_reconcile_sink_lag_records gauge");
    for r in reports {
        for (p, n) in &r.clean.lag_records {
            let _ = writeln!(
                s,
                "tributary_reconcile_sink_lag_records{{chain=\"{}\",partition=\"{p}\"}} {n}",
                r.chain
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP tributary_reconcile_rows_compared Rows compared between the clean topic and the table."
    );
    let _ = writeln!(s, "# TYPE tributary_reconcile_rows_compared gauge");
    for r in reports {
        let _ = writeln!(
            s,
            "tributary_reconcile_rows_compared{{chain=\"{}\"}} {}",
            r.chain, r.rows_compared
        );
    }
    let _ = writeln!(
        s,
        "# HELP tributary_reconcile_last_run_timestamp_seconds When the last reconciliation ran."
    );
    let _ = writeln!(s, "# TYPE tributary_reconcile_last_run_timestamp_seconds gauge");
    let _ = writeln!(s, "tributary_reconcile_last_run_timestamp_seconds {now:.0}");
    if let Some(t) = last_success {
        let _ = writeln!(
            s,
            "# HELP tributary_reconcile_last_success_timestamp_seconds When a reconciliation last found nothing wrong."
        );
        let _ = writeln!(s, "# TYPE tributary_reconcile_last_success_timestamp_seconds gauge");
        let _ = writeln!(s, "tributary_reconcile_last_success_timestamp_seconds {t:.0}");
    }
    s
}

/// The last-success time a previous metrics file holds.
pub fn previous_success(metrics_text: &str) -> Option<f64> {
    tributary_engine::metrics::text::value(metrics_text, "tributary_reconcile_last_success_timestamp_seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(p: i32, first: i64, next: i64) -> AuditRecord {
        let n = (next - first) as u64;
        AuditRecord {
            audit: Audit {
                inputs: vec![AuditInput {
                    topic: "raw.users".into(),
                    partition: p,
                    first_offset: first,
                    next_offset: next,
                }],
                received: n,
                clean: n,
                ..Default::default()
            },
            at: (0, 0),
        }
    }

    fn base() -> ChainReport {
        ChainReport {
            chain: "users".into(),
            raw_topic: "raw.users".into(),
            clean_topic: "clean.users".into(),
            ..Default::default()
        }
    }

    #[test]
    fn gaps_overlaps_and_sums() {
        let raw: BTreeMap<i32, RawPartition> = [(
            0,
            RawPartition {
                low: 0,
                high: 30,
                committed: Some(30),
            },
        )]
        .into();
        let ok = check(base(), &[audit(0, 0, 10), audit(0, 10, 30)], &raw, |_, _, _, _| Ok(1)).unwrap();
        assert!(ok.discrepancies.is_empty(), "{:?}", ok.discrepancies);
        let mut bad_sum = audit(0, 12, 30);
        bad_sum.audit.dlq = 1;
        let r = check(
            base(),
            &[audit(0, 0, 10), bad_sum, audit(0, 5, 8)],
            &raw,
            |_, _, _, _| Ok(2),
        )
        .unwrap();
        let kinds: Vec<&str> = r.discrepancies.iter().map(|d| d.kind.as_str()).collect();
        assert_eq!(kinds, ["audit_sum", "audit_sum", "overlap", "gap"], "{r:#?}");
        let gap = &r.discrepancies[3];
        assert_eq!((gap.partition, gap.from, gap.to), (Some(0), Some(10), Some(12)));
        assert!(gap.message.contains("offsets 10..11"), "{}", gap.message);
        // A hole of transaction markers only is no gap.
        let r = check(base(), &[audit(0, 0, 10), audit(0, 11, 30)], &raw, |_, _, _, _| Ok(0)).unwrap();
        assert!(r.discrepancies.is_empty());
        // The committed offset beyond the audits: the tail is a gap.
        let r = check(base(), &[audit(0, 0, 10)], &raw, |_, _, _, _| Ok(20)).unwrap();
        assert_eq!(r.discrepancies[0].from, Some(10));
        assert_eq!(r.discrepancies[0].to, Some(30));
    }

    #[test]
    fn rows_and_metrics() {
        let mut r = base();
        r.clean.rows.insert("acme/2025-01-01".into(), 5);
        r.table.rows.insert("acme/2025-01-01".into(), 4);
        r.table.duplicates.push(("acme/e1".into(), 2));
        let r = check(r, &[], &BTreeMap::new(), |_, _, _, _| Ok(0)).unwrap();
        assert_eq!(r.discrepancies.len(), 2);
        assert_eq!(r.discrepancies[0].kind, "row_count");
        let text = prometheus(&[r], &[], Some(1.0), 2.0);
        assert!(text.contains("tributary_reconcile_discrepancies{chain=\"users\",kind=\"row_count\"} 1"));
        assert_eq!(previous_success(&text), Some(1.0));
    }
}
