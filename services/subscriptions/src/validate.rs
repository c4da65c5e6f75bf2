//! Validation and normalization of `subscriptions` records.

use crate::{field, Action, Draft, Subscription};
use tributary_engine::{Common, Input, RecordError};

pub fn validate(input: Input<Draft>, common: Common, now_micros: i64) -> Result<Subscription, RecordError> {
    let (mut p, d) = (input.fields, input.draft);
    let consent_ip = p
        .text_or(d.consent_ip, field::CONSENT_IP)?
        .map(|ip| {
            ip.parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .map_err(|_| RecordError::invalid(field::CONSENT_IP, format!("'{ip}' is not an IP address")))
        })
        .transpose()?;
    let list_id = p
        .text_or(d.list_id, field::LIST_ID)?
        .ok_or_else(|| RecordError::missing(field::LIST_ID))?;
    let action = match d.action {
        Some(a) => a,
        None => p.opt_enum(field::ACTION)?.unwrap_or(Action::Subscribe),
    };
    let consent_at = p.time_or(d.consent_at, field::CONSENT_AT, now_micros)?;
    Ok(Subscription {
        list_id,
        action,
        consent_ip,
        consent_at,
        common,
    })
}
