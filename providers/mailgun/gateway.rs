//! Mailgun webhooks: the body's `signature` object holds `timestamp`, `token` and
//! `signature`, the hex HMAC-SHA256 of timestamp followed by token under the account's HTTP
//! webhook signing key. The event itself is not signed: see [`crate::signatures::replay`] for
//! why each signature is taken once.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::Window;
use crate::signatures::{forged, missing, Request};
use crate::split::{bad_json, first_byte};
use crate::split::{route, Split};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use tributary_engine::Source;

/// One call is one event: published as received.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    let p = "mailgun";
    let _: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(e) if first_byte(body) == Some(b'{') => return Err(bad_json(p, e)),
        Err(_) => return Err(Error::bad(format!("{p}: expected one JSON event object"))),
    };
    out.records.push(route(Source::Mailgun, body.to_vec()));
    Ok(())
}

/// The tenant's secret in the settings file, `[tenants.<id>.mailgun]`: the HTTP webhook
/// signing key.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub signing_key: String,
}

/// The secret, ready to check requests.
pub type Secret = String;

/// The secret of the settings file's entry.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    Ok(file.signing_key)
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    key: &Secret,
    req: &Request<'_>,
    window: &Window,
    replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    let (ts, token) = verify(key, req.body)?;
    let forget_at = window.fresh("mailgun", &ts)?;
    replays.take("mailgun", &ts, &token, forget_at, window.now).map(Some)
}

/// Verifies the signature and answers its timestamp and token (for the replay window and
/// the replay cache).
pub fn verify(signing_key: &str, body: &[u8]) -> Result<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| missing("mailgun", "a JSON body"))?;
    let field = |k: &str| {
        v.get("signature")
            .and_then(|s| s.get(k))
            .and_then(|x| match x {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| missing("mailgun", &format!("signature.{k}")))
    };
    let (ts, token, sig) = (field("timestamp")?, field("token")?, field("signature")?);
    let sig = hex::decode(sig.trim()).map_err(|_| forged("mailgun", "signature (not hex)"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&sig).map_err(|_| forged("mailgun", "signature"))?;
    Ok((ts, token))
}

/// The signature Mailgun would send, for the tests.
#[cfg(test)]
pub fn sign(signing_key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::tests::{replays, window};
    use crate::signatures::Outcome;
    use axum::http::HeaderMap;

    #[test]
    fn genuine_passes_forged_fails() {
        let key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let body = |sig: &str, ts: &str| {
            serde_json::json!({"signature": {"timestamp": ts, "token": "tok123", "signature": sig},
                "event-data": {"event": "delivered", "recipient": "a@example.com"}})
            .to_string()
        };
        let good = sign(&key, "1700000000", "tok123");
        assert_eq!(
            verify(&key, body(&good, "1700000000").as_bytes()).unwrap(),
            ("1700000000".to_owned(), "tok123".to_owned())
        );
        assert_eq!(
            verify(&key, body(&good, "1700000001").as_bytes()).unwrap_err().status(),
            403
        );
        assert!(verify("another-key", body(&good, "1700000000").as_bytes()).is_err());
        assert_eq!(verify(&key, br#"{"event-data":{}}"#).unwrap_err().status(), 401);
    }

    #[test]
    fn a_mailgun_signature_is_taken_once() {
        let key = "mailgun-signing-key";
        let secrets = crate::signatures::Secrets {
            mailgun: Some(key.into()),
            ..crate::signatures::Secrets::default()
        };
        let body = |event: &str, ts: &str, token: &str| {
            serde_json::json!({
                "signature": {"timestamp": ts, "token": token, "signature": sign(key, ts, token)},
                "event-data": {"event": event, "recipient": "a@example.com"}
            })
            .to_string()
        };
        let r = replays();
        let headers = HeaderMap::new();
        let check_body = |b: &str, now: i64| {
            let req = Request {
                headers: &headers,
                query: &[],
                body: b.as_bytes(),
            };
            crate::signatures::check(Source::Mailgun, &secrets, &req, &window(now), &r)
        };
        let genuine = body("delivered", "1700000000", "tok-1");
        // A first attempt that fails (no keep): the provider's retry is taken.
        let (outcome, once) = check_body(&genuine, 1_700_000_010).unwrap();
        assert_eq!(outcome, Outcome::Verified);
        drop(once);
        let (_, once) = check_body(&genuine, 1_700_000_020).unwrap();
        once.expect("a mailgun reservation").keep();
        // Then the same webhook again, or other events under its signature: refused.
        for again in [genuine.clone(), body("complained", "1700000000", "tok-1")] {
            let e = check_body(&again, 1_700_000_030).err().expect("refused");
            assert_eq!(e.status(), 403);
            assert!(e.to_string().contains("already used: refused as a replay"), "{e}");
        }
        // Another delivery (a new token) is taken; an old timestamp is refused before the cache.
        let (_, once) = check_body(&body("delivered", "1700000000", "tok-2"), 1_700_000_030).unwrap();
        once.unwrap().keep();
        let e = check_body(&body("delivered", "1699990000", "tok-3"), 1_700_000_030)
            .err()
            .unwrap();
        assert!(e.to_string().contains("more than signature_max_age 300 s"), "{e}");
        assert_eq!(r.len(), 2);
    }
}
