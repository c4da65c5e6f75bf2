//! The Delta Sharing REST protocol (delta-io/delta-sharing PROTOCOL.md), nested under
//! `/delta-sharing`:
//!
//! - `GET /shares`, `GET /shares/{share}`, `GET /shares/{share}/schemas`,
//!   `GET /shares/{share}/schemas/{schema}/tables`, `GET /shares/{share}/all-tables`
//! - `HEAD|GET .../tables/{table}/version`, `GET .../tables/{table}/metadata`,
//!   `POST .../tables/{table}/query` (NDJSON in the parquet response format)
//! - `GET .../tables/{table}/changes`: 400, change data feed is not enabled
//! - `GET|HEAD /files/{signed token}`: the bytes of one shared file (Range supported)
//!
//! Authorization: the bearer token of an analytics grant; it sees its own share (named by
//! the grant id) and nothing else. No token: 401; a token of no grant (revoked, made up) or of
//! an expired grant: 403; another grant's share: 403; an unknown share, schema or table: 404;
//! a name outside `^[A-Za-z0-9_-]+$`: 400, before storage is touched. Pagination: every list
//! fits one page (grants have a handful of tables), so no `nextPageToken` is ever returned.

use super::materialize::{self, Manifest};
use super::urls::{self, FileRef};
use super::{valid_name, SCHEMA};
use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tributary_view::grants::{Grant, Purpose};

const NDJSON: &str = "application/x-ndjson; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";
const VERSION_HEADER: &str = "delta-table-version";
const CAPABILITIES_HEADER: &str = "delta-sharing-capabilities";

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/shares", get(list_shares))
        .route("/shares/{share}", get(get_share))
        .route("/shares/{share}/schemas", get(list_schemas))
        .route("/shares/{share}/schemas/{schema}/tables", get(list_tables))
        .route("/shares/{share}/all-tables", get(all_tables))
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/version",
            get(table_version),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}",
            axum::routing::head(table_version),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/metadata",
            get(table_metadata),
        )
        .route("/shares/{share}/schemas/{schema}/tables/{table}/query", post(query))
        .route("/shares/{share}/schemas/{schema}/tables/{table}/changes", get(changes))
        .route("/files/{token}", get(file))
}

/// A refusal in the protocol's error shape.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"errorCode": self.code, "message": self.message}).to_string();
        (self.status, [(header::CONTENT_TYPE, JSON)], body).into_response()
    }
}

type Answer = Result<Response, Refusal>;

/// The store of the shared tables, opened once per lake.
fn store(app: &App) -> Result<Arc<dyn ObjectStore>, Refusal> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES.get_or_init(Default::default).lock().expect("stores lock");
    if let Some(s) = stores.get(&app.settings.lake_uri) {
        return Ok(s.clone());
    }
    let s = materialize::shares_store(&app.settings.lake_uri).map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "Cannot open the shares folder of the lake");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "storage unavailable",
        )
    })?;
    stores.insert(app.settings.lake_uri.clone(), s.clone());
    Ok(s)
}

fn now_micros() -> i64 {
    tributary_engine::normalize::now_micros()
}

/// The grant whose bearer token the request carries, live.
fn caller(app: &App, headers: &HeaderMap) -> Result<Grant, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "send the grant's bearer token (the profile's bearerToken) as `Authorization: Bearer <token>`",
        ));
    }
    let grants = app.grants.read().expect("grants lock");
    let g = grants
        .values()
        .find(|g| g.purpose == Purpose::Analytics && g.token_matches(token))
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "this token belongs to no live grant (revoked, expired or unknown)",
            )
        })?;
    if !g.live(now_micros()) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("grant {} expired at {}", g.grant_id, g.expires_at),
        ));
    }
    Ok(g)
}

fn check_names(names: &[&str]) -> Result<(), Refusal> {
    for n in names {
        if !valid_name(n) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "names are 1 to 255 of A-Z a-z 0-9 _ -",
            ));
        }
    }
    Ok(())
}

