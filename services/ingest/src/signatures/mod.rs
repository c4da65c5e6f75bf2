//! Provider authenticity, one module per provider's scheme. A tenant's gateway token says who
//! the caller claims to be; these say the body really comes from the provider account the
//! tenant configured. Where a tenant has no secret for a provider, [`check`] answers
//! [`Outcome::Unconfigured`] and the caller decides (skip with a warning locally, refuse when
//! `require_provider_signatures`).

pub mod mailchimp;
pub mod mailgun;
pub mod mandrill;
pub mod postmark;
pub mod replay;
pub mod sendgrid;
pub mod sns;

use crate::error::{Error, Result};
use crate::split::Provider;
use axum::http::HeaderMap;
use replay::{Replays, Reservation};

/// A tenant's provider secrets, parsed.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub sendgrid: Option<p256::ecdsa::VerifyingKey>,
    pub mailgun: Option<String>,
    /// Webhook key, and the URL as registered at Mandrill.
    pub mandrill: Option<(String, String)>,
    /// Basic-auth user and password.
    pub postmark: Option<(String, String)>,
    pub mailchimp: Option<String>,
    pub ses: Option<sns::SnsKeys>,
}

impl Secrets {
    pub fn has(&self, p: Provider) -> bool {
        match p {
            Provider::Sendgrid => self.sendgrid.is_some(),
            Provider::Mailgun => self.mailgun.is_some(),
            Provider::Ses => self.ses.is_some(),
            Provider::Postmark => self.postmark.is_some(),
            Provider::Mailchimp => self.mailchimp.is_some(),
            Provider::Mandrill => self.mandrill.is_some(),
        }
    }
}

/// What a provider check needs of the request.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Verified,
    /// The tenant has no secret for this provider.
    Unconfigured,
}

/// The replay window of signed timestamps (SendGrid's header, Mailgun's `signature.timestamp`,
/// SNS's `Timestamp`): `now` (Unix seconds) and how old one may be. Only a verified
/// signature's timestamp is checked: an unsigned one proves nothing.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: i64,
    pub max_age: std::time::Duration,
}

/// How far a signed timestamp may lie ahead of our clock.
const MAX_SKEW_SECS: f64 = 300.0;

impl Window {
    pub fn now(max_age: std::time::Duration) -> Window {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Window { now, max_age }
    }

    /// A verified signature's timestamp (Unix seconds) must be recent: an old one is a replay
    /// (or a clock far off), refused with 403 and the numbers. Answers when the timestamp
    /// leaves the window (Unix seconds), for the replay cache.
    fn fresh(&self, provider: &str, ts: &str) -> Result<i64> {
        let t: f64 = ts.trim().parse().map_err(|_| {
            forged(
                provider,
                &format!("signature timestamp '{ts}' (not a number of seconds)"),
            )
        })?;
        self.fresh_secs(provider, "signature timestamp", ts, t)
    }

    /// As [`Window::fresh`], for an SNS message's ISO 8601 `Timestamp` (which it signs).
    fn fresh_iso(&self, provider: &str, ts: &str) -> Result<i64> {
        let micros = tributary_engine::normalize::timestamp(
            "Timestamp",
            &serde_json::Value::String(ts.to_owned()),
            i64::MAX / 2,
        )
        .map_err(|_| forged(provider, &format!("SNS Timestamp '{ts}' (not an ISO 8601 time)")))?;
        self.fresh_secs(provider, "SNS Timestamp", ts, micros as f64 / 1e6)
    }

    fn fresh_secs(&self, provider: &str, what: &str, ts: &str, t: f64) -> Result<i64> {
        let age = self.now as f64 - t;
        if age > self.max_age.as_secs_f64() {
            return Err(Error::Forbidden(format!(
                "{provider} {what} {ts} is {age:.0} s old, more than signature_max_age {} s: refused as a possible replay",
                self.max_age.as_secs()
            )));
        }
        if -age > MAX_SKEW_SECS {
            return Err(Error::Forbidden(format!(
                "{provider} {what} {ts} lies {:.0} s in the future (more than {MAX_SKEW_SECS} s of clock skew)",
                -age
            )));
        }
        Ok(t.ceil() as i64 + self.max_age.as_secs() as i64)
    }
}

