//! Mandrill (Mailchimp Transactional) message events → `mailings`. Sync events (rejection
//! blacklist and whitelist changes) are not about a message.

use crate::{Draft, EventType, Mailings};
use serde_json::Value;
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mandrill::read(raw.payload)?;
    let event_type = match ev.kind.as_str() {
        "send" => EventType::Sent,
        "deferral" => EventType::Deferred,
        "hard_bounce" | "soft_bounce" => EventType::Bounced,
        "open" => EventType::Opened,
        "click" => EventType::Clicked,
        "spam" => EventType::Complained,
        "unsub" => EventType::Unsubscribed,
        "reject" => EventType::Dropped,
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    // The latest SMTP exchange of a deferral holds its diagnostic.
    let last_smtp = match ev.get(&["msg", "smtp_events"]) {
        Some(Value::Array(events)) => events
            .iter()
            .rev()
            .find_map(|e| e.get("diag").and_then(Value::as_str))
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty()),
        _ => None,
    };
    Ok(ev.fields().with(Draft {
        event_type: Some(event_type),
        message_id: ev.str(&["msg", "_id"]).or_else(|| ev.str(&["_id"])),
        campaign_id: ev.campaign(),
        smtp_response: ev
            .str(&["msg", "diag"])
            .or(last_smtp)
            .or_else(|| ev.str(&["msg", "bounce_description"])),
        bounce_class: ev.bounce().and_then(Bounce::class).map(str::to_owned),
        url: ev.str(&["url"]),
        user_agent: ev.str(&["user_agent"]),
        ip: ev.str(&["ip"]),
    }))
}
