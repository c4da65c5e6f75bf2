//! Postmark: webhooks carry HTTP basic-auth credentials written into the webhook URL
//! (`https://user:pass@host/...`). The tenant token then comes as `?token=`.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::{b64, ct_eq, forged, missing, Request};
use crate::signatures::{Secrets, Window};
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

pub fn check<'r>(
    secrets: &Secrets,
    req: &Request<'_>,
    _window: &Window,
    _replays: &'r Replays,
) -> Option<Result<Option<Reservation<'r>>>> {
    secrets.postmark.as_ref().map(|(u, p)| verify(u, p, req).map(|()| None))
}

pub fn configured(secrets: &Secrets) -> bool {
    secrets.postmark.is_some()
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
