//! Mailgun webhooks → `blocklists`: permanent failures Mailgun classes as bounces, and
//! complaints. Temporary failures, retries given up (`old`) and drops of addresses Mailgun
//! already suppresses (`suppress-*`) are not new suppressions.

use crate::{entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::mailgun::read(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "failed" => {
            ev.require_hard_bounce()?;
            Reason::HardBounce
        }
        "complained" => Reason::SpamComplaint,
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry_input(&ev, Action::Add, reason))
}
