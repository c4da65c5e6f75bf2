//! Mandrill: `X-Mandrill-Signature` is the base64 HMAC-SHA1, under the webhook's key, of the
//! webhook URL exactly as registered at Mandrill followed by each POST field's name and value,
//! sorted by name. The gateway cannot know the public URL behind proxies, so it is configured.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::Window;
use crate::signatures::{b64, forged, missing, Request};
use crate::split::require_object;
use crate::split::{route, Split};
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha1::Sha1;
use tributary_engine::Source;

pub const SIGNATURE: &str = "x-mandrill-signature";

/// The `mandrill_events` form field's array: one record per element, its own bytes.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    let field = form_urlencoded::parse(body)
        .find(|(k, _)| k == "mandrill_events")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::bad("mandrill: no mandrill_events form field"))?;
    let events: Vec<&RawValue> = serde_json::from_str(&field)
        .map_err(|e| Error::bad(format!("mandrill: mandrill_events is not a JSON array: {e}")))?;
    for (i, ev) in events.iter().enumerate() {
        require_object("mandrill", ev, i)?;
        out.records.push(route(Source::Mandrill, ev.get().as_bytes().to_vec()));
    }
    Ok(())
}

/// The tenant's secret in the settings file, `[tenants.<id>.mandrill]`: the webhook key and
/// the exact URL registered at Mandrill (the signature covers it).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub webhook_key: String,
    pub url: String,
}

/// The secret, ready to check requests: the webhook key and the URL.
pub type Secret = (String, String);

/// The secret of the settings file's entry.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    Ok((file.webhook_key, file.url))
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    (key, url): &Secret,
    req: &Request<'_>,
    _window: &Window,
    _replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    verify(key, url, req).map(|()| None)
}

pub fn verify(key: &str, url: &str, req: &Request<'_>) -> Result<()> {
    let sig = req.header(SIGNATURE).ok_or_else(|| missing("mandrill", SIGNATURE))?;
    let sig = b64(sig).ok_or_else(|| forged("mandrill", "signature (not base64)"))?;
    let mac = mac(key, url, req.body);
    mac.verify_slice(&sig).map_err(|_| forged("mandrill", "signature"))
}

fn mac(key: &str, url: &str, body: &[u8]) -> Hmac<Sha1> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in &params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The signature Mandrill would send, for the tests.
#[cfg(test)]
pub fn sign(key: &str, url: &str, body: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(mac(key, url, body).finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn genuine_passes_forged_fails() {
        let url = "https://ingest.example.com/v1/tenants/acme/webhooks/mandrill";
        let key = "mandrill-webhook-key";
        let body = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D&b=2";
        let with = |sig: &str| {
            let mut h = HeaderMap::new();
            h.insert(SIGNATURE, sig.parse().unwrap());
            h
        };
        let good = with(&sign(key, url, body));
        assert!(verify(
            key,
            url,
            &Request {
                headers: &good,
                query: &[],
                body
            }
        )
        .is_ok());
        assert!(verify(
            key,
            "https://other.example/",
            &Request {
                headers: &good,
                query: &[],
                body
            }
        )
        .is_err());
        assert!(verify(
            "other",
            url,
            &Request {
                headers: &good,
                query: &[],
                body
            }
        )
        .is_err());
        let tampered = b"mandrill_events=%5B%7B%22event%22%3A%22open%22%7D%5D&b=2";
        assert_eq!(
            verify(
                key,
                url,
                &Request {
                    headers: &good,
                    query: &[],
                    body: tampered
                }
            )
            .unwrap_err()
            .status(),
            403
        );
        let none = HeaderMap::new();
        assert_eq!(
            verify(
                key,
                url,
                &Request {
                    headers: &none,
                    query: &[],
                    body
                }
            )
            .unwrap_err()
            .status(),
            401
        );
    }
}
