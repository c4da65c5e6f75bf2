//! Mailchimp audience webhooks → `subscriptions`: `subscribe`, a SUBSCRIBE to the audience
//! `data[list_id]` (Mailchimp fires it once the member is subscribed, after any double
//! opt-in), with the opt-in IP (`ip_opt`, else the sign-up IP) and time as consent evidence.

use crate::{Action, Draft, Subscriptions};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mailchimp::read(raw.payload)?;
    if ev.kind != "subscribe" {
        return Err(ev.not_for(Subscriptions::NAME));
    }
    Ok(ev.fields().with(Draft {
        list_id: ev.str(&["data", "list_id"]),
        action: Some(Action::Subscribe),
        consent_ip: ev.str(&["data", "ip_opt"]).or_else(|| ev.str(&["data", "ip_signup"])),
        consent_at: ev.time.clone(),
    }))
}
