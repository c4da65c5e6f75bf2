//! Materializes the shared tables of the live analytics grants, incrementally.
//!
//! Layout, under `<lake>/_shares/` (through the lake's own object store, so local and
//! `hdfs://` alike):
//!
//! ```text
//! <grant_id>/<chain>/manifest.json      what the table is (see [`Manifest`])
//! <grant_id>/<chain>/<id>.parquet       one shared file per grantor source file
//! ```
//!
//! A shared table holds one row per clean event of the grantor in the chain, with an
//! address: `subject_key` = hex HMAC-SHA256(grant key, normalized email), `event_time`,
//! `event_date` and the granted columns the chain has; never an identifier, and nobody who
//! is withheld (blocked or globally unsubscribed) at the grantor.
//!
//! One refresh of a table, in this order:
//! 1. source files of the grantor's partitions that are gone from the chain table
//!    (compaction, erasure): their shared files are deleted;
//! 2. people who became withheld since the last refresh (the manifest keeps the subject keys
//!    withheld then): every shared file is scanned on its `subject_key` column alone, and only
//!    the files holding one of them are rewritten without their rows;
//! 3. people no longer withheld (unblocked, resubscribed): the source files that had rows of
//!    theirs left out (each manifest entry keeps the keys it dropped) are read again;
//! 4. source files added since the last refresh: read (projected to the columns shared),
//!    filtered, keyed and written as new shared files.
//!
//! Nothing is read that did not change, except the `subject_key` column in step 2 when
//! somebody became withheld. The manifest is written last; its `version` goes up by one at
//! each refresh that changed the table. A crash between writing files and the manifest leaves
//! orphan files the manifest does not name, never served and overwritten by nothing (their
//! names are random); the next refresh redoes the work. Tables of grants that are gone
//! (revoked) or expired are deleted whole.

use crate::App;
use anyhow::{Context, Result};
use arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_view::grants::{chain_columns, subject_key, Grant, Purpose, IDENTIFIERS};

/// The folder of the shared tables under the lake root.
pub const SHARES_DIR: &str = "_shares";
/// The default interval between refreshes (`SHARING_REFRESH`).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20);

/// One shared table's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub grant_id: String,
    pub chain: String,
    /// Goes up by one at every refresh that changed the table.
    pub version: u64,
    /// The granted columns this chain has, in the table's order after `event_date`.
    pub columns: Vec<String>,
    /// Grantor source file (path in the chain table) → the shared file made from it.
    pub files: BTreeMap<String, SharedFile>,
    /// Subject keys withheld at the last refresh.
    pub withheld: BTreeSet<String>,
    /// RFC 3339.
    pub updated_at: String,
    /// Milliseconds since the epoch of the last change.
    pub updated_ms: i64,
}

/// The shared file of one source file; `file` None when no row of it is shared.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SharedFile {
    pub file: Option<String>,
    pub rows: u64,
    pub size: u64,
    /// Subject keys whose rows of the source file were left out because they were withheld:
    /// when one of them is no longer withheld, this source file is read again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub dropped: BTreeSet<String>,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.files.values().map(|f| f.rows).sum()
    }

    /// The shared files (name, size, rows), in a stable order.
    pub fn shared(&self) -> Vec<(&str, u64, u64)> {
        let mut v: Vec<(&str, u64, u64)> = self
            .files
            .values()
            .filter_map(|f| f.file.as_deref().map(|n| (n, f.size, f.rows)))
            .collect();
        v.sort();
        v
    }
}

/// The granted columns `chain` has, never an identifier.
pub fn shared_columns(grant: &Grant, chain: &str) -> Vec<String> {
    let have = chain_columns(chain);
    grant
        .columns
        .iter()
        .filter(|c| have.contains(c) && !IDENTIFIERS.contains(&c.as_str()))
        .filter(|c| !["subject_key", "event_time", "event_date"].contains(&c.as_str()))
        .cloned()
        .collect()
}

