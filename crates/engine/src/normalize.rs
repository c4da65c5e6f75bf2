//! Validation and normalization shared by every chain: email addresses, tenant ids,
//! timestamps. Each function returns the normalized value or the [`RecordError`] that sends
//! the record to the DLQ.

use crate::error::{ErrorClass, RecordError};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

/// Microseconds since the Unix epoch of 2000-01-01T00:00:00Z: nothing older is accepted.
pub const MIN_EVENT_MICROS: i64 = 946_684_800_000_000;
/// How far into the future an event time may lie (clock skew of senders).
pub const MAX_FUTURE_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Trims, lower-cases and checks an address; the domain is brought to its ASCII (punycode)
/// form so that one mailbox has one spelling.
pub fn email(raw: &str) -> Result<String, RecordError> {
    let trimmed = raw.trim();
    let bad = |why: &str| RecordError::new(ErrorClass::InvalidEmail, format!("'{}': {why}", truncate(trimmed, 80)));
    if trimmed.is_empty() {
        return Err(bad("empty address"));
    }
    let (local, domain) = trimmed.rsplit_once('@').ok_or_else(|| bad("no '@'"))?;
    if local.is_empty() || domain.is_empty() {
        return Err(bad("empty local part or domain"));
    }
    // Most domains are plain ASCII labels already: only the others need IDNA processing.
    let plain = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let idn;
    let domain = if plain {
        domain
    } else {
        idn = idna::domain_to_ascii(domain).map_err(|_| bad("domain is not a valid international domain name"))?;
        idn.as_str()
    };
    if !domain.contains('.') {
        return Err(bad("domain has no dot"));
    }
    // Built in one allocation: this runs for nearly every record.
    let mut normalized = String::with_capacity(local.len() + 1 + domain.len());
    if local.is_ascii() {
        normalized.extend(local.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        normalized.push_str(&local.to_lowercase());
    }
    normalized.push('@');
    normalized.extend(domain.chars().map(|c| c.to_ascii_lowercase()));
    if !email_address::EmailAddress::is_valid(&normalized) {
        return Err(bad("not a valid address"));
    }
    Ok(normalized)
}

/// Hex SHA-256 of an already normalized address.
pub fn sha256_hex(normalized: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(normalized.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Checks a tenant id against `^[a-z0-9][a-z0-9_-]{0,62}$`.
pub fn tenant_id(raw: &str) -> Result<&str, RecordError> {
    let t = raw.trim();
    let bytes = t.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(t)
    } else {
        Err(RecordError::new(
            ErrorClass::InvalidTenant,
            format!(
                "tenant id '{}' does not match ^[a-z0-9][a-z0-9_-]{{0,62}}$",
                truncate(t, 80)
            ),
        ))
    }
}

/// Reads a timestamp in any common form and returns UTC microseconds: Unix seconds (integer
/// or float), milliseconds, microseconds, ISO 8601 with or without offset, `YYYY-MM-DD
/// HH:MM:SS` (UTC), RFC 2822, or a bare date. `now_micros` bounds it from above.
pub fn timestamp(field: &str, value: &serde_json::Value, now_micros: i64) -> Result<i64, RecordError> {
    let micros = match value {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(epoch_number_to_micros(i as f64))
            } else {
                n.as_f64().map(epoch_number_to_micros)
            }
        }
        serde_json::Value::String(s) => parse_time_str(s.trim()),
        _ => None,
    };
    let micros = micros.ok_or_else(|| {
        RecordError::new(
            ErrorClass::InvalidTimestamp,
            format!(
                "field '{field}': '{}' is not a timestamp",
                truncate(&value.to_string(), 60)
            ),
        )
    })?;
    if micros < MIN_EVENT_MICROS {
        return Err(RecordError::new(
            ErrorClass::InvalidTimestamp,
            format!("field '{field}': {} lies before 2000-01-01", fmt_micros(micros)),
        ));
    }
    if micros > now_micros + MAX_FUTURE_MICROS {
        return Err(RecordError::new(
            ErrorClass::InvalidTimestamp,
            format!("field '{field}': {} lies more than a day ahead", fmt_micros(micros)),
        ));
    }
    Ok(micros)
}

/// Guesses the unit of an epoch number by its size: seconds up to year ~5138, then millis,
/// micros, nanos.
fn epoch_number_to_micros(x: f64) -> i64 {
    let a = x.abs();
    if a < 1e11 {
        (x * 1e6).round() as i64
    } else if a < 1e14 {
        (x * 1e3).round() as i64
    } else if a < 1e17 {
        x.round() as i64
    } else {
        (x / 1e3).round() as i64
    }
}

fn parse_time_str(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| epoch_number_to_micros(f));
    }
    // `YYYY-MM-DD HH:MM:SS`, the commonest naive form, before the forms with an offset.
    if s.len() == 19 && s.as_bytes()[10] == b' ' {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    // ISO 8601 offsets without colon (+0000) and a space instead of 'T'.
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp_micros());
        }
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
        return Some(dt.timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp_micros());
    }
    None
}

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn fmt_micros(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| micros.to_string())
}

/// Cuts a string for an error message at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_000_000_000_000; // 2025-11-24

    #[test]
    fn emails_are_trimmed_lowercased_and_punycoded() {
        assert_eq!(email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        assert_eq!(email("bob@bücher.de").unwrap(), "bob@xn--bcher-kva.de");
        for bad in ["", "no-at", "a@", "@b.com", "a b@c.com", "a@nodot", "x@@y.com"] {
            let e = email(bad).unwrap_err();
            assert_eq!(e.class, ErrorClass::InvalidEmail, "{bad}");
        }
    }

    #[test]
    fn sha256_of_normalized_email() {
        assert_eq!(
            sha256_hex("alice@example.com"),
            "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
        );
    }

    #[test]
    fn tenant_pattern() {
        assert!(tenant_id("acme").is_ok());
        assert!(tenant_id("a-b_c9").is_ok());
        for bad in ["", "Acme", "-x", "a.b", &"a".repeat(64)] {
            assert!(tenant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_in_every_common_form() {
        let want = 1_700_000_000_000_000;
        for v in [
            json!(1_700_000_000),
            json!(1_700_000_000.0),
            json!(1_700_000_000_000i64),
            json!("1700000000"),
            json!("2023-11-14T22:13:20Z"),
            json!("2023-11-14T23:13:20+01:00"),
            json!("2023-11-14T22:13:20.000000Z"),
            json!("2023-11-14 22:13:20"),
            json!("2023-11-14T22:13:20"),
            json!("2023-11-14T22:13:20+0000"),
            json!("Tue, 14 Nov 2023 22:13:20 +0000"),
        ] {
            assert_eq!(timestamp("t", &v, NOW).unwrap(), want, "{v}");
        }
        assert_eq!(timestamp("t", &json!(1_700_000_000.5), NOW).unwrap(), want + 500_000);
    }

    #[test]
    fn absurd_timestamps_are_rejected() {
        for v in [
            json!(0),
            json!("1999-12-31T23:59:59Z"),
            json!(NOW / 1_000_000 + 2 * 86_400),
            json!("soon"),
            json!(true),
        ] {
            assert_eq!(
                timestamp("t", &v, NOW).unwrap_err().class,
                ErrorClass::InvalidTimestamp,
                "{v}"
            );
        }
    }
}
