//! Validation and normalization of `users` records.

use crate::User;
use tributary_engine::normalize;
use tributary_engine::{Common, Parsed, RecordError};

pub fn validate(mut p: Parsed, common: Common, _now_micros: i64) -> Result<User, RecordError> {
    let previous_email = p.opt_str("previous_email")?.map(|e| normalize::email(&e)).transpose()?;
    let phone = p.opt_str("phone")?.map(|s| e164(&s));
    let country = p.opt_str("country")?.map(|c| {
        if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
            c.to_ascii_uppercase()
        } else {
            c
        }
    });
    let mut user = User {
        user_id: p.opt_str("user_id")?,
        first_name: p.opt_str("first_name")?,
        last_name: p.opt_str("last_name")?,
        phone,
        country,
        city: p.opt_str("city")?,
        timezone: p.opt_str("timezone")?,
        locale: p.opt_str("locale")?.map(|l| l.replace('_', "-")),
        attributes: p.opt_map("attributes")?,
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
