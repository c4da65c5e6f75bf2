//! Mandrill (Mailchimp Transactional) → `unsubscribes`: `unsub` message events. Mandrill
//! keeps unsubscribes on its account-wide rejection blacklist: the record covers every list.

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mandrill::read(raw.payload)?;
    if ev.kind != "unsub" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    Ok(ev.fields().with(Draft {
        campaign_id: ev.campaign(),
        ..Draft::default()
    }))
}
