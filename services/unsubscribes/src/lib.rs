//! The `unsubscribes` chain: opt-outs, per list or from all lists.

mod csv;
mod json;
mod mailchimp;
mod mailgun;
mod mandrill;
mod postmark;
mod sendgrid;
mod ses;
mod validate;

use tributary_engine::avro::AvroWriter;
use tributary_engine::{Chain, Common, Parsed, RawRecord, RecordError, Source};

/// A validated, normalized `unsubscribes` record, fields in `schemas/unsubscribes.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub common: Common,
    /// `None` means every list.
    pub list_id: Option<String>,
    pub campaign_id: Option<String>,
    pub reason: Option<String>,
    pub method: Option<String>,
}

pub struct Unsubscribes;

impl Chain for Unsubscribes {
    type Record = Unsubscribe;
    const NAME: &'static str = "unsubscribes";
    const SCHEMA: &'static str = include_str!("../../../schemas/unsubscribes.avsc");
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    const PORT: u16 = 9102;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
        match source {
            Source::Json => json::parse(raw),
            Source::Csv => csv::parse(raw),
            Source::Sendgrid => sendgrid::parse(raw),
            Source::Mailgun => mailgun::parse(raw),
            Source::Ses => ses::parse(raw),
            Source::Postmark => postmark::parse(raw),
            Source::Mailchimp => mailchimp::parse(raw),
            Source::Mandrill => mandrill::parse(raw),
        }
    }

    fn validate(p: Parsed, common: Common, now_micros: i64) -> Result<Unsubscribe, RecordError> {
        validate::validate(p, common, now_micros)
    }

    fn common(r: &Unsubscribe) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut Unsubscribe) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &Unsubscribe, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        for f in [&r.list_id, &r.campaign_id, &r.reason, &r.method] {
            w.opt_string(f.as_deref());
        }
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
