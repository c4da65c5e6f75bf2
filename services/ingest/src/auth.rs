//! Tenant tokens: `Authorization: Bearer <token>` or, for providers that cannot send headers,
//! `?token=`. Only SHA-256 hashes of tokens are configured; the comparison is on hashes, in
//! constant time.
//!
//! An unknown tenant, a wrong token and no token get the same 401 with the same body, after
//! the same work (the token is hashed and compared against a dummy hash when the tenant is
//! unknown), so a caller cannot tell which tenants exist. Which of the three it was is logged.

use crate::config::{sha256, Tenant};
use crate::error::{Error, Result};
use axum::http::HeaderMap;
use std::collections::BTreeMap;

/// The one answer to every failed tenant check.
pub const REFUSED: &str =
    "invalid tenant or token: send the tenant's token as `Authorization: Bearer <token>` or `?token=<token>`";

/// Compared against when the tenant is unknown: no token hashes to it that anyone knows.
const DUMMY_SHA256: [u8; 32] = [0xa5; 32];

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
        .unwrap_or_default();
    let tenant = tenants.get(id);
    let expected = tenant.map_or(&DUMMY_SHA256, |t| &t.token_sha256);
    let given = sha256(token.as_bytes());
    let diff = given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Every condition evaluated, none short-circuiting the others.
    let ok = (diff == 0) & tenant.is_some() & !token.is_empty();
    match tenant {
        Some(t) if ok => Ok(t),
        _ => {
            let why = if token.is_empty() {
                "no token"
            } else if tenant.is_none() {
                "unknown tenant"
            } else {
                "wrong token"
            };
            tracing::info!(tenant = %tributary_engine::normalize::truncate(id, 64), reason = why, "Tenant token refused");
            Err(Error::Unauthorized(REFUSED.into()))
        }
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
        let q = vec![("token".to_owned(), "acme-local-token".to_owned())];
        assert!(tenant(&s.tenants, "acme", &h, &q).is_ok());
        h.insert("authorization", "Bearer globex-local-token".parse().unwrap());
        assert!(tenant(&s.tenants, "globex", &h, &[]).is_ok());
        // Basic auth (Postmark's) leaves the tenant token to the query.
        h.insert("authorization", "Basic dTpw".parse().unwrap());
        assert!(tenant(&s.tenants, "acme", &h, &q).is_ok());
    }

    #[test]
    fn unknown_tenant_wrong_token_and_no_token_are_one_answer() {
        let s = Settings::local();
        let none = HeaderMap::new();
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", "Bearer acme-local-token".parse().unwrap());
        let mut empty = HeaderMap::new();
        empty.insert("authorization", "Bearer ".parse().unwrap());
        let q = |t: &str| vec![("token".to_owned(), t.to_owned())];
        let refusals = [
            tenant(&s.tenants, "acme", &none, &[]),                      // no token
            tenant(&s.tenants, "acme", &empty, &q("")),                  // empty tokens
            tenant(&s.tenants, "globex", &none, &q("acme-local-token")), // another tenant's
            tenant(&s.tenants, "acme", &none, &q("acme-local-token ")),  // wrong
            tenant(&s.tenants, "umbrella", &bearer, &[]),                // unknown tenant
            tenant(&s.tenants, "umbrella", &none, &[]),                  // unknown, no token
            tenant(&s.tenants, "", &none, &q("acme-local-token")),
        ];
        for r in refusals {
            let e = r.unwrap_err();
            assert_eq!(e.status(), 401);
            assert_eq!(e.to_string(), REFUSED);
        }
    }
}
