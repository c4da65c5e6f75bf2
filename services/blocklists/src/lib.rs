//! The `blocklists` chain: suppressions of addresses and domains, added and removed.

mod csv;
mod validate;

// Every provider's mapping of its events onto this chain, `providers/<provider>/blocklists.rs`, as
// modules of this crate, and `provider_parse` over them.
tributary_engine::provider_modules!(blocklists);

use tributary_engine::avro::AvroWriter;
use tributary_engine::esp::Event;
use tributary_engine::{chains, Chain, Common, Input, Parsed, RawRecord, RecordError, Source, Symbols};

tributary_engine::symbols! {
    /// `blocklists.action`.
    pub enum Action {
        Add = "ADD",
        Remove = "REMOVE",
    }
}

tributary_engine::symbols! {
    /// `blocklists.kind`: what `value` holds.
    pub enum Kind {
        Email = "EMAIL",
        Domain = "DOMAIN",
    }
}

tributary_engine::symbols! {
    /// `blocklists.reason`.
    pub enum Reason {
        HardBounce = "HARD_BOUNCE",
        SpamComplaint = "SPAM_COMPLAINT",
        Manual = "MANUAL",
        Invalid = "INVALID",
        Erased = "ERASED",
        Other = "OTHER",
    }
}

impl Reason {
    /// A reason as sources spell it: the symbols, case-blind, and the usual synonyms.
    pub fn spelt(r: &str) -> Option<Reason> {
        let up = r.trim().to_ascii_uppercase().replace(['-', ' '], "_");
        let canonical = match up.as_str() {
            "BOUNCE" | "HARD" | "HARDBOUNCE" | "BOUNCED" => "HARD_BOUNCE",
            "SPAM" | "COMPLAINT" | "ABUSE" | "SPAMREPORT" | "SPAM_REPORT" => "SPAM_COMPLAINT",
            other => other,
        };
        Reason::from_symbol(canonical)
    }
}

/// The chain's own fields, by the names the `json` and `csv` sources give them.
pub mod field {
    pub const ACTION: &str = "action";
    pub const KIND: &str = "kind";
    pub const VALUE: &str = "value";
    pub const REASON: &str = "reason";
    pub const EXPIRES_AT: &str = "expires_at";
}

/// A suppression as a provider's reader gives it (see [`tributary_engine::Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Draft {
    pub action: Option<Action>,
    pub kind: Option<Kind>,
    pub value: Option<String>,
    pub reason: Option<Reason>,
    /// A time as the provider gave it, read by validation.
    pub expires_at: Option<serde_json::Value>,
}

/// A validated, normalized `blocklists` record, fields in `schemas/blocklists.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct BlocklistEntry {
    pub common: Common,
    pub action: Action,
    pub kind: Kind,
    pub value: String,
    pub reason: Reason,
    pub expires_at: Option<i64>,
}

pub struct Blocklists;

impl Chain for Blocklists {
    type Record = BlocklistEntry;
    type Draft = Draft;
    // Name, schema, port and window: the chain's line of the registry (schemas/chains.txt).
    const NAME: &'static str = chains::BLOCKLISTS.name;
    const SCHEMA: &'static str = chains::BLOCKLISTS.schema;
    const WINDOW: std::time::Duration = chains::BLOCKLISTS.window;
    const PORT: u16 = chains::BLOCKLISTS.port;
    /// Domain blocks carry no address.
    const EMAIL_REQUIRED: bool = false;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
        match source {
            Source::Json => Parsed::from_json(raw.payload).map(Input::from),
            Source::Csv => csv::parse(raw),
            other => provider_parse(other, raw).unwrap_or_else(|| Err(other.unsupported(Self::NAME))),
        }
    }

    fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<BlocklistEntry, RecordError> {
        validate::validate(input, common, now_micros)
    }

    fn common(r: &BlocklistEntry) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut BlocklistEntry) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &BlocklistEntry, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        w.enum_index(r.action.index());
        w.enum_index(r.kind.index());
        w.string(&r.value);
        w.enum_index(r.reason.index());
        w.opt_long(r.expires_at);
    }
}

/// An entry for the address an ESP event is about.
fn entry(action: Action, reason: Reason) -> Draft {
    Draft {
        action: Some(action),
        kind: Some(Kind::Email),
        reason: Some(reason),
        ..Draft::default()
    }
}

/// An ESP event's fields and its entry.
fn entry_input(ev: &Event, action: Action, reason: Reason) -> Input<Draft> {
    ev.fields().with(entry(action, reason))
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
