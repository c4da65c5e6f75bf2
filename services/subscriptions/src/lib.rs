//! The `subscriptions` chain: opt-ins, confirmations and re-subscriptions with their consent
//! evidence.

mod csv;
mod json;
mod mailchimp;
mod postmark;
mod sendgrid;
mod validate;

use tributary_engine::avro::AvroWriter;
use tributary_engine::{Chain, Common, Parsed, RawRecord, RecordError, Source};

pub const ACTIONS: &[&str] = &["SUBSCRIBE", "CONFIRM", "RESUBSCRIBE"];

/// A validated, normalized `subscriptions` record, fields in `schemas/subscriptions.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub common: Common,
    pub list_id: String,
    pub action: usize,
    pub consent_ip: Option<String>,
    pub consent_at: Option<i64>,
}

pub struct Subscriptions;

impl Chain for Subscriptions {
    type Record = Subscription;
    const NAME: &'static str = "subscriptions";
    const SCHEMA: &'static str = include_str!("../../../schemas/subscriptions.avsc");
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    const PORT: u16 = 9104;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
        match source {
            Source::Json => json::parse(raw),
            Source::Csv => csv::parse(raw),
            Source::Sendgrid => sendgrid::parse(raw),
            Source::Postmark => postmark::parse(raw),
            Source::Mailchimp => mailchimp::parse(raw),
            // No subscribe events in Mailgun's, SES's or Mandrill's webhooks.
            other => Err(other.unsupported(Self::NAME)),
        }
    }

    fn validate(p: Parsed, common: Common, now_micros: i64) -> Result<Subscription, RecordError> {
        validate::validate(p, common, now_micros)
    }

    fn common(r: &Subscription) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut Subscription) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &Subscription, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        w.string(&r.list_id);
        w.enum_index(r.action);
        w.opt_string(r.consent_ip.as_deref());
        w.opt_long(r.consent_at);
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