/// The Arrow schema of a shared table.
pub fn table_schema(chain: &str, columns: &[String]) -> Result<Arc<Schema>> {
    let avsc = tributary_lake::chain_schema(chain).with_context(|| format!("unknown chain {chain}"))?;
    let full = tributary_lake::convert::arrow_schema(avsc)?;
    let mut fields = vec![
        Field::new("subject_key", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_date", DataType::Utf8, false),
    ];
    for c in columns {
        let f = full
            .field_with_name(c)
            .with_context(|| format!("column {c} not in {chain}"))?;
        fields.push(f.clone().with_nullable(true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The store rooted at `<lake>/_shares/`.
pub fn shares_store(lake_uri: &str) -> Result<Arc<dyn ObjectStore>> {
    let lake = tributary_lake::Lake::new(lake_uri)?;
    let url = lake.table_url(SHARES_DIR)?;
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
    }
    let table = deltalake::DeltaTableBuilder::from_url(url)?.build()?;
    Ok(table.object_store())
}

pub fn manifest_path(grant: &str, chain: &str) -> StorePath {
    StorePath::from(format!("{grant}/{chain}/manifest.json"))
}

pub fn file_path(grant: &str, chain: &str, file: &str) -> StorePath {
    StorePath::from(format!("{grant}/{chain}/{file}"))
}

/// The manifest of a table, None when it was never materialized.
pub async fn read_manifest(store: &dyn ObjectStore, grant: &str, chain: &str) -> Result<Option<Manifest>> {
    match store.get(&manifest_path(grant, chain)).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            Ok(Some(serde_json::from_slice(&bytes).context("manifest")?))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_manifest(store: &dyn ObjectStore, m: &Manifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(m)?;
    store
        .put(&manifest_path(&m.grant_id, &m.chain), PutPayload::from(body))
        .await?;
    Ok(())
}

async fn delete_quietly(store: &dyn ObjectStore, path: &StorePath) {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(path = %path, error = %e, "Deleting a shared file failed"),
    }
}

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub tables: usize,
    pub added: usize,
    pub rewritten: usize,
    pub removed: usize,
    pub grants_deleted: usize,
    pub source_files_read: usize,
}

/// Subject keys (under `key`) of the grantor's people withheld at `now`.
fn withheld_keys(app: &App, grantor: &str, key: &[u8; 32], now: i64) -> BTreeSet<String> {
    let view = app.view.read().expect("view lock");
    let Some(t) = view.tenant(grantor) else {
        return BTreeSet::new();
    };
    t.people()
        .filter(|(sha, _)| t.withheld(sha, now))
        .filter_map(|(_, p)| p.email().map(|e| subject_key(key, e)))
        .collect()
}

/// Refreshes every shared table once.
pub async fn refresh_all(app: &App, store: &dyn ObjectStore) -> Result<Refreshed> {
    let now = tributary_engine::normalize::now_micros();
    let grants: Vec<Grant> = app
        .grants
        .read()
        .expect("grants lock")
        .values()
        .filter(|g| g.purpose == Purpose::Analytics && g.live(now))
        .cloned()
        .collect();
    let mut out = Refreshed::default();
    let lake = tributary_lake::Lake::new(&app.settings.lake_uri)?;
    // Tables of grants that are no longer live: deleted whole.
    let live: BTreeSet<&str> = grants.iter().map(|g| g.grant_id.as_str()).collect();
    let listed = store.list_with_delimiter(None).await?;
    for prefix in listed.common_prefixes {
        let Some(name) = prefix.filename() else { continue };
        if live.contains(name) {
            continue;
        }
        let objects: Vec<object_store::ObjectMeta> = {
            use futures::TryStreamExt;
            store.list(Some(&prefix)).try_collect().await?
        };
        if objects.is_empty() {
            // An empty directory left behind (HDFS keeps them): nothing to delete.
            continue;
        }
        for o in &objects {
            delete_quietly(store, &o.location).await;
        }
        if let Ok(url) = lake.table_url(SHARES_DIR) {
            // Local lakes keep empty directories behind; remove them too.
            if let Ok(p) = url.to_file_path() {
                let _ = std::fs::remove_dir_all(p.join(name));
            }
        }
        crate::sharing::forget_grant_metrics(&app.metrics, name);
        tracing::info!(
            grant = name,
            files = objects.len(),
            "Deleted the shared tables of a revoked or expired grant"
        );
        out.grants_deleted += 1;
    }
    // One open of each chain table per refresh, shared by the grants.
    let mut tables: BTreeMap<String, Option<deltalake::DeltaTable>> = BTreeMap::new();
    for g in &grants {
        let key = match g.key(&app.kek) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(grant = %g.grant_id, error = %e, "Grant key does not open; its shares are not refreshed");
                continue;
            }
        };
        let withheld = withheld_keys(app, &g.grantor, &key, now);
        for chain in &g.chains {
            if !tables.contains_key(chain) {
                let t = tributary_lake::open_existing(&lake, chain)
                    .await
                    .with_context(|| format!("opening the {chain} table"))?;
                tables.insert(chain.clone(), t);
            }
            let table = tables.get(chain).and_then(Option::as_ref);
            let r = refresh_table(store, table, g, chain, &key, &withheld)
                .await
                .with_context(|| format!("grant {} table {chain}", g.grant_id))?;
            out.tables += 1;
            out.added += r.added;
            out.rewritten += r.rewritten;
            out.removed += r.removed;
            out.source_files_read += r.source_files_read;
            app.metrics
                .share_rows
                .with_label_values(&[g.grant_id.as_str(), chain.as_str()])
                .set(r.rows as i64);
        }
    }
    Ok(out)
}

struct TableRefresh {
    added: usize,
    rewritten: usize,
    removed: usize,
    source_files_read: usize,
    rows: u64,
}

/// Refreshes one shared table (see the module's doc for the steps).
async fn refresh_table(
    store: &dyn ObjectStore,
    table: Option<&deltalake::DeltaTable>,
    g: &Grant,
    chain: &str,
    key: &[u8; 32],
    withheld: &BTreeSet<String>,
) -> Result<TableRefresh> {
    let columns = shared_columns(g, chain);
    let schema = table_schema(chain, &columns)?;
    let existing = read_manifest(store, &g.grant_id, chain).await?;
    let fresh = existing.is_none();
    let mut m = existing.unwrap_or_else(|| Manifest {
        grant_id: g.grant_id.clone(),
        chain: chain.to_owned(),
        columns: columns.clone(),
        ..Manifest::default()
    });
    let mut r = TableRefresh {
        added: 0,
        rewritten: 0,
        removed: 0,
        source_files_read: 0,
        rows: 0,
    };
    let sources: BTreeMap<String, tributary_lake::table::LiveFile> = match table {
        Some(t) => tributary_lake::table::live_files(t)?
            .into_iter()
            .filter(|f| f.tenant() == g.grantor)
            .map(|f| (f.path.clone(), f))
            .collect(),
        None => BTreeMap::new(),
    };
    // 1. Source files gone.
    let gone: Vec<String> = m.files.keys().filter(|p| !sources.contains_key(*p)).cloned().collect();
    for p in gone {
        if let Some(SharedFile { file: Some(f), .. }) = m.files.remove(&p) {
            delete_quietly(store, &file_path(&g.grant_id, chain, &f)).await;
        }
        r.removed += 1;
    }
    // 2. People withheld since the last refresh.
    let newly: BTreeSet<String> = withheld.difference(&m.withheld).cloned().collect();
    if !newly.is_empty() {
        let names: Vec<(String, String)> = m
            .files
            .iter()
            .filter_map(|(src, f)| f.file.clone().map(|n| (src.clone(), n)))
            .collect();
        for (src, name) in names {
            let path = file_path(&g.grant_id, chain, &name);
            let bytes = store.get(&path).await?.bytes().await?;
            let keys = read_parquet(bytes.clone(), Some(&["subject_key"]))?;
            let hit = keys.iter().any(|b| {
                let col = b.column(0).as_string::<i32>();
                (0..col.len()).any(|i| col.is_valid(i) && newly.contains(col.value(i)))
            });
            if !hit {
                continue;
            }
            let all = read_parquet(bytes, None)?;
            let mut kept = Vec::new();
            let mut dropped = m.files.get(&src).map(|f| f.dropped.clone()).unwrap_or_default();
            for b in all {
                let keys = b.column(0).as_string::<i32>();
                let mask: arrow::array::BooleanArray = (0..b.num_rows())
                    .map(|i| {
                        let out = withheld.contains(keys.value(i));
                        if out {
                            dropped.insert(keys.value(i).to_owned());
                        }
                        Some(!out)
                    })
                    .collect();
                kept.push(arrow::compute::filter_record_batch(&b, &mask)?);
            }
            let batch = arrow::compute::concat_batches(&schema, &kept)?;
            delete_quietly(store, &path).await;
            let mut entry = write_shared(store, &g.grant_id, chain, batch).await?;
            entry.dropped = dropped;
            m.files.insert(src, entry);
            r.rewritten += 1;
        }
    }
    // 3. People no longer withheld: the source files that left rows of theirs out are read
    // again (the new shared file replaces the old one).
    let released: BTreeSet<&String> = m.withheld.difference(withheld).collect();
    if let (false, Some(t)) = (released.is_empty(), table) {
        let again: Vec<String> = m
            .files
            .iter()
            .filter(|(_, f)| f.dropped.iter().any(|k| released.contains(k)))
            .map(|(src, _)| src.clone())
            .collect();
        for src in again {
            let Some(f) = sources.get(&src) else { continue };
            let (batch, dropped) = shared_rows(t, f, &schema, &columns, key, withheld).await?;
            r.source_files_read += 1;
            let mut entry = write_shared(store, &g.grant_id, chain, batch).await?;
            entry.dropped = dropped;
            if let Some(SharedFile { file: Some(old), .. }) = m.files.insert(src, entry) {
                delete_quietly(store, &file_path(&g.grant_id, chain, &old)).await;
            }
            r.rewritten += 1;
        }
    }
    // 4. Source files added.
    for (p, f) in &sources {
        if m.files.contains_key(p) {
            continue;
        }
        let Some(t) = table else { break };
        let (batch, dropped) = shared_rows(t, f, &schema, &columns, key, withheld).await?;
        r.source_files_read += 1;
        let mut entry = write_shared(store, &g.grant_id, chain, batch).await?;
        entry.dropped = dropped;
        m.files.insert(p.clone(), entry);
        r.added += 1;
    }
    let withheld_changed = m.withheld != *withheld;
    m.withheld = withheld.clone();
    let changed = fresh || r.added + r.rewritten + r.removed > 0;
    r.rows = m.rows();
    if changed || withheld_changed {
        if changed {
            m.version += 1;
            let now = chrono::Utc::now();
            m.updated_at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            m.updated_ms = now.timestamp_millis();
        }
        write_manifest(store, &m).await?;
        remove_orphans(store, &m).await?;
        if changed {
            tracing::info!(grant = %g.grant_id, table = chain, version = m.version, added = r.added,
                rewritten = r.rewritten, removed = r.removed, rows = r.rows, "Shared table refreshed");
        }
    }
    Ok(r)
}

/// Deletes the files of a table its manifest does not name (left by a refresh that failed
/// before writing the manifest, or by a rewrite). The refresh is the tables' only writer.
async fn remove_orphans(store: &dyn ObjectStore, m: &Manifest) -> Result<()> {
    use futures::TryStreamExt;
    let prefix = StorePath::from(format!("{}/{}", m.grant_id, m.chain));
    let named: BTreeSet<&str> = m.files.values().filter_map(|f| f.file.as_deref()).collect();
    let objects: Vec<object_store::ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    for o in objects {
        let name = o.location.filename().unwrap_or_default();
        if name.ends_with(".parquet") && !named.contains(name) {
            delete_quietly(store, &o.location).await;
        }
    }
    Ok(())
}

fn read_parquet(bytes: bytes::Bytes, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    Ok(tributary_lake::table::decode_parquet(bytes, columns)?)
}

/// The shared rows of one source file, and the subject keys left out as withheld.
async fn shared_rows(
    table: &deltalake::DeltaTable,
    f: &tributary_lake::table::LiveFile,
    schema: &Arc<Schema>,
    columns: &[String],
    key: &[u8; 32],
    withheld: &BTreeSet<String>,
) -> Result<(RecordBatch, BTreeSet<String>)> {
    let mut dropped = BTreeSet::new();
    let mut wanted: Vec<&str> = vec!["email", "event_time"];
    wanted.extend(columns.iter().map(String::as_str));
    let batches = tributary_lake::table::read_file(table, &f.path, Some(&wanted)).await?;
    let mut out = Vec::with_capacity(batches.len());
    for b in &batches {
        let Some(email) = b.column_by_name("email").map(|c| c.as_string::<i32>().clone()) else {
            continue;
        };
        let mut keys = StringBuilder::new();
        let mut keep = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let k = email.is_valid(i).then(|| subject_key(key, email.value(i)));
            let ok = match &k {
                Some(k) if withheld.contains(k) => {
                    dropped.insert(k.clone());
                    false
                }
                Some(_) => true,
                None => false,
            };
            keep.push(Some(ok));
            keys.append_option(k);
        }
        let mask: arrow::array::BooleanArray = keep.into_iter().collect();
        let rows = b.num_rows();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let col: ArrayRef = match field.name().as_str() {
                "subject_key" => Arc::new(keys.finish()),
                "event_date" => Arc::new(StringArray::from(vec![f.event_date(); rows])),
                name => match b.column_by_name(name) {
                    Some(c) if c.data_type() == field.data_type() => c.clone(),
                    Some(c) => arrow::compute::cast(c, field.data_type())?,
                    None => new_null_array(field.data_type(), rows),
                },
            };
            cols.push(col);
        }
        // Rows without an address have no key: filtered out before the key is non-null.
        let loose = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let full = RecordBatch::try_new(loose, cols)?;
        let kept = arrow::compute::filter_record_batch(&full, &mask)?;
        out.push(RecordBatch::try_new(schema.clone(), kept.columns().to_vec())?);
    }
    Ok((arrow::compute::concat_batches(schema, &out)?, dropped))
}

