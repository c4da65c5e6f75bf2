//! Validation and normalization of `unsubscribes` records.

use crate::{field, Draft, Unsubscribe};
use tributary_engine::{Common, Input, RecordError};

pub fn validate(input: Input<Draft>, common: Common, _now_micros: i64) -> Result<Unsubscribe, RecordError> {
    let (mut p, d) = (input.fields, input.draft);
    // "all", "*" and an empty list id all mean every list.
    let list_id = p
        .text_or(d.list_id, field::LIST_ID)?
        .filter(|l| !matches!(l.to_ascii_lowercase().as_str(), "all" | "*"));
    Ok(Unsubscribe {
        list_id,
        campaign_id: p.text_or(d.campaign_id, field::CAMPAIGN_ID)?,
        reason: p.text_or(d.reason, field::REASON)?,
        method: p.text_or(d.method, field::METHOD)?.map(|m| m.to_ascii_lowercase()),
        common,
    })
}