/// The caller may see `share`: it is its grant's.
fn own_share(app: &App, g: &Grant, share: &str) -> Result<(), Refusal> {
    if share == g.grant_id {
        return Ok(());
    }
    if app.grants.read().expect("grants lock").contains_key(share) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("share '{share}' is not shared with this token"),
        ));
    }
    Err(Refusal::new(
        StatusCode::NOT_FOUND,
        "RESOURCE_DOES_NOT_EXIST",
        format!("share '{share}' not found"),
    ))
}

fn own_table(app: &App, g: &Grant, share: &str, schema: &str, table: Option<&str>) -> Result<(), Refusal> {
    own_share(app, g, share)?;
    if schema != SCHEMA {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("schema '{schema}' not found in share '{share}'"),
        ));
    }
    if let Some(t) = table {
        if !g.chains.iter().any(|c| c == t) {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "RESOURCE_DOES_NOT_EXIST",
                format!("table '{t}' not found in {share}.{schema}"),
            ));
        }
    }
    Ok(())
}

/// `maxResults` must be a non-negative int when given; every list fits one page.
fn check_paging(uri: &Uri) -> Result<(), Refusal> {
    for (k, v) in crate::api::query(uri) {
        if k == "maxResults" && v.parse::<u32>().is_err() {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "maxResults: a non-negative integer",
            ));
        }
    }
    Ok(())
}

/// Counts one answer per grant and endpoint, and refusals by reason.
fn observe(app: &App, grant: Option<&str>, endpoint: &str, r: Answer) -> Response {
    let g = grant.unwrap_or("none");
    match r {
        Ok(resp) => {
            app.metrics.share_requests.with_label_values(&[g, endpoint]).inc();
            resp
        }
        Err(refusal) => {
            let reason = match refusal.status {
                StatusCode::UNAUTHORIZED => "unauthenticated",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::BAD_REQUEST => "bad_request",
                s if s.is_server_error() => "unavailable",
                _ => "other",
            };
            app.metrics.share_refusals.with_label_values(&[g, reason]).inc();
            app.metrics.share_requests.with_label_values(&[g, endpoint]).inc();
            refusal.into_response()
        }
    }
}

fn json_answer(v: Value) -> Response {
    ([(header::CONTENT_TYPE, JSON)], v.to_string()).into_response()
}

fn share_json(g: &Grant) -> Value {
    json!({"name": g.grant_id, "id": g.grant_id})
}

