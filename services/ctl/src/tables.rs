//! `tributary tables`: what the lake holds, per chain table: version, live files, rows, bytes,
//! tenants and days, from the Delta log (no data file is read); with `--show N`, the first N
//! rows of each table (read from its first files only) as a table on the terminal.

use anyhow::Result;
use std::collections::BTreeSet;
use std::fmt::Write;
use tributary_engine::topics::CHAINS;
use tributary_lake::table::{live_files, read_file};
use tributary_lake::{open_existing, Lake};

/// One table's figures.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    pub chain: String,
    pub exists: bool,
    pub version: u64,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub tenants: usize,
    pub days: usize,
}

pub async fn stats(lake: &Lake, chain: &str) -> Result<TableStats> {
    let mut s = TableStats {
        chain: chain.to_owned(),
        ..TableStats::default()
    };
    let Some(table) = open_existing(lake, chain).await? else {
        return Ok(s);
    };
    let files = live_files(&table)?;
    s.exists = true;
    s.version = table.version().unwrap_or_default();
    s.files = files.len();
    s.bytes = files.iter().map(|f| f.size).sum();
    s.rows = files.iter().map(|f| f.num_records.unwrap_or(0) as u64).sum();
    s.tenants = files.iter().map(|f| f.tenant()).collect::<BTreeSet<_>>().len();
    s.days = files.iter().map(|f| f.event_date()).collect::<BTreeSet<_>>().len();
    Ok(s)
}

/// The report `tributary tables` prints.
pub async fn report(lake_uri: &str, chains: &[String], show: usize) -> Result<(Vec<TableStats>, String)> {
    tributary_lake::register_storage();
    let lake = Lake::new(lake_uri)?;
    let chains: Vec<String> = if chains.is_empty() {
        CHAINS.iter().map(|c| (*c).to_owned()).collect()
    } else {
        chains.to_vec()
    };
    let mut all = Vec::new();
    let mut out = format!(
        "{:<14} {:>8} {:>7} {:>10} {:>12} {:>8} {:>5}   {}\n",
        "table", "version", "files", "rows", "bytes", "tenants", "days", "location"
    );
    for chain in &chains {
        let s = stats(&lake, chain).await?;
        let url = lake.table_url(chain)?;
        if s.exists {
            writeln!(
                out,
                "{:<14} {:>8} {:>7} {:>10} {:>12} {:>8} {:>5}   {url}",
                s.chain, s.version, s.files, s.rows, s.bytes, s.tenants, s.days
            )?;
        } else {
            writeln!(out, "{:<14} {:>8}   (no table yet)   {url}", s.chain, "-")?;
        }
        if show > 0 && s.exists {
            if let Some(table) = open_existing(&lake, chain).await? {
                let mut batches = Vec::new();
                let mut left = show;
                for f in live_files(&table)? {
                    if left == 0 {
                        break;
                    }
                    for b in read_file(&table, &f.path, None).await? {
                        if left == 0 {
                            break;
                        }
                        let n = b.num_rows().min(left);
                        batches.push(b.slice(0, n));
                        left -= n;
                    }
                }
                writeln!(out, "{}", arrow::util::pretty::pretty_format_batches(&batches)?)?;
            }
        }
        all.push(s);
    }
    Ok((all, out))
}
