//! The providers the gateway takes webhooks from: one module per provider folder holding a
//! `gateway.rs` (`providers/<name>/gateway.rs`, declared here by
//! `tributary_engine::provider_modules!`), and the dispatch to them, generated from the same
//! list. A provider's module answers three things:
//!
//! - `split(body, &mut Split)`: one webhook call as single events ([`crate::split`]);
//! - `SecretFile` (its table in a tenant's settings, `[tenants.<id>.<provider>]`), `Secret`
//!   (that secret ready to use) and `secret(SecretFile)`, which makes one of the other;
//! - `check(&Secret, &Request, &Window, &Replays)`: its signature check
//!   ([`crate::signatures`]).
//!
//! The tenant's settings ([`TenantFile`]) and secrets ([`Secrets`]) have one field per
//! provider, generated here too. So adding a provider takes its folder, not an edit here.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::{Request, Window};
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

        /// The webhook secrets of one tenant: one per provider, `None` where it has none.
        #[derive(Debug, Default, Clone)]
        pub struct Secrets {
            $(pub $m: Option<$m::Secret>,)*
        }

        impl Secrets {
            /// Whether the tenant has a secret for `provider`.
            pub fn has(&self, provider: Source) -> bool {
                match provider {
                    $(Source::$v => self.$m.is_some(),)*
                    _ => false,
                }
            }
        }

        /// One tenant in the settings file, `[tenants.<id>]`.
        #[derive(Debug, Default, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct TenantFile {
            /// SHA-256 (hex) of the tenant's gateway token; may come from `TENANT_TOKENS_FILE`
            /// instead.
            pub token_sha256: Option<String>,
            /// The key of the RFC 8058 one-click unsubscribe links' signatures (HMAC-SHA256 of
            /// `L|E`); without it the tenant's one-click links are refused. The local default
            /// tenants have `<tenant>-local-unsubscribe-secret`.
            pub unsubscribe_secret: Option<String>,
            $(
                /// The provider's webhook secret, `[tenants.<id>.<provider>]`: its
                /// `SecretFile` in `providers/<provider>/gateway.rs`.
                pub $m: Option<$m::SecretFile>,
            )*
        }

        impl TenantFile {
            /// The tenant's secrets from its settings, or every problem with them, each
            /// naming the provider's key.
            pub fn secrets(&mut self) -> std::result::Result<Secrets, Vec<String>> {
                let mut secrets = Secrets::default();
                let mut errors = Vec::new();
                $(
                    if let Some(f) = self.$m.take() {
                        match $m::secret(f) {
                            Ok(s) => secrets.$m = Some(s),
                            Err(e) => errors.extend(e),
                        }
                    }
                )*
                if errors.is_empty() {
                    Ok(secrets)
                } else {
                    Err(errors)
                }
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
                $(Source::$v => secrets.$m.as_ref().map(|s| $m::check(s, req, window, replays)),)*
                _ => Some(Err(not_a_provider(provider))),
            }
        }
    };
}

tributary_engine::provider_modules!(gateway, gateways);

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
