//! The `blocklists` chain: suppressions of addresses and domains, added and removed.

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
use tributary_engine::esp::{Event, Fields};
use tributary_engine::{Chain, Common, Parsed, RawRecord, RecordError, Source};

pub const ACTIONS: &[&str] = &["ADD", "REMOVE"];
pub const KINDS: &[&str] = &["EMAIL", "DOMAIN"];
pub const REASONS: &[&str] = &["HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL", "INVALID", "ERASED", "OTHER"];

/// A validated, normalized `blocklists` record, fields in `schemas/blocklists.avsc` order.
/// Enums are held as indexes into the symbol lists above.
#[derive(Debug, Clone, PartialEq)]
pub struct BlocklistEntry {
    pub common: Common,
    pub action: usize,
    pub kind: usize,
    pub value: String,
    pub reason: usize,
    pub expires_at: Option<i64>,
}

pub struct Blocklists;

impl Chain for Blocklists {
    type Record = BlocklistEntry;
    const NAME: &'static str = "blocklists";
    const SCHEMA: &'static str = include_str!("../../../schemas/blocklists.avsc");
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    const PORT: u16 = 9103;
    /// Domain blocks carry no address.
    const EMAIL_REQUIRED: bool = false;

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

    fn validate(p: Parsed, common: Common, now_micros: i64) -> Result<BlocklistEntry, RecordError> {
        validate::validate(p, common, now_micros)
    }

    fn common(r: &BlocklistEntry) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut BlocklistEntry) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &BlocklistEntry, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        w.enum_index(r.action);
        w.enum_index(r.kind);
        w.string(&r.value);
        w.enum_index(r.reason);
        w.opt_long(r.expires_at);
    }
}

/// An ESP event as an entry for the address it is about.
fn entry(ev: &Event, action: &str, reason: &str) -> Fields {
    let mut f = ev.fields();
    f.set_str("action", action)
        .set_str("kind", "EMAIL")
        .set_str("reason", reason);
    f
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
