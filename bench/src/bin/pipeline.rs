//! CPU per record of the per-record pipeline alone (parse, validate, normalize, encode,
//! dedup decision), without Kafka: where the chain service's own time goes.
//!
//! Usage: pipeline [RECORDS [FORMAT]] (FORMAT a source format's name, default `json`)

use std::time::Instant;
use tributary_ctl::loadgen::{Format, Generator, Spec};
use tributary_engine::chain::{self, PipelineSettings};
use tributary_engine::dedup::{micros_to_secs2000, DedupState};
use tributary_engine::{RawRecord, Source};

// The chain services' allocator, so that this measures what they do.
#[global_allocator]
static GLOBAL: tributary_engine::ChainAllocator = tributary_engine::ChainAllocator;

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500_000);
    let source = match std::env::args().nth(2) {
        Some(f) => Source::parse(&f).ok_or_else(|| anyhow::anyhow!("no source format {f}"))?,
        None => Source::Json,
    };
    let mut spec = Spec::new("mailings", n).with_format(Format::One(source));
    spec.invalid_share = 0.0;
    let records: Vec<_> = Generator::new(spec).collect();
    let settings = PipelineSettings {
        tenants: vec!["acme".into(), "globex".into(), "initech".into()],
        max_record_bytes: 1 << 20,
        schema_id: 1,
    };
    let mut state = DedupState::new(7 * 86_400);
    let mut changes = Vec::new();
    let now = tributary_engine::normalize::now_micros();
    let started = Instant::now();
    let mut clean = 0u64;
    for r in &records {
        let raw = RawRecord {
            payload: &r.payload,
            tenant: Some(&r.tenant),
            csv_header: r.csv_header.as_deref(),
        };
        let enc = chain::process::<tributary_mailings::Mailings>(&settings, Some(source.as_str()), &raw, now)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        changes.clear();
        if state.observe(enc.key, micros_to_secs2000(enc.event_time), &mut changes)
            != tributary_engine::dedup::Verdict::Duplicate
        {
            clean += 1;
        }
    }
    let el = started.elapsed();
    println!(
        "{{\"records\":{n},\"clean\":{clean},\"seconds\":{:.3},\"us_per_record\":{:.3}}}",
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
