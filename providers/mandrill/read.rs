//! Mandrill (Mailchimp Transactional): message events (`event`) and sync events (`type`
//! `blacklist`/`denylist` or `whitelist`/`safelist`, `action`, `reject`/`entry`). Recipient
//! `msg.email` (sync: `reject.email`), time `ts` (integer or float seconds). Identity:
//! `<_id>:<event>` (`_id` from the event, else `msg._id`), plus `:<ts>` for opens, clicks and
//! deferrals, which repeat; sync events have none.

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &[
    "send",
    "deferral",
    "hard_bounce",
    "soft_bounce",
    "open",
    "click",
    "spam",
    "unsub",
    "reject",
    "inbound",
    "blacklist",
    "whitelist",
    "denylist",
    "safelist",
];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let body = object(payload, Source::Mandrill)?;
    let kind = match str_at(&body, &["event"]) {
        Some(k) => k,
        None => required(&body, &["type"], "event")?,
    };
    let email = str_at(&body, &["msg", "email"])
        .or_else(|| str_at(&body, &["reject", "email"]))
        .or_else(|| str_at(&body, &["entry", "email"]))
        .map(|e| bare_address(&e));
    let time = present(&body, &["ts"]);
    // Message events have an `event` and an `_id`; sync events a `type` and neither.
    let event_id = if body.contains_key("event") {
        str_at(&body, &["_id"])
            .or_else(|| str_at(&body, &["msg", "_id"]))
            .map(|id| {
                let mut id = format!("{id}:{kind}");
                if matches!(kind.as_str(), "open" | "click" | "deferral") {
                    if let Some(t) = time.as_ref().and_then(scalar) {
                        id.push(':');
                        id.push_str(&t);
                    }
                }
                id
            })
    } else {
        None
    };
    Ok(Event {
        source: Source::Mandrill,
        kind,
        body,
        email,
        time,
        event_id,
    })
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(ev: &Event) -> Option<Bounce> {
    match ev.kind.as_str() {
        "hard_bounce" => Some(Bounce::Hard),
        "soft_bounce" => Some(Bounce::Soft),
        _ => None,
    }
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.list(&["msg", "tags"])
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/mandrill/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    match ev.kind.as_str() {
        "send" | "deferral" | "open" | "click" | "reject" | "soft_bounce" => M,
        "hard_bounce" | "spam" => M_B,
        "unsub" => M_U,
        "blacklist" | "denylist" => match s(&["reject", "reason"]).as_str() {
            "soft-bounce" | "unsub" => NONE,
            _ => B,
        },
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::MAILINGS.name;