/// A stable id per table, UUID-shaped.
fn table_id(grant: &str, chain: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(format!("{grant}/{chain}").as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn tables_json(g: &Grant) -> Value {
    let items: Vec<Value> = g
        .chains
        .iter()
        .map(|c| {
            json!({"name": c, "schema": SCHEMA, "share": g.grant_id, "shareId": g.grant_id,
                   "id": table_id(&g.grant_id, c)})
        })
        .collect();
    json!({ "items": items })
}

async fn list_shares(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let g = caller(&app, &headers);
    let id = g.as_ref().ok().map(|g| g.grant_id.clone());
    let r = g.and_then(|g| {
        check_paging(&uri)?;
        Ok(json_answer(json!({"items": [share_json(&g)]})))
    });
    observe(&app, id.as_deref(), "shares", r)
}

async fn get_share(State(app): State<Arc<App>>, Path(share): Path<String>, headers: HeaderMap) -> Response {
    let g = check_names(&[&share]).and_then(|()| caller(&app, &headers));
    let id = g.as_ref().ok().map(|g| g.grant_id.clone());
    let r = g.and_then(|g| {
        own_share(&app, &g, &share)?;
        Ok(json_answer(json!({"share": share_json(&g)})))
    });
    observe(&app, id.as_deref(), "share", r)
}

async fn list_schemas(
    State(app): State<Arc<App>>,
    Path(share): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let g = check_names(&[&share]).and_then(|()| caller(&app, &headers));
    let id = g.as_ref().ok().map(|g| g.grant_id.clone());
    let r = g.and_then(|g| {
        own_share(&app, &g, &share)?;
        check_paging(&uri)?;
        Ok(json_answer(json!({"items": [{"name": SCHEMA, "share": g.grant_id}]})))
    });
    observe(&app, id.as_deref(), "schemas", r)
}

async fn list_tables(
    State(app): State<Arc<App>>,
    Path((share, schema)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let g = check_names(&[&share, &schema]).and_then(|()| caller(&app, &headers));
    let id = g.as_ref().ok().map(|g| g.grant_id.clone());
    let r = g.and_then(|g| {
        own_table(&app, &g, &share, &schema, None)?;
        check_paging(&uri)?;
        Ok(json_answer(tables_json(&g)))
    });
    observe(&app, id.as_deref(), "tables", r)
}

async fn all_tables(State(app): State<Arc<App>>, Path(share): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let g = check_names(&[&share]).and_then(|()| caller(&app, &headers));
    let id = g.as_ref().ok().map(|g| g.grant_id.clone());
    let r = g.and_then(|g| {
        own_share(&app, &g, &share)?;
        check_paging(&uri)?;
        Ok(json_answer(tables_json(&g)))
    });
    observe(&app, id.as_deref(), "all_tables", r)
}

/// The caller's grant and the table's manifest; 503 while the table is not materialized yet
/// (within one refresh interval of `grant create`).
async fn table_state(
    app: &App,
    headers: &HeaderMap,
    share: &str,
    schema: &str,
    table: &str,
) -> Result<(Grant, Manifest), (Option<String>, Refusal)> {
    check_names(&[share, schema, table]).map_err(|e| (None, e))?;
    let g = caller(app, headers).map_err(|e| (None, e))?;
    let id = Some(g.grant_id.clone());
    own_table(app, &g, share, schema, Some(table)).map_err(|e| (id.clone(), e))?;
    let store = store(app).map_err(|e| (id.clone(), e))?;
    let m = materialize::read_manifest(store.as_ref(), &g.grant_id, table)
        .await
        .map_err(|e| {
            tracing::error!(grant = %g.grant_id, table, error = format!("{e:#}"), "Reading a share manifest failed");
            (
                id.clone(),
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "storage unavailable",
                ),
            )
        })?;
    let m = m.ok_or_else(|| {
        (
            id.clone(),
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                format!("table '{table}' of share '{share}' is being prepared; retry in a few seconds"),
            ),
        )
    })?;
    Ok((g, m))
}

fn with_version(mut resp: Response, version: u64) -> Response {
    resp.headers_mut().insert(VERSION_HEADER, HeaderValue::from(version));
    resp
}

async fn table_version(
    State(app): State<Arc<App>>,
    Path((share, schema, table)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = table_state(&app, &headers, &share, &schema, &table).await;
    let (id, r) = match r {
        Ok((g, m)) => {
            let starting = crate::api::query(&uri)
                .into_iter()
                .find(|(k, _)| k == "startingTimestamp");
            let r = match starting {
                Some((_, ts)) if chrono::DateTime::parse_from_rfc3339(&ts).is_err() => Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "startingTimestamp: an ISO 8601 timestamp",
                )),
                _ => Ok(with_version(StatusCode::OK.into_response(), m.version)),
            };
            (Some(g.grant_id), r)
        }
        Err((id, e)) => (id, Err(e)),
    };
    observe(&app, id.as_deref(), "version", r)
}

/// Spark's JSON type of an Arrow type.
fn spark_type(t: &arrow::datatypes::DataType) -> Value {
    use arrow::datatypes::DataType as D;
    match t {
        D::Utf8 | D::LargeUtf8 | D::Utf8View => json!("string"),
        D::Int64 => json!("long"),
        D::Int32 => json!("integer"),
        D::Int16 => json!("short"),
        D::Int8 => json!("byte"),
        D::Boolean => json!("boolean"),
        D::Float64 => json!("double"),
        D::Float32 => json!("float"),
        D::Date32 => json!("date"),
        D::Timestamp(_, _) => json!("timestamp"),
        D::Binary | D::LargeBinary => json!("binary"),
        D::Map(entries, _) => match entries.data_type() {
            D::Struct(kv) if kv.len() == 2 => json!({
                "type": "map", "keyType": spark_type(kv[0].data_type()),
                "valueType": spark_type(kv[1].data_type()), "valueContainsNull": kv[1].is_nullable(),
            }),
            _ => json!("string"),
        },
        D::List(f) | D::LargeList(f) => json!({
            "type": "array", "elementType": spark_type(f.data_type()), "containsNull": f.is_nullable(),
        }),
        _ => json!("string"),
    }
}

