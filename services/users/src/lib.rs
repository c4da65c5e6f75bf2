//! The `users` chain: user profiles, their attributes and email changes.

mod csv;
mod json;
mod mailchimp;
mod validate;

use tributary_engine::avro::AvroWriter;
use tributary_engine::{Chain, Common, Parsed, RawRecord, RecordError, Source};

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

pub struct Users;

impl Chain for Users {
    type Record = User;
    const NAME: &'static str = "users";
    const SCHEMA: &'static str = include_str!("../../../schemas/users.avsc");
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    const PORT: u16 = 9101;
    const EMAIL_REQUIRED: bool = true;

    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
        match source {
            Source::Json => json::parse(raw),
            Source::Csv => csv::parse(raw),
            Source::Mailchimp => mailchimp::parse(raw),
            // The sending ESPs' webhooks carry no profile events.
            other => Err(other.unsupported(Self::NAME)),
        }
    }

    fn validate(p: Parsed, common: Common, now_micros: i64) -> Result<User, RecordError> {
        validate::validate(p, common, now_micros)
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
