//! `csv` uploads, including Mailchimp audience exports.

use tributary_engine::{Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field.
pub const COLUMNS: &[(&str, &str)] = &[
    ("email_address", "email"),
    ("e_mail", "email"),
    ("tenant", "tenant_id"),
    ("timestamp", "event_time"),
    ("last_changed", "event_time"),
    ("updated_at", "event_time"),
    ("fname", "first_name"),
    ("lname", "last_name"),
    ("phone_number", "phone"),
    ("cc", "country"),
    ("country_code", "country"),
    ("leid", "user_id"),
    ("id", "user_id"),
    ("language", "locale"),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    Parsed::from_csv(raw, COLUMNS)
}
