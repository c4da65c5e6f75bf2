//! Mailchimp audience webhooks → `unsubscribes`: `unsubscribe`, from the audience
//! `data[list_id]`, with the campaign that prompted it, the `reason` (`manual`, `abuse`) and,
//! as `method`, Mailchimp's `action` (`unsub`, or `delete` when the member was deleted from
//! the audience, which is kept as an opt-out too: suppression errs on the safe side).

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mailchimp::read(raw.payload)?;
    if ev.kind != "unsubscribe" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    // A blank list id would mean every list: a missing audience is refused instead.
    let list = ev
        .str(&["data", "list_id"])
        .ok_or_else(|| RecordError::missing("data[list_id]"))?;
    Ok(ev.fields().with(Draft {
        list_id: Some(list),
        campaign_id: ev.campaign(),
        reason: ev.str(&["data", "reason"]),
        method: ev.str(&["data", "action"]),
    }))
}
