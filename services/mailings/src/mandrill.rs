//! Mandrill (Mailchimp Transactional) message events → `mailings`. Sync events (rejection
//! blacklist and whitelist changes) are not about a message.

use crate::Mailings;
use serde_json::Value;
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mandrill(raw.payload)?;
    let event_type = match ev.kind.as_str() {
        "send" => "SENT",
        "deferral" => "DEFERRED",
        "hard_bounce" | "soft_bounce" => "BOUNCED",
        "open" => "OPENED",
        "click" => "CLICKED",
        "spam" => "COMPLAINED",
        "unsub" => "UNSUBSCRIBED",
        "reject" => "DROPPED",
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
    let mut f = ev.fields();
    f.set_str("event_type", event_type)
        .set("message_id", ev.str(&["msg", "_id"]).or_else(|| ev.str(&["_id"])))
        .set("campaign_id", ev.campaign())
        .set(
            "smtp_response",
            ev.str(&["msg", "diag"])
                .or(last_smtp)
                .or_else(|| ev.str(&["msg", "bounce_description"])),
        )
        .set("bounce_class", ev.bounce().and_then(Bounce::class).map(str::to_owned))
        .set("url", ev.str(&["url"]))
        .set("user_agent", ev.str(&["user_agent"]))
        .set("ip", ev.str(&["ip"]));
    Ok(f.parsed())
}