/// Checks the request against the tenant's secret for `provider`; signed timestamps against
/// the replay window; and a Mailgun signature against the ones already used ([`replay`]).
/// The reservation that comes with a Mailgun signature is to be kept once the request's
/// records are in Kafka (dropped, the signature may be used again: the provider's retry).
pub fn check<'r>(
    provider: Provider,
    secrets: &Secrets,
    req: &Request<'_>,
    window: &Window,
    replays: &'r Replays,
) -> Result<(Outcome, Option<Reservation<'r>>)> {
    let none = |r: Result<()>| r.map(|()| None);
    match provider {
        Provider::Sendgrid => secrets.sendgrid.as_ref().map(|k| {
            sendgrid::verify(k, req)?;
            window
                .fresh("sendgrid", req.header(sendgrid::TIMESTAMP).unwrap_or_default())
                .map(|_| None)
        }),
        Provider::Mailgun => secrets.mailgun.as_ref().map(|k| {
            let (ts, token) = mailgun::verify(k, req.body)?;
            let forget_at = window.fresh("mailgun", &ts)?;
            replays.take("mailgun", &ts, &token, forget_at, window.now).map(Some)
        }),
        Provider::Ses => secrets.ses.as_ref().map(|k| {
            let ts = sns::verify_body(k, req.body)?;
            window.fresh_iso("ses", &ts).map(|_| None)
        }),
        Provider::Postmark => secrets
            .postmark
            .as_ref()
            .map(|(u, p)| none(postmark::verify(u, p, req))),
        Provider::Mailchimp => secrets.mailchimp.as_ref().map(|s| none(mailchimp::verify(s, req))),
        Provider::Mandrill => secrets
            .mandrill
            .as_ref()
            .map(|(k, url)| none(mandrill::verify(k, url, req))),
    }
    .map_or(Ok((Outcome::Unconfigured, None)), |r| {
        r.map(|once| (Outcome::Verified, once))
    })
}

/// Equality whose time does not depend on where the inputs differ: both sides are hashed
/// first, so neither length nor content leaks.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (crate::config::sha256(a), crate::config::sha256(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

fn missing(provider: &str, what: &str) -> Error {
    Error::Unauthorized(format!(
        "{provider} webhook without {what}: the tenant's {provider} secret is configured"
    ))
}

