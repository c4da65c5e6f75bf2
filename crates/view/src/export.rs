//! Audience export from the lake alone (`tributary audience`): the same members `serve`
//! answers, written to CSV, Parquet, or materialized into the lake's `audiences` table.
//!
//! Cost: the five tables (subscriptions, unsubscribes, blocklists and users decide membership
//! and the columns, mailings may carry the address of a hash), only the tenant's partitions (skipped by partition before any file is opened),
//! only the columns folded. Memory: the tenant's addresses, as `serve` holds them.

use crate::event::sha_hex;
use crate::state::{fmt_time, TenantView};
use crate::{Error, Result};
use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;
use tributary_lake::Lake;

/// The chains whose events decide membership and the exported columns; mailings for the
/// address of a person known to the others by hash alone (the domain rule needs it): all of
/// the read side's chains (read in any order: the view's fold does not depend on it).
pub const AUDIENCE_CHAINS: [&str; 5] = crate::event::CHAINS;
pub const HEADER: [&str; 6] = [
    "email",
    "email_sha256",
    "user_id",
    "first_name",
    "last_name",
    "subscribed_at",
];
/// The lake table audiences are materialized into, partitioned by tenant and list.
pub const AUDIENCES_TABLE: &str = "audiences";

/// One exported member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub email_sha256: String,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub subscribed_at: i64,
}

/// Reads `tenant`'s part of the lake into a view.
pub async fn tenant_view(lake: &Lake, tenant: &str) -> Result<(TenantView, crate::lake::Loaded)> {
    let mut view = TenantView::default();
    let mut loaded = crate::lake::Loaded::default();
    let tenants = [tenant.to_owned()];
    for chain in AUDIENCE_CHAINS {
        let mut fold = |e: crate::Event| view.apply(e);
        crate::lake::load_chain(lake, chain, Some(&tenants), None, &mut loaded, &mut fold).await?;
    }
    Ok((view, loaded))
}

/// The members of `list` at `as_of`, sorted by address hash.
pub fn members(view: &TenantView, list: &str, as_of: i64) -> Vec<Row> {
    let mut rows: Vec<Row> = view
        .audience(list, as_of)
        .map(|m| Row {
            email_sha256: sha_hex(m.sha),
            email: m.email.map(str::to_owned),
            user_id: m.user_id.map(str::to_owned),
            first_name: m.first_name.map(str::to_owned),
            last_name: m.last_name.map(str::to_owned),
            subscribed_at: m.subscribed_at,
        })
        .collect();
    rows.sort();
    rows
}

pub fn write_csv(rows: &[Row], out: impl std::io::Write) -> Result<()> {
    let io = |e: csv::Error| Error::Record(format!("writing CSV: {e}"));
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER).map_err(io)?;
    for r in rows {
        w.write_record([
            r.email.as_deref().unwrap_or_default(),
            &r.email_sha256,
            r.user_id.as_deref().unwrap_or_default(),
            r.first_name.as_deref().unwrap_or_default(),
            r.last_name.as_deref().unwrap_or_default(),
            &fmt_time(r.subscribed_at),
        ])
        .map_err(io)?;
    }
    w.flush().map_err(|e| Error::Record(format!("writing CSV: {e}")))?;
    Ok(())
}

fn schema(extra: &[Field]) -> Arc<Schema> {
    let mut f = vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("email_sha256", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("first_name", DataType::Utf8, true),
        Field::new("last_name", DataType::Utf8, true),
        Field::new(
            "subscribed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    f.extend_from_slice(extra);
    Arc::new(Schema::new(f))
}

fn batch(rows: &[Row], schema: Arc<Schema>, extra: Vec<ArrayRef>) -> Result<RecordBatch> {
    let s = |f: fn(&Row) -> Option<&str>| Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef;
    let mut cols = vec![
        s(|r| r.email.as_deref()),
        s(|r| Some(&r.email_sha256)),
        s(|r| r.user_id.as_deref()),
        s(|r| r.first_name.as_deref()),
        s(|r| r.last_name.as_deref()),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.subscribed_at)).with_timezone("UTC"))
            as ArrayRef,
    ];
    cols.extend(extra);
    RecordBatch::try_new(schema, cols).map_err(|e| Error::Lake(e.into()))
}

pub fn write_parquet(rows: &[Row], out: std::fs::File) -> Result<()> {
    let schema = schema(&[]);
    let b = batch(rows, schema.clone(), vec![])?;
    let mut w = parquet::arrow::ArrowWriter::try_new(out, schema, Some(tributary_lake::table::writer_properties()))
        .map_err(|e| Error::Record(format!("writing Parquet: {e}")))?;
    w.write(&b)
        .map_err(|e| Error::Record(format!("writing Parquet: {e}")))?;
    w.close().map_err(|e| Error::Record(format!("writing Parquet: {e}")))?;
    Ok(())
}

/// Replaces the members of (`tenant`, `list`) in the lake's `audiences` table in one atomic
/// commit (Remove of the list's previous files, Add of the new); returns the table version.
pub async fn materialize(lake: &Lake, tenant: &str, list: &str, as_of: i64, rows: &[Row]) -> Result<i64> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    use deltalake::kernel::{Action, StructType};
    let full = schema(&[
        Field::new(
            "as_of",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("list_id", DataType::Utf8, false),
    ]);
    let url = lake.table_url(AUDIENCES_TABLE)?;
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            let _ = std::fs::create_dir_all(p);
        }
    }
    let lake_err = |e: deltalake::DeltaTableError| Error::Lake(e.into());
    let mut table = deltalake::DeltaTable::try_from_url(url.clone())
        .await
        .map_err(lake_err)?;
    if table.version().is_none() {
        let kernel: StructType = full
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::Record(format!("audiences schema: {e}")))?;
        table = match table
            .create()
            .with_table_name(AUDIENCES_TABLE)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(["tenant_id", "list_id"])
            .await
        {
            Ok(t) => t,
            Err(_) => deltalake::open_table(url).await.map_err(lake_err)?,
        };
    }
    let n = rows.len();
    let extra: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(as_of, n)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(tenant, n))),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(list, n))),
    ];
    let b = batch(rows, full, extra)?;
    let mut actions: Vec<Action> = tributary_lake::table::live_files(&table)?
        .into_iter()
        .filter(|f| f.tenant() == tenant && f.partition.get("list_id").map(String::as_str) == Some(list))
        .map(|f| f.remove(true))
        .collect();
    if n > 0 {
        let adds = tributary_lake::table::write_files(&table, b, 256 << 20, true).await?;
        actions.extend(adds.into_iter().map(Action::Add));
    }
    if actions.is_empty() {
        return Ok(table.version().unwrap_or_default() as i64);
    }
    let op = deltalake::protocol::DeltaOperation::Write {
        mode: deltalake::protocol::SaveMode::Overwrite,
        partition_by: Some(vec!["tenant_id".into(), "list_id".into()]),
        predicate: Some(format!(
            "tenant_id = '{tenant}' AND list_id = '{}'",
            list.replace('\'', "''")
        )),
    };
    let (v, _) = tributary_lake::table::commit_rewrite(&mut table, actions, op, 25).await?;
    Ok(v)
}
