//! SendGrid Event Webhook → `blocklists`: hard bounces (`bounce` of type `bounce`) and spam
//! reports. A `blocked` bounce is a block, usually temporary: not a suppression.

use crate::{entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::sendgrid::read(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "bounce" => {
            ev.require_hard_bounce()?;
            Reason::HardBounce
        }
        "spamreport" => Reason::SpamComplaint,
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry_input(&ev, Action::Add, reason))
}
