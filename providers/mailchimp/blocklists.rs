//! Mailchimp audience webhooks → `blocklists`: `cleaned` addresses (reason `hard`: a hard
//! bounce; `abuse`: a complaint) and unsubscribes with reason `abuse` (Mailchimp's way of
//! reporting a spam complaint).

use crate::{entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, ErrorClass, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::mailchimp::read(raw.payload)?;
    let why = ev.str(&["data", "reason"]).unwrap_or_default();
    let reason = match (ev.kind.as_str(), why.as_str()) {
        ("cleaned", "hard") => Reason::HardBounce,
        ("cleaned" | "unsubscribe", "abuse") => Reason::SpamComplaint,
        ("cleaned", other) => {
            return Err(RecordError::new(
                ErrorClass::InvalidValue,
                format!(
                    "mailchimp cleaned reason '{}' is not hard or abuse",
                    tributary_engine::normalize::truncate(other, 40)
                ),
            ))
        }
        ("unsubscribe", other) => {
            return Err(ev.not_for_as(
                &format!("reason {}", if other.is_empty() { "none" } else { other }),
                Blocklists::NAME,
            ))
        }
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry_input(&ev, Action::Add, reason))
}
