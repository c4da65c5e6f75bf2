//! Postmark webhooks → `blocklists`: hard bounces (`HardBounce`, `BadEmailAddress`), spam
//! complaints, and SubscriptionChange records that suppress an address for a hard bounce or
//! a spam complaint (the same facts, for a tenant that only takes subscription changes).
//! Other bounce types are not suppressions; manual suppressions are unsubscribes.

use crate::{entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::postmark::read(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "Bounce" if ev.str(&["Type"]).as_deref() == Some("SpamComplaint") => Reason::SpamComplaint,
        "Bounce" => {
            ev.require_hard_bounce()?;
            Reason::HardBounce
        }
        "SpamComplaint" => Reason::SpamComplaint,
        "SubscriptionChange" if ev.flag(&["SuppressSending"]) != Some(true) => {
            return Err(ev.not_for_as("SuppressSending false", Blocklists::NAME))
        }
        "SubscriptionChange" => match ev.str(&["SuppressionReason"]).as_deref() {
            Some("HardBounce") => Reason::HardBounce,
            Some("SpamComplaint") => Reason::SpamComplaint,
            other => {
                let detail = format!("SuppressionReason {}", other.unwrap_or("none"));
                return Err(ev.not_for_as(&detail, Blocklists::NAME));
            }
        },
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry_input(&ev, Action::Add, reason))
}
