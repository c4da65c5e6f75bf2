//! Mailgun webhooks → `unsubscribes`: `unsubscribed` (the recipient clicked an unsubscribe
//! link). Scoped to the mailing list when the message went through one; otherwise Mailgun
//! does not say whether the link was the domain-wide or a tag's, and the record covers every
//! list.

use crate::Unsubscribes;
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mailgun(raw.payload)?;
    if ev.kind != "unsubscribed" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    let mut f = ev.fields();
    f.set("list_id", ev.str(&["mailing-list", "address"]))
        .set("campaign_id", ev.campaign())
        .set_str("method", "link");
    Ok(f.parsed())
}
