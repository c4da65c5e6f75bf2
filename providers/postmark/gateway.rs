//! Postmark: webhooks carry HTTP basic-auth credentials written into the webhook URL
//! (`https://user:pass@host/...`). The tenant token then comes as `?token=`.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::Window;
use crate::signatures::{b64, ct_eq, forged, missing, Request};
use crate::split::{bad_json, first_byte};
use crate::split::{route, Split};
use serde_json::{Map, Value};
use tributary_engine::Source;

/// One call is one event: published as received.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    let p = "postmark";
    let _: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(e) if first_byte(body) == Some(b'{') => return Err(bad_json(p, e)),
        Err(_) => return Err(Error::bad(format!("{p}: expected one JSON event object"))),
    };
    out.records.push(route(Source::Postmark, body.to_vec()));
    Ok(())
}

/// The tenant's secret in the settings file, `[tenants.<id>.postmark]`: the basic-auth
/// credentials in the webhook URL.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub username: String,
    pub password: String,
}

/// The secret, ready to check requests: user and password.
pub type Secret = (String, String);

/// The secret of the settings file's entry.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    Ok((file.username, file.password))
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    (user, password): &Secret,
    req: &Request<'_>,
    _window: &Window,
    _replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    verify(user, password, req).map(|()| None)
}

pub fn verify(user: &str, password: &str, req: &Request<'_>) -> Result<()> {
    let auth = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Basic ").or_else(|| a.strip_prefix("basic ")))
        .ok_or_else(|| missing("postmark", "basic-auth credentials"))?;
    let given = b64(auth).ok_or_else(|| forged("postmark", "basic auth (not base64)"))?;
    let expected = format!("{user}:{password}");
    if ct_eq(&given, expected.as_bytes()) {
        Ok(())
    } else {
        Err(forged("postmark", "basic-auth credentials"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use base64::Engine;

    #[test]
    fn genuine_passes_forged_fails() {
        let with = |creds: &str| {
            let mut h = HeaderMap::new();
            let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds));
            h.insert("authorization", v.parse().unwrap());
            h
        };
        let good = with("pm:s3cret");
        assert!(verify(
            "pm",
            "s3cret",
            &Request {
                headers: &good,
                query: &[],
                body: b"{}"
            }
        )
        .is_ok());
        let bad = with("pm:guess");
        assert_eq!(
            verify(
                "pm",
                "s3cret",
                &Request {
                    headers: &bad,
                    query: &[],
                    body: b"{}"
                }
            )
            .unwrap_err()
            .status(),
            403
        );
        let none = HeaderMap::new();
        assert_eq!(
            verify(
                "pm",
                "s3cret",
                &Request {
                    headers: &none,
                    query: &[],
                    body: b"{}"
                }
            )
            .unwrap_err()
            .status(),
            401
        );
    }
}
