//! Tributary's HTTP gateway: ESP webhooks and list uploads into the raw topics.
//!
//! - `POST /v1/tenants/{tenant}/webhooks/{provider}` (`sendgrid|mailgun|ses|postmark|mailchimp|mandrill`):
//!   tenant token, then the provider's own authenticity check ([`signatures`]), then the batch
//!   is split into single events, each published to every raw topic it belongs to ([`split`]).
//! - `POST /v1/tenants/{tenant}/uploads/{chain}`: CSV or JSON lines, streamed ([`upload`]).
//! - `/metrics`, `/health/live`, `/health/ready` on the same port.
//!
//! The invariant: a 2xx is answered only after Kafka (idempotent producer, `acks=all`) has
//! acknowledged every record of the request. A crash before that loses nothing the caller
//! was told is taken; the provider retries, and the chains' dedup drops what had landed.
//!
//! Work per request is bounded ([`router`]): at most `max_concurrent_requests` API requests
//! at once (the next is answered 503 at once, not queued), each webhook or one-click request
//! within `request_timeout` (else 503), each upload's body never paused longer than that
//! (else 408). Refusals that the provider should retry are 5xx: SNS takes a 4xx as delivered.

pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod one_click;
pub mod providers;
pub mod publish;
pub mod signatures;
pub mod split;
pub mod upload;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::publish::{delivered, Meta, Publisher};
use crate::signatures::replay::Replays;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tributary_engine::topics::CHAINS;
use tributary_engine::Source;

pub struct App {
    pub settings: Settings,
    pub publisher: Publisher,
    pub metrics: Metrics,
    /// Mailgun signatures already used ([`signatures::replay`]).
    pub replays: Replays,
    ready: AtomicBool,
    /// (tenant, provider) pairs already warned about a skipped provider check.
    warned: Mutex<HashSet<(String, Source)>>,
}

impl App {
    pub fn new(settings: Settings) -> Result<Arc<App>> {
        let publisher = Publisher::new(&settings)?;
        let metrics = Metrics::new();
        let replays = Replays::new(settings.replay_cache_entries, metrics.replay_evictions.clone());
        Ok(Arc::new(App {
            settings,
            publisher,
            metrics,
            replays,
            ready: AtomicBool::new(false),
            warned: Mutex::new(HashSet::new()),
        }))
    }
}

/// The routes. The API routes share one budget of `max_concurrent_requests`: past it a
/// request is answered 503 at once (a caller that queued without bound would hold memory and
/// connections for requests it may have given up on). Webhooks and one-click requests must
/// finish within `request_timeout`; an upload streams as long as the file takes, but its body
/// may not pause longer than that. `/metrics` and `/health/*` are outside both limits, so
/// probes still answer under load.
pub fn router(app: Arc<App>) -> Router {
    let budget = Arc::new(tokio::sync::Semaphore::new(app.settings.max_concurrent_requests));
    let timeout = app.settings.request_timeout;
    let bounded = Router::new()
        .route(
            "/v1/tenants/{tenant}/webhooks/{provider}",
            post(webhook).get(webhook_probe).head(webhook_probe),
        )
        .route("/v1/tenants/{tenant}/unsubscribe", post(one_click_handler))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(limit_answer(app.clone())))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(budget.clone()))
                .timeout(timeout),
        );
    let uploads = Router::new()
        .route("/v1/tenants/{tenant}/uploads/{chain}", post(upload_handler))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(limit_answer(app.clone())))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(budget))
                .layer(RequestBodyTimeoutLayer::new(timeout)),
        );
    Router::new()
        .merge(bounded)
        .merge(uploads)
        .route("/metrics", get(metrics_handler))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready_handler))
        // Bodies are limited by the handlers themselves (webhooks) or streamed (uploads).
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// The answer to a request the limits stopped: a 503 with `Retry-After`, which every provider
/// retries (a 408 would be taken as delivered by SNS, and the events lost).
fn limit_answer(
    app: Arc<App>,
) -> impl Fn(axum::BoxError) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |err: axum::BoxError| {
        let s = &app.settings;
        let (reason, msg) = if err.is::<tower::load_shed::error::Overloaded>() {
            tracing::debug!("Request refused: max_concurrent_requests reached");
            (
                "overload",
                format!(
                    "the gateway is handling max_concurrent_requests ({}) requests: retry shortly",
                    s.max_concurrent_requests
                ),
            )
        } else if err.is::<tower::timeout::error::Elapsed>() {
            tracing::warn!(timeout = %humantime::format_duration(s.request_timeout), "Request stopped at request_timeout");
            (
                "timeout",
                format!(
                    "the request did not complete within request_timeout ({}): resending it is safe (the chains drop what had already landed)",
                    humantime::format_duration(s.request_timeout)
                ),
            )
        } else {
            tracing::error!(error = %err, "Request failed in the gateway's limits");
            ("error", format!("the gateway could not handle the request: {err}"))
        };
        app.metrics.shed.with_label_values(&[reason]).inc();
        std::future::ready(Error::Unavailable(msg).into_response())
    }
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| tributary_engine::normalize::truncate(v.trim(), 128).to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Counts and times one answer.
fn observe(app: &App, route: &str, provider: &str, started: Instant, resp: Response) -> Response {
    let status = resp.status().as_u16().to_string();
    app.metrics
        .requests
        .with_label_values(&[route, provider, &status])
        .inc();
    app.metrics
        .latency
        .with_label_values(&[route, provider])
        .observe(started.elapsed().as_secs_f64());
    resp
}

