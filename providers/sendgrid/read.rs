//! SendGrid: identity `sg_event_id`, recipient `email`, time `timestamp` (integer seconds).

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &[
    "processed",
    "dropped",
    "delivered",
    "deferred",
    "bounce",
    "open",
    "click",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let body = object(payload, Source::Sendgrid)?;
    let kind = required(&body, &["event"], "event")?;
    Ok(Event {
        source: Source::Sendgrid,
        email: str_at(&body, &["email"]).map(|e| bare_address(&e)),
        time: present(&body, &["timestamp"]),
        event_id: str_at(&body, &["sg_event_id"]),
        kind,
        body,
    })
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(ev: &Event) -> Option<Bounce> {
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    // `type` is `bounce` (hard) or `blocked` (a block: temporary or reputation); a 4.x.x
    // `status` is temporary whatever the type.
    (ev.kind == "bounce").then(|| match (s(&["type"]).as_str(), s(&["status"]).as_bytes().first()) {
        ("blocked", _) | (_, Some(b'4')) => Bounce::Soft,
        ("bounce", _) | ("", Some(b'5')) => Bounce::Hard,
        _ => Bounce::Undetermined,
    })
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.str(&["marketing_campaign_id"])
        .or_else(|| ev.str(&["singlesend_id"]))
        .or_else(|| ev.list(&["category"]))
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/sendgrid/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let hard = ev.bounce() == Some(Bounce::Hard);
    // Hard bounces and spam reports also suppress; link unsubscribes also opt out.
    match ev.kind.as_str() {
        "processed" | "delivered" | "deferred" | "dropped" | "open" | "click" => M,
        "bounce" if hard => M_B,
        "bounce" => M,
        "spamreport" => M_B,
        "unsubscribe" | "group_unsubscribe" => M_U,
        "group_resubscribe" => S,
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::MAILINGS.name;
