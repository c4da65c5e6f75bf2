//! Mailgun webhooks → `blocklists`: permanent failures Mailgun classes as bounces, and
//! complaints. Temporary failures, retries given up (`old`) and drops of addresses Mailgun
//! already suppresses (`suppress-*`) are not new suppressions.

use crate::{entry, Blocklists};
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mailgun(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "failed" => {
            ev.require_hard_bounce()?;
            "HARD_BOUNCE"
        }
        "complained" => "SPAM_COMPLAINT",
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry(&ev, "ADD", reason).parsed())
}
