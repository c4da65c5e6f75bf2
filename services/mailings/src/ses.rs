//! Amazon SES (event publishing and identity notifications) → `mailings`. Bounces and
//! complaints for addresses already on SES's suppression list were never attempted: DROPPED.
//! A `Subscription` event is UNSUBSCRIBED when it opts the recipient out of something.

use crate::Mailings;
use tributary_engine::esp::{self, Bounce};
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::ses(raw.payload)?;
    let bounce = ev.bounce();
    let event_type = match ev.kind.as_str() {
        "send" => "SENT",
        "delivery" => "DELIVERED",
        "delivery_delay" => "DEFERRED",
        "bounce" if bounce == Some(Bounce::Suppressed) => "DROPPED",
        "bounce" => "BOUNCED",
        "complaint" if ev.str(&["complaint", "complaintSubType"]).as_deref() == Some("OnAccountSuppressionList") => {
            "DROPPED"
        }
        "complaint" => "COMPLAINED",
        "reject" => "DROPPED",
        "open" => "OPENED",
        "click" => "CLICKED",
        "rendering_failure" => "FAILED",
        "subscription" if !ev.ses_opt_outs().is_empty() => "UNSUBSCRIBED",
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
    let mut f = ev.fields();
    f.set_str("event_type", event_type)
        .set("message_id", ev.str(&["mail", "messageId"]))
        .set("campaign_id", ev.campaign())
        .set("smtp_response", smtp_response)
        .set("bounce_class", bounce.and_then(Bounce::class).map(str::to_owned));
    if let Some(key) = engagement {
        f.set("url", ev.str(&[key, "link"]))
            .set("user_agent", ev.str(&[key, "userAgent"]))
            .set("ip", ev.str(&[key, "ipAddress"]));
    }
    Ok(f.parsed())
}
