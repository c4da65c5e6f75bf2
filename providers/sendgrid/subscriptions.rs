//! SendGrid Event Webhook → `subscriptions`: `group_resubscribe`, a RESUBSCRIBE to the
//! suppression group `asm_group_id`, with the recipient's IP as consent evidence.

use crate::{Action, Draft, Subscriptions};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::sendgrid::read(raw.payload)?;
    if ev.kind != "group_resubscribe" {
        return Err(ev.not_for(Subscriptions::NAME));
    }
    Ok(ev.fields().with(Draft {
        list_id: ev.str(&["asm_group_id"]),
        action: Some(Action::Resubscribe),
        consent_ip: ev.str(&["ip"]),
        consent_at: ev.time.clone(),
    }))
}
