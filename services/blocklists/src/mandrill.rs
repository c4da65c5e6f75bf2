//! Mandrill (Mailchimp Transactional) → `blocklists`: hard bounces, spam complaints, and
//! rejection blacklist sync events (`blacklist`/`denylist`: `add` and `change` add, `remove`
//! removes; reasons `hard-bounce`, `spam`, `custom` → HARD_BOUNCE, SPAM_COMPLAINT, MANUAL,
//! anything else Mandrill adds → OTHER; `expires_at` kept). Soft bounces and the blacklist's
//! soft-bounce entries are not suppressions; its `unsub` entries are unsubscribes. Whitelist
//! (safelist) changes allow an address and are no block.

use crate::{entry, Blocklists};
use tributary_engine::esp;
use tributary_engine::{Chain, ErrorClass, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mandrill(raw.payload)?;
    match ev.kind.as_str() {
        "hard_bounce" | "soft_bounce" => {
            ev.require_hard_bounce()?;
            Ok(entry(&ev, "ADD", "HARD_BOUNCE").parsed())
        }
        "spam" => Ok(entry(&ev, "ADD", "SPAM_COMPLAINT").parsed()),
        "blacklist" | "denylist" => {
            let action = match ev.str(&["action"]).as_deref() {
                Some("add" | "change") => "ADD",
                Some("remove") => "REMOVE",
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
                Some("hard-bounce") => "HARD_BOUNCE",
                Some("spam") => "SPAM_COMPLAINT",
                Some("custom") => "MANUAL",
                Some("soft-bounce") => return Err(ev.not_a_suppression("soft bounce")),
                Some("unsub") => return Err(ev.not_for_as("reason unsub", Blocklists::NAME)),
                _ => "OTHER",
            };
            let mut f = entry(&ev, action, reason);
            f.set("expires_at", ev.str(&["reject", "expires_at"]));
            Ok(f.parsed())
        }
        _ => Err(ev.not_for(Blocklists::NAME)),
    }
}