/// The `metaData` action of a table.
fn metadata_json(g: &Grant, m: &Manifest) -> Result<Value, Refusal> {
    let schema = materialize::table_schema(&m.chain, &m.columns).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("schema: {e}"),
        )
    })?;
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": spark_type(f.data_type()), "nullable": f.is_nullable(), "metadata": {}}))
        .collect();
    let schema_string = json!({"type": "struct", "fields": fields}).to_string();
    let shared = m.shared();
    Ok(json!({"metaData": {
        "id": table_id(&g.grant_id, &m.chain),
        "name": m.chain,
        "format": {"provider": "parquet"},
        "schemaString": schema_string,
        "partitionColumns": [],
        "configuration": {},
        "size": shared.iter().map(|(_, s, _)| s).sum::<u64>(),
        "numFiles": shared.len(),
    }}))
}

fn ndjson(lines: &[Value], version: u64) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    let mut resp = ([(header::CONTENT_TYPE, NDJSON)], body).into_response();
    resp.headers_mut()
        .insert(CAPABILITIES_HEADER, HeaderValue::from_static("responseformat=parquet"));
    with_version(resp, version)
}

const PROTOCOL_LINE: fn() -> Value = || json!({"protocol": {"minReaderVersion": 1}});

async fn table_metadata(
    State(app): State<Arc<App>>,
    Path((share, schema, table)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (id, r) = match table_state(&app, &headers, &share, &schema, &table).await {
        Ok((g, m)) => {
            let r = metadata_json(&g, &m).map(|meta| ndjson(&[PROTOCOL_LINE(), meta], m.version));
            (Some(g.grant_id), r)
        }
        Err((id, e)) => (id, Err(e)),
    };
    observe(&app, id.as_deref(), "metadata", r)
}

/// `scheme://host` of the request, for absolute file URLs.
fn base_url(headers: &HeaderMap) -> Result<String, Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "no valid Host header",
            )
        })?;
    let scheme = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}

async fn query(
    State(app): State<Arc<App>>,
    Path((share, schema, table)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (id, r) = match table_state(&app, &headers, &share, &schema, &table).await {
        Ok((g, m)) => {
            let r = answer_query(&app, &g, &m, &headers, &body);
            (Some(g.grant_id), r)
        }
        Err((id, e)) => (id, Err(e)),
    };
    observe(&app, id.as_deref(), "query", r)
}

fn answer_query(app: &App, g: &Grant, m: &Manifest, headers: &HeaderMap, body: &[u8]) -> Answer {
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", format!("body: {e}")))?
    };
    if !req.is_object() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "body: a JSON object",
        ));
    }
    // History is not shared: only the current version can be asked for.
    if let Some(v) = req.get("version").filter(|v| !v.is_null()) {
        if v.as_u64() != Some(m.version) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!(
                    "history sharing is not enabled: only the current version {} can be read",
                    m.version
                ),
            ));
        }
    }
    for k in ["timestamp", "startingVersion", "endingVersion"] {
        if req.get(k).is_some_and(|v| !v.is_null()) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("'{k}': history sharing is not enabled on this table"),
            ));
        }
    }
    let base = base_url(headers)?;
    let key = app.kek.url_key();
    let expires_ms = chrono::Utc::now().timestamp_millis() + urls::lifetime_ms();
    let mut lines = vec![PROTOCOL_LINE(), metadata_json(g, m)?];
    let shared = m.shared();
    let mut rows = 0u64;
    for (name, size, n) in &shared {
        let stem = name.trim_end_matches(".parquet");
        let token = urls::sign(
            &key,
            &FileRef {
                grant: g.grant_id.clone(),
                chain: m.chain.clone(),
                file: stem.to_owned(),
                expires_ms,
            },
        );
        rows += n;
        lines.push(json!({"file": {
            "url": format!("{base}/delta-sharing/files/{token}"),
            "id": stem,
            "partitionValues": {},
            "size": size,
            "stats": json!({"numRecords": n}).to_string(),
            "expirationTimestamp": expires_ms,
        }}));
    }
    app.audit_line(json!({
        "time": tributary_view::fmt_time(now_micros()),
        "endpoint": "delta-sharing/query",
        "grant_id": g.grant_id, "grantor": g.grantor, "grantee": g.grantee, "purpose": "analytics",
        "table": m.chain, "version": m.version, "files": shared.len(), "rows": rows,
        "request_id": crate::request_id(headers),
    }));
    Ok(ndjson(&lines, m.version))
}

