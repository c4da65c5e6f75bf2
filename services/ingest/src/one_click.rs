//! RFC 8058 one-click unsubscribes: `POST /v1/tenants/{t}/unsubscribe?email=E[&list=L]&sig=S`
//! with the form body `List-Unsubscribe=One-Click`, no token. `S` is the hex HMAC-SHA256,
//! under the tenant's unsubscribe secret, of `L|E` (`L` empty for every list), so only links
//! the tenant's own mail carried are honoured. A valid one becomes an `unsubscribes` event
//! (`method` `one-click`) on `raw.unsubscribes`; anything else publishes nothing.

use crate::config::Tenant;
use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;

/// The form body RFC 8058 requires.
pub const BODY: &str = "List-Unsubscribe=One-Click";

/// The signature a link for (`list`, `email`) carries.
pub fn sign(secret: &[u8], list: Option<&str>, email: &str) -> String {
    hex::encode(mac(secret, list, email).finalize().into_bytes())
}

/// HMAC-SHA256 under `secret` over `L|E`.
fn mac(secret: &[u8], list: Option<&str>, email: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{}|{email}", list.unwrap_or_default()).as_bytes());
    mac
}

/// What a valid request publishes: (key, canonical JSON payload).
pub struct Unsubscribe {
    pub email: String,
    pub payload: Vec<u8>,
}

/// Checks one request. Unknown tenant, missing or wrong signature: the same 403.
pub fn check(
    tenants: &BTreeMap<String, Tenant>,
    tenant_id: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Unsubscribe> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let forbidden = || Error::Forbidden("the unsubscribe link's signature does not match".into());
    let email = get("email")
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| Error::BadRequest("the one-click link has no email parameter".into()))?;
    let list = get("list").filter(|l| !l.is_empty());
    let sig = get("sig").ok_or_else(forbidden)?;
    let secret = tenants
        .get(tenant_id)
        .and_then(|t| t.unsubscribe_secret.as_deref())
        .ok_or_else(forbidden)?;
    let given = hex::decode(sig.trim()).map_err(|_| forbidden())?;
    mac(secret, list, email).verify_slice(&given).map_err(|_| forbidden())?;
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    if !form
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("List-Unsubscribe") && v.eq_ignore_ascii_case("One-Click"))
    {
        return Err(Error::BadRequest(format!(
            "the body must be the form `{BODY}` (RFC 8058)"
        )));
    }
    let normalized =
        tributary_engine::normalize::email(email).map_err(|e| Error::BadRequest(format!("email: {}", e.reason)))?;
    let payload = serde_json::to_vec(&serde_json::json!({
        "tenant_id": tenant_id,
        "email": normalized,
        "list_id": list,
        "event_time": tributary_engine::normalize::now_micros() / 1000,
        "method": "one-click",
        "reason": "List-Unsubscribe=One-Click",
    }))
    .expect("JSON of plain values");
    Ok(Unsubscribe {
        email: normalized,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn only_the_tenants_own_signature_is_honoured() {
        let s = Settings::local();
        let secret = b"acme-local-unsubscribe-secret";
        let q = |list: Option<&str>, sig: String| {
            let mut q = vec![
                ("email".to_owned(), "Ann@Example.com".to_owned()),
                ("sig".to_owned(), sig),
            ];
            if let Some(l) = list {
                q.push(("list".to_owned(), l.to_owned()));
            }
            q
        };
        let ok = check(
            &s.tenants,
            "acme",
            &q(Some("news"), sign(secret, Some("news"), "Ann@Example.com")),
            BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.email, "ann@example.com");
        let v: serde_json::Value = serde_json::from_slice(&ok.payload).unwrap();
        assert_eq!(
            (v["list_id"].as_str(), v["method"].as_str()),
            (Some("news"), Some("one-click"))
        );
        assert!(check(
            &s.tenants,
            "acme",
            &q(None, sign(secret, None, "Ann@Example.com")),
            BODY.as_bytes()
        )
        .is_ok());
        let status = |r: Result<Unsubscribe>| r.err().map(|e| e.status().as_u16());
        // A link for one list does not unsubscribe from all, nor another tenant's.
        assert_eq!(
            status(check(
                &s.tenants,
                "acme",
                &q(None, sign(secret, Some("news"), "Ann@Example.com")),
                BODY.as_bytes()
            )),
            Some(403)
        );
        assert_eq!(
            status(check(
                &s.tenants,
                "globex",
                &q(Some("news"), sign(secret, Some("news"), "Ann@Example.com")),
                BODY.as_bytes()
            )),
            Some(403)
        );
        assert_eq!(
            status(check(
                &s.tenants,
                "umbrella",
                &q(Some("news"), sign(secret, Some("news"), "Ann@Example.com")),
                BODY.as_bytes()
            )),
            Some(403)
        );
        assert_eq!(
            status(check(
                &s.tenants,
                "acme",
                &q(Some("news"), "00".repeat(32)),
                BODY.as_bytes()
            )),
            Some(403)
        );
        assert_eq!(
            status(check(
                &s.tenants,
                "acme",
                &q(Some("news"), sign(secret, Some("news"), "Ann@Example.com")),
                b"x=y"
            )),
            Some(400)
        );
    }
}
