//! Amazon SES. The recipient comes from the event's own list (`bounce.bouncedRecipients`,
//! `complaint.complainedRecipients`, `delivery.recipients`, `deliveryDelay.delayedRecipients`),
//! else `mail.destination`; that list must hold exactly one address. The gateway sends one
//! record a recipient, each with the list cut down to that recipient; a record that still
//! names several is refused (an open, click or subscription event of a message to several
//! recipients cannot be attributed at all). Identity: `<mail.messageId>:<type>:<recipient>`,
//! plus `:<event timestamp>` for the types that repeat (open, click, delivery_delay). Time: the
//! event object's `timestamp`, else `mail.timestamp` (ISO 8601).

use super::*;

/// Every event name the provider sends; an event outside these is not one of its events.
pub const KINDS: &[&str] = &[
    "send",
    "reject",
    "delivery",
    "bounce",
    "complaint",
    "delivery_delay",
    "open",
    "click",
    "rendering_failure",
    "subscription",
    "received",
];

pub fn read(payload: &[u8]) -> Result<Event, RecordError> {
    let mut obj = object(payload, Source::Ses)?;
    if let Some(t) = obj.get("Type").and_then(Value::as_str) {
        if t != "Notification" {
            return Err(RecordError::new(
                ErrorClass::InvalidValue,
                format!("an SNS '{}' message is not an SES event", truncate(t, 40)),
            ));
        }
        obj = match obj.remove("Message") {
            Some(Value::String(m)) => match serde_json::from_str::<Value>(&m) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(RecordError::malformed(format!(
                        "the SNS 'Message' is not SES JSON: '{}'",
                        truncate(&m, 60)
                    )))
                }
            },
            Some(Value::Object(m)) => m,
            _ => return Err(RecordError::missing("Message")),
        };
    } else if obj.contains_key("detail-type") {
        // EventBridge: the SES JSON is the `detail`.
        obj = match obj.remove("detail") {
            Some(Value::Object(m)) => m,
            _ => return Err(RecordError::malformed("the EventBridge 'detail' is not an object")),
        };
    }
    let given = str_at(&obj, &["eventType"])
        .or_else(|| str_at(&obj, &["notificationType"]))
        .ok_or_else(|| RecordError::missing("eventType"))?;
    let kind = ses_kind(&given);
    let (object_key, list, item_key) = match kind.as_str() {
        "bounce" => ("bounce", Some("bouncedRecipients"), Some("emailAddress")),
        "complaint" => ("complaint", Some("complainedRecipients"), Some("emailAddress")),
        "delivery" => ("delivery", Some("recipients"), None),
        "delivery_delay" => ("deliveryDelay", Some("delayedRecipients"), Some("emailAddress")),
        "rendering_failure" => ("failure", None, None),
        other => (other, None, None),
    };
    let recipients = match list {
        Some(l) => addresses(get(&obj, &[object_key, l]), item_key),
        None => addresses(get(&obj, &["mail", "destination"]), None),
    };
    let repeats = matches!(kind.as_str(), "open" | "click" | "delivery_delay");
    // Opens, clicks and subscription changes do not say which of the message's recipients acted.
    let unattributable = matches!(kind.as_str(), "open" | "click" | "subscription");
    let email = match recipients.len() {
        0 => None,
        1 => recipients.into_iter().next(),
        n if unattributable => {
            return Err(RecordError::new(
                ErrorClass::InvalidValue,
                format!("ses {kind} event of a message to {n} recipients cannot be attributed to one of them"),
            ))
        }
        n => {
            return Err(RecordError::new(
                ErrorClass::InvalidValue,
                format!("ses {kind} event names {n} recipients: the gateway sends one record a recipient"),
            ))
        }
    };
    let time = present(&obj, &[object_key, "timestamp"]).or_else(|| present(&obj, &["mail", "timestamp"]));
    let event_id = str_at(&obj, &["mail", "messageId"]).map(|m| {
        let mut id = format!("{m}:{kind}");
        if let Some(e) = &email {
            id.push(':');
            id.push_str(&e.to_lowercase());
        }
        if repeats {
            if let Some(t) = time.as_ref().and_then(scalar) {
                id.push(':');
                id.push_str(&t);
            }
        }
        id
    });
    Ok(Event {
        source: Source::Ses,
        kind,
        body: obj,
        email,
        time,
        event_id,
    })
}

fn ses_kind(given: &str) -> String {
    let squashed: String = given
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    match squashed.as_str() {
        "renderingfailure" => "rendering_failure".to_owned(),
        "deliverydelay" => "delivery_delay".to_owned(),
        s if KINDS.contains(&s) => s.to_owned(),
        _ => given.to_owned(),
    }
}

/// For the provider's bounce events, what the failure means for the address.
pub fn bounce(ev: &Event) -> Option<Bounce> {
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    (ev.kind == "bounce").then(|| match s(&["bounce", "bounceType"]).as_str() {
        "Permanent" => match s(&["bounce", "bounceSubType"]).as_str() {
            "Suppressed" | "OnAccountSuppressionList" => Bounce::Suppressed,
            _ => Bounce::Hard,
        },
        "Transient" => Bounce::Soft,
        _ => Bounce::Undetermined,
    })
}

/// The campaign: the provider's campaign id where it has one, else its tags.
pub fn campaign(ev: &Event) -> Option<String> {
    ev.list(&["mail", "tags", "campaign_id"])
        .or_else(|| ev.list(&["mail", "tags", "campaign"]))
}

/// The chains an event feeds: the gateway's routing table for this provider, from what each
/// chain's `providers/ses/<chain>.rs` takes.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use super::route::*;
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    let hard = ev.bounce() == Some(Bounce::Hard);
    match ev.kind.as_str() {
        "send" | "delivery" | "delivery_delay" | "reject" | "open" | "click" | "rendering_failure" => M,
        "bounce" if hard => M_B,
        "bounce" => M,
        "complaint"
            if s(&["complaint", "complaintSubType"]) == "OnAccountSuppressionList"
                || s(&["complaint", "complaintFeedbackType"]) == "not-spam" =>
        {
            M
        }
        "complaint" => M_B,
        "subscription" if !ev.ses_opt_outs().is_empty() => M_U,
        _ => NONE,
    }
}

/// The chain an event goes to that no chain takes or that cannot be read, to be dead-lettered
/// there with its reason.
pub const FALLBACK: &str = crate::chains::MAILINGS.name;
