//! Provider authenticity, one module per provider's scheme. A tenant's gateway token says who
//! the caller claims to be; these say the body really comes from the provider account the
//! tenant configured. Where a tenant has no secret for a provider, [`check`] answers
//! [`Outcome::Unconfigured`] and the caller decides (skip with a warning locally, refuse when
//! `require_provider_signatures`).

//!
//! Each provider's scheme is in its `providers/<name>/gateway.rs` ([`crate::providers`]);
//! what they share is here.

pub mod replay;

use crate::error::{Error, Result};
use axum::http::HeaderMap;
use replay::{Replays, Reservation};
use tributary_engine::Source;

pub use crate::providers::Secrets;

/// What a provider check needs of the request.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Verified,
    /// The tenant has no secret for this provider.
    Unconfigured,
}

/// The replay window of signed timestamps (SendGrid's header, Mailgun's `signature.timestamp`,
/// SNS's `Timestamp`): `now` (Unix seconds) and how old one may be. Only a verified
/// signature's timestamp is checked: an unsigned one proves nothing.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: i64,
    pub max_age: std::time::Duration,
}

/// How far a signed timestamp may lie ahead of our clock.
const MAX_SKEW_SECS: f64 = 300.0;

impl Window {
    pub fn now(max_age: std::time::Duration) -> Window {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Window { now, max_age }
    }

    /// A verified signature's timestamp (Unix seconds) must be recent: an old one is a replay
    /// (or a clock far off), refused with 403 and the numbers. Answers when the timestamp
    /// leaves the window (Unix seconds), for the replay cache.
    pub(crate) fn fresh(&self, provider: &str, ts: &str) -> Result<i64> {
        let t: f64 = ts.trim().parse().map_err(|_| {
            forged(
                provider,
                &format!("signature timestamp '{ts}' (not a number of seconds)"),
            )
        })?;
        self.fresh_secs(provider, "signature timestamp", ts, t)
    }

    /// As [`Window::fresh`], for an SNS message's ISO 8601 `Timestamp` (which it signs).
    pub(crate) fn fresh_iso(&self, provider: &str, ts: &str) -> Result<i64> {
        let micros = tributary_engine::normalize::timestamp(
            "Timestamp",
            &serde_json::Value::String(ts.to_owned()),
            i64::MAX / 2,
        )
        .map_err(|_| forged(provider, &format!("SNS Timestamp '{ts}' (not an ISO 8601 time)")))?;
        self.fresh_secs(provider, "SNS Timestamp", ts, micros as f64 / 1e6)
    }

    fn fresh_secs(&self, provider: &str, what: &str, ts: &str, t: f64) -> Result<i64> {
        let age = self.now as f64 - t;
        if age > self.max_age.as_secs_f64() {
            return Err(Error::Forbidden(format!(
                "{provider} {what} {ts} is {age:.0} s old, more than signature_max_age {} s: refused as a possible replay",
                self.max_age.as_secs()
            )));
        }
        if -age > MAX_SKEW_SECS {
            return Err(Error::Forbidden(format!(
                "{provider} {what} {ts} lies {:.0} s in the future (more than {MAX_SKEW_SECS} s of clock skew)",
                -age
            )));
        }
        Ok(t.ceil() as i64 + self.max_age.as_secs() as i64)
    }
}

/// Checks the request against the tenant's secret for `provider`; signed timestamps against
/// the replay window; and a Mailgun signature against the ones already used ([`replay`]).
/// The reservation that comes with a Mailgun signature is to be kept once the request's
/// records are in Kafka (dropped, the signature may be used again: the provider's retry).
pub fn check<'r>(
    provider: Source,
    secrets: &Secrets,
    req: &Request<'_>,
    window: &Window,
    replays: &'r Replays,
) -> Result<(Outcome, Option<Reservation<'r>>)> {
    crate::providers::check(provider, secrets, req, window, replays).map_or(Ok((Outcome::Unconfigured, None)), |r| {
        r.map(|once| (Outcome::Verified, once))
    })
}

/// Equality whose time does not depend on where the inputs differ: both sides are hashed
/// first, so neither length nor content leaks.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (crate::config::sha256(a), crate::config::sha256(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

pub(crate) fn missing(provider: &str, what: &str) -> Error {
    Error::Unauthorized(format!(
        "{provider} webhook without {what}: the tenant's {provider} secret is configured"
    ))
}

pub(crate) fn forged(provider: &str, what: &str) -> Error {
    Error::Forbidden(format!(
        "{provider} {what} does not verify with the tenant's configured secret"
    ))
}

pub(crate) fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signed_timestamps_must_be_recent() {
        let w = Window {
            now: 1_700_000_000,
            max_age: Duration::from_secs(3600),
        };
        assert!(w.fresh("mailgun", "1700000000").is_ok());
        assert!(w.fresh("mailgun", "1699996400.5").is_ok());
        assert!(w.fresh("sendgrid", "1700000200").is_ok(), "a little clock skew is fine");
        let old = w.fresh("mailgun", "1699990000").unwrap_err();
        assert_eq!(old.status(), 403);
        assert!(
            old.to_string()
                .contains("10000 s old, more than signature_max_age 3600 s"),
            "{old}"
        );
        let ahead = w.fresh("sendgrid", "1700000900").unwrap_err();
        assert!(ahead.to_string().contains("900 s in the future"), "{ahead}");
        assert_eq!(w.fresh("sendgrid", "yesterday").unwrap_err().status(), 403);
        // SNS's ISO 8601 Timestamp (2023-11-14T22:13:20Z is 1700000000).
        assert!(w.fresh_iso("ses", "2023-11-14T22:13:20.000Z").is_ok());
        let old = w.fresh_iso("ses", "2023-11-14T20:13:20.000Z").unwrap_err();
        assert!(
            old.to_string()
                .contains("SNS Timestamp 2023-11-14T20:13:20.000Z is 7200 s old"),
            "{old}"
        );
        assert_eq!(w.fresh_iso("ses", "soon").unwrap_err().status(), 403);
        // The replay cache forgets a timestamp when it leaves the window.
        assert_eq!(w.fresh("mailgun", "1699999000").unwrap(), 1_699_999_000 + 3600);
    }

    pub(crate) fn window(now: i64) -> Window {
        Window {
            now,
            max_age: Duration::from_secs(300),
        }
    }

    pub(crate) fn replays() -> Replays {
        Replays::new(100, prometheus::IntCounter::new("evictions", "test").unwrap())
    }
}
