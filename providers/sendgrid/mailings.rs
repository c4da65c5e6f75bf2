//! SendGrid Event Webhook → `mailings`: every delivery and engagement event
//! (`group_resubscribe` feeds `subscriptions` only).

use crate::{Draft, EventType, Mailings};
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::sendgrid::read(raw.payload)?;
    // Only opens, clicks and unsubscribes carry the recipient's IP and user agent; on
    // deliveries `ip` is SendGrid's sending IP.
    let (event_type, by_recipient) = match ev.kind.as_str() {
        "processed" => (EventType::Sent, false),
        "delivered" => (EventType::Delivered, false),
        "deferred" => (EventType::Deferred, false),
        "bounce" => (EventType::Bounced, false),
        "dropped" => (EventType::Dropped, false),
        "open" => (EventType::Opened, true),
        "click" => (EventType::Clicked, true),
        "spamreport" => (EventType::Complained, false),
        "unsubscribe" | "group_unsubscribe" => (EventType::Unsubscribed, true),
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    let mut d = Draft {
        event_type: Some(event_type),
        message_id: ev
            .str(&["sg_message_id"])
            .or_else(|| ev.str(&["smtp-id"]).map(|s| esp::strip_angle(&s))),
        campaign_id: ev.campaign(),
        smtp_response: ev.str(&["response"]).or_else(|| ev.str(&["reason"])),
        bounce_class: ev.bounce().and_then(Bounce::class).map(str::to_owned),
        ..Draft::default()
    };
    if by_recipient {
        d.url = ev.str(&["url"]);
        d.user_agent = ev.str(&["useragent"]);
        d.ip = ev.str(&["ip"]);
    }
    Ok(ev.fields().with(d))
}
