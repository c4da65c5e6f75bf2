//! Postmark webhooks → `unsubscribes`: SubscriptionChange records that suppress sending for a
//! manual reason (the recipient's unsubscribe link, or the customer). Postmark suppresses per
//! message stream: `list_id` is the stream. `method` is the change's `Origin` (`recipient`,
//! `customer`, `admin`). Suppressions for hard bounces and spam complaints feed `blocklists`;
//! reactivations feed `subscriptions`.

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::postmark::read(raw.payload)?;
    if ev.kind != "SubscriptionChange" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    if ev.flag(&["SuppressSending"]) != Some(true) {
        return Err(ev.not_for_as("SuppressSending false", Unsubscribes::NAME));
    }
    match ev.str(&["SuppressionReason"]).as_deref() {
        None | Some("ManualSuppression") | Some("Unsubscribe") => {}
        Some(other) => return Err(ev.not_for_as(&format!("SuppressionReason {other}"), Unsubscribes::NAME)),
    }
    // A blank list id would mean every stream: a missing stream is refused instead.
    let stream = ev
        .str(&["MessageStream"])
        .ok_or_else(|| RecordError::missing("MessageStream"))?;
    Ok(ev.fields().with(Draft {
        list_id: Some(stream),
        campaign_id: ev.campaign(),
        method: ev.str(&["Origin"]),
        ..Draft::default()
    }))
}
