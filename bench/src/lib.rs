//! Measuring helpers for the benchmarks: a process's own CPU time and peak memory, read from
//! `/proc` (Linux).

/// User + system CPU seconds of a process (`"self"` or a pid).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) / 100.0)
}

/// Peak resident memory (VmHWM) in bytes.
pub fn peak_rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Stops a child process: SIGTERM, then SIGKILL when it still runs after 20 s.
pub fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Produces a record, waiting while librdkafka's queue is full; any other error is returned.
pub fn send_waiting<K, P>(
    producer: &rdkafka::producer::BaseProducer,
    mut rec: rdkafka::producer::BaseRecord<'_, K, P>,
) -> anyhow::Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                producer.poll(std::time::Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

pub mod history;
pub mod latency;

/// `n` realistic mailings rows (three tenants, one day) as Arrow batches of the lake's
/// columns, 100 000 rows a batch: what the Parquet baselines encode.
pub fn mailings_batches(
    n: usize,
) -> anyhow::Result<(
    std::sync::Arc<arrow::datatypes::Schema>,
    Vec<arrow::record_batch::RecordBatch>,
)> {
    use anyhow::Context;
    use apache_avro::types::Value;
    use std::sync::Arc;
    let schema = Arc::new(tributary_lake::convert::arrow_schema(
        tributary_lake::chain_schema("mailings").context("schema")?,
    )?);
    let mut batches = Vec::new();
    let mut rows = Vec::with_capacity(100_000);
    for i in 0..n {
        let s = |x: String| Value::String(x);
        let o = |x: String| Value::Union(1, Box::new(Value::String(x)));
        rows.push(vec![
            ("tenant_id".to_owned(), s(["acme", "globex", "initech"][i % 3].into())),
            ("event_id".to_owned(), s(format!("mailings-1-{i}"))),
            (
                "event_time".to_owned(),
                Value::TimestampMicros(1_764_000_000_000_000 + i as i64 * 1000),
            ),
            (
                "ingested_at".to_owned(),
                Value::TimestampMicros(1_764_000_000_000_000 + i as i64 * 1000),
            ),
            ("source".to_owned(), s("json".into())),
            ("email".to_owned(), o(format!("user.{}@example.com", i % 100_000))),
            (
                "email_sha256".to_owned(),
                o(format!("{:064x}", xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()))),
            ),
            ("message_id".to_owned(), s(format!("msg-{}", i / 3))),
            ("campaign_id".to_owned(), o(format!("c-{}", i % 11))),
            (
                "event_type".to_owned(),
                Value::Enum(
                    (i % 5) as u32,
                    ["SENT", "DELIVERED", "DEFERRED", "BOUNCED", "DROPPED"][i % 5].into(),
                ),
            ),
        ]);
        if rows.len() == 100_000 {
            batches.push(tributary_lake::convert::to_batch(schema.clone(), &rows)?);
            rows.clear();
        }
    }
    if !rows.is_empty() {
        batches.push(tributary_lake::convert::to_batch(schema.clone(), &rows)?);
    }
    Ok((schema, batches))
}
