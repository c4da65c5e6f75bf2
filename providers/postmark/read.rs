//! Postmark: recipient `Email` (Bounce, SpamComplaint) or `Recipient`; time `BouncedAt`,
//! `DeliveredAt`, `ReceivedAt` or `ChangedAt` (ISO 8601 with offset). Identity: `<ID>:<RecordType>`
//! for bounces and complaints (`ID` is the bounce id), else
//! `<MessageID>:<RecordType>:<recipient>`, plus `:<time>` for opens, clicks and subscription
//! changes, which repeat.

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &[
    "Delivery",
    "Bounce",
    "SpamComplaint",
    "Open",
    "Click",
    "SubscriptionChange",
    "Inbound",
];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let body = object(payload, Source::Postmark)?;
    let kind = required(&body, &["RecordType"], "RecordType")?;
    let bounce_like = matches!(kind.as_str(), "Bounce" | "SpamComplaint");
    let email = if bounce_like {
        str_at(&body, &["Email"]).or_else(|| str_at(&body, &["Recipient"]))
    } else {
        str_at(&body, &["Recipient"]).or_else(|| str_at(&body, &["Email"]))
    }
    .map(|e| bare_address(&e));
    let time_key = match kind.as_str() {
        "Bounce" | "SpamComplaint" => "BouncedAt",
        "Delivery" => "DeliveredAt",
        "SubscriptionChange" => "ChangedAt",
        _ => "ReceivedAt",
    };
    let time = present(&body, &[time_key]).or_else(|| {
        ["BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt"]
            .iter()
            .find_map(|k| present(&body, &[k]))
    });
    let event_id = if bounce_like {
        str_at(&body, &["ID"]).map(|id| format!("{id}:{kind}"))
    } else {
        None
    }
    .or_else(|| {
        str_at(&body, &["MessageID"]).map(|m| {
            let mut id = format!("{m}:{kind}");
            if let Some(e) = &email {
                id.push(':');
                id.push_str(&e.to_lowercase());
            }
            if matches!(kind.as_str(), "Open" | "Click" | "SubscriptionChange") {
                if let Some(t) = time.as_ref().and_then(scalar) {
                    id.push(':');
                    id.push_str(&t);
                }
            }
            id
        })
    });
    Ok(Event {
        source: Source::Postmark,
        kind,
        body,
        email,
        time,
        event_id,
    })
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(ev: &Event) -> Option<Bounce> {
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    (ev.kind == "Bounce").then(|| match s(&["Type"]).as_str() {
        "HardBounce" | "BadEmailAddress" => Bounce::Hard,
        "SoftBounce" | "Transient" | "DnsError" => Bounce::Soft,
        "ManuallyDeactivated" => Bounce::Suppressed,
        _ => Bounce::Undetermined,
    })
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.str(&["Tag"])
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/postmark/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    let hard = ev.bounce() == Some(Bounce::Hard);
    let suppress = ev.flag(&["SuppressSending"]);
    match ev.kind.as_str() {
        "Delivery" | "Open" | "Click" => M,
        "Bounce" if s(&["Type"]) == "SpamComplaint" => M_B,
        "Bounce" if hard => M_B,
        "Bounce" => M,
        "SpamComplaint" => M_B,
        "SubscriptionChange" if suppress == Some(false) => S,
        "SubscriptionChange" if suppress == Some(true) => match s(&["SuppressionReason"]).as_str() {
            "" | "ManualSuppression" | "Unsubscribe" => M_U,
            "HardBounce" | "SpamComplaint" => B,
            _ => NONE,
        },
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::MAILINGS.name;
