//! Amazon SNS message signatures (how SES events reach an HTTP endpoint). The signature is
//! RSA PKCS#1 v1.5 over the canonical string of the message: `Name\nvalue\n` for `Message`,
//! `MessageId`, `Subject` (notifications, when present), `SubscribeURL` (confirmations),
//! `Timestamp`, `Token` (confirmations), `TopicArn`, `Type`, in that order; with SHA1 for
//! `SignatureVersion` 1 and SHA256 for 2. The gateway never fetches `SigningCertURL` (it would
//! let any caller choose the key): the certificates are configured as PEM files. The signed
//! `Timestamp` (when SNS published the message) must lie inside the replay window, checked
//! by the caller with [`super::Window`].

use super::{b64, forged, missing};
use crate::error::Result;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde_json::{Map, Value};
use x509_cert::der::{DecodePem, Encode};

#[derive(Debug, Clone)]
pub struct SnsKeys {
    pub keys: Vec<RsaPublicKey>,
    /// When not empty, only messages of these topics are taken.
    pub topic_arns: Vec<String>,
}

/// The RSA key of a PEM certificate (as SNS publishes them) or PEM public key.
pub fn key_from_pem(pem: &str) -> Result<RsaPublicKey, String> {
    if pem.contains("BEGIN CERTIFICATE") {
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| format!("not a certificate: {e}"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("certificate key: {e}"))?;
        RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA certificate: {e}"))
    } else {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| format!("not an RSA public key: {e}"))
    }
}

/// Is this body an SNS message (rather than raw message delivery or an EventBridge event)?
pub fn is_sns(obj: &Map<String, Value>) -> bool {
    obj.contains_key("Type") && obj.contains_key("MessageId") && obj.contains_key("TopicArn")
}

/// Verifies the SNS message in `body` and answers its (signed) `Timestamp`.
pub fn verify_body(keys: &SnsKeys, body: &[u8]) -> Result<String> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if is_sns(&m) => m,
        _ => {
            return Err(missing(
                "ses",
                "an SNS message envelope (with SNS certificates configured, raw delivery is refused)",
            ))
        }
    };
    verify(keys, &obj)?;
    Ok(obj
        .get("Timestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

pub fn verify(keys: &SnsKeys, msg: &Map<String, Value>) -> Result<()> {
    let s = |k: &str| msg.get(k).and_then(Value::as_str);
    let sig = s("Signature").ok_or_else(|| missing("ses", "an SNS Signature"))?;
    let sig = b64(sig)
        .and_then(|d| Signature::try_from(d.as_slice()).ok())
        .ok_or_else(|| forged("ses", "SNS Signature (not base64)"))?;
    let text = canonical(msg).ok_or_else(|| forged("ses", "SNS message (fields missing for its Type)"))?;
    if !keys.topic_arns.is_empty() && !keys.topic_arns.iter().any(|t| Some(t.as_str()) == s("TopicArn")) {
        return Err(forged("ses", "SNS TopicArn (not one of the tenant's topic_arns)"));
    }
    let ok = match s("SignatureVersion").unwrap_or("1") {
        "1" => keys.keys.iter().any(|k| {
            VerifyingKey::<sha1::Sha1>::new(k.clone())
                .verify(text.as_bytes(), &sig)
                .is_ok()
        }),
        "2" => keys.keys.iter().any(|k| {
            VerifyingKey::<sha2::Sha256>::new(k.clone())
                .verify(text.as_bytes(), &sig)
                .is_ok()
        }),
        _ => return Err(forged("ses", "SNS SignatureVersion (not 1 or 2)")),
    };
    if ok {
        Ok(())
    } else {
        Err(forged("ses", "SNS Signature"))
    }
}

/// The string SNS signs; `None` when a field its `Type` needs is missing.
pub fn canonical(msg: &Map<String, Value>) -> Option<String> {
    let ty = msg.get("Type")?.as_str()?;
    let fields: &[(&str, bool)] = match ty {
        "Notification" => &[
            ("Message", true),
            ("MessageId", true),
            ("Subject", false),
            ("Timestamp", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            ("Message", true),
            ("MessageId", true),
            ("SubscribeURL", true),
            ("Timestamp", true),
            ("Token", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        _ => return None,
    };
    let mut out = String::new();
    for (name, required) in fields {
        match msg.get(*name).and_then(Value::as_str) {
            Some(v) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None if *required => return None,
            None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use base64::Engine;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::EncodePem;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    /// A key pair and a self-signed certificate in PEM, as SNS's signing certificate is.
    pub fn key_and_cert() -> (RsaPrivateKey, String) {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap();
        let signer = SigningKey::<sha2::Sha256>::new(key.clone());
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            Validity::from_now(Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=sns.us-east-1.amazonaws.com").unwrap(),
            spki,
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        (key, cert.to_pem(Default::default()).unwrap())
    }

    /// Signs an SNS message in place, as SNS does.
    pub fn sign(key: &RsaPrivateKey, msg: &mut Map<String, Value>, version: u8) {
        msg.insert("SignatureVersion".into(), Value::String(version.to_string()));
        let text = canonical(msg).unwrap();
        let sig = match version {
            1 => SigningKey::<sha1::Sha1>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
            _ => SigningKey::<sha2::Sha256>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        };
        msg.insert(
            "Signature".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(sig)),
        );
    }

    pub fn notification(message: &str) -> Map<String, Value> {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Subject": "Amazon SES Email Event Notification",
            "Message": message,
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn genuine_passes_forged_fails_both_versions() {
        let (key, pem) = key_and_cert();
        let keys = SnsKeys {
            keys: vec![key_from_pem(&pem).unwrap()],
            topic_arns: vec![],
        };
        for version in [1, 2] {
            let mut msg = notification(r#"{"eventType":"Send"}"#);
            sign(&key, &mut msg, version);
            assert!(verify(&keys, &msg).is_ok(), "version {version}");
            let body = serde_json::to_vec(&msg).unwrap();
            assert!(verify_body(&keys, &body).is_ok());
            let mut tampered = msg.clone();
            tampered.insert("Message".into(), Value::String(r#"{"eventType":"Bounce"}"#.into()));
            assert_eq!(verify(&keys, &tampered).unwrap_err().status(), 403);
        }
        let (other, _) = key_and_cert();
        let mut msg = notification("{}");
        sign(&other, &mut msg, 2);
        assert!(verify(&keys, &msg).is_err());
        // Confirmations sign SubscribeURL and Token.
        let mut confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events", "Message": "confirm",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", "Timestamp": "2024-01-01T00:00:00Z"})
        .as_object()
        .unwrap()
        .clone();
        sign(&key, &mut confirm, 1);
        assert!(verify(&keys, &confirm).is_ok());
        confirm.insert("SubscribeURL".into(), Value::String("https://evil.example/".into()));
        assert!(verify(&keys, &confirm).is_err());
        // A topic allowlist refuses other topics.
        let only = SnsKeys {
            keys: keys.keys.clone(),
            topic_arns: vec!["arn:aws:sns:us-east-1:123456789012:other".into()],
        };
        let mut msg = notification("{}");
        sign(&key, &mut msg, 2);
        assert!(verify(&only, &msg).is_err());
        assert_eq!(
            verify_body(&keys, br#"{"eventType":"Send"}"#).unwrap_err().status(),
            401
        );
    }
}
