//! Mailgun (the JSON webhooks): recipient `recipient` (for `rejected`, which has none, the
//! `To` header), time `timestamp` (float seconds). Mailgun's event `id` is unique only within
//! a day, so the identity is `<id>:<timestamp>`.

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &[
    "accepted",
    "rejected",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "stored",
    "list_member_uploaded",
    "list_member_upload_error",
    "list_uploaded",
];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let mut obj = object(payload, Source::Mailgun)?;
    let body = match obj.remove("event-data") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(RecordError::malformed("mailgun 'event-data' is not an object")),
        None => obj,
    };
    let kind = required(&body, &["event"], "event")?;
    let email = str_at(&body, &["recipient"])
        .or_else(|| str_at(&body, &["message", "headers", "to"]))
        .map(|e| bare_address(&e));
    let time = present(&body, &["timestamp"]);
    let event_id = str_at(&body, &["id"]).map(|id| match time.as_ref().and_then(scalar) {
        Some(t) => format!("{id}:{t}"),
        None => id,
    });
    Ok(Event {
        source: Source::Mailgun,
        kind,
        email,
        time,
        event_id,
        body,
    })
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(ev: &Event) -> Option<Bounce> {
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    (ev.kind == "failed").then(|| {
        let reason = s(&["reason"]);
        if reason.starts_with("suppress-") {
            Bounce::Suppressed
        } else if s(&["severity"]) == "temporary" || reason == "old" {
            Bounce::Soft
        } else if reason == "bounce" {
            Bounce::Hard
        } else {
            Bounce::Undetermined
        }
    })
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.str(&["campaigns", "0", "id"]).or_else(|| ev.list(&["tags"]))
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/mailgun/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let hard = ev.bounce() == Some(Bounce::Hard);
    match ev.kind.as_str() {
        "accepted" | "delivered" | "rejected" | "opened" | "clicked" => M,
        "failed" if hard => M_B,
        "failed" => M,
        "complained" => M_B,
        "unsubscribed" => M_U,
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::MAILINGS.name;
