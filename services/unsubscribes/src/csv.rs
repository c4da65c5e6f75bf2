//! `csv` uploads, including Mailchimp unsubscribed-members exports.

use tributary_engine::{Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field.
pub const COLUMNS: &[(&str, &str)] = &[
    ("email_address", "email"),
    ("e_mail", "email"),
    ("tenant", "tenant_id"),
    ("timestamp", "event_time"),
    ("unsub_time", "event_time"),
    ("unsubscribed_at", "event_time"),
    ("unsub_reason", "reason"),
    ("unsub_campaign_id", "campaign_id"),
    ("list", "list_id"),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let mut p = Parsed::from_csv(raw, COLUMNS)?;
    p.set_if_absent("method", "import");
    Ok(p)
}
