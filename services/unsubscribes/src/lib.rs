//! The `unsubscribes` chain: opt-outs, per list or from all lists.

mod csv;
mod validate;

// Every provider's mapping of its events onto this chain, `providers/<provider>/unsubscribes.rs`, as
// modules of this crate, and `provider_parse` over them.
tributary_engine::provider_modules!(unsubscribes);

use tributary_engine::avro::AvroWriter;
use tributary_engine::{chains, Chain, Common, Input, Parsed, RawRecord, RecordError, Source};

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

/// The chain's own fields, by the names the `json` and `csv` sources give them.
pub mod field {
    pub const LIST_ID: &str = "list_id";
    pub const CAMPAIGN_ID: &str = "campaign_id";
    pub const REASON: &str = "reason";
    pub const METHOD: &str = "method";
}

/// An opt-out as a provider's reader gives it (see [`tributary_engine::Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Draft {
    pub list_id: Option<String>,
    pub campaign_id: Option<String>,
    pub reason: Option<String>,
    pub method: Option<String>,
}

pub struct Unsubscribes;

impl Chain for Unsubscribes {
    type Record = Unsubscribe;
    type Draft = Draft;
    // Name, schema, port and window: the chain's line of the registry (schemas/chains.txt).
    const NAME: &'static str = chains::UNSUBSCRIBES.name;
    const SCHEMA: &'static str = chains::UNSUBSCRIBES.schema;
    const WINDOW: std::time::Duration = chains::UNSUBSCRIBES.window;
    const PORT: u16 = chains::UNSUBSCRIBES.port;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
        match source {
            Source::Json => Parsed::from_json(raw.payload).map(Input::from),
            Source::Csv => csv::parse(raw),
            other => provider_parse(other, raw).unwrap_or_else(|| Err(other.unsupported(Self::NAME))),
        }
    }

    fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<Unsubscribe, RecordError> {
        validate::validate(input, common, now_micros)
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
