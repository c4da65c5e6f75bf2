//! Erasure of a person's rows from a tenant's tables, by address.
//!
//! A row goes when its `email` (or, in `users`, its `previous_email`) is one of the
//! normalized addresses, or its `email_sha256` is one of their hashes. One exception: the
//! pseudonymous suppression record an erasure leaves behind (`blocklists`, reason
//! `ERASED`, no `email`) stays, so the address stays suppressed without being stored.
//!
//! Per table, every file of the tenant that holds such a row is rewritten without it and the
//! Remove (`data_change: true`) and Add actions are committed together (operation
//! `DELETE`), on the condition that every rewritten file is still live (a compaction of
//! the same files in between makes the table be planned again). Other tenants' files are
//! never read: data is not shared between tenants yet.

use crate::table::{self, LiveFile};
use crate::{Error, Result};
use arrow::array::{Array, BooleanArray, StringArray};
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;

/// The addresses to erase, normalized, and their hashes.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub emails: HashSet<String>,
    pub hashes: HashSet<String>,
}

impl Targets {
    /// Normalizes each address as the chains do; an address that does not normalize is an
    /// error naming it.
    pub fn from_addresses<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Result<Targets> {
        let mut t = Targets::default();
        for a in addresses {
            let a = a.trim();
            if a.is_empty() {
                continue;
            }
            let e = tributary_engine::normalize::email(a).map_err(|e| Error::Record(e.to_string()))?;
            t.hashes.insert(tributary_engine::normalize::sha256_hex(&e));
            t.emails.insert(e);
        }
        Ok(t)
    }

    /// Which rows of `batch` hold one of the addresses (and are not a pseudonymous
    /// suppression record).
    pub fn matches(&self, batch: &RecordBatch) -> BooleanArray {
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .cloned()
        };
        let (email, sha, prev, reason) = (col("email"), col("email_sha256"), col("previous_email"), col("reason"));
        let has = |c: &Option<StringArray>, i: usize, set: &HashSet<String>| {
            c.as_ref().is_some_and(|c| c.is_valid(i) && set.contains(c.value(i)))
        };
        (0..batch.num_rows())
            .map(|i| {
                let by_email = has(&email, i, &self.emails) || has(&prev, i, &self.emails);
                let by_hash = has(&sha, i, &self.hashes);
                let tombstone = email.as_ref().is_none_or(|c| c.is_null(i))
                    && reason.as_ref().is_some_and(|c| c.is_valid(i) && c.value(i) == "ERASED");
                Some(by_email || (by_hash && !tombstone))
            })
            .collect()
    }
}

const MATCH_COLUMNS: [&str; 4] = ["email", "email_sha256", "previous_email", "reason"];

/// What erasure did to one table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EraseMetrics {
    pub chain: String,
    pub files_scanned: usize,
    pub files_rewritten: usize,
    pub rows_removed: u64,
    pub rows_kept: u64,
    pub version: Option<i64>,
    pub attempts: usize,
    pub seconds: f64,
}

/// Deletes, from storage, every file of `tenant`'s partitions that the table has removed
/// but not yet vacuumed (the files an erasure, or an earlier compaction or erasure, replaced):
/// they still hold the erased addresses and would be readable by time travel until the
/// table's retention ran out. Only tombstoned files are touched, never a file a writer has
/// not committed yet; time travel to versions before the erasure no longer reads this
/// tenant's partitions, which is the point. Answers the number of files deleted.
pub async fn purge_removed(table: &DeltaTable, tenant: &str) -> Result<usize> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let prefix = format!("tenant_id={tenant}/");
    let removed: Vec<String> = table
        .snapshot()?
        .all_tombstones(table.log_store().as_ref())
        .map_ok(|t| t.path().into_owned())
        .try_filter(|p| std::future::ready(p.starts_with(&prefix)))
        .try_collect()
        .await?;
    let store = table.object_store();
    let mut deleted = 0;
    for p in removed {
        let location =
            object_store::path::Path::parse(&p).unwrap_or_else(|_| object_store::path::Path::from(p.as_str()));
        match store.delete(&location).await {
            Ok(()) => deleted += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::Delta(e.into())),
        }
    }
    Ok(deleted)
}

/// The tenant's live files that still hold one of the addresses.
pub async fn files_holding(table: &DeltaTable, tenant: &str, targets: &Targets) -> Result<Vec<(LiveFile, u64)>> {
    let mut out = Vec::new();
    for f in table::live_files(table)?.into_iter().filter(|f| f.tenant() == tenant) {
        let mut n = 0u64;
        for b in table::read_file(table, &f.path, Some(&MATCH_COLUMNS)).await? {
            n += targets.matches(&b).true_count() as u64;
        }
        if n > 0 {
            out.push((f, n));
        }
    }
    Ok(out)
}

