//! SendGrid Event Webhook → `unsubscribes`: `unsubscribe` (from everything: no list) and
//! `group_unsubscribe` (from the suppression group `asm_group_id`), both from a link.

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::sendgrid::read(raw.payload)?;
    let list = match ev.kind.as_str() {
        "unsubscribe" => None,
        // Without its group a group unsubscribe cannot be scoped; widening it to every list
        // would record more than the recipient asked for.
        "group_unsubscribe" => Some(
            ev.str(&["asm_group_id"])
                .ok_or_else(|| RecordError::missing("asm_group_id"))?,
        ),
        _ => return Err(ev.not_for(Unsubscribes::NAME)),
    };
    Ok(ev.fields().with(Draft {
        list_id: list,
        campaign_id: ev.campaign(),
        method: Some("link".into()),
        ..Draft::default()
    }))
}
