//! The `users` chain: user profiles, their attributes and email changes.

mod csv;
mod validate;

// Every provider's mapping of its events onto this chain, `providers/<provider>/users.rs`, as
// modules of this crate, and `provider_parse` over them.
tributary_engine::provider_modules!(users);

use tributary_engine::avro::AvroWriter;
use tributary_engine::{chains, Chain, Common, Input, Parsed, RawRecord, RecordError, Source};

/// A validated, normalized `users` record, fields in `schemas/users.avsc` order.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub common: Common,
    pub user_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub previous_email: Option<String>,
}

/// The chain's own fields, by the names the `json` and `csv` sources give them; any other
/// field is kept as an attribute.
pub mod field {
    pub const USER_ID: &str = "user_id";
    pub const FIRST_NAME: &str = "first_name";
    pub const LAST_NAME: &str = "last_name";
    pub const PHONE: &str = "phone";
    pub const COUNTRY: &str = "country";
    pub const CITY: &str = "city";
    pub const TIMEZONE: &str = "timezone";
    pub const LOCALE: &str = "locale";
    pub const ATTRIBUTES: &str = "attributes";
    pub const PREVIOUS_EMAIL: &str = "previous_email";
}

/// A profile as a provider's reader gives it (see [`tributary_engine::Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Draft {
    pub user_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    /// Named attributes; blank values are dropped.
    pub attributes: Option<Vec<(String, String)>>,
    pub previous_email: Option<String>,
}

pub struct Users;

impl Chain for Users {
    type Record = User;
    type Draft = Draft;
    // Name, schema, port and window: the chain's line of the registry (schemas/chains.txt).
    const NAME: &'static str = chains::USERS.name;
    const SCHEMA: &'static str = chains::USERS.schema;
    const WINDOW: std::time::Duration = chains::USERS.window;
    const PORT: u16 = chains::USERS.port;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
        match source {
            Source::Json => Parsed::from_json(raw.payload).map(Input::from),
            Source::Csv => csv::parse(raw),
            other => provider_parse(other, raw).unwrap_or_else(|| Err(other.unsupported(Self::NAME))),
        }
    }

    fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<User, RecordError> {
        validate::validate(input, common, now_micros)
    }

    fn common(r: &User) -> &Common {
        &r.common
    }

    fn common_mut(r: &mut User) -> &mut Common {
        &mut r.common
    }

    fn write_avro(r: &User, w: &mut AvroWriter<'_>) {
        r.common.write(w);
        for f in [
            &r.user_id,
            &r.first_name,
            &r.last_name,
            &r.phone,
            &r.country,
            &r.city,
            &r.timezone,
            &r.locale,
        ] {
            w.opt_string(f.as_deref());
        }
        w.string_map(r.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        w.opt_string(r.previous_email.as_deref());
    }
}

#[cfg(test)]
mod esp_tests;
#[cfg(test)]
mod tests;
