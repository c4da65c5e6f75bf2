//! Mandrill (Mailchimp Transactional) → `blocklists`: hard bounces, spam complaints, and
//! rejection blacklist sync events (`blacklist`/`denylist`: `add` and `change` add, `remove`
//! removes; reasons `hard-bounce`, `spam`, `custom` → HARD_BOUNCE, SPAM_COMPLAINT, MANUAL,
//! anything else Mandrill adds → OTHER; `expires_at` kept). Soft bounces and the blacklist's
//! soft-bounce entries are not suppressions; its `unsub` entries are unsubscribes. Whitelist
//! (safelist) changes allow an address and are no block.

use crate::{entry, entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, ErrorClass, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::mandrill::read(raw.payload)?;
    match ev.kind.as_str() {
        "hard_bounce" | "soft_bounce" => {
            ev.require_hard_bounce()?;
            Ok(entry_input(&ev, Action::Add, Reason::HardBounce))
        }
        "spam" => Ok(entry_input(&ev, Action::Add, Reason::SpamComplaint)),
        "blacklist" | "denylist" => {
            let action = match ev.str(&["action"]).as_deref() {
                Some("add" | "change") => Action::Add,
                Some("remove") => Action::Remove,
                other => {
                    return Err(RecordError::new(
                        ErrorClass::InvalidValue,
                        format!(
                            "mandrill blacklist action '{}' is not add, change or remove",
                            tributary_engine::normalize::truncate(other.unwrap_or(""), 40)
                        ),
                    ))
                }
            };
            let reason = match ev.str(&["reject", "reason"]).as_deref() {
                Some("hard-bounce") => Reason::HardBounce,
                Some("spam") => Reason::SpamComplaint,
                Some("custom") => Reason::Manual,
                Some("soft-bounce") => return Err(ev.not_a_suppression("soft bounce")),
                Some("unsub") => return Err(ev.not_for_as("reason unsub", Blocklists::NAME)),
                _ => Reason::Other,
            };
            let mut d = entry(action, reason);
            d.expires_at = ev.str(&["reject", "expires_at"]).map(serde_json::Value::String);
            Ok(ev.fields().with(d))
        }
        _ => Err(ev.not_for(Blocklists::NAME)),
    }
}
