//! Postmark webhooks → `blocklists`: hard bounces (`HardBounce`, `BadEmailAddress`), spam
//! complaints, and SubscriptionChange records that suppress an address for a hard bounce or
//! a spam complaint (the same facts, for a tenant that only takes subscription changes).
//! Other bounce types are not suppressions; manual suppressions are unsubscribes.

use crate::{entry, Blocklists};
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::postmark(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "Bounce" if ev.str(&["Type"]).as_deref() == Some("SpamComplaint") => "SPAM_COMPLAINT",
        "Bounce" => {
            ev.require_hard_bounce()?;
            "HARD_BOUNCE"
        }
        "SpamComplaint" => "SPAM_COMPLAINT",
        "SubscriptionChange" if ev.flag(&["SuppressSending"]) != Some(true) => {
            return Err(ev.not_for_as("SuppressSending false", Blocklists::NAME))
        }
        "SubscriptionChange" => match ev.str(&["SuppressionReason"]).as_deref() {
            Some("HardBounce") => "HARD_BOUNCE",
            Some("SpamComplaint") => "SPAM_COMPLAINT",
            other => {
                let detail = format!("SuppressionReason {}", other.unwrap_or("none"));
                return Err(ev.not_for_as(&detail, Blocklists::NAME));
            }
        },
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry(&ev, "ADD", reason).parsed())
}
