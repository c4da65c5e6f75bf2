//! The providers the gateway takes webhooks from: one module per provider folder holding a
//! `gateway.rs` (`providers/<name>/gateway.rs`, declared here by
//! `tributary_engine::provider_modules!`), and the dispatch to them, generated from the same
//! list. A provider's module answers three things:
//!
//! - `split(body, &mut Split)`: one webhook call as single events ([`crate::split`]);
//! - `check(&Secrets, &Request, &Window, &Replays)`: its signature check, `None` when the
//!   tenant has no secret for it ([`crate::signatures`]);
//! - `configured(&Secrets)`: whether the tenant has that secret.
//!
//! So adding a provider takes its folder (and its secret in the settings), not an edit here.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::{Request, Secrets, Window};
use crate::split::Split;
use tributary_engine::Source;

macro_rules! gateways {
    ($(($m:ident, $v:ident))*) => {
        /// Every provider the gateway takes webhooks from, in the registry's order.
        pub const ALL: &[Source] = &[$(Source::$v),*];

        /// Splits one webhook call of `provider` into single events.
        pub fn split(provider: Source, body: &[u8], out: &mut Split) -> Result<()> {
            match provider {
                $(Source::$v => $m::split(body, out),)*
                // json, csv, and a provider without a gateway.rs
                _ => Err(not_a_provider(provider)),
            }
        }

        /// Checks the request against the tenant's secret for `provider`; `None`: the tenant
        /// has none.
        pub fn check<'r>(
            provider: Source,
            secrets: &Secrets,
            req: &Request<'_>,
            window: &Window,
            replays: &'r Replays,
        ) -> Option<Result<Option<Reservation<'r>>>> {
            match provider {
                $(Source::$v => $m::check(secrets, req, window, replays),)*
                _ => Some(Err(not_a_provider(provider))),
            }
        }

        /// Whether the tenant has a secret for `provider`.
        pub fn configured(provider: Source, secrets: &Secrets) -> bool {
            match provider {
                $(Source::$v => $m::configured(secrets),)*
                _ => false,
            }
        }
    };
}

tributary_engine::provider_modules!(gateway, gateways);

// What the settings read of a provider's secret: the provider's own key parsers.
pub use sendgrid::key as sendgrid_key;
pub use ses::{key_from_pem as sns_key_from_pem, SnsKeys};

/// A provider the gateway takes webhooks from, by its name in URLs; `None` for `json`, `csv`
/// and any other name.
pub fn parse(name: &str) -> Option<Source> {
    Source::parse(name).filter(|s| ALL.contains(s))
}

/// The providers' names, `sendgrid, mailgun, …`, for error messages.
pub fn names() -> String {
    ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

fn not_a_provider(source: Source) -> Error {
    Error::NotFound(format!("unknown provider '{}'", source.as_str()))
}
