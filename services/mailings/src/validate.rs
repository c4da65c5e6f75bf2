//! Validation and normalization of `mailings` records.

use crate::{MailingEvent, EVENT_TYPES};
use tributary_engine::{normalize, Common, Parsed, RecordError};

pub fn validate(mut p: Parsed, common: Common, _now_micros: i64) -> Result<MailingEvent, RecordError> {
    let event_type = match p.opt_str("event_type")? {
        None => return Err(RecordError::missing("event_type")),
        Some(t) => event_type_index(&t).ok_or_else(|| {
            RecordError::invalid(
                "event_type",
                format!(
                    "'{}' is not one of {}",
                    normalize::truncate(&t, 40),
                    EVENT_TYPES.join(", ")
                ),
            )
        })?,
    };
    let bounce_class = p
        .opt_str("bounce_class")?
        .map(|b| match b.to_ascii_lowercase().as_str() {
            "hard" | "permanent" => Ok("hard".to_owned()),
            "soft" | "transient" | "temporary" => Ok("soft".to_owned()),
            "undetermined" | "unknown" => Ok("undetermined".to_owned()),
            _ => Err(RecordError::invalid(
                "bounce_class",
                format!("'{}' is not hard, soft or undetermined", normalize::truncate(&b, 40)),
            )),
        })
        .transpose()?;
    Ok(MailingEvent {
        message_id: p.req_str("message_id")?,
        campaign_id: p.opt_str("campaign_id")?,
        event_type,
        url: p.opt_str("url")?,
        user_agent: p.opt_str("user_agent")?,
        ip: p.opt_str("ip")?,
        smtp_response: p.opt_str("smtp_response")?,
        bounce_class,
        common,
    })
}

/// Past-tense symbols, and the present-tense words ESPs use.
fn event_type_index(t: &str) -> Option<usize> {
    let up = t.trim().to_ascii_uppercase();
    let canonical = match up.as_str() {
        "SEND" | "PROCESSED" => "SENT",
        "DELIVERY" | "DELIVER" => "DELIVERED",
        "DEFERRAL" | "DEFER" | "DELAYED" => "DEFERRED",
        "BOUNCE" => "BOUNCED",
        "DROP" | "REJECTED" | "REJECT" => "DROPPED",
        "OPEN" => "OPENED",
        "CLICK" => "CLICKED",
        "COMPLAINT" | "SPAMREPORT" | "SPAM" => "COMPLAINED",
        "UNSUBSCRIBE" => "UNSUBSCRIBED",
        "FAILURE" | "FAIL" => "FAILED",
        other => other,
    };
    EVENT_TYPES.iter().position(|s| *s == canonical)
}