async fn changes(
    State(app): State<Arc<App>>,
    Path((share, schema, table)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (id, r) = match table_state(&app, &headers, &share, &schema, &table).await {
        Ok((g, _)) => (
            Some(g.grant_id),
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("change data feed is not enabled on table '{table}': read it with a snapshot query"),
            )),
        ),
        Err((id, e)) => (id, Err(e)),
    };
    observe(&app, id.as_deref(), "changes", r)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → the half-open range within `size`.
fn parse_range(v: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        (start, end)
    };
    (start < end).then_some(start..end)
}

async fn file(State(app): State<Arc<App>>, Path(token): Path<String>, method: Method, headers: HeaderMap) -> Response {
    let r = serve_file(&app, &token, &method, &headers).await;
    let id = match &r {
        Ok((id, _)) => Some(id.clone()),
        Err((id, _)) => id.clone(),
    };
    observe(
        &app,
        id.as_deref(),
        "files",
        r.map(|(_, resp)| resp).map_err(|(_, e)| e),
    )
}

type FileAnswer = Result<(String, Response), (Option<String>, Refusal)>;

async fn serve_file(app: &App, token: &str, method: &Method, headers: &HeaderMap) -> FileAnswer {
    let forbidden = |id: Option<String>, msg: &str| {
        (
            id,
            Refusal::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", msg.to_owned()),
        )
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let f = urls::verify(&app.kek.url_key(), token, now_ms).map_err(|e| {
        let msg = match e {
            urls::Refused::Expired => "this file URL expired: query the table again for a fresh one",
            _ => "not a valid file URL",
        };
        forbidden(None, msg)
    })?;
    let id = Some(f.grant.clone());
    let g = app.grants.read().expect("grants lock").get(&f.grant).cloned();
    let Some(g) = g.filter(|g| g.purpose == Purpose::Analytics && g.live(now_micros())) else {
        return Err(forbidden(id, "the grant of this file was revoked or expired"));
    };
    if !g.chains.contains(&f.chain) {
        return Err(forbidden(id, "not a valid file URL"));
    }
    let store = store(app).map_err(|e| (id.clone(), e))?;
    let gone = || {
        (
            id.clone(),
            Refusal::new(
                StatusCode::NOT_FOUND,
                "RESOURCE_DOES_NOT_EXIST",
                "this file is no longer part of the table: query it again",
            ),
        )
    };
    let m = materialize::read_manifest(store.as_ref(), &f.grant, &f.chain)
        .await
        .ok()
        .flatten()
        .ok_or_else(gone)?;
    let name = format!("{}.parquet", f.file);
    let size = m
        .shared()
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, s, _)| *s)
        .ok_or_else(gone)?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, range) = match range {
        None => (StatusCode::OK, 0..size),
        Some(Some(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(None) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok((g.grant_id, resp));
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, range.end - range.start)
        .header(header::CACHE_CONTROL, "private, no-store");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        let path = materialize::file_path(&f.grant, &f.chain, &name);
        let bytes = store.get_range(&path, range.clone()).await.map_err(|e| {
            tracing::warn!(path = %path, error = %e, "Reading a shared file failed");
            gone()
        })?;
        Body::from(bytes)
    };
    let resp = builder.body(body).map_err(|e| {
        (
            id.clone(),
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", e.to_string()),
        )
    })?;
    Ok((g.grant_id, resp))
}
