//! Tenant tokens: `Authorization: Bearer <token>` or, for providers that cannot send headers,
//! `?token=`. Only SHA-256 hashes of tokens are configured; the comparison is on hashes, in
//! constant time.

use crate::config::{sha256, Tenant};
use crate::error::{Error, Result};
use axum::http::HeaderMap;
use std::collections::BTreeMap;

/// The tenant the request may act for.
pub fn tenant<'a>(
    tenants: &'a BTreeMap<String, Tenant>,
    id: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<&'a Tenant> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .strip_prefix("Bearer ")
                .or_else(|| v.trim().strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = bearer
        .or_else(|| query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::Unauthorized(format!(
                "no token for tenant '{}': send `Authorization: Bearer <token>` or `?token=<token>`",
                tributary_engine::normalize::truncate(id, 64)
            ))
        })?;
    let tenant = tenants.get(id).ok_or_else(|| {
        Error::Forbidden(format!(
            "unknown tenant '{}'",
            tributary_engine::normalize::truncate(id, 64)
        ))
    })?;
    let given = sha256(token.as_bytes());
    let diff = given
        .iter()
        .zip(tenant.token_sha256.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(tenant)
    } else {
        Err(Error::Forbidden(format!("the token is not tenant '{id}''s")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn bearer_or_query_token_of_the_right_tenant() {
        let s = Settings::local();
        let mut h = HeaderMap::new();
        assert_eq!(tenant(&s.tenants, "acme", &h, &[]).unwrap_err().status(), 401);
        let q = vec![("token".to_owned(), "acme-local-token".to_owned())];
        assert!(tenant(&s.tenants, "acme", &h, &q).is_ok());
        assert_eq!(tenant(&s.tenants, "globex", &h, &q).unwrap_err().status(), 403);
        h.insert("authorization", "Bearer globex-local-token".parse().unwrap());
        assert!(tenant(&s.tenants, "globex", &h, &[]).is_ok());
        let e = tenant(&s.tenants, "umbrella", &h, &[]).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.to_string().as_str()),
            (403, "unknown tenant 'umbrella'")
        );
        // Basic auth (Postmark's) leaves the tenant token to the query.
        h.insert("authorization", "Basic dTpw".parse().unwrap());
        assert!(tenant(&s.tenants, "acme", &h, &q).is_ok());
    }
}
