//! The one checker over a whole history: from what the load generator sent, through the raw,
//! audit, DLQ and clean topics and what a `read_committed` reader saw while the faults ran, to
//! the rows and `txn` versions of the lake. Pure: it reads a [`ChainHistory`] (collected by
//! [`super::collect`]) and returns every violation it finds, so it can be tested on planted
//! faults without any infrastructure.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the load generator sent, in send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// Must come out clean exactly once.
    Clean,
    /// A repeat of an earlier valid record: must be dropped (counted as a duplicate).
    Duplicate,
    /// Invalid or poison: must be dead-lettered.
    Dlq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    /// The raw record's key.
    pub key: String,
    pub expect: Expect,
    /// `tenant/event_id` for [`Expect::Clean`] and [`Expect::Duplicate`] records.
    pub id: Option<String>,
}

/// One record of a topic partition: where it is, its key, and a hash of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value_hash: u64,
}

/// One committed audit record's accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audit {
    /// (raw partition, first offset, next offset) of each input range.
    pub inputs: Vec<(i32, i64, i64)>,
    pub received: u64,
    pub clean: u64,
    pub dlq: u64,
    pub duplicate: u64,
}

/// Everything one chain's run left behind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChainHistory {
    pub chain: String,
    pub sent: Vec<Sent>,
    /// The raw topic, every record.
    pub raw: Vec<At>,
    /// Committed audit records.
    pub audits: Vec<Audit>,
    /// The DLQ's records: (source partition, source offset) from their headers.
    pub dlq: Vec<(i32, i64)>,
    /// The clean topic read `read_committed` at the end, with each record's `tenant/event_id`.
    pub clean: Vec<(At, String)>,
    /// Data records of the clean topic read `read_uncommitted` at the end (committed and
    /// aborted; control records are never delivered).
    pub clean_uncommitted: Vec<At>,
    /// High watermarks of the clean topic at the end.
    pub clean_ends: BTreeMap<i32, i64>,
    /// Every record a `read_committed` consumer saw while the run went on.
    pub observed: Vec<At>,
    /// `tenant/event_id` → how many rows of the lake's table hold it.
    pub lake_rows: BTreeMap<String, u32>,
    /// The table's `txn` version per clean partition (absent: none).
    pub lake_txn: BTreeMap<i32, i64>,
}

/// What the checker found for one chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub chain: String,
    pub sent: u64,
    pub expected_clean: u64,
    pub clean: u64,
    pub dlq: u64,
    pub duplicates: u64,
    /// Expected clean records not in the clean topic.
    pub lost: u64,
    /// Clean records beyond the first of one identity.
    pub duplicated: u64,
    /// Records the live reader saw that are not committed records of the clean topic.
    pub aborted_reads: u64,
    /// Aborted records in the clean topic (the faults' transactions that were rolled back):
    /// what the live reader had the chance to see wrongly.
    pub aborted_in_topic: u64,
    /// Records the live reader saw.
    pub observed: u64,
    /// Invalid records dead-lettered / invalid records sent.
    pub dlq_recall: f64,
    pub lake_rows: u64,
    pub lake_lost: u64,
    pub lake_duplicated: u64,
    /// Every violation, worded for a person.
    pub violations: Vec<String>,
}

const SHOW: usize = 5;

fn some<T: std::fmt::Debug>(v: impl IntoIterator<Item = T>) -> String {
    let all: Vec<T> = v.into_iter().collect();
    let n = all.len();
    let shown: Vec<String> = all.iter().take(SHOW).map(|x| format!("{x:?}")).collect();
    if n > SHOW {
        format!("{} (and {} more)", shown.join(", "), n - SHOW)
    } else {
        shown.join(", ")
    }
}

