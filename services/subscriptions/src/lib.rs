//! The `subscriptions` chain: opt-ins, confirmations and re-subscriptions with their consent
//! evidence.

mod csv;
mod validate;

// Every provider's mapping of its events onto this chain, `providers/<provider>/subscriptions.rs`, as
// modules of this crate, and `provider_parse` over them.
tributary_engine::provider_modules!(subscriptions);

use tributary_engine::avro::AvroWriter;
use tributary_engine::{chains, Chain, Common, Input, Parsed, RawRecord, RecordError, Source, Symbols};

tributary_engine::symbols! {
    /// `subscriptions.action`.
    pub enum Action {
        Subscribe = "SUBSCRIBE",
        Confirm = "CONFIRM",
        Resubscribe = "RESUBSCRIBE",
    }
}

/// The chain's own fields, by the names the `json` and `csv` sources give them.
pub mod field {
    pub const LIST_ID: &str = "list_id";
    pub const ACTION: &str = "action";
    pub const CONSENT_IP: &str = "consent_ip";
    pub const CONSENT_AT: &str = "consent_at";
    /// Mailchimp exports' confirmation IP, read as `consent_ip` when that is absent.
    pub const CONFIRM_IP: &str = "confirm_ip";
}

/// A subscription as a provider's reader gives it (see [`tributary_engine::Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Draft {
    pub list_id: Option<String>,
    pub action: Option<Action>,
    pub consent_ip: Option<String>,
    /// A time as the provider gave it, read by validation.
    pub consent_at: Option<serde_json::Value>,
}

/// A validated, normalized `subscriptions` record, fields in `schemas/subscriptions.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub common: Common,
    pub list_id: String,
    pub action: Action,
    pub consent_ip: Option<String>,
    pub consent_at: Option<i64>,
}

pub struct Subscriptions;

impl Chain for Subscriptions {
    type Record = Subscription;
    type Draft = Draft;
    // Name, schema, port and window: the chain's line of the registry (schemas/chains.txt).
    const NAME: &'static str = chains::SUBSCRIPTIONS.name;
    const SCHEMA: &'static str = chains::SUBSCRIPTIONS.schema;
    const WINDOW: std::time::Duration = chains::SUBSCRIPTIONS.window;
    const PORT: u16 = chains::SUBSCRIPTIONS.port;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
        match source {
            Source::Json => Parsed::from_json(raw.payload).map(Input::from),
            Source::Csv => csv::parse(raw),
            other => provider_parse(other, raw).unwrap_or_else(|| Err(other.unsupported(Self::NAME))),
        }
    }

    fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<Subscription, RecordError> {
        validate::validate(input, common, now_micros)
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
        w.enum_index(r.action.index());
        w.opt_string(r.consent_ip.as_deref());
        w.opt_long(r.consent_at);
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
