//! Provider authenticity, one module per provider's scheme. A tenant's gateway token says who
//! the caller claims to be; these say the body really comes from the provider account the
//! tenant configured. Where a tenant has no secret for a provider, [`check`] answers
//! [`Outcome::Unconfigured`] and the caller decides (skip with a warning locally, refuse when
//! `require_provider_signatures`).

pub mod mailchimp;
pub mod mailgun;
pub mod mandrill;
pub mod postmark;
pub mod sendgrid;
pub mod sns;

use crate::error::{Error, Result};
use crate::split::Provider;
use axum::http::HeaderMap;

/// A tenant's provider secrets, parsed.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub sendgrid: Option<p256::ecdsa::VerifyingKey>,
    pub mailgun: Option<String>,
    /// Webhook key, and the URL as registered at Mandrill.
    pub mandrill: Option<(String, String)>,
    /// Basic-auth user and password.
    pub postmark: Option<(String, String)>,
    pub mailchimp: Option<String>,
    pub ses: Option<sns::SnsKeys>,
}

impl Secrets {
    pub fn has(&self, p: Provider) -> bool {
        match p {
            Provider::Sendgrid => self.sendgrid.is_some(),
            Provider::Mailgun => self.mailgun.is_some(),
            Provider::Ses => self.ses.is_some(),
            Provider::Postmark => self.postmark.is_some(),
            Provider::Mailchimp => self.mailchimp.is_some(),
            Provider::Mandrill => self.mandrill.is_some(),
        }
    }
}

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

/// The replay window of signed timestamps: `now` (Unix seconds) and how old one may be.
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

    /// A verified signature's timestamp must be recent: an old one is a replay (or a clock
    /// far off), refused with 403 and the numbers.
    fn fresh(&self, provider: &str, ts: &str) -> Result<()> {
        let t: f64 = ts.trim().parse().map_err(|_| {
            forged(
                provider,
                &format!("signature timestamp '{ts}' (not a number of seconds)"),
            )
        })?;
        let age = self.now as f64 - t;
        if age > self.max_age.as_secs_f64() {
            return Err(Error::Forbidden(format!(
                "{provider} signature timestamp {ts} is {age:.0} s old, more than signature_max_age {} s: refused as a possible replay",
                self.max_age.as_secs()
            )));
        }
        if -age > MAX_SKEW_SECS {
            return Err(Error::Forbidden(format!(
                "{provider} signature timestamp {ts} lies {:.0} s in the future (more than {MAX_SKEW_SECS} s of clock skew)",
                -age
            )));
        }
        Ok(())
    }
}

/// Checks the request against the tenant's secret for `provider`, and signed timestamps
/// against the replay window.
pub fn check(provider: Provider, secrets: &Secrets, req: &Request<'_>, window: &Window) -> Result<Outcome> {
    match provider {
        Provider::Sendgrid => secrets.sendgrid.as_ref().map(|k| {
            sendgrid::verify(k, req)?;
            window.fresh("sendgrid", req.header(sendgrid::TIMESTAMP).unwrap_or_default())
        }),
        Provider::Mailgun => secrets
            .mailgun
            .as_ref()
            .map(|k| window.fresh("mailgun", &mailgun::verify(k, req.body)?)),
        Provider::Ses => secrets.ses.as_ref().map(|k| sns::verify_body(k, req.body)),
        Provider::Postmark => secrets.postmark.as_ref().map(|(u, p)| postmark::verify(u, p, req)),
        Provider::Mailchimp => secrets.mailchimp.as_ref().map(|s| mailchimp::verify(s, req)),
        Provider::Mandrill => secrets.mandrill.as_ref().map(|(k, url)| mandrill::verify(k, url, req)),
    }
    .map_or(Ok(Outcome::Unconfigured), |r| r.map(|()| Outcome::Verified))
}

/// Equality whose time does not depend on where the inputs differ: both sides are hashed
/// first, so neither length nor content leaks.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (crate::config::sha256(a), crate::config::sha256(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

fn missing(provider: &str, what: &str) -> Error {
    Error::Unauthorized(format!(
        "{provider} webhook without {what}: the tenant's {provider} secret is configured"
    ))
}

fn forged(provider: &str, what: &str) -> Error {
    Error::Forbidden(format!(
        "{provider} {what} does not verify with the tenant's configured secret"
    ))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
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
    }
}
