//! Mandrill (Mailchimp Transactional) → `unsubscribes`: `unsub` message events. Mandrill
//! keeps unsubscribes on its account-wide rejection blacklist: the record covers every list.

use crate::Unsubscribes;
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mandrill(raw.payload)?;
    if ev.kind != "unsub" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    let mut f = ev.fields();
    f.set("campaign_id", ev.campaign());
    Ok(f.parsed())
}
