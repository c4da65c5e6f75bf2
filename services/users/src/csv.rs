//! `csv` uploads, including Mailchimp audience exports.

use crate::{field, Draft};
use tributary_engine::field::EVENT_TIME;
use tributary_engine::{Input, Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field; the common fields'
/// aliases (`email_address`, `tenant`, ...) are the engine's `COMMON_COLUMNS`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("last_changed", EVENT_TIME),
    ("updated_at", EVENT_TIME),
    ("fname", field::FIRST_NAME),
    ("lname", field::LAST_NAME),
    ("phone_number", field::PHONE),
    ("cc", field::COUNTRY),
    ("country_code", field::COUNTRY),
    ("leid", field::USER_ID),
    ("id", field::USER_ID),
    ("language", field::LOCALE),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    Parsed::from_csv(raw, COLUMNS).map(Input::from)
}
