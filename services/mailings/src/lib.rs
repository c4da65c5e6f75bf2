//! The `mailings` chain: the life of each sent message.

mod csv;
mod validate;

// Every provider's mapping of its events onto this chain, `providers/<provider>/mailings.rs`, as
// modules of this crate, and `provider_parse` over them.
tributary_engine::provider_modules!(mailings);

use tributary_engine::avro::AvroWriter;
use tributary_engine::{chains, Chain, Common, Input, Parsed, RawRecord, RecordError, Source, Symbols};

tributary_engine::symbols! {
    /// `mailings.event_type`.
    pub enum EventType {
        Sent = "SENT",
        Delivered = "DELIVERED",
        Deferred = "DEFERRED",
        Bounced = "BOUNCED",
        Dropped = "DROPPED",
        Opened = "OPENED",
        Clicked = "CLICKED",
        Complained = "COMPLAINED",
        Unsubscribed = "UNSUBSCRIBED",
        Failed = "FAILED",
    }
}

impl EventType {
    /// An event type as sources spell it: the past-tense symbols, case-blind, and the
    /// present-tense words ESPs use.
    pub fn spelt(t: &str) -> Option<EventType> {
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
        EventType::from_symbol(canonical)
    }
}

/// The chain's own fields, by the names the `json` and `csv` sources give them.
pub mod field {
    pub const MESSAGE_ID: &str = "message_id";
    pub const CAMPAIGN_ID: &str = "campaign_id";
    pub const EVENT_TYPE: &str = "event_type";
    pub const URL: &str = "url";
    pub const USER_AGENT: &str = "user_agent";
    pub const IP: &str = "ip";
    pub const SMTP_RESPONSE: &str = "smtp_response";
    pub const BOUNCE_CLASS: &str = "bounce_class";
}

/// A message's event as a provider's reader gives it (see [`tributary_engine::Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Draft {
    pub message_id: Option<String>,
    pub campaign_id: Option<String>,
    pub event_type: Option<EventType>,
    pub url: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub smtp_response: Option<String>,
    /// `hard`, `soft` or `undetermined` (also as `permanent`, `transient`, `unknown`...).
    pub bounce_class: Option<String>,
}

/// A validated, normalized `mailings` record, fields in `schemas/mailings.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct MailingEvent {
    pub common: Common,
    pub message_id: String,
    pub campaign_id: Option<String>,
    pub event_type: EventType,
    pub url: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub smtp_response: Option<String>,
    pub bounce_class: Option<String>,
}

pub struct Mailings;

impl Chain for Mailings {
    type Record = MailingEvent;
    type Draft = Draft;
    // Name, schema, port and window: the chain's line of the registry (schemas/chains.txt).
    const NAME: &'static str = chains::MAILINGS.name;
    const SCHEMA: &'static str = chains::MAILINGS.schema;
    const WINDOW: std::time::Duration = chains::MAILINGS.window;
    const PORT: u16 = chains::MAILINGS.port;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
        match source {
            Source::Json => Parsed::from_json(raw.payload).map(Input::from),
            Source::Csv => csv::parse(raw),
            other => provider_parse(other, raw).unwrap_or_else(|| Err(other.unsupported(Self::NAME))),
        }
    }

    fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<MailingEvent, RecordError> {
        validate::validate(input, common, now_micros)
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
        w.enum_index(r.event_type.index());
        for f in [&r.url, &r.user_agent, &r.ip, &r.smtp_response, &r.bounce_class] {
            w.opt_string(f.as_deref());
        }
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
