//! SendGrid signed Event Webhook: ECDSA P-256 with SHA-256 over the
//! `X-Twilio-Email-Event-Webhook-Timestamp` header's bytes followed by the raw body; the
//! signature (base64 of ASN.1 DER) in `X-Twilio-Email-Event-Webhook-Signature`; the
//! verification key as SendGrid shows it (base64 of the DER public key) or as PEM.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::Window;
use crate::signatures::{b64, forged, missing, Request};
use crate::split::{bad_json, first_byte, require_object};
use crate::split::{route, Split};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::value::RawValue;
use tributary_engine::Source;

pub const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// The Event Webhook's array (or one event object): one record per element, its own bytes.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    let p = "sendgrid";
    let events: Vec<&RawValue> = match first_byte(body) {
        Some(b'[') => serde_json::from_slice(body).map_err(|e| bad_json(p, e))?,
        Some(b'{') => vec![serde_json::from_slice(body).map_err(|e| bad_json(p, e))?],
        _ => return Err(Error::bad("sendgrid: expected a JSON array of events")),
    };
    for (i, ev) in events.iter().enumerate() {
        require_object(p, ev, i)?;
        out.records.push(route(Source::Sendgrid, ev.get().as_bytes().to_vec()));
    }
    Ok(())
}

/// The tenant's secret in the settings file, `[tenants.<id>.sendgrid]`: the signed event
/// webhook's verification key (base64 DER or PEM).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub public_key: String,
}

/// The secret, ready to check requests.
pub type Secret = VerifyingKey;

/// The secret of the settings file's entry; each error names its key.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    key(&file.public_key).map_err(|e| vec![format!("sendgrid.public_key: {e}")])
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    key: &Secret,
    req: &Request<'_>,
    window: &Window,
    _replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    verify(key, req)?;
    window
        .fresh("sendgrid", req.header(TIMESTAMP).unwrap_or_default())
        .map(|_| None)
}

pub fn key(s: &str) -> Result<VerifyingKey, String> {
    let s = s.trim();
    if s.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(s).map_err(|e| format!("not a P-256 public key in PEM: {e}"))
    } else {
        let der = b64(s).ok_or("neither PEM nor base64")?;
        VerifyingKey::from_public_key_der(&der).map_err(|e| format!("not a P-256 public key: {e}"))
    }
}

pub fn verify(key: &VerifyingKey, req: &Request<'_>) -> Result<()> {
    let sig = req.header(SIGNATURE).ok_or_else(|| missing("sendgrid", SIGNATURE))?;
    let ts = req.header(TIMESTAMP).ok_or_else(|| missing("sendgrid", TIMESTAMP))?;
    let sig = b64(sig)
        .and_then(|d| Signature::from_der(&d).ok())
        .ok_or_else(|| forged("sendgrid", "signature (not base64 DER ECDSA)"))?;
    let mut msg = Vec::with_capacity(ts.len() + req.body.len());
    msg.extend_from_slice(ts.as_bytes());
    msg.extend_from_slice(req.body);
    key.verify(&msg, &sig).map_err(|_| forged("sendgrid", "signature"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::tests::{replays, window};
    use crate::signatures::Outcome;
    use axum::http::HeaderMap;
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn genuine_passes_forged_fails() {
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let vk = key(&base64::engine::general_purpose::STANDARD.encode(der.as_bytes())).unwrap();
        let body = br#"[{"email":"a@example.com","event":"open"}]"#;
        let ts = "1700000000";
        let sig: Signature = sk.sign(&[ts.as_bytes(), &body[..]].concat());
        let headers = |sig: &Signature, ts: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                SIGNATURE,
                base64::engine::general_purpose::STANDARD
                    .encode(sig.to_der().as_bytes())
                    .parse()
                    .unwrap(),
            );
            h.insert(TIMESTAMP, ts.parse().unwrap());
            h
        };
        let ok = headers(&sig, ts);
        assert!(verify(
            &vk,
            &Request {
                headers: &ok,
                query: &[],
                body
            }
        )
        .is_ok());
        // Same signature, another timestamp or body: refused.
        let other_ts = headers(&sig, "1700000001");
        let e = verify(
            &vk,
            &Request {
                headers: &other_ts,
                query: &[],
                body,
            },
        )
        .unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(verify(
            &vk,
            &Request {
                headers: &ok,
                query: &[],
                body: b"[]"
            }
        )
        .is_err());
        // Signed by another key: refused.
        let other: Signature = SigningKey::from_slice(&[9u8; 32])
            .unwrap()
            .sign(&[ts.as_bytes(), &body[..]].concat());
        let forged = headers(&other, ts);
        assert!(verify(
            &vk,
            &Request {
                headers: &forged,
                query: &[],
                body
            }
        )
        .is_err());
        let none = HeaderMap::new();
        assert_eq!(
            verify(
                &vk,
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
        // PEM keys are read too.
        let pem = sk.verifying_key().to_public_key_pem(Default::default()).unwrap();
        assert_eq!(key(&pem).unwrap(), vk);
    }

    #[test]
    fn sendgrid_signed_timestamp_is_checked() {
        use base64::Engine;
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let secrets = crate::signatures::Secrets {
            sendgrid: Some(*sk.verifying_key()),
            ..crate::signatures::Secrets::default()
        };
        let body = br#"[{"email":"a@example.com","event":"open"}]"#;
        let signed = |ts: &str| {
            let sig: p256::ecdsa::Signature = sk.sign(&[ts.as_bytes(), &body[..]].concat());
            let mut h = HeaderMap::new();
            h.insert(
                SIGNATURE,
                base64::engine::general_purpose::STANDARD
                    .encode(sig.to_der().as_bytes())
                    .parse()
                    .unwrap(),
            );
            h.insert(TIMESTAMP, ts.parse().unwrap());
            h
        };
        let r = replays();
        let check_at = |h: &HeaderMap, now: i64| {
            let req = Request {
                headers: h,
                query: &[],
                body,
            };
            crate::signatures::check(Source::Sendgrid, &secrets, &req, &window(now), &r).map(|(o, _)| o)
        };
        let h = signed("1700000000");
        assert_eq!(check_at(&h, 1_700_000_100).unwrap(), Outcome::Verified);
        // The same genuine signature, later than signature_max_age: refused as a replay.
        let e = check_at(&h, 1_700_000_301).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("refused as a possible replay"), "{e}");
    }
}
