//! SendGrid Event Webhook → `blocklists`: hard bounces (`bounce` of type `bounce`) and spam
//! reports. A `blocked` bounce is a block, usually temporary: not a suppression.

use crate::{entry, Blocklists};
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::sendgrid(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "bounce" => {
            ev.require_hard_bounce()?;
            "HARD_BOUNCE"
        }
        "spamreport" => "SPAM_COMPLAINT",
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry(&ev, "ADD", reason).parsed())
}
