//! Amazon SES → `unsubscribes`: `Subscription` events (list management) that opt the
//! recipient out: of the whole contact list when `unsubscribeAll` turned true (`list_id` the
//! contact list), else of one topic (`<contactList>:<topic>`). An event that opts out of
//! several topics at once is refused: the gateway sends one record a topic, as it does a
//! recipient. `method`: `list_unsubscribe` (the List-Unsubscribe header) or `link`.

use crate::{Draft, Unsubscribes};
use tributary_engine::esp;
use tributary_engine::{Chain, ErrorClass, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::ses::read(raw.payload)?;
    if ev.kind != "subscription" {
        return Err(ev.not_for(Unsubscribes::NAME));
    }
    // A blank list id would mean every list: a missing contact list is refused instead.
    ev.str(&["subscription", "contactList"])
        .ok_or_else(|| RecordError::missing("contactList"))?;
    let mut opt_outs = ev.ses_opt_outs();
    let list = match opt_outs.len() {
        0 => return Err(ev.not_for_as("no opt-out", Unsubscribes::NAME)),
        1 => opt_outs.remove(0),
        n => {
            return Err(RecordError::new(
                ErrorClass::InvalidValue,
                format!("ses subscription event opts out of {n} topics: the gateway sends one record a topic"),
            ))
        }
    };
    let method = ev.str(&["subscription", "source"]).map(|s| match s.as_str() {
        "UnsubscribeHeader" => "list_unsubscribe".to_owned(),
        "UnsubscribeLink" => "link".to_owned(),
        other => other.to_ascii_lowercase(),
    });
    // One event may opt out of several topics, sent as one record a topic: the topic is part
    // of the identity, or dedup would keep only the first.
    let event_id = ev.event_id.clone().map(|id| format!("{id}:{list}"));
    let mut f = ev.fields();
    f.set(tributary_engine::field::EVENT_ID, event_id);
    Ok(f.with(Draft {
        list_id: Some(list),
        campaign_id: ev.campaign(),
        method,
        ..Draft::default()
    }))
}