/// Checks one chain's history.
pub fn check(h: &ChainHistory) -> Verdict {
    let mut v = Verdict {
        chain: h.chain.clone(),
        sent: h.sent.len() as u64,
        ..Default::default()
    };
    let c = &h.chain;
    let mut bad = |s: String| v.violations.push(format!("{c}: {s}"));

    // 1. The raw topic is what was sent: per key, the same number of records, in order.
    let mut sent_by_key: BTreeMap<&str, Vec<&Sent>> = BTreeMap::new();
    for s in &h.sent {
        sent_by_key.entry(&s.key).or_default().push(s);
    }
    let mut raw_by_key: BTreeMap<&str, Vec<&At>> = BTreeMap::new();
    let mut raw_sorted: Vec<&At> = h.raw.iter().collect();
    raw_sorted.sort_by_key(|a| (a.partition, a.offset));
    for a in &raw_sorted {
        raw_by_key.entry(&a.key).or_default().push(a);
    }
    // (partition, offset) → what it must become.
    let mut expect_at: BTreeMap<(i32, i64), &Sent> = BTreeMap::new();
    // tenant/event_id → the raw positions of its valid record and then of its repeats.
    let mut clean_at: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    let mut raw_mismatch = Vec::new();
    for (key, sent) in &sent_by_key {
        let raw = raw_by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
        if raw.len() != sent.len() {
            raw_mismatch.push(format!("{key}: {} sent, {} in raw", sent.len(), raw.len()));
        }
        for (s, a) in sent.iter().zip(raw.iter()) {
            expect_at.insert((a.partition, a.offset), s);
            if let (Expect::Clean | Expect::Duplicate, Some(id)) = (s.expect, &s.id) {
                clean_at.entry(id).or_default().push((a.partition, a.offset));
            }
        }
    }
    for positions in clean_at.values_mut() {
        positions.sort();
    }
    let unsent: Vec<_> = raw_by_key.keys().filter(|k| !sent_by_key.contains_key(*k)).collect();
    if !raw_mismatch.is_empty() || !unsent.is_empty() {
        bad(format!(
            "the raw topic does not hold what was sent: {} keys differ ({}), {} keys never sent ({})",
            raw_mismatch.len(),
            some(&raw_mismatch),
            unsent.len(),
            some(&unsent)
        ));
    }
    let expected_clean: BTreeSet<&str> = h
        .sent
        .iter()
        .filter(|s| s.expect == Expect::Clean)
        .filter_map(|s| s.id.as_deref())
        .collect();
    v.expected_clean = expected_clean.len() as u64;
    let invalid_sent = h.sent.iter().filter(|s| s.expect == Expect::Dlq).count() as u64;
    let duplicates_sent = h.sent.iter().filter(|s| s.expect == Expect::Duplicate).count() as u64;

    // 2. The clean topic: the expected set, each once, per key in send order.
    let mut clean_count: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, id) in &h.clean {
        *clean_count.entry(id).or_default() += 1;
    }
    v.clean = h.clean.len() as u64;
    let twice: Vec<_> = clean_count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    v.duplicated = clean_count.values().map(|n| u64::from(n - 1)).sum();
    let lost: Vec<&&str> = expected_clean
        .iter()
        .filter(|id| !clean_count.contains_key(**id))
        .collect();
    v.lost = lost.len() as u64;
    let unexpected: Vec<&&str> = clean_count.keys().filter(|id| !expected_clean.contains(**id)).collect();
    if !twice.is_empty() {
        bad(format!(
            "{} records more than once in the clean topic: {}",
            v.duplicated,
            some(&twice)
        ));
    }
    if !lost.is_empty() {
        bad(format!(
            "{} expected records missing from the clean topic: {}",
            lost.len(),
            some(&lost)
        ));
    }
    if !unexpected.is_empty() {
        bad(format!(
            "{} unexpected records in the clean topic: {}",
            unexpected.len(),
            some(&unexpected)
        ));
    }
    let mut want_order: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in h.sent.iter().filter(|s| s.expect == Expect::Clean) {
        if let Some(id) = &s.id {
            want_order.entry(&s.key).or_default().push(id);
        }
    }
    let mut clean_sorted: Vec<&(At, String)> = h.clean.iter().collect();
    clean_sorted.sort_by_key(|(a, _)| (a.partition, a.offset));
    let mut got_order: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, id) in &clean_sorted {
        got_order.entry(&a.key).or_default().push(id);
    }
    let out_of_order: Vec<&&str> = got_order
        .iter()
        .filter(|(k, got)| {
            // Compare the order of first occurrences only (a doubled record is reported above).
            let mut seen = BTreeSet::new();
            let firsts: Vec<&str> = got.iter().copied().filter(|id| seen.insert(*id)).collect();
            let want: Vec<&str> = want_order
                .get(**k)
                .map(|w| w.iter().copied().filter(|id| firsts.contains(id)).collect())
                .unwrap_or_default();
            firsts
                .iter()
                .filter(|id| want.contains(id))
                .copied()
                .collect::<Vec<_>>()
                != want
        })
        .map(|(k, _)| k)
        .collect();
    if !out_of_order.is_empty() {
        bad(format!(
            "{} keys whose clean records are out of send order: {}",
            out_of_order.len(),
            some(&out_of_order)
        ));
    }

    // 3. Every raw offset is exactly one of clean, dead-lettered, duplicate.
    let mut dlq_count: BTreeMap<(i32, i64), u32> = BTreeMap::new();
    for at in &h.dlq {
        *dlq_count.entry(*at).or_default() += 1;
    }
    v.dlq = h.dlq.len() as u64;
    // The n-th clean copy of an identity came from the n-th raw record carrying it (a record
    // and its repeats share a key, so a partition, and are processed in offset order); copies
    // beyond those are put on the first.
    let mut clean_raw: BTreeMap<(i32, i64), u32> = BTreeMap::new();
    for (id, n) in &clean_count {
        if let Some(positions) = clean_at.get(id) {
            for k in 0..*n as usize {
                *clean_raw
                    .entry(positions.get(k).copied().unwrap_or(positions[0]))
                    .or_default() += 1;
            }
        }
    }
    let (mut wrong, mut twice_dlq, mut dlq_ok) = (Vec::new(), Vec::new(), 0u64);
    for a in &raw_sorted {
        let at = (a.partition, a.offset);
        let (nc, nd) = (
            clean_raw.get(&at).copied().unwrap_or(0),
            dlq_count.get(&at).copied().unwrap_or(0),
        );
        if nd > 1 {
            twice_dlq.push(at);
        }
        let Some(s) = expect_at.get(&at) else { continue };
        let ok = match s.expect {
            Expect::Clean => nc >= 1 && nd == 0,
            Expect::Dlq => nc == 0 && nd >= 1,
            Expect::Duplicate => nc == 0 && nd == 0,
        };
        if s.expect == Expect::Dlq && nd >= 1 {
            dlq_ok += 1;
        }
        // A lost clean record is reported above; here only the records that became the
        // wrong thing.
        let lost_clean = s.expect == Expect::Clean && nc == 0 && nd == 0;
        if !ok && !lost_clean {
            wrong.push(format!("{}/{} want {:?}, clean×{nc} dlq×{nd}", at.0, at.1, s.expect));
        }
    }
    let raw_positions: BTreeSet<(i32, i64)> = raw_sorted.iter().map(|a| (a.partition, a.offset)).collect();
    let dlq_nowhere: Vec<_> = dlq_count.keys().filter(|at| !raw_positions.contains(at)).collect();
    if !wrong.is_empty() {
        bad(format!(
            "{} raw records became the wrong thing: {}",
            wrong.len(),
            some(&wrong)
        ));
    }
    if !twice_dlq.is_empty() {
        bad(format!(
            "{} raw records dead-lettered more than once: {}",
            twice_dlq.len(),
            some(&twice_dlq)
        ));
    }
    if !dlq_nowhere.is_empty() {
        bad(format!(
            "{} dead letters name no raw record: {}",
            dlq_nowhere.len(),
            some(&dlq_nowhere)
        ));
    }
    v.dlq_recall = if invalid_sent == 0 {
        1.0
    } else {
        dlq_ok as f64 / invalid_sent as f64
    };

    // 4. The audit topic agrees: its input ranges tile every raw partition once, and its sums
    //    are the clean topic's, the DLQ's and the generator's duplicates.
    let mut raw_end: BTreeMap<i32, i64> = BTreeMap::new();
    for a in &raw_sorted {
        let e = raw_end.entry(a.partition).or_default();
        *e = (*e).max(a.offset + 1);
    }
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    let mut sums = Audit::default();
    for a in &h.audits {
        for (p, first, next) in &a.inputs {
            ranges.entry(*p).or_default().push((*first, *next));
        }
        sums.received += a.received;
        sums.clean += a.clean;
        sums.dlq += a.dlq;
        sums.duplicate += a.duplicate;
    }
    let mut tiling = Vec::new();
    for (p, end) in &raw_end {
        let mut rs = ranges.remove(p).unwrap_or_default();
        rs.sort();
        let mut at = 0;
        for (first, next) in rs {
            if first != at {
                tiling.push(format!(
                    "raw[{p}]: {} at {at}..{first}",
                    if first > at { "gap" } else { "overlap" }
                ));
            }
            at = at.max(next);
        }
        if at != *end {
            tiling.push(format!("raw[{p}]: accounted up to {at}, end {end}"));
        }
    }
    for (p, rs) in &ranges {
        tiling.push(format!(
            "raw[{p}]: {} audited ranges of a partition with no records",
            rs.len()
        ));
    }
    if !tiling.is_empty() {
        bad(format!(
            "audit input ranges do not cover each raw offset once: {}",
            some(&tiling)
        ));
    }
    v.duplicates = sums.duplicate;
    let checks = [
        ("received", sums.received, h.raw.len() as u64),
        ("clean", sums.clean, v.clean),
        ("dlq", sums.dlq, v.dlq),
        ("duplicate", sums.duplicate, duplicates_sent),
        (
            "received = clean + dlq + duplicate",
            sums.received,
            sums.clean + sums.dlq + sums.duplicate,
        ),
    ];
    for (what, audit, other) in checks {
        if audit != other {
            bad(format!("audit {what}: {audit}, but {other} (topics / load generator)"));
        }
    }

    // 5. The live read_committed reader saw committed records only.
    let committed: BTreeMap<(i32, i64), u64> = h
        .clean
        .iter()
        .map(|(a, _)| ((a.partition, a.offset), a.value_hash))
        .collect();
    v.aborted_in_topic = h
        .clean_uncommitted
        .iter()
        .filter(|a| !committed.contains_key(&(a.partition, a.offset)))
        .count() as u64;
    v.observed = h.observed.len() as u64;
    let aborted: Vec<String> = h
        .observed
        .iter()
        .filter(|a| committed.get(&(a.partition, a.offset)) != Some(&a.value_hash))
        .map(|a| format!("{}/{}", a.partition, a.offset))
        .collect();
    v.aborted_reads = aborted.len() as u64;
    if !aborted.is_empty() {
        bad(format!(
            "the read_committed reader saw {} records that are no committed record of the clean topic (aborted reads): {}",
            aborted.len(),
            some(&aborted)
        ));
    }

    // 6. The lake: every clean record once, and its txn versions at the clean topic's ends.
    v.lake_rows = h.lake_rows.values().map(|n| u64::from(*n)).sum();
    let lake_twice: Vec<_> = h
        .lake_rows
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    v.lake_duplicated = h.lake_rows.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    let lake_lost: Vec<_> = clean_count
        .keys()
        .filter(|id| !h.lake_rows.contains_key(**id))
        .collect();
    v.lake_lost = lake_lost.len() as u64;
    let lake_extra: Vec<_> = h
        .lake_rows
        .keys()
        .filter(|id| !clean_count.contains_key(id.as_str()))
        .collect();
    if !lake_twice.is_empty() {
        bad(format!(
            "{} rows more than once in the lake: {}",
            v.lake_duplicated,
            some(&lake_twice)
        ));
    }
    if !lake_lost.is_empty() {
        bad(format!(
            "{} clean records missing from the lake: {}",
            lake_lost.len(),
            some(&lake_lost)
        ));
    }
    if !lake_extra.is_empty() {
        bad(format!(
            "{} lake rows that are no clean record: {}",
            lake_extra.len(),
            some(&lake_extra)
        ));
    }
    let mut last_data: BTreeMap<i32, i64> = BTreeMap::new();
    for (a, _) in &h.clean {
        let e = last_data.entry(a.partition).or_insert(-1);
        *e = (*e).max(a.offset);
    }
    let mut txn_wrong = Vec::new();
    for (p, end) in &h.clean_ends {
        let last = last_data.get(p).copied().unwrap_or(-1);
        match h.lake_txn.get(p) {
            // The version is the next offset after the last committed record: past it, and at
            // most the end (only transaction markers may follow it).
            Some(t) if *t > last && t <= end => {}
            None if last < 0 => {}
            got => txn_wrong.push(format!("clean[{p}]: txn {got:?}, last record {last}, end {end}")),
        }
    }
    if !txn_wrong.is_empty() {
        bad(format!(
            "the lake's txn versions are not the clean topic's ends: {}",
            some(&txn_wrong)
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64, key: &str, value_hash: u64) -> At {
        At {
            partition,
            offset,
            key: key.into(),
            value_hash,
        }
    }

    /// A small consistent history: two keys on two partitions; k1 sends a, a again
    /// (duplicate), an invalid record, b; k2 sends c. One transaction aborted in the clean
    /// topic (at offset 0 of partition 0), its records redone after it.
    fn good() -> ChainHistory {
        let s = |key: &str, expect, id: Option<&str>| Sent {
            key: key.into(),
            expect,
            id: id.map(str::to_owned),
        };
        let sent = vec![
            s("k1", Expect::Clean, Some("acme/a")),
            s("k2", Expect::Clean, Some("acme/c")),
            s("k1", Expect::Duplicate, Some("acme/a")),
            s("k1", Expect::Dlq, None),
            s("k1", Expect::Clean, Some("acme/b")),
        ];
        let raw = vec![
            at(0, 0, "k1", 1),
            at(1, 0, "k2", 2),
            at(0, 1, "k1", 1),
            at(0, 2, "k1", 3),
            at(0, 3, "k1", 4),
        ];
        // Clean partition 0: offset 0 aborted (a), 1 its marker, then a at 2, b at 3, marker 4.
        let clean = vec![
            (at(0, 2, "k1", 10), "acme/a".to_owned()),
            (at(0, 3, "k1", 11), "acme/b".to_owned()),
            (at(1, 0, "k2", 12), "acme/c".to_owned()),
        ];
        let mut clean_uncommitted = vec![at(0, 0, "k1", 10)];
        clean_uncommitted.extend(clean.iter().map(|(a, _)| a.clone()));
        ChainHistory {
            chain: "users".into(),
            sent,
            raw,
            audits: vec![
                Audit {
                    inputs: vec![(0, 0, 2), (1, 0, 1)],
                    received: 3,
                    clean: 2,
                    dlq: 0,
                    duplicate: 1,
                },
                Audit {
                    inputs: vec![(0, 2, 4)],
                    received: 2,
                    clean: 1,
                    dlq: 1,
                    duplicate: 0,
                },
            ],
            dlq: vec![(0, 2)],
            clean: clean.clone(),
            clean_uncommitted,
            clean_ends: BTreeMap::from([(0, 5), (1, 2)]),
            observed: clean.iter().map(|(a, _)| a.clone()).collect(),
            lake_rows: BTreeMap::from([("acme/a".into(), 1), ("acme/b".into(), 1), ("acme/c".into(), 1)]),
            lake_txn: BTreeMap::from([(0, 4), (1, 1)]),
        }
    }

    fn violations(h: &ChainHistory) -> Vec<String> {
        check(h).violations
    }

    #[test]
    fn a_consistent_history_passes() {
        let v = check(&good());
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.lost, v.duplicated, v.aborted_reads), (0, 0, 0));
        assert_eq!(v.aborted_in_topic, 1);
        assert_eq!(v.dlq_recall, 1.0);
    }

    #[test]
    fn a_skipped_record_is_caught() {
        let mut h = good();
        // The chain skipped b: not clean, nothing in the lake, and the audit says one less.
        h.clean.retain(|(_, id)| id != "acme/b");
        h.lake_rows.remove("acme/b");
        h.audits[1].clean = 0;
        h.audits[1].received = 1;
        let v = check(&h);
        assert_eq!(v.lost, 1);
        assert!(
            v.violations
                .iter()
                .any(|s| s.contains("missing from the clean topic") && s.contains("acme/b")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn a_doubled_record_is_caught() {
        let mut h = good();
        h.clean.push((at(0, 5, "k1", 13), "acme/a".into()));
        h.clean_ends.insert(0, 7);
        h.lake_txn.insert(0, 6);
        h.lake_rows.insert("acme/a".into(), 2);
        let v = check(&h);
        assert_eq!(v.duplicated, 1);
        assert_eq!(v.lake_duplicated, 1);
        assert!(
            v.violations
                .iter()
                .any(|s| s.contains("more than once in the clean topic")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn an_aborted_read_is_caught() {
        let mut h = good();
        // The reader saw the aborted copy of a at offset 0.
        h.observed.insert(0, at(0, 0, "k1", 10));
        let v = check(&h);
        assert_eq!(v.aborted_reads, 1);
        assert!(
            v.violations
                .iter()
                .any(|s| s.contains("aborted reads") && s.contains("0/0")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn a_lost_lake_row_is_caught() {
        let mut h = good();
        h.lake_rows.remove("acme/c");
        let v = check(&h);
        assert_eq!(v.lake_lost, 1);
        assert!(
            v.violations
                .iter()
                .any(|s| s.contains("missing from the lake") && s.contains("acme/c")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn a_lake_behind_the_topic_is_caught() {
        let mut h = good();
        h.lake_txn.insert(0, 3);
        assert!(violations(&h).iter().any(|s| s.contains("txn versions")));
    }

    #[test]
    fn a_record_both_clean_and_dead_lettered_is_caught() {
        let mut h = good();
        h.dlq.push((0, 3));
        h.audits[1].dlq = 2;
        h.audits[1].received = 3;
        let vs = violations(&h);
        assert!(
            vs.iter()
                .any(|s| s.contains("became the wrong thing") && s.contains("0/3")),
            "{vs:?}"
        );
    }

    #[test]
    fn a_lost_dead_letter_lowers_recall() {
        let mut h = good();
        h.dlq.clear();
        h.audits[1].dlq = 0;
        h.audits[1].received = 1;
        let v = check(&h);
        assert_eq!(v.dlq_recall, 0.0);
        assert!(
            v.violations.iter().any(|s| s.contains("wrong thing")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn an_audit_gap_or_overlap_is_caught() {
        let mut h = good();
        h.audits[1].inputs = vec![(0, 1, 4)];
        assert!(violations(&h).iter().any(|s| s.contains("overlap at 2..1")));
        let mut h = good();
        h.audits[1].inputs = vec![(0, 3, 4)];
        assert!(violations(&h).iter().any(|s| s.contains("gap at 2..3")));
    }

    #[test]
    fn out_of_order_clean_records_are_caught() {
        let mut h = good();
        // b committed before a.
        h.clean[0].1 = "acme/b".into();
        h.clean[1].1 = "acme/a".into();
        assert!(violations(&h).iter().any(|s| s.contains("out of send order")));
    }

    #[test]
    fn a_raw_record_lost_on_produce_is_caught() {
        let mut h = good();
        h.raw.retain(|a| a.key != "k2");
        assert!(violations(&h)
            .iter()
            .any(|s| s.contains("raw topic does not hold what was sent")));
    }
}