/// Removes the addresses' rows from one table of the tenant.
pub async fn erase_table(chain: &str, table: &mut DeltaTable, tenant: &str, targets: &Targets) -> Result<EraseMetrics> {
    use deltalake::protocol::DeltaOperation;
    let started = Instant::now();
    let mut m = EraseMetrics {
        chain: chain.to_owned(),
        ..Default::default()
    };
    let schema = table::table_arrow_schema(table)?;
    for attempt in 1..=5 {
        m.attempts = attempt;
        table.update_incremental(None).await?;
        m.files_scanned = table::live_files(table)?
            .iter()
            .filter(|f| f.tenant() == tenant)
            .count();
        let holding = files_holding(table, tenant, targets).await?;
        if holding.is_empty() {
            break;
        }
        let mut actions = Vec::new();
        let (mut removed, mut kept) = (0u64, 0u64);
        for (f, _) in &holding {
            let batch = table::conform(&table::read_file(table, &f.path, None).await?, &schema, &f.partition)?;
            let hit = targets.matches(&batch);
            let keep = arrow::compute::not(&hit)?;
            let rest = arrow::compute::filter_record_batch(&batch, &keep)?;
            removed += hit.true_count() as u64;
            kept += rest.num_rows() as u64;
            actions.push(f.remove(true));
            if rest.num_rows() > 0 {
                for a in table::write_files(table, rest, 0, true).await? {
                    actions.push(deltalake::kernel::Action::Add(a));
                }
            }
        }
        let mut hashes: Vec<&String> = targets.hashes.iter().collect();
        hashes.sort();
        let operation = DeltaOperation::Delete {
            predicate: Some(format!(
                "tenant_id = '{tenant}' AND email_sha256 IN ({})",
                hashes.iter().map(|h| format!("'{h}'")).collect::<Vec<_>>().join(", ")
            )),
        };
        match table::commit_rewrite(table, actions, operation, 25).await {
            Ok((v, _)) => {
                m.version = Some(v);
                m.files_rewritten = holding.len();
                m.rows_removed = removed;
                m.rows_kept = kept;
                break;
            }
            Err(Error::Conflict(msg)) if attempt < 5 => {
                tracing::warn!(chain, reason = %msg, "Files changed under the erasure; planning again");
            }
            Err(e) => return Err(e),
        }
    }
    m.seconds = started.elapsed().as_secs_f64();
    Ok(m)
}

/// Writes one ledger entry (a JSON-lines file named `name`) under `ledger_uri`: a local
/// directory or any URL the lake's object stores serve (`hdfs://`, `file://`). Entries
/// name addresses only by their hash.
pub async fn write_ledger(ledger_uri: &str, name: &str, lines: &[serde_json::Value]) -> Result<String> {
    use object_store::ObjectStoreExt;
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    if !ledger_uri.contains("://") {
        let dir = std::path::Path::new(ledger_uri);
        std::fs::create_dir_all(dir).map_err(|e| Error::Uri(ledger_uri.into(), e.to_string()))?;
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| Error::Uri(ledger_uri.into(), e.to_string()))?;
        return Ok(path.to_string_lossy().into_owned());
    }
    crate::register_storage();
    let base = ledger_uri.trim_end_matches('/');
    let url = url::Url::parse(&format!("{base}/")).map_err(|e| Error::Uri(ledger_uri.into(), e.to_string()))?;
    let store = DeltaTable::try_from_url(url).await?.object_store();
    store
        .put(&object_store::path::Path::from(name), body.into_bytes().into())
        .await
        .map_err(|e| Error::Uri(ledger_uri.into(), e.to_string()))?;
    Ok(format!("{base}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn matches_by_address_or_hash_but_keeps_the_tombstone() {
        let t = Targets::from_addresses([" Ann.1@Example.com "]).unwrap();
        let h = t.hashes.iter().next().unwrap().clone();
        assert!(t.emails.contains("ann.1@example.com"));
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("email_sha256", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("ann.1@example.com"),
                    None,
                    None,
                    Some("bob@example.com"),
                ])),
                Arc::new(StringArray::from(vec![
                    Some(h.as_str()),
                    Some(h.as_str()),
                    Some(h.as_str()),
                    Some("00"),
                ])),
                Arc::new(StringArray::from(vec![None, Some("MANUAL"), Some("ERASED"), None])),
            ],
        )
        .unwrap();
        let m = t.matches(&b);
        assert_eq!(
            (0..4).map(|i| m.value(i)).collect::<Vec<_>>(),
            [true, true, false, false]
        );
    }
}
