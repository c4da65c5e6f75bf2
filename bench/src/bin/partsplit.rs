//! The lake's files written from one batch of mixed partitions (`table::write_files`: the
//! Delta writer groups the rows by partition and copies each partition's rows out) against the
//! same rows already split by partition (`table::write_partition_files`, what the sink does
//! since its decoder routes rows by partition). `partsplit [rows]` (default 600 000 bench
//! mailings rows, three tenants, one day), five rounds alternated, rows per second of CPU.
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tributary_bench::cpu_seconds;
use tributary_lake::table::{self, PartitionRows};
const CHAIN: &str = "mailings";

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(600_000);
    let (schema, batches) = tributary_bench::mailings_batches(n)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("partsplit-{}", std::process::id()));
    let lake = tributary_lake::Lake::new(&dir.to_string_lossy())?;
    let delta = rt.block_on(lake.open_or_create(CHAIN, &schema))?;
    let ts = table::table_arrow_schema(&delta)?;
    // The same rows split by tenant (the bench rows are all one day), outside the timing.
    let tenant = schema.index_of("tenant_id")?;
    let date = schema.index_of("event_date")?;
    let strs = |b: &arrow::record_batch::RecordBatch, c: usize| -> Result<arrow::array::StringArray> {
        Ok(b.column(c)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .context("a string column")?
            .clone())
    };
    let mut split = Vec::new();
    for b in &batches {
        for t in ["acme", "globex", "initech"] {
            let mask: arrow::array::BooleanArray = strs(b, tenant)?.iter().map(|v| Some(v == Some(t))).collect();
            let part = arrow::compute::filter_record_batch(b, &mask)?;
            let day = strs(&part, date)?.value(0).to_owned();
            split.push(PartitionRows {
                values: BTreeMap::from([
                    ("tenant_id".to_owned(), Some(t.to_owned())),
                    ("event_date".to_owned(), Some(day)),
                ]),
                batch: part,
            });
        }
    }
    let whole = arrow::compute::concat_batches(&ts, &batches)?;
    let (mut mixed, mut presplit) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let cpu0 = cpu_seconds("self").unwrap_or(0.0);
        rt.block_on(table::write_files(&delta, whole.clone(), 1 << 30, true))?;
        mixed.push(n as f64 / (cpu_seconds("self").unwrap_or(0.0) - cpu0));
        let cpu0 = cpu_seconds("self").unwrap_or(0.0);
        rt.block_on(table::write_partition_files(&delta, split.clone(), 1 << 30))?;
        presplit.push(n as f64 / (cpu_seconds("self").unwrap_or(0.0) - cpu0));
    }
    mixed.sort_by(f64::total_cmp);
    presplit.sort_by(f64::total_cmp);
    println!(
        "rows/s per core writing the files, median of 5: one mixed batch {:.0}, split by partition {:.0}",
        mixed[2], presplit[2]
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
