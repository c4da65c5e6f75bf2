//! Mailchimp (audience webhooks): recipient `data[email]` (`data[new_email]` for `upemail`),
//! time `fired_at` (`YYYY-MM-DD HH:MM:SS`, read as UTC). No event id: the engine hashes the
//! normalized record.

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &["subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign"];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let is_json = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let body = if is_json {
        object(payload, Source::Mailchimp)?
    } else {
        form(payload)?
    };
    let kind = required(&body, &["type"], "type")?;
    let email = str_at(&body, &["data", "email"])
        .or_else(|| str_at(&body, &["data", "new_email"]))
        .map(|e| bare_address(&e));
    Ok(Event {
        source: Source::Mailchimp,
        email,
        time: present(&body, &["fired_at"]),
        event_id: None,
        kind,
        body,
    })
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(_ev: &Event) -> Option<Bounce> {
    None
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.str(&["data", "campaign_id"])
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/mailchimp/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    match ev.kind.as_str() {
        "subscribe" => USR_S,
        "profile" | "upemail" => USR,
        "unsubscribe" if s(&["data", "reason"]) == "abuse" => U_B,
        "unsubscribe" => U,
        "cleaned" => B,
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::USERS.name;
