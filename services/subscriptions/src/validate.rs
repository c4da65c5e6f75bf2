//! Validation and normalization of `subscriptions` records.

use crate::{Subscription, ACTIONS};
use tributary_engine::{Common, Parsed, RecordError};

pub fn validate(mut p: Parsed, common: Common, now_micros: i64) -> Result<Subscription, RecordError> {
    let consent_ip = p
        .opt_str("consent_ip")?
        .map(|ip| {
            ip.parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .map_err(|_| RecordError::invalid("consent_ip", format!("'{ip}' is not an IP address")))
        })
        .transpose()?;
    Ok(Subscription {
        list_id: p.req_str("list_id")?,
        action: p.opt_enum("action", ACTIONS)?.unwrap_or(0),
        consent_ip,
        consent_at: p.opt_time("consent_at", now_micros)?,
        common,
    })
}
