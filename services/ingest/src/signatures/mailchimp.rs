//! Mailchimp audience webhooks cannot sign or send headers: the webhook URL carries a secret
//! as `?secret=`, compared in constant time.

use super::{ct_eq, forged, missing, Request};
use crate::error::Result;

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
