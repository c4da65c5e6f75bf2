//! The HTTP API of DESIGN "The read side".
//!
//! Every answer is computed from the in-memory view under a read lock: a single check is two
//! hash lookups (the address, its domain), a profile one lookup, an audience one pass over
//! the tenant's addresses, encoded while the lock is held and streamed after it is released
//! (so a slow client never holds back the reader that keeps the view fresh).

use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tributary_view::event::{parse_sha, sha_hex, Sha};
use tributary_view::state::fmt_time;

/// An answer that is not a 200.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

type Answer = Result<Response, ApiError>;

pub fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The caller may act for `tenant`: its token, a request within its rate, and a view that has
/// caught up. An unknown tenant, a wrong token and no token are the same 401.
fn admit(app: &App, tenant: &str, headers: &HeaderMap, q: &[(String, String)]) -> Result<(), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let token = bearer.or_else(|| param(q, "token")).unwrap_or_default();
    let given = crate::config::sha256(token.as_bytes());
    let want = app.settings.tokens.get(tenant);
    // Compared in constant time, and against a dummy when the tenant is unknown.
    let expected = want.copied().unwrap_or([0xa5; 32]);
    let diff = given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if want.is_none() || diff != 0 || token.is_empty() {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send the tenant's token as `Authorization: Bearer <token>` or `?token=`".into(),
        ));
    }
    if app.limiter.check_key(&tenant.to_owned()).is_err() {
        app.metrics.rate_limited.inc();
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("tenant '{tenant}' is over its rate limit"),
        ));
    }
    if !app.health.is_ready() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up with the clean topics; retry shortly".into(),
        ));
    }
    if app
        .settings
        .hold_tenants
        .as_ref()
        .is_some_and(|h| !h.iter().any(|t| t == tenant))
    {
        return Err(ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this instance does not hold tenant '{tenant}'"),
        ));
    }
    Ok(())
}

/// An address as the caller gave it: (its hash, the normalized address when given).
fn address(email: Option<&str>, hash: Option<&str>) -> Result<(Sha, Option<String>), ApiError> {
    match (email, hash) {
        (Some(e), None) => {
            let n = tributary_engine::normalize::email(e).map_err(|err| bad(format!("email: {}", err.reason)))?;
            let sha = parse_sha(&tributary_engine::normalize::sha256_hex(&n)).expect("hex of a digest");
            Ok((sha, Some(n)))
        }
        (None, Some(h)) => {
            let h = h.trim();
            if h.len() != 64 {
                return Err(bad("email_sha256: 64 hex digits"));
            }
            Ok((parse_sha(h).ok_or_else(|| bad("email_sha256: 64 hex digits"))?, None))
        }
        (Some(_), Some(_)) => Err(bad("give email or email_sha256, not both")),
        (None, None) => Err(bad("give email or email_sha256")),
    }
}

fn now() -> i64 {
    tributary_engine::normalize::now_micros()
}

/// Counts and times one answer.
fn observe(app: &App, endpoint: &str, started: Instant, r: Answer) -> Response {
    let resp = r.unwrap_or_else(IntoResponse::into_response);
    app.metrics
        .requests
        .with_label_values(&[endpoint, resp.status().as_str()])
        .inc();
    app.metrics
        .latency
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    resp
}

pub async fn suppression(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let r = (|| {
        let q = query(&uri);
        admit(&app, &tenant, &headers, &q)?;
        let (sha, email) = address(param(&q, "email"), param(&q, "email_sha256"))?;
        let list = param(&q, "list").filter(|l| !l.is_empty());
        let s = {
            let view = app.view.read().expect("view lock");
            view.tenant(&tenant)
                .map(|t| t.suppression(&sha, email.as_deref(), list, now()))
                .unwrap_or_default()
        };
        app.metrics.checked.inc();
        app.audit(&tenant, "suppression", &[sha], &headers);
        Ok(Json(json!({
            "email_sha256": sha_hex(&sha),
            "list": list,
            "suppressed": s.suppressed,
            "reasons": s.reasons_json(),
        }))
        .into_response())
    })();
    observe(&app, "suppression", started, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkCheck {
    #[serde(default)]
    list: Option<String>,
    emails: Option<Vec<String>>,
    email_sha256s: Option<Vec<String>>,
}

pub async fn check(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let r = (|| {
        admit(&app, &tenant, &headers, &query(&uri))?;
        let req: BulkCheck = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("body: {e}; want {{\"list\": L|null, \"emails\": [...]}}")))?;
        let (key, entries, hashed) = match (req.emails, req.email_sha256s) {
            (Some(e), None) => ("email", e, false),
            (None, Some(h)) => ("email_sha256", h, true),
            _ => return Err(bad("give exactly one of emails and email_sha256s")),
        };
        if entries.len() > crate::config::MAX_BULK {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("at most {} addresses a request", crate::config::MAX_BULK),
            ));
        }
        let mut addrs = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let a = if hashed {
                address(None, Some(e))
            } else {
                address(Some(e), None)
            };
            addrs.push(a.map_err(|err| bad(format!("entry {i}: {}", err.1)))?);
        }
        let list = req.list.as_deref().filter(|l| !l.is_empty());
        let t0 = now();
        let mut suppressed = Vec::new();
        {
            let view = app.view.read().expect("view lock");
            if let Some(t) = view.tenant(&tenant) {
                for ((sha, email), sent) in addrs.iter().zip(&entries) {
                    let s = t.suppression(sha, email.as_deref(), list, t0);
                    if s.suppressed {
                        suppressed.push(json!({key: sent, "reasons": s.reasons_json()}));
                    }
                }
            }
        }
        app.metrics.checked.inc_by(entries.len() as u64);
        let shas: Vec<Sha> = addrs.iter().map(|(s, _)| *s).collect();
        app.audit(&tenant, "suppression/check", &shas, &headers);
        Ok(Json(json!({"checked": entries.len(), "suppressed": suppressed})).into_response())
    })();
    observe(&app, "suppression_check", started, r)
}

