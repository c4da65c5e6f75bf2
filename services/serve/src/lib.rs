//! `serve`: the read side of Tributary (DESIGN "The read side").
//!
//! - `GET /v1/tenants/{t}/suppression?email=E|email_sha256=H[&list=L]`
//! - `POST /v1/tenants/{t}/suppression/check` `{"list": L|null, "emails"|"email_sha256s": [...]}`
//! - `GET /v1/tenants/{t}/profiles?email=E|email_sha256=H|user_id=U`
//! - `GET /v1/tenants/{t}/audiences/{list}?format=csv|ndjson[&as_of=T]`
//! - `/metrics`, `/health/live`, `/health/ready` on the API port and on the metrics port.
//!
//! The answers come from an in-memory view ([`tributary_view`]) that [`reader`] builds from the
//! lake and keeps current from the clean topics. Every read of a person's data is written to
//! the audit log (who, tenant, address hashes, when).

pub mod api;
pub mod config;
pub mod grants;
pub mod metrics;
pub mod reader;
pub mod sharing;

use crate::config::Settings;
use crate::metrics::Metrics;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::io::Write;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tributary_engine::metrics::Health;
use tributary_view::event::{sha_hex, Sha};
use tributary_view::View;

pub struct App {
    pub settings: Settings,
    pub view: RwLock<View>,
    pub metrics: Metrics,
    pub health: Health,
    /// Live grants by id, as the `grants` topic holds them.
    pub grants: RwLock<BTreeMap<String, tributary_view::grants::Grant>>,
    /// The key-encryption key of the grants' keys.
    pub kek: tributary_view::grants::Kek,
    limiter: governor::DefaultKeyedRateLimiter<String>,
    /// Audit records go to a writer thread ([`audit_writer`]): a request never waits on a
    /// write system call or on another request's.
    audit: Mutex<std::sync::mpsc::Sender<String>>,
}

impl App {
    pub fn new(settings: Settings) -> anyhow::Result<Arc<App>> {
        let metrics = Metrics::new()?;
        let health = Health::with_gauge(metrics.ready.clone());
        let rate = NonZeroU32::new(settings.rate_limit).unwrap_or(NonZeroU32::MIN);
        let limiter = governor::RateLimiter::keyed(governor::Quota::per_second(rate));
        let file = match settings.audit_log.as_str() {
            "-" | "" => None,
            path => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("audit log {path}: {e}"))?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || audit_writer(rx, file))?;
        let kek = tributary_view::grants::Kek::load(settings.grants_kek_file.as_deref(), settings.local)
            .map_err(anyhow::Error::msg)?;
        if kek.is_local() {
            tracing::warn!("No GRANTS_KEK_FILE: grants' keys are sealed with the local development key");
        }
        Ok(Arc::new(App {
            grants: RwLock::default(),
            kek,
            settings,
            view: RwLock::new(View::default()),
            metrics,
            health,
            limiter,
            audit: Mutex::new(tx),
        }))
    }

    fn audit_line(&self, line: serde_json::Value) {
        self.metrics.audit_records.inc();
        let sent = self.audit.lock().expect("audit lock").send(line.to_string());
        if sent.is_err() {
            tracing::error!(record = %line, "The audit writer stopped: record logged here instead");
        }
    }

    /// Records a read of the data of `shas` by `tenant`'s token.
    pub fn audit(&self, tenant: &str, endpoint: &str, shas: &[Sha], headers: &HeaderMap) {
        let hashes: Vec<String> = shas.iter().map(sha_hex).collect();
        self.audit_line(serde_json::json!({
            "time": tributary_view::fmt_time(tributary_engine::normalize::now_micros()),
            "tenant": tenant, "endpoint": endpoint, "email_sha256": hashes,
            "request_id": request_id(headers),
        }));
    }

    pub fn audit_audience(&self, tenant: &str, list: &str, members: u64, headers: &HeaderMap) {
        self.audit_line(serde_json::json!({
            "time": tributary_view::fmt_time(tributary_engine::normalize::now_micros()),
            "tenant": tenant, "endpoint": "audiences", "list": list, "members": members,
            "request_id": request_id(headers),
        }));
    }

    /// What grantors share with `tenant` about `sha` under live enrichment grants: the granted
    /// columns each grantor holds for the same address, nothing for a person the grantor
    /// blocks or who unsubscribed from all its lists. The caller has checked that `tenant`
    /// itself holds the address.
    pub fn shared_for(&self, tenant: &str, sha: &Sha) -> Vec<serde_json::Value> {
        use tributary_view::event::USER_FIELDS;
        use tributary_view::grants::Purpose;
        let now = tributary_engine::normalize::now_micros();
        let grants = self.grants.read().expect("grants lock");
        let view = self.view.read().expect("view lock");
        let mut out = Vec::new();
        for g in grants
            .values()
            .filter(|g| g.purpose == Purpose::Enrichment && g.grantee == tenant && g.live(now))
        {
            let Some(gt) = view.tenant(&g.grantor) else { continue };
            let Some(p) = gt.person(sha) else { continue };
            if gt.withheld(sha, now) {
                continue;
            }
            let mut columns = serde_json::Map::new();
            for col in &g.columns {
                // The view holds the users chain's fields; the other chains' columns are
                // events, not attributes of a person, and are shared by analytics grants.
                let v = if g.chains.iter().any(|c| c == "users") {
                    USER_FIELDS
                        .iter()
                        .position(|f| f == col)
                        .and_then(|i| p.user_field(i))
                        .map(|v| serde_json::Value::String(v.to_owned()))
                } else {
                    None
                };
                columns.insert(col.clone(), v.unwrap_or(serde_json::Value::Null));
            }
            out.push(serde_json::json!({"grant_id": g.grant_id, "grantor": g.grantor, "columns": columns}));
        }
        out
    }
}

