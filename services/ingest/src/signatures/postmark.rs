//! Postmark: webhooks carry HTTP basic-auth credentials written into the webhook URL
//! (`https://user:pass@host/...`). The tenant token then comes as `?token=`.

use super::{b64, ct_eq, forged, missing, Request};
use crate::error::Result;

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
