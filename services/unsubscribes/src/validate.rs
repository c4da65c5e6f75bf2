//! Validation and normalization of `unsubscribes` records.

use crate::Unsubscribe;
use tributary_engine::{Common, Parsed, RecordError};

pub fn validate(mut p: Parsed, common: Common, _now_micros: i64) -> Result<Unsubscribe, RecordError> {
    // "all", "*" and an empty list id all mean every list.
    let list_id = p
        .opt_str("list_id")?
        .filter(|l| !matches!(l.to_ascii_lowercase().as_str(), "all" | "*"));
    Ok(Unsubscribe {
        list_id,
        campaign_id: p.opt_str("campaign_id")?,
        reason: p.opt_str("reason")?,
        method: p.opt_str("method")?.map(|m| m.to_ascii_lowercase()),
        common,
    })
}
