//! Amazon SES (event publishing and identity notifications) → `mailings`. Bounces and
//! complaints for addresses already on SES's suppression list were never attempted: DROPPED.
//! A `Subscription` event is UNSUBSCRIBED when it opts the recipient out of something.

use crate::{Draft, EventType, Mailings};
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Input, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::ses::read(raw.payload)?;
    let bounce = ev.bounce();
    let event_type = match ev.kind.as_str() {
        "send" => EventType::Sent,
        "delivery" => EventType::Delivered,
        "delivery_delay" => EventType::Deferred,
        "bounce" if bounce == Some(Bounce::Suppressed) => EventType::Dropped,
        "bounce" => EventType::Bounced,
        "complaint" if ev.str(&["complaint", "complaintSubType"]).as_deref() == Some("OnAccountSuppressionList") => {
            EventType::Dropped
        }
        "complaint" => EventType::Complained,
        "reject" => EventType::Dropped,
        "open" => EventType::Opened,
        "click" => EventType::Clicked,
        "rendering_failure" => EventType::Failed,
        "subscription" if !ev.ses_opt_outs().is_empty() => EventType::Unsubscribed,
        "subscription" => return Err(ev.not_for_as("no opt-out", Mailings::NAME)),
        _ => return Err(ev.not_for(Mailings::NAME)),
    };
    let smtp_response = match ev.kind.as_str() {
        "bounce" => ev
            .str(&["bounce", "bouncedRecipients", "0", "diagnosticCode"])
            .or_else(|| ev.str(&["bounce", "bouncedRecipients", "0", "status"])),
        "delivery" => ev.str(&["delivery", "smtpResponse"]),
        "delivery_delay" => ev
            .str(&["deliveryDelay", "delayedRecipients", "0", "diagnosticCode"])
            .or_else(|| ev.str(&["deliveryDelay", "delayType"])),
        "reject" => ev.str(&["reject", "reason"]),
        "rendering_failure" => ev.str(&["failure", "errorMessage"]),
        _ => None,
    };
    let engagement = match ev.kind.as_str() {
        "open" => Some("open"),
        "click" => Some("click"),
        _ => None,
    };
    let mut d = Draft {
        event_type: Some(event_type),
        message_id: ev.str(&["mail", "messageId"]),
        campaign_id: ev.campaign(),
        smtp_response,
        bounce_class: bounce.and_then(Bounce::class).map(str::to_owned),
        ..Draft::default()
    };
    if let Some(key) = engagement {
        d.url = ev.str(&[key, "link"]);
        d.user_agent = ev.str(&[key, "userAgent"]);
        d.ip = ev.str(&[key, "ipAddress"]);
    }
    Ok(ev.fields().with(d))
}
