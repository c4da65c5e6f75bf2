//! `csv` uploads, including Mailchimp unsubscribed-members exports.

use crate::{field, Draft};
use tributary_engine::field::EVENT_TIME;
use tributary_engine::{Input, Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field; the common fields'
/// aliases (`email_address`, `tenant`, ...) are the engine's `COMMON_COLUMNS`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("unsub_time", EVENT_TIME),
    ("unsubscribed_at", EVENT_TIME),
    ("unsub_reason", field::REASON),
    ("unsub_campaign_id", field::CAMPAIGN_ID),
    ("list", field::LIST_ID),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let mut p = Parsed::from_csv(raw, COLUMNS)?;
    p.set_if_absent(field::METHOD, "import");
    Ok(p.into())
}
