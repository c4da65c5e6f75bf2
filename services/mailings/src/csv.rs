//! `csv` uploads of mailing events (send logs and activity exports).

use tributary_engine::{Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field.
pub const COLUMNS: &[(&str, &str)] = &[
    ("email_address", "email"),
    ("e_mail", "email"),
    ("recipient", "email"),
    ("tenant", "tenant_id"),
    ("timestamp", "event_time"),
    ("event", "event_type"),
    ("type", "event_type"),
    ("msg_id", "message_id"),
    ("campaign", "campaign_id"),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    Parsed::from_csv(raw, COLUMNS)
}
