//! Validation and normalization of `blocklists` records. An EMAIL entry needs an address (or,
//! for an erased person, only its hash); a DOMAIN entry needs a domain as `value`.

use crate::{BlocklistEntry, ACTIONS, KINDS, REASONS};
use tributary_engine::{normalize, Common, ErrorClass, Parsed, RecordError};

const EMAIL: usize = 0;
const DOMAIN: usize = 1;

pub fn validate(mut p: Parsed, mut common: Common, now_micros: i64) -> Result<BlocklistEntry, RecordError> {
    let action = p.opt_enum("action", ACTIONS)?.unwrap_or(0);
    let reason = match p.opt_str("reason")? {
        None => 2, // MANUAL
        Some(r) => reason_index(&r).ok_or_else(|| {
            RecordError::invalid(
                "reason",
                format!("'{}' is not one of {}", normalize::truncate(&r, 40), REASONS.join(", ")),
            )
        })?,
    };
    let given_value = p.opt_str("value")?;
    let kind = match p.opt_enum("kind", KINDS)? {
        Some(k) => k,
        None if common.email.is_some() || common.email_sha256.is_some() => EMAIL,
        None if given_value.as_deref().is_some_and(|v| v.contains('@')) => EMAIL,
        None => DOMAIN,
    };
    let value = if kind == EMAIL {
        if common.email.is_none() {
            if let Some(v) = given_value.as_deref() {
                let e = normalize::email(v)?;
                common.email_sha256 = Some(normalize::sha256_hex(&e));
                common.email = Some(e);
            }
        }
        match (&common.email, &common.email_sha256) {
            (Some(e), _) => e.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => return Err(RecordError::missing("email")),
        }
    } else {
        let v = given_value.ok_or_else(|| RecordError::missing("value"))?;
        domain(&v)?
    };
    Ok(BlocklistEntry {
        action,
        kind,
        value,
        reason,
        expires_at: p.opt_time("expires_at", now_micros + 100 * 365 * 86_400_000_000)?,
        common,
    })
}

/// Maps the usual spellings of suppression reasons onto the closed set.
fn reason_index(r: &str) -> Option<usize> {
    let up = r.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    let canonical = match up.as_str() {
        "BOUNCE" | "HARD" | "HARDBOUNCE" | "BOUNCED" => "HARD_BOUNCE",
        "SPAM" | "COMPLAINT" | "ABUSE" | "SPAMREPORT" | "SPAM_REPORT" => "SPAM_COMPLAINT",
        other => other,
    };
    REASONS.iter().position(|s| *s == canonical)
}

/// A domain, lower-cased and in ASCII form; `@example.com` is accepted.
fn domain(raw: &str) -> Result<String, RecordError> {
    let d = raw.trim().trim_start_matches('@');
    let ascii = idna::domain_to_ascii(d).map_err(|_| {
        RecordError::new(
            ErrorClass::InvalidValue,
            format!("field 'value': '{}' is not a domain", normalize::truncate(d, 80)),
        )
    })?;
    if !ascii.contains('.') || ascii.contains('@') {
        return Err(RecordError::invalid(
            "value",
            format!("'{}' is not a domain", normalize::truncate(d, 80)),
        ));
    }
    Ok(ascii)
}
