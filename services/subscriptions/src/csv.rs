//! `csv` uploads, including Mailchimp subscribed-members exports (`OPTIN_TIME`, `OPTIN_IP`,
//! `CONFIRM_TIME`, `CONFIRM_IP`).

use tributary_engine::{Parsed, RawRecord, RecordError};

/// Column name (case-blind, spaces as underscores) → unified field.
pub const COLUMNS: &[(&str, &str)] = &[
    ("email_address", "email"),
    ("e_mail", "email"),
    ("tenant", "tenant_id"),
    ("timestamp", "event_time"),
    ("confirm_time", "event_time"),
    ("optin_time", "consent_at"),
    ("optin_ip", "consent_ip"),
    ("confirm_ip", "confirm_ip"),
    ("list", "list_id"),
];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let mut p = Parsed::from_csv(raw, COLUMNS)?;
    // An export without a confirmation time: the opt-in is the event.
    p.copy_if_absent("event_time", "consent_at");
    p.copy_if_absent("consent_ip", "confirm_ip");
    p.take("confirm_ip");
    Ok(p)
}
