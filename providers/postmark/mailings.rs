//! Postmark webhooks → `mailings`. A Bounce record of type `Transient` or `DnsError` is a
//! delay Postmark retries (DEFERRED); of type `SpamComplaint`, a complaint; of type
//! `ManuallyDeactivated`, a message to an inactive address that was never attempted (DROPPED).
//! A SubscriptionChange that suppresses sending at the recipient's request is UNSUBSCRIBED.

use crate::{Draft, EventType, Mailings};
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::postmark::read(raw.payload)?;
    let bounce = ev.bounce();
    let bounce_type = ev.str(&["Type"]).unwrap_or_default();
    let event_type = match ev.kind.as_str() {
        "Delivery" => EventType::Delivered,
        "Bounce" if bounce_type == "SpamComplaint" => EventType::Complained,
        "Bounce" if matches!(bounce_type.as_str(), "Transient" | "DnsError") => EventType::Deferred,
        "Bounce" if bounce == Some(Bounce::Suppressed) => EventType::Dropped,
        "Bounce" => EventType::Bounced,
        "SpamComplaint" => EventType::Complained,
        "Open" => EventType::Opened,
        "Click" => EventType::Clicked,
        "SubscriptionChange" => match unsubscribe(&ev) {
            Ok(()) => EventType::Unsubscribed,
            Err(detail) => return Err(ev.not_for_as(&detail, Mailings::NAME)),
        },
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    Ok(ev.fields().with(Draft {
        event_type: Some(event_type),
        message_id: ev.str(&["MessageID"]),
        campaign_id: ev.campaign(),
        smtp_response: ev.str(&["Details"]),
        bounce_class: bounce.and_then(Bounce::class).map(str::to_owned),
        url: ev.str(&["OriginalLink"]),
        user_agent: ev.str(&["UserAgent"]),
        ip: ev.str(&["Geo", "IP"]),
    }))
}

/// A SubscriptionChange is an unsubscribe when it suppresses sending for a manual reason
/// (the recipient's unsubscribe link, or the customer); hard bounces and spam complaints
/// also suppress, and arrive as their own Bounce and SpamComplaint records.
fn unsubscribe(ev: &esp::Event) -> Result<(), String> {
    if ev.flag(&["SuppressSending"]) != Some(true) {
        return Err("SuppressSending false".to_owned());
    }
    match ev.str(&["SuppressionReason"]).as_deref() {
        None | Some("ManualSuppression") | Some("Unsubscribe") => Ok(()),
        Some(other) => Err(format!("SuppressionReason {other}")),
    }
}
