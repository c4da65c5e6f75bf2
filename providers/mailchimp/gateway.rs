//! Mailchimp audience webhooks cannot sign or send headers: the webhook URL carries a secret
//! as `?secret=`, compared in constant time.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::{ct_eq, forged, missing, Request};
use crate::signatures::{Secrets, Window};
use crate::split::first_byte;
use crate::split::{route, Split};
use tributary_engine::esp;
use tributary_engine::Source;

/// One call (form-encoded, or a JSON object of the same shape) is one event.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    if body.trim_ascii().is_empty() {
        return Err(Error::bad(
            "mailchimp: empty body: expected the form-encoded webhook fields",
        ));
    }
    if first_byte(body) != Some(b'{') {
        esp::form(body).map_err(|e| Error::bad(format!("mailchimp: {}", e.reason)))?;
    }
    out.records.push(route(Source::Mailchimp, body.to_vec()));
    Ok(())
}

pub fn check<'r>(
    secrets: &Secrets,
    req: &Request<'_>,
    _window: &Window,
    _replays: &'r Replays,
) -> Option<Result<Option<Reservation<'r>>>> {
    secrets.mailchimp.as_ref().map(|s| verify(s, req).map(|()| None))
}

pub fn configured(secrets: &Secrets) -> bool {
    secrets.mailchimp.is_some()
}

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