/// Writes audit records as they come, flushing whenever the queue is empty (at most 100 ms
/// after a record), to the file or, without one, to the service's log.
fn audit_writer(rx: std::sync::mpsc::Receiver<String>, file: Option<std::fs::File>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut w = file.map(|f| std::io::BufWriter::with_capacity(1 << 16, f));
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => match w.as_mut() {
                Some(w) => {
                    if let Err(e) = writeln!(w, "{line}") {
                        tracing::error!(error = %e, record = %line, "Audit log write failed");
                    }
                }
                None => tracing::info!(target: "tributary_serve::audit", record = %line, "Read of personal data"),
            },
            Err(RecvTimeoutError::Timeout) => {
                if let Some(Err(e)) = w.as_mut().map(std::io::Write::flush) {
                    tracing::error!(error = %e, "Audit log flush failed");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(w) = w.as_mut() {
                    let _ = std::io::Write::flush(w);
                }
                return;
            }
        }
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| tributary_engine::normalize::truncate(v, 128).to_owned())
}

pub fn router(app: Arc<App>) -> Router {
    let health = app.health.clone();
    let ready = app.health.clone();
    let m = app.clone();
    Router::new()
        .route("/v1/tenants/{tenant}/suppression", get(api::suppression))
        .route("/v1/tenants/{tenant}/suppression/check", post(api::check))
        .route("/v1/tenants/{tenant}/profiles", get(api::profile))
        .route("/v1/tenants/{tenant}/audiences/{list}", get(api::audience))
        .nest("/delta-sharing", sharing::router())
        .route(
            "/metrics",
            get(move || {
                let body = m.metrics.render();
                async move { ([("content-type", "text/plain; version=0.0.4")], body) }
            }),
        )
        .route(
            "/health/live",
            get(move || {
                let _ = &health;
                async { "live\n" }
            }),
        )
        .route(
            "/health/ready",
            get(move || {
                let ok = ready.is_ready();
                async move {
                    if ok {
                        (axum::http::StatusCode::OK, "ready\n").into_response()
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "catching up\n").into_response()
                    }
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(8 << 20))
        .with_state(app)
}

pub fn main() -> ExitCode {
    let loaded = tributary_engine::settings::load::<config::Config>(|c| c);
    // The sharing module reads these from the environment: a flag or file key reaches it too.
    for (name, v) in [
        ("SHARING_REFRESH", &loaded.settings.sharing_refresh),
        ("SHARING_URL_TTL", &loaded.settings.sharing_url_ttl),
    ] {
        if let Some(v) = v {
            if std::env::var(name).ok().as_deref() != Some(v.as_str()) {
                // Single-threaded here: nothing else reads the environment yet.
                std::env::set_var(name, v);
            }
        }
    }
    tributary_engine::init_tracing();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let printed = loaded
        .print
        .then(|| tributary_engine::settings::to_toml(&loaded.settings));
    let resolved = Settings::from_loaded(loaded, &env);
    if let Some(text) = printed {
        return tributary_engine::settings::print_config("serve", resolved.map(|_| text));
    }
    let settings = match resolved {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve: invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = match tributary_engine::shutdown_on_signals() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("serve: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(settings, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Serve stopped");
            eprintln!("serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the reader and both HTTP servers until `shutdown`; the first failure stops all.
pub fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = App::new(settings)?;
    let metrics_thread = tributary_engine::metrics::serve(
        app.settings.metrics_port,
        app.metrics.registry.clone(),
        app.health.clone(),
        shutdown.clone(),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let port = app.settings.port;
    let listener = rt.block_on(tokio::net::TcpListener::bind(("0.0.0.0", port)))?;
    tracing::info!(port, metrics_port = app.settings.metrics_port, "Serve listening");
    let reader = {
        let app = app.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new().name("reader".into()).spawn(move || {
            let r = reader::run(app, shutdown.clone());
            shutdown.cancel();
            r
        })?
    };
    let grants = {
        let app = app.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new().name("grants".into()).spawn(move || {
            let r = grants::follow(app, shutdown.clone());
            if r.is_err() {
                shutdown.cancel();
            }
            r
        })?
    };
    let sharing = sharing::spawn(app.clone(), shutdown.clone())?;
    let s = shutdown.clone();
    rt.block_on(async move {
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
    })?;
    let r = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    grants
        .join()
        .map_err(|_| anyhow::anyhow!("the grants thread panicked"))??;
    let _ = sharing.join();
    let _ = metrics_thread.join();
    r
}
