//! `csv` uploads, including Mailchimp subscribed-members exports (`OPTIN_TIME`, `OPTIN_IP`,
//! `CONFIRM_TIME`, `CONFIRM_IP`).

use crate::{field, Draft};
use tributary_engine::field::EVENT_TIME;
use tributary_engine::{Input, Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field; the common fields'
/// aliases (`email_address`, `tenant`, ...) are the engine's `COMMON_COLUMNS`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("confirm_time", EVENT_TIME),
    ("optin_time", field::CONSENT_AT),
    ("optin_ip", field::CONSENT_IP),
    ("confirm_ip", field::CONFIRM_IP),
    ("list", field::LIST_ID),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let mut p = Parsed::from_csv(raw, COLUMNS)?;
    // An export without a confirmation time: the opt-in is the event.
    p.copy_if_absent(EVENT_TIME, field::CONSENT_AT);
    p.copy_if_absent(field::CONSENT_IP, field::CONFIRM_IP);
    p.take(field::CONFIRM_IP);
    Ok(p.into())
}
