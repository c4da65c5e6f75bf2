//! Mailgun webhooks → `mailings`. `failed` is split by Mailgun's own verdict: `temporary`
//! (will retry) is DEFERRED, a `suppress-*` reason (never attempted) is DROPPED, the rest is
//! BOUNCED.

use crate::Mailings;
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mailgun(raw.payload)?;
    let bounce = ev.bounce();
    let event_type = match ev.kind.as_str() {
        "accepted" => "SENT",
        "delivered" => "DELIVERED",
        "failed" if bounce == Some(Bounce::Suppressed) => "DROPPED",
        "failed" if ev.str(&["severity"]).as_deref() == Some("temporary") => "DEFERRED",
        "failed" => "BOUNCED",
        "rejected" => "DROPPED",
        "opened" => "OPENED",
        "clicked" => "CLICKED",
        "complained" => "COMPLAINED",
        "unsubscribed" => "UNSUBSCRIBED",
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
    let mut f = ev.fields();
    f.set_str("event_type", event_type)
        .set(
            "message_id",
            ev.str(&["message", "headers", "message-id"])
                .map(|m| esp::strip_angle(&m)),
        )
        .set("campaign_id", ev.campaign())
        .set("smtp_response", smtp_response)
        .set("bounce_class", bounce.and_then(Bounce::class).map(str::to_owned))
        .set("url", ev.str(&["url"]))
        .set("user_agent", ev.str(&["client-info", "user-agent"]))
        .set("ip", ev.str(&["ip"]));
    Ok(f.parsed())
}
