//! `csv` uploads of suppression lists, including Mailchimp cleaned-members exports.

use crate::{field, Draft};
use tributary_engine::field::EVENT_TIME;
use tributary_engine::{Input, Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field; the common fields'
/// aliases (`email_address`, `tenant`, ...) are the engine's `COMMON_COLUMNS`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("clean_time", EVENT_TIME),
    ("created_at", EVENT_TIME),
    ("domain", field::VALUE),
    ("clean_reason", field::REASON),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    Parsed::from_csv(raw, COLUMNS).map(Input::from)
}
