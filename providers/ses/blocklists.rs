//! Amazon SES → `blocklists`: permanent bounces and complaints. Transient and undetermined
//! bounces are not suppressions; neither are bounces or complaints for addresses already on
//! SES's suppression list (nothing was sent), nor `not-spam` feedback.

use crate::{entry_input, Action, Blocklists, Reason};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<crate::Draft>, RecordError> {
    let ev = esp::ses::read(raw.payload)?;
    let reason = match ev.kind.as_str() {
        "bounce" => {
            ev.require_hard_bounce()?;
            Reason::HardBounce
        }
        "complaint" => {
            if ev.str(&["complaint", "complaintSubType"]).as_deref() == Some("OnAccountSuppressionList") {
                return Err(ev.not_a_suppression("address already suppressed at the provider"));
            }
            if ev.str(&["complaint", "complaintFeedbackType"]).as_deref() == Some("not-spam") {
                return Err(ev.not_a_suppression("not-spam feedback"));
            }
            Reason::SpamComplaint
        }
        _ => return Err(ev.not_for(Blocklists::NAME)),
    };
    Ok(entry_input(&ev, Action::Add, reason))
}