pub async fn profile(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let r = (|| {
        let q = query(&uri);
        admit(&app, &tenant, &headers, &q)?;
        let not_found = || {
            ApiError(
                StatusCode::NOT_FOUND,
                "no event of this tenant holds that person".into(),
            )
        };
        let view = app.view.read().expect("view lock");
        let t = view.tenant(&tenant);
        let sha = match param(&q, "user_id") {
            Some(u) if param(&q, "email").is_none() && param(&q, "email_sha256").is_none() => {
                *t.and_then(|t| t.by_user_id(u)).ok_or_else(not_found)?
            }
            Some(_) => return Err(bad("give one of email, email_sha256 and user_id")),
            None => address(param(&q, "email"), param(&q, "email_sha256"))?.0,
        };
        let mut p = t.and_then(|t| t.profile(&sha, now())).ok_or_else(not_found)?;
        drop(view);
        p["shared"] = Value::Array(app.shared_for(&tenant, &sha));
        app.audit(&tenant, "profiles", &[sha], &headers);
        Ok(Json(p).into_response())
    })();
    observe(&app, "profiles", started, r)
}

use tributary_view::export::HEADER as AUDIENCE_HEADER;

pub async fn audience(
    State(app): State<Arc<App>>,
    Path((tenant, list)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let r = (|| {
        let q = query(&uri);
        admit(&app, &tenant, &headers, &q)?;
        let ndjson = match param(&q, "format").unwrap_or("csv") {
            "csv" => false,
            "ndjson" => true,
            other => return Err(bad(format!("format '{other}': csv or ndjson"))),
        };
        let as_of = match param(&q, "as_of") {
            Some(s) => tributary_view::parse_time(s).map_err(|e| bad(format!("as_of: {e}")))?,
            None => now(),
        };
        // Encoded under the read lock in chunks of 512 members, streamed after it is released.
        let fail = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
        let mut chunks: Vec<Result<bytes::Bytes, std::io::Error>> = Vec::new();
        let new_writer = || {
            csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(64 << 10))
        };
        let mut w = new_writer();
        let mut nd: Vec<u8> = Vec::new();
        if !ndjson {
            w.write_record(AUDIENCE_HEADER).map_err(|e| fail(e.to_string()))?;
        }
        let mut members = 0u64;
        {
            let view = app.view.read().expect("view lock");
            if let Some(t) = view.tenant(&tenant) {
                for m in t.audience(&list, as_of) {
                    members += 1;
                    let sha = sha_hex(m.sha);
                    let at = fmt_time(m.subscribed_at);
                    if ndjson {
                        let line = json!({"email": m.email, "email_sha256": sha, "user_id": m.user_id,
                            "first_name": m.first_name, "last_name": m.last_name, "subscribed_at": at});
                        serde_json::to_writer(&mut nd, &line).map_err(|e| fail(e.to_string()))?;
                        nd.push(b'\n');
                    } else {
                        w.write_record([
                            m.email.unwrap_or_default(),
                            &sha,
                            m.user_id.unwrap_or_default(),
                            m.first_name.unwrap_or_default(),
                            m.last_name.unwrap_or_default(),
                            &at,
                        ])
                        .map_err(|e| fail(e.to_string()))?;
                    }
                    if members.is_multiple_of(512) {
                        let full = std::mem::replace(&mut w, new_writer());
                        let mut buf = full.into_inner().map_err(|e| fail(e.to_string()))?;
                        buf.append(&mut nd);
                        chunks.push(Ok(bytes::Bytes::from(buf)));
                    }
                }
            }
        }
        let mut last = w.into_inner().map_err(|e| fail(e.to_string()))?;
        last.append(&mut nd);
        chunks.push(Ok(bytes::Bytes::from(last)));
        app.audit_audience(&tenant, &list, members, &headers);
        let ctype = if ndjson {
            "application/x-ndjson"
        } else {
            "text/csv; charset=utf-8"
        };
        Ok((
            [(header::CONTENT_TYPE, ctype)],
            Body::from_stream(futures::stream::iter(chunks)),
        )
            .into_response())
    })();
    observe(&app, "audiences", started, r)
}
