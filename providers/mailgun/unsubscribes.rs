//! Mailgun webhooks → `unsubscribes`: `unsubscribed` (the recipient clicked an unsubscribe
//! link). Scoped to the mailing list when the message went through one; otherwise Mailgun
//! does not say whether the link was the domain-wide or a tag's, and the record covers every
//! list.

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mailgun::read(raw.payload)?;
    if ev.kind != "unsubscribed" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    Ok(ev.fields().with(Draft {
        list_id: ev.str(&["mailing-list", "address"]),
        campaign_id: ev.campaign(),
        method: Some("link".into()),
        ..Draft::default()
    }))
}
