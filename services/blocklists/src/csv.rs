//! `csv` uploads of suppression lists, including Mailchimp cleaned-members exports.

use tributary_engine::{Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field.
pub const COLUMNS: &[(&str, &str)] = &[
    ("email_address", "email"),
    ("e_mail", "email"),
    ("tenant", "tenant_id"),
    ("timestamp", "event_time"),
    ("clean_time", "event_time"),
    ("created_at", "event_time"),
    ("domain", "value"),
    ("clean_reason", "reason"),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    Parsed::from_csv(raw, COLUMNS)
}
