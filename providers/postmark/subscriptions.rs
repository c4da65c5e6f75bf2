//! Postmark webhooks → `subscriptions`: SubscriptionChange records that reactivate sending
//! (`SuppressSending` false), a RESUBSCRIBE to the message stream (`list_id`). The change
//! time is consent evidence only when the recipient made the change (`Origin` `Recipient`).

use crate::{Action, Draft, Subscriptions};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::postmark::read(raw.payload)?;
    if ev.kind != "SubscriptionChange" {
        return Err(ev.not_for(Subscriptions::NAME));
    }
    if ev.flag(&["SuppressSending"]) != Some(false) {
        return Err(ev.not_for_as("SuppressSending true", Subscriptions::NAME));
    }
    let by_recipient = ev.str(&["Origin"]).as_deref() == Some("Recipient");
    Ok(ev.fields().with(Draft {
        list_id: ev.str(&["MessageStream"]),
        action: Some(Action::Resubscribe),
        consent_at: ev.time.clone().filter(|_| by_recipient),
        ..Draft::default()
    }))
}