/// Writes one shared file (nothing when `batch` is empty).
async fn write_shared(store: &dyn ObjectStore, grant: &str, chain: &str, batch: RecordBatch) -> Result<SharedFile> {
    if batch.num_rows() == 0 {
        return Ok(SharedFile::default());
    }
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(3).unwrap_or_default(),
        ))
        .build();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    w.write(&batch)?;
    w.close()?;
    let name = format!("{}.parquet", uuid::Uuid::new_v4().simple());
    let size = buf.len() as u64;
    store
        .put(&file_path(grant, chain, &name), PutPayload::from(buf))
        .await?;
    Ok(SharedFile {
        file: Some(name),
        rows: batch.num_rows() as u64,
        size,
        dropped: BTreeSet::new(),
    })
}

/// `SHARING_REFRESH` (humantime, e.g. `20s`), else 20 s; `off` (or `0s`): this instance does
/// not refresh (another replica or the Airflow DAG `tributary_sharing` does; the tables have
/// one writer).
pub fn refresh_interval() -> Result<Option<Duration>> {
    match std::env::var("SHARING_REFRESH") {
        Ok(v) if v.trim() == "off" => Ok(None),
        Ok(v) if !v.trim().is_empty() => {
            let d = humantime::parse_duration(v.trim())
                .with_context(|| format!("SHARING_REFRESH '{v}': a duration such as 20s, or off"))?;
            Ok((!d.is_zero()).then_some(d))
        }
        _ => Ok(Some(DEFAULT_REFRESH)),
    }
}