fn forged(provider: &str, what: &str) -> Error {
    Error::Forbidden(format!(
        "{provider} {what} does not verify with the tenant's configured secret"
    ))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signed_timestamps_must_be_recent() {
        let w = Window {
            now: 1_700_000_000,
            max_age: Duration::from_secs(3600),
        };
        assert!(w.fresh("mailgun", "1700000000").is_ok());
        assert!(w.fresh("mailgun", "1699996400.5").is_ok());
        assert!(w.fresh("sendgrid", "1700000200").is_ok(), "a little clock skew is fine");
        let old = w.fresh("mailgun", "1699990000").unwrap_err();
        assert_eq!(old.status(), 403);
        assert!(
            old.to_string()
                .contains("10000 s old, more than signature_max_age 3600 s"),
            "{old}"
        );
        let ahead = w.fresh("sendgrid", "1700000900").unwrap_err();
        assert!(ahead.to_string().contains("900 s in the future"), "{ahead}");
        assert_eq!(w.fresh("sendgrid", "yesterday").unwrap_err().status(), 403);
        // SNS's ISO 8601 Timestamp (2023-11-14T22:13:20Z is 1700000000).
        assert!(w.fresh_iso("ses", "2023-11-14T22:13:20.000Z").is_ok());
        let old = w.fresh_iso("ses", "2023-11-14T20:13:20.000Z").unwrap_err();
        assert!(
            old.to_string()
                .contains("SNS Timestamp 2023-11-14T20:13:20.000Z is 7200 s old"),
            "{old}"
        );
        assert_eq!(w.fresh_iso("ses", "soon").unwrap_err().status(), 403);
        // The replay cache forgets a timestamp when it leaves the window.
        assert_eq!(w.fresh("mailgun", "1699999000").unwrap(), 1_699_999_000 + 3600);
    }

    fn window(now: i64) -> Window {
        Window {
            now,
            max_age: Duration::from_secs(300),
        }
    }

    fn replays() -> Replays {
        Replays::new(100, prometheus::IntCounter::new("evictions", "test").unwrap())
    }

    #[test]
    fn sendgrid_signed_timestamp_is_checked() {
        use base64::Engine;
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let secrets = Secrets {
            sendgrid: Some(*sk.verifying_key()),
            ..Secrets::default()
        };
        let body = br#"[{"email":"a@example.com","event":"open"}]"#;
        let signed = |ts: &str| {
            let sig: p256::ecdsa::Signature = sk.sign(&[ts.as_bytes(), &body[..]].concat());
            let mut h = HeaderMap::new();
            h.insert(
                sendgrid::SIGNATURE,
                base64::engine::general_purpose::STANDARD
                    .encode(sig.to_der().as_bytes())
                    .parse()
                    .unwrap(),
            );
            h.insert(sendgrid::TIMESTAMP, ts.parse().unwrap());
            h
        };
        let r = replays();
        let check_at = |h: &HeaderMap, now: i64| {
            let req = Request {
                headers: h,
                query: &[],
                body,
            };
            check(Provider::Sendgrid, &secrets, &req, &window(now), &r).map(|(o, _)| o)
        };
        let h = signed("1700000000");
        assert_eq!(check_at(&h, 1_700_000_100).unwrap(), Outcome::Verified);
        // The same genuine signature, later than signature_max_age: refused as a replay.
        let e = check_at(&h, 1_700_000_301).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("refused as a possible replay"), "{e}");
    }

    #[test]
    fn a_mailgun_signature_is_taken_once() {
        let key = "mailgun-signing-key";
        let secrets = Secrets {
            mailgun: Some(key.into()),
            ..Secrets::default()
        };
        let body = |event: &str, ts: &str, token: &str| {
            serde_json::json!({
                "signature": {"timestamp": ts, "token": token, "signature": mailgun::sign(key, ts, token)},
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
            check(Provider::Mailgun, &secrets, &req, &window(now), &r)
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

    /// The fixture the integration test posts: genuinely signed, and refused for its age only.
    #[test]
    fn the_old_sns_fixture_verifies_and_is_refused_for_its_age() {
        let dir = tributary_engine::testing::fixtures_dir("ses").join("sns");
        let pem = std::fs::read_to_string(dir.join("signing-cert.pem")).unwrap();
        let body = std::fs::read(dir.join("old_notification.json")).unwrap();
        let keys = sns::SnsKeys {
            keys: vec![sns::key_from_pem(&pem).unwrap()],
            topic_arns: vec![],
        };
        assert_eq!(sns::verify_body(&keys, &body).unwrap(), "2024-05-01T10:00:03.000Z");
        let secrets = Secrets {
            ses: Some(keys),
            ..Secrets::default()
        };
        let headers = HeaderMap::new();
        let req = Request {
            headers: &headers,
            query: &[],
            body: &body,
        };
        let e = check(
            Provider::Ses,
            &secrets,
            &req,
            &Window::now(Duration::from_secs(300)),
            &replays(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("refused as a possible replay"), "{e}");
    }

    #[test]
    fn an_old_sns_message_is_refused() {
        let (key, pem) = sns::tests::key_and_cert();
        let secrets = Secrets {
            ses: Some(sns::SnsKeys {
                keys: vec![sns::key_from_pem(&pem).unwrap()],
                topic_arns: vec![],
            }),
            ..Secrets::default()
        };
        // The notification's Timestamp is 2024-01-01T00:00:00.000Z = 1704067200.
        let mut msg = sns::tests::notification(r#"{"eventType":"Send"}"#);
        sns::tests::sign(&key, &mut msg, 2);
        let body = serde_json::to_vec(&msg).unwrap();
        let headers = HeaderMap::new();
        let req = Request {
            headers: &headers,
            query: &[],
            body: &body,
        };
        let r = replays();
        let (outcome, once) = check(Provider::Ses, &secrets, &req, &window(1_704_067_260), &r).unwrap();
        assert!(outcome == Outcome::Verified && once.is_none());
        let e = check(Provider::Ses, &secrets, &req, &window(1_704_067_200 + 301), &r)
            .err()
            .unwrap();
        assert_eq!(e.status(), 403);
        assert!(
            e.to_string()
                .contains("ses SNS Timestamp 2024-01-01T00:00:00.000Z is 301 s old"),
            "{e}"
        );
    }
}