fn provider_label(p: &str) -> &'static str {
    providers::parse(p).map_or("unknown", Source::as_str)
}

async fn webhook(
    State(app): State<Arc<App>>,
    Path((tenant, provider)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut body = Some(body);
    let resp = match webhook_inner(&app, &tenant, &provider, &uri, &headers, &mut body).await {
        Ok(r) => r,
        Err(e) => {
            drain(body.take(), app.settings.max_body_bytes.saturating_add(DRAIN_LIMIT)).await;
            if e.status().is_server_error() {
                tracing::error!(tenant = %tenant, provider = %provider, error = %e, "Webhook not accepted");
            } else {
                tracing::info!(tenant = %tenant, provider = %provider, status = e.status().as_u16(), error = %e, "Webhook refused");
            }
            e.into_response()
        }
    };
    observe(&app, "webhook", provider_label(&provider), started, resp)
}

async fn webhook_inner(
    app: &App,
    tenant_id: &str,
    provider: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response> {
    let p = providers::parse(provider).ok_or_else(|| {
        Error::NotFound(format!(
            "unknown provider '{}': one of {}",
            tributary_engine::normalize::truncate(provider, 40),
            providers::names()
        ))
    })?;
    let q = query(uri);
    let tenant = auth::tenant(&app.settings.tenants, tenant_id, headers, &q)?;
    let limit = app.settings.max_body_bytes;
    let too_large = || Error::TooLarge(format!("webhook body larger than max_body_bytes {limit}"));
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = read_limited(body.take().expect("the body is read once"), limit)
        .await?
        .ok_or_else(too_large)?;
    let req = signatures::Request {
        headers,
        query: &q,
        body: &body,
    };
    let window = signatures::Window::now(app.settings.signature_max_age);
    // A Mailgun signature is taken here and kept only once the records are in Kafka.
    let (outcome, once) = signatures::check(p, &tenant.secrets, &req, &window, &app.replays)?;
    if outcome == signatures::Outcome::Unconfigured {
        if app.settings.require_provider_signatures {
            return Err(Error::Unauthorized(format!(
                "no {} secret is configured for tenant '{tenant_id}' and provider signatures are required",
                p.as_str()
            )));
        }
        let first = app
            .warned
            .lock()
            .map(|mut w| w.insert((tenant_id.to_owned(), p)))
            .unwrap_or(false);
        if first {
            tracing::warn!(tenant = %tenant_id, provider = p.as_str(), "No provider secret configured: provider signature check skipped");
        }
    }
    let split = split::split(p, &body)?;
    // The records are all that is needed from here on; the body may be megabytes.
    drop(body);
    let rid = request_id(headers);
    if let Some(url) = split.subscribe_url {
        tracing::warn!(tenant = %tenant_id, subscribe_url = %url, "SNS subscription confirmation received: visit SubscribeURL to confirm");
        return Ok(Json(json!({
            "subscription_confirmation": url,
            "message": "SNS subscription not confirmed by the gateway: visit subscription_confirmation to confirm it",
            "request_id": rid,
        }))
        .into_response());
    }
    if let Some(note) = split.note {
        tracing::info!(tenant = %tenant_id, note = %note, "SNS message without events");
        return Ok(Json(json!({"accepted": 0, "records": 0, "note": note, "request_id": rid})).into_response());
    }
    let meta = Meta {
        tenant: tenant_id,
        source: p.as_str(),
        request_id: &rid,
        csv_header: None,
    };
    let mut pending = Vec::new();
    let mut per_chain: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unrouted = 0;
    let accepted = split.records.len();
    // By value, each record's bytes written out only now and freed once the producer has its
    // copies: a message cut into thousands of records never holds them all at once.
    for r in split.records {
        let payload = r.payload.bytes();
        let key = format!("{tenant_id}:{}", r.email.as_deref().unwrap_or_default());
        unrouted += u64::from(r.unrouted);
        for chain in &r.chains {
            let topic = app.publisher.topic(chain);
            let f = app.publisher.send(&topic, key.as_bytes(), &payload, &meta).await?;
            pending.push(async move { delivered(f, &topic).await });
            *per_chain.entry(chain).or_default() += 1;
        }
    }
    futures::future::try_join_all(pending).await?;
    if let Some(once) = once {
        once.keep();
    }
    for (chain, n) in &per_chain {
        app.metrics.events.with_label_values(&[p.as_str(), chain]).inc_by(*n);
    }
    Ok(Json(json!({
        "accepted": accepted,
        "published": per_chain,
        "unrouted": unrouted,
        "request_id": rid,
    }))
    .into_response())
}

/// RFC 8058 one-click unsubscribe ([`one_click`]): answered 200 once Kafka acknowledged the
/// `unsubscribes` event.
async fn one_click_handler(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = async {
        let body = read_limited(body, 64 << 10)
            .await?
            .ok_or_else(|| Error::TooLarge("a one-click unsubscribe body is one short form field".into()))?;
        let u = one_click::check(&app.settings.tenants, &tenant, &query(&uri), &body)?;
        let rid = request_id(headers_ref(&headers));
        let meta = Meta {
            tenant: &tenant,
            source: "json",
            request_id: &rid,
            csv_header: None,
        };
        let topic = app.publisher.topic("unsubscribes");
        let key = format!("{tenant}:{}", u.email);
        let f = app.publisher.send(&topic, key.as_bytes(), &u.payload, &meta).await?;
        delivered(f, &topic).await?;
        app.metrics
            .events
            .with_label_values(&["one-click", "unsubscribes"])
            .inc();
        tracing::info!(tenant = %tenant, request_id = %rid, "One-click unsubscribe");
        Ok::<_, Error>(Json(json!({"unsubscribed": true, "request_id": rid})).into_response())
    }
    .await;
    let resp = r.unwrap_or_else(|e| {
        tracing::info!(tenant = %tenant, status = e.status().as_u16(), error = %e, "One-click unsubscribe refused");
        e.into_response()
    });
    observe(&app, "unsubscribe", "one-click", started, resp)
}

fn headers_ref(h: &HeaderMap) -> &HeaderMap {
    h
}

/// Mailchimp checks a webhook URL with a GET, Mandrill with a HEAD, before using it.
async fn webhook_probe(
    State(app): State<Arc<App>>,
    Path((tenant, provider)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = providers::parse(&provider)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "unknown provider '{}'",
                tributary_engine::normalize::truncate(&provider, 40)
            ))
        })
        .and_then(|_| auth::tenant(&app.settings.tenants, &tenant, &headers, &query(&uri)));
    match r {
        Ok(_) => Json(json!({"ok": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn upload_handler(
    State(app): State<Arc<App>>,
    Path((tenant, chain)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(upload::Format::from_content_type);
    let label = format.map_or("unknown", upload::Format::source);
    let mut body = Some(body);
    let resp = match upload_inner(&app, &tenant, &chain, format, &uri, &headers, &mut body).await {
        Ok(r) => r,
        Err(e) => {
            drain(body.take(), DRAIN_LIMIT).await;
            e.into_response()
        }
    };
    observe(&app, "upload", label, started, resp)
}

async fn upload_inner(
    app: &App,
    tenant_id: &str,
    chain: &str,
    format: Option<upload::Format>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response> {
    if !CHAINS.contains(&chain) {
        return Err(Error::NotFound(format!(
            "unknown chain '{}': one of {}",
            tributary_engine::normalize::truncate(chain, 40),
            CHAINS.join(", ")
        )));
    }
    auth::tenant(&app.settings.tenants, tenant_id, headers, &query(uri))?;
    let format = format.ok_or_else(|| {
        Error::UnsupportedMediaType(
            "Content-Type must be text/csv (with a header row) or application/x-ndjson (JSON lines)".into(),
        )
    })?;
    let max = app.settings.max_upload_bytes;
    if content_length(headers).is_some_and(|n| n > max) {
        return Err(Error::TooLarge(format!("upload larger than max_upload_bytes {max}")));
    }
    let rid = request_id(headers);
    let (outcome, result) = upload::run(
        &app.publisher,
        tenant_id,
        chain,
        format,
        &rid,
        app.settings.max_record_bytes,
        max,
        body.take().expect("the body is read once").into_data_stream(),
    )
    .await;
    app.metrics
        .events
        .with_label_values(&[format.source(), chain])
        .inc_by(outcome.accepted);
    app.metrics
        .rejected_lines
        .with_label_values(&[format.source()])
        .inc_by(outcome.rejected_count);
    tracing::info!(tenant = %tenant_id, chain, request_id = %rid, accepted = outcome.accepted,
        rejected = outcome.rejected_count, ok = result.is_ok(), "Upload");
    match result {
        Ok(()) => Ok(Json(outcome).into_response()),
        Err(e) => {
            let status = e.status();
            let mut body = serde_json::to_value(&outcome).unwrap_or_default();
            body["error"] = json!(e.to_string());
            body["note"] = json!("the records counted as accepted are in Kafka; resending the whole file is safe: the chains drop duplicates");
            Ok((status, Json(body)).into_response())
        }
    }
}

/// How much of a refused upload's body is read before the answer.
const DRAIN_LIMIT: usize = 1 << 20;

/// Reads and drops what is left of a refused request's body, up to `limit` bytes and 2 s,
/// before the error is answered: a client still sending its body when the answer comes
/// would otherwise find the connection closed (a broken pipe) instead of reading the 4xx.
/// Past the limit the connection closes, as before.
async fn drain(body: Option<Body>, limit: usize) {
    use futures::StreamExt;
    let Some(body) = body else { return };
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > limit {
                break;
            }
        }
    })
    .await;
}

/// The whole body, or `None` past `limit` bytes (read no further).
async fn read_limited(body: Body, limit: usize) -> Result<Option<Vec<u8>>> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::body("reading the body", e))?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn metrics_handler(State(app): State<Arc<App>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn ready_handler(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Kafka not reachable").into_response()
    }
}

/// Keeps readiness in step with whether Kafka answers. Past `stall_limit` (`STALL_LIMIT`)
/// without an answer the process exits with status 3, as a chain's watchdog does: librdkafka 2.12 can keep
/// a producer without a broker for good after a broker restart (see
/// `tributary_engine::watchdog`), which only a fresh client mends, and readiness alone would
/// keep such a gateway out of traffic without restarting it. Nothing accepted is lost: a
/// request is answered 2xx only once Kafka has its records, and the others are retried by
/// their senders.
async fn watch_kafka(app: Arc<App>, shutdown: CancellationToken) {
    let mut down_since: Option<Instant> = None;
    loop {
        let a = app.clone();
        let ok = tokio::task::spawn_blocking(move || a.publisher.reachable())
            .await
            .unwrap_or(false);
        if ok != app.ready.swap(ok, Ordering::Relaxed) {
            tracing::info!(ready = ok, "Kafka reachability changed");
        }
        app.metrics.set_ready(ok);
        if ok {
            down_since = None;
        } else {
            let down = down_since.get_or_insert_with(Instant::now).elapsed();
            if down > app.settings.stall_limit {
                tracing::error!(
                    "Stuck: Kafka has not answered for {down:.0?}; exiting so that a restart gets a fresh client"
                );
                std::process::exit(tributary_engine::runner::STALLED_EXIT);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
        }
    }
}

/// Serves until `shutdown`, then waits for the requests in flight and flushes the producer.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::spawn(watch_kafka(app.clone(), shutdown.clone()));
    let s = shutdown.clone();
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await?;
    let a = app.clone();
    let _ = tokio::task::spawn_blocking(move || a.publisher.flush(Duration::from_secs(30))).await;
    Ok(())
}

pub fn main() -> ExitCode {
    let loaded = tributary_engine::settings::load::<config::Config>(|c| c);
    tributary_engine::init_tracing();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    // `--print-config`: the layered settings (tenants' secrets left out) once they check out.
    let printed = loaded
        .print
        .then(|| tributary_engine::settings::to_toml(&loaded.settings));
    let resolved = Settings::load(loaded, &env);
    if let Some(text) = printed {
        return tributary_engine::settings::print_config("ingest", resolved.map(|_| text).map_err(|e| e.to_string()));
    }
    let settings = match resolved {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Invalid settings");
            eprintln!("ingest: {e}");
            return ExitCode::from(2);
        }
    };
    for (id, t) in &settings.tenants {
        let missing: Vec<&str> = providers::ALL
            .iter()
            .filter(|p| !t.secrets.has(**p))
            .map(|p| p.as_str())
            .collect();
        if !missing.is_empty() && !settings.require_provider_signatures {
            tracing::warn!(tenant = %id, providers = ?missing, "No provider secret configured: these providers' signature checks are skipped");
        }
    }
    let shutdown = match tributary_engine::shutdown_on_signals() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ingest: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ingest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = settings.port;
    let result: std::result::Result<(), String> = rt.block_on(async move {
        let app = App::new(settings).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|e| format!("binding port {port}: {e}"))?;
        tracing::info!(port, "Gateway listening");
        serve(app, listener, shutdown).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Gateway stopped");
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
    }
}
