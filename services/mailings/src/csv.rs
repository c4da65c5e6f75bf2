//! `csv` uploads of mailing events (send logs and activity exports).

use crate::{field, Draft};
use tributary_engine::field::EMAIL;
use tributary_engine::{Input, Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field; the common fields'
/// aliases (`email_address`, `tenant`, ...) are the engine's `COMMON_COLUMNS`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("recipient", EMAIL),
    ("event", field::EVENT_TYPE),
    ("type", field::EVENT_TYPE),
    ("msg_id", field::MESSAGE_ID),
    ("campaign", field::CAMPAIGN_ID),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    Parsed::from_csv(raw, COLUMNS).map(Input::from)
}
