//! The `mailings` chain: the life of each sent message.

mod csv;
mod json;
mod mailgun;
mod mandrill;
mod postmark;
mod sendgrid;
mod ses;
mod validate;

use tributary_engine::avro::AvroWriter;
use tributary_engine::{Chain, Common, Parsed, RawRecord, RecordError, Source};

pub const EVENT_TYPES: &[&str] = &[
    "SENT",
    "DELIVERED",
    "DEFERRED",
    "BOUNCED",
    "DROPPED",
    "OPENED",
    "CLICKED",
    "COMPLAINED",
    "UNSUBSCRIBED",
    "FAILED",
];

/// A validated, normalized `mailings` record, fields in `schemas/mailings.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct MailingEvent {
    pub common: Common,
    pub message_id: String,
    pub campaign_id: Option<String>,
    pub event_type: usize,
    pub url: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub smtp_response: Option<String>,
    pub bounce_class: Option<String>,
}

pub struct Mailings;

impl Chain for Mailings {
    type Record = MailingEvent;
    const NAME: &'static str = "mailings";
    const SCHEMA: &'static str = include_str!("../../../schemas/mailings.avsc");
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    const PORT: u16 = 9105;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
        match source {
            Source::Json => json::parse(raw),
            Source::Csv => csv::parse(raw),
            Source::Sendgrid => sendgrid::parse(raw),
            Source::Mailgun => mailgun::parse(raw),
            Source::Ses => ses::parse(raw),
            Source::Postmark => postmark::parse(raw),
            Source::Mandrill => mandrill::parse(raw),
            // Mailchimp's audience webhooks carry no per-message events.
            other => Err(other.unsupported(Self::NAME)),
        }
    }

    fn validate(p: Parsed, common: Common, now_micros: i64) -> Result<MailingEvent, RecordError> {
        validate::validate(p, common, now_micros)
    }

    fn common(r: &MailingEvent) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut MailingEvent) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &MailingEvent, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        w.string(&r.message_id);
        w.opt_string(r.campaign_id.as_deref());
        w.enum_index(r.event_type);
        for f in [&r.url, &r.user_agent, &r.ip, &r.smtp_response, &r.bounce_class] {
            w.opt_string(f.as_deref());
        }
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
