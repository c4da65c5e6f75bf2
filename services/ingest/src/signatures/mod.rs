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

/// Checks the request against the tenant's secret for `provider`.
pub fn check(provider: Provider, secrets: &Secrets, req: &Request<'_>) -> Result<Outcome> {
    match provider {
        Provider::Sendgrid => secrets.sendgrid.as_ref().map(|k| sendgrid::verify(k, req)),
        Provider::Mailgun => secrets.mailgun.as_ref().map(|k| mailgun::verify(k, req.body)),
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
