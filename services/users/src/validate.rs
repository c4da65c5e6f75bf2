//! Validation and normalization of `users` records.

use crate::{field, Draft, User};
use tributary_engine::normalize;
use tributary_engine::{Common, Input, RecordError};

pub fn validate(input: Input<Draft>, common: Common, _now_micros: i64) -> Result<User, RecordError> {
    let (mut p, d) = (input.fields, input.draft);
    let previous_email = p
        .text_or(d.previous_email, field::PREVIOUS_EMAIL)?
        .map(|e| normalize::email(&e))
        .transpose()?;
    let phone = p.text_or(d.phone, field::PHONE)?.map(|s| e164(&s));
    let country = p.text_or(d.country, field::COUNTRY)?.map(|c| {
        if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
            c.to_ascii_uppercase()
        } else {
            c
        }
    });
    let mut user = User {
        user_id: p.text_or(d.user_id, field::USER_ID)?,
        first_name: p.text_or(d.first_name, field::FIRST_NAME)?,
        last_name: p.text_or(d.last_name, field::LAST_NAME)?,
        phone,
        country,
        city: p.text_or(d.city, field::CITY)?,
        timezone: p.text_or(d.timezone, field::TIMEZONE)?,
        locale: p.text_or(d.locale, field::LOCALE)?.map(|l| l.replace('_', "-")),
        attributes: match d.attributes {
            Some(a) => a.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect(),
            None => p.opt_map(field::ATTRIBUTES)?,
        },
        previous_email,
        common,
    };
    // Whatever no field claimed is kept as an attribute rather than lost.
    user.attributes.extend(p.into_rest());
    user.attributes.sort();
    user.attributes.dedup_by(|a, b| a.0 == b.0);
    Ok(user)
}

/// E.164 where the number is international (`+` or `00` prefix, 8 to 15 digits); otherwise
/// the number as given, trimmed.
pub fn e164(raw: &str) -> String {
    let t = raw.trim();
    let international = t.starts_with('+') || t.starts_with("00");
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let only_punct = t.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits = if t.starts_with("00") { &digits[2..] } else { &digits[..] };
    if international && only_punct && (8..=15).contains(&digits.len()) {
        format!("+{digits}")
    } else {
        t.to_owned()
    }
}
