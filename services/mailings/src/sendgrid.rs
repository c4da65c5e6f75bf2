//! SendGrid Event Webhook → `mailings`: every delivery and engagement event
//! (`group_resubscribe` feeds `subscriptions` only).

use crate::Mailings;
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::sendgrid(raw.payload)?;
    // Only opens, clicks and unsubscribes carry the recipient's IP and user agent; on
    // deliveries `ip` is SendGrid's sending IP.
    let (event_type, by_recipient) = match ev.kind.as_str() {
        "processed" => ("SENT", false),
        "delivered" => ("DELIVERED", false),
        "deferred" => ("DEFERRED", false),
        "bounce" => ("BOUNCED", false),
        "dropped" => ("DROPPED", false),
        "open" => ("OPENED", true),
        "click" => ("CLICKED", true),
        "spamreport" => ("COMPLAINED", false),
        "unsubscribe" | "group_unsubscribe" => ("UNSUBSCRIBED", true),
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    let mut f = ev.fields();
    f.set_str("event_type", event_type)
        .set(
            "message_id",
            ev.str(&["sg_message_id"])
                .or_else(|| ev.str(&["smtp-id"]).map(|s| esp::strip_angle(&s))),
        )
        .set("campaign_id", ev.campaign())
        .set("smtp_response", ev.str(&["response"]).or_else(|| ev.str(&["reason"])))
        .set("bounce_class", ev.bounce().and_then(Bounce::class).map(str::to_owned));
    if by_recipient {
        f.set("url", ev.str(&["url"]))
            .set("user_agent", ev.str(&["useragent"]))
            .set("ip", ev.str(&["ip"]));
    }
    Ok(f.parsed())
}
