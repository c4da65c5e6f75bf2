//! SendGrid Event Webhook → `unsubscribes`: `unsubscribe` (from everything: no list) and
//! `group_unsubscribe` (from the suppression group `asm_group_id`), both from a link.

use crate::Unsubscribes;
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::sendgrid(raw.payload)?;
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
    let mut f = ev.fields();
    f.set("list_id", list)
        .set("campaign_id", ev.campaign())
        .set_str("method", "link");
    Ok(f.parsed())
}
