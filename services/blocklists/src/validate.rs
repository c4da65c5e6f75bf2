//! Validation and normalization of `blocklists` records. An EMAIL entry needs an address (or,
//! for an erased person, only its hash); a DOMAIN entry needs a domain as `value`.

use crate::{field, Action, BlocklistEntry, Draft, Kind, Reason};
use tributary_engine::field::EMAIL;
use tributary_engine::{normalize, Common, ErrorClass, Input, RecordError};

pub fn validate(input: Input<Draft>, mut common: Common, now_micros: i64) -> Result<BlocklistEntry, RecordError> {
    let (mut p, d) = (input.fields, input.draft);
    let action = match d.action {
        Some(a) => a,
        None => p.opt_enum(field::ACTION)?.unwrap_or(Action::Add),
    };
    let reason = match d.reason {
        Some(r) => r,
        None => p
            .opt_enum_spelt(field::REASON, Reason::spelt)?
            .unwrap_or(Reason::Manual),
    };
    let given_value = p.text_or(d.value, field::VALUE)?;
    let kind = match d.kind {
        Some(k) => Some(k),
        None => p.opt_enum(field::KIND)?,
    };
    let kind = match kind {
        Some(k) => k,
        None if common.email.is_some() || common.email_sha256.is_some() => Kind::Email,
        None if given_value.as_deref().is_some_and(|v| v.contains('@')) => Kind::Email,
        None => Kind::Domain,
    };
    let value = if kind == Kind::Email {
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
            (None, None) => return Err(RecordError::missing(EMAIL)),
        }
    } else {
        let v = given_value.ok_or_else(|| RecordError::missing(field::VALUE))?;
        domain(&v)?
    };
    // An expiry may lie up to a century ahead.
    let expires_at = p.time_or(d.expires_at, field::EXPIRES_AT, now_micros + 100 * 365 * 86_400_000_000)?;
    Ok(BlocklistEntry {
        action,
        kind,
        value,
        reason,
        expires_at,
        common,
    })
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
