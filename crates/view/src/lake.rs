//! Reading the lake for the read side.
//!
//! Cost of one load: for each chain table, the Delta log (one snapshot), then only the live
//! files of the wanted tenants (file skipping by the `tenant_id` partition before anything is
//! opened), and of those only the columns the view folds (Parquet projection). Nothing is
//! written. The `txn` versions of the same snapshot say, per clean-topic partition, the first
//! offset the lake does not hold: a reader that goes on from exactly there sees every clean
//! event once.

use crate::event::{from_fields, BatchFields, Event, USER_FIELDS};
use crate::Result;
use std::collections::BTreeMap;
use tributary_lake::Lake;

/// The columns of `chain` the view reads.
pub fn columns(chain: &str) -> Vec<&'static str> {
    let mut c = vec!["tenant_id", "event_time", "email", "email_sha256"];
    c.extend(match chain {
        "unsubscribes" => &["list_id", "reason"][..],
        "blocklists" => &["action", "kind", "value", "reason", "expires_at"][..],
        "subscriptions" => &["list_id", "consent_ip", "consent_at"][..],
        "users" => &USER_FIELDS[..],
        "mailings" => &["event_type"][..],
        _ => &[][..],
    });
    if chain == "users" {
        c.push("attributes");
    }
    c
}

/// What a load read.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub files: usize,
    pub bytes: u64,
    pub events: u64,
    /// Per clean topic, per partition: the next offset the lake does not hold.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Reads `chain`'s table for `tenants` (None: all), handing each event to `fold`; with
/// `topic` = (clean topic, its partitions), also reads where the table's data ends in it.
pub async fn load_chain(
    lake: &Lake,
    chain: &str,
    tenants: Option<&[String]>,
    topic: Option<(&str, &[i32])>,
    loaded: &mut Loaded,
    fold: &mut (dyn FnMut(Event) + Send),
) -> Result<()> {
    let Some(table) = tributary_lake::open_existing(lake, chain).await? else {
        return Ok(());
    };
    if let Some((topic, partitions)) = topic {
        let offsets = Lake::committed_offsets(&table, topic, partitions).await?;
        loaded.offsets.insert(topic.to_owned(), offsets);
    }
    let files = tributary_lake::table::live_files(&table)?;
    let cols = columns(chain);
    for f in files {
        if tenants.is_some_and(|t| !t.iter().any(|t| t == f.tenant())) {
            continue;
        }
        loaded.files += 1;
        loaded.bytes += f.size;
        let batches = tributary_lake::table::read_file(&table, &f.path, Some(&cols)).await?;
        for b in &batches {
            let mut fields = BatchFields::new(b, f.tenant());
            for row in 0..b.num_rows() {
                fold(from_fields(chain, fields.at(row))?);
                loaded.events += 1;
            }
        }
    }
    Ok(())
}
