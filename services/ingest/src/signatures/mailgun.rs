//! Mailgun webhooks: the body's `signature` object holds `timestamp`, `token` and
//! `signature`, the hex HMAC-SHA256 of timestamp followed by token under the account's HTTP
//! webhook signing key. The event itself is not signed: see [`super::replay`] for why each
//! signature is taken once.

use super::{forged, missing};
use crate::error::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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

/// The signature Mailgun would send, for tests and tools.
pub fn sign(signing_key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
