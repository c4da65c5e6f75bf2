//! Mailchimp audience webhooks cannot sign or send headers: the webhook URL carries a secret
//! as `?secret=`, compared in constant time.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::Window;
use crate::signatures::{ct_eq, forged, missing, Request};
use crate::split::first_byte;
use crate::split::{route, Split};
use tributary_engine::esp;
use tributary_engine::Source;

/// One call (form-encoded, or a JSON object of the same shape) is one event.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    if body.trim_ascii().is_empty() {
        return Err(Error::bad(
            "mailchimp: empty body: expected the form-encoded webhook fields",
        ));
    }
    if first_byte(body) != Some(b'{') {
        esp::form(body).map_err(|e| Error::bad(format!("mailchimp: {}", e.reason)))?;
    }
    out.records.push(route(Source::Mailchimp, body.to_vec()));
    Ok(())
}

/// The tenant's secret in the settings file, `[tenants.<id>.mailchimp]`: the `secret` query
/// parameter of the webhook URL.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub secret: String,
}

/// The secret, ready to check requests.
pub type Secret = String;

/// The secret of the settings file's entry.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    Ok(file.secret)
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    secret: &Secret,
    req: &Request<'_>,
    _window: &Window,
    _replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    verify(secret, req).map(|()| None)
}

pub fn verify(secret: &str, req: &Request<'_>) -> Result<()> {
    let given = req
        .query("secret")
        .ok_or_else(|| missing("mailchimp", "the secret query parameter"))?;
    if ct_eq(given.as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(forged("mailchimp", "URL secret"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn genuine_passes_forged_fails() {
        let h = HeaderMap::new();
        let q = |v: &str| vec![("secret".to_owned(), v.to_owned())];
        assert!(verify(
            "abc",
            &Request {
                headers: &h,
                query: &q("abc"),
                body: b""
            }
        )
        .is_ok());
        assert_eq!(
            verify(
                "abc",
                &Request {
                    headers: &h,
                    query: &q("abd"),
                    body: b""
                }
            )
            .unwrap_err()
            .status(),
            403
        );
        assert_eq!(
            verify(
                "abc",
                &Request {
                    headers: &h,
                    query: &[],
                    body: b""
                }
            )
            .unwrap_err()
            .status(),
            401
        );
    }
}
