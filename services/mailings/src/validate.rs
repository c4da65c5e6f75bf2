//! Validation and normalization of `mailings` records.

use crate::{field, Draft, EventType, MailingEvent};
use tributary_engine::{normalize, Common, Input, RecordError};

pub fn validate(input: Input<Draft>, common: Common, _now_micros: i64) -> Result<MailingEvent, RecordError> {
    let (mut p, d) = (input.fields, input.draft);
    let event_type = match d.event_type {
        Some(t) => t,
        None => p
            .opt_enum_spelt(field::EVENT_TYPE, EventType::spelt)?
            .ok_or_else(|| RecordError::missing(field::EVENT_TYPE))?,
    };
    let bounce_class = p
        .text_or(d.bounce_class, field::BOUNCE_CLASS)?
        .map(|b| match b.to_ascii_lowercase().as_str() {
            "hard" | "permanent" => Ok("hard".to_owned()),
            "soft" | "transient" | "temporary" => Ok("soft".to_owned()),
            "undetermined" | "unknown" => Ok("undetermined".to_owned()),
            _ => Err(RecordError::invalid(
                field::BOUNCE_CLASS,
                format!("'{}' is not hard, soft or undetermined", normalize::truncate(&b, 40)),
            )),
        })
        .transpose()?;
    Ok(MailingEvent {
        message_id: p
            .text_or(d.message_id, field::MESSAGE_ID)?
            .ok_or_else(|| RecordError::missing(field::MESSAGE_ID))?,
        campaign_id: p.text_or(d.campaign_id, field::CAMPAIGN_ID)?,
        event_type,
        url: p.text_or(d.url, field::URL)?,
        user_agent: p.text_or(d.user_agent, field::USER_AGENT)?,
        ip: p.text_or(d.ip, field::IP)?,
        smtp_response: p.text_or(d.smtp_response, field::SMTP_RESPONSE)?,
        bounce_class,
        common,
    })
}