/// Refreshes the shared tables every interval until `shutdown`, once the view has caught up
/// (before that it could miss a block and share a withheld person). A failed refresh is
/// logged, counted and retried at the next tick; it never stops `serve`.
pub fn run(app: Arc<App>, shutdown: CancellationToken) -> Result<()> {
    let Some(every) = refresh_interval()? else {
        tracing::info!("SHARING_REFRESH=off: this instance serves the shares but does not refresh them");
        return Ok(());
    };
    tracing::info!(every = ?every, "Refreshing the shared tables");
    // The lake's runtime, shared with the reader: see `tributary_lake::io_runtime`.
    let rt = tributary_lake::io_runtime();
    let mut store: Option<Arc<dyn ObjectStore>> = None;
    let mut next = Instant::now();
    while !shutdown.is_cancelled() {
        if Instant::now() < next || !app.health.is_ready() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        next = Instant::now() + every;
        let started = Instant::now();
        if store.is_none() {
            match shares_store(&app.settings.lake_uri) {
                Ok(s) => store = Some(s),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "Cannot open the shares folder of the lake");
                    app.metrics.share_refreshes.with_label_values(&["error"]).inc();
                    continue;
                }
            }
        }
        let s = store.as_ref().expect("opened").clone();
        match rt.block_on(refresh_all(&app, s.as_ref())) {
            Ok(r) => {
                app.metrics.share_refreshes.with_label_values(&["ok"]).inc();
                for (kind, n) in [("added", r.added), ("rewritten", r.rewritten), ("removed", r.removed)] {
                    if n > 0 {
                        app.metrics.share_files.with_label_values(&[kind]).inc_by(n as u64);
                    }
                }
                if r.added + r.rewritten + r.removed + r.grants_deleted > 0 {
                    tracing::info!(
                        tables = r.tables,
                        added = r.added,
                        rewritten = r.rewritten,
                        removed = r.removed,
                        grants_deleted = r.grants_deleted,
                        source_files_read = r.source_files_read,
                        seconds = started.elapsed().as_secs_f64(),
                        "Shares refreshed"
                    );
                }
            }
            Err(e) => {
                app.metrics.share_refreshes.with_label_values(&["error"]).inc();
                tracing::error!(
                    error = format!("{e:#}"),
                    "Shares refresh failed; retrying at the next tick"
                );
            }
        }
        app.metrics.share_refresh_seconds.set(started.elapsed().as_secs_f64());
    }
    Ok(())
}
