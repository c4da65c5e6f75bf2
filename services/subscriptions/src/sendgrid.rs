//! SendGrid Event Webhook → `subscriptions`: `group_resubscribe`, a RESUBSCRIBE to the
//! suppression group `asm_group_id`, with the recipient's IP as consent evidence.

use crate::Subscriptions;
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::sendgrid(raw.payload)?;
    if ev.kind != "group_resubscribe" {
        return Err(ev.not_for(Subscriptions::NAME));
    }
    let mut f = ev.fields();
    f.set("list_id", ev.str(&["asm_group_id"]))
        .set_str("action", "RESUBSCRIBE")
        .set("consent_ip", ev.str(&["ip"]))
        .set_value("consent_at", ev.time.clone());
    Ok(f.parsed())
}
