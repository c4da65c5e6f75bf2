//! Mailgun webhooks → `mailings`. `failed` is split by Mailgun's own verdict: `temporary`
//! (will retry) is DEFERRED, a `suppress-*` reason (never attempted) is DROPPED, the rest is
//! BOUNCED.

use crate::{Draft, EventType, Mailings};
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mailgun::read(raw.payload)?;
    let bounce = ev.bounce();
    let event_type = match ev.kind.as_str() {
        "accepted" => EventType::Sent,
        "delivered" => EventType::Delivered,
        "failed" if bounce == Some(Bounce::Suppressed) => EventType::Dropped,
        "failed" if ev.str(&["severity"]).as_deref() == Some("temporary") => EventType::Deferred,
        "failed" => EventType::Bounced,
        "rejected" => EventType::Dropped,
        "opened" => EventType::Opened,
        "clicked" => EventType::Clicked,
        "complained" => EventType::Complained,
        "unsubscribed" => EventType::Unsubscribed,
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    let status = ev
        .str(&["delivery-status", "message"])
        .or_else(|| ev.str(&["delivery-status", "description"]));
    let smtp_response = match (ev.str(&["delivery-status", "code"]), status) {
        (Some(code), Some(text)) => Some(format!("{code} {text}")),
        (None, Some(text)) => Some(text),
        (code, None) => code.or_else(|| ev.str(&["reject", "reason"])),
    };
    Ok(ev.fields().with(Draft {
        event_type: Some(event_type),
        message_id: ev
            .str(&["message", "headers", "message-id"])
            .map(|m| esp::strip_angle(&m)),
        campaign_id: ev.campaign(),
        smtp_response,
        bounce_class: bounce.and_then(Bounce::class).map(str::to_owned),
        url: ev.str(&["url"]),
        user_agent: ev.str(&["client-info", "user-agent"]),
        ip: ev.str(&["ip"]),
    }))
}
