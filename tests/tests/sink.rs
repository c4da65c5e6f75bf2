//! The sink against the real broker, registry and HDFS: raw events through a chain service
//! and the sink into Delta tables that hold exactly the expected rows, also while the sink is
//! killed with `kill -9`, with two sink instances, and across a schema change.

use anyhow::Result;
use rand::Rng;
use std::time::Duration;
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::topics;
use tributary_tests::*;

fn lake_dir(ns: &str) -> String {
    std::env::temp_dir()
        .join(format!("lake-{ns}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn end_to_end_into_a_table_on_hdfs() -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 2)?;
    let lake = format!("{}/tributary-test/{ns}", hdfs());
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 5_000);
    spec.seed = 3;
    let s = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    let rows = wait_table(&lake, chain, s.expected.len(), Duration::from_secs(120))?;
    assert_exact_table(&rows, &s.expected);
    // The count `make chaos` waits on, from the log's per-file record counts: the rows read.
    assert_eq!(
        existing_table_row_count(&lake, chain)?,
        rows.values().map(|n| u64::from(*n)).sum::<u64>()
    );
    sink.stop()?;
    svc.stop()
}

/// Kills the sink (or one of two sinks) at random moments while records stream in.
fn kill_sinks(instances: usize) -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 4)?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut sinks: Vec<Sink> = (0..instances)
        .map(|i| {
            Sink::start(
                &ns,
                &lake,
                chain,
                &[("INSTANCE", &i.to_string()), ("FLUSH_MAX_ROWS", "5000")],
            )
        })
        .collect::<Result<_>>()?;
    let mut spec = Spec::new(chain, 100_000);
    spec.seed = 17 + instances as u64;
    let (k, raw, sp) = (kafka(), topic(&ns, topics::raw(chain)), spec.clone());
    let producer = std::thread::spawn(move || loadgen::send_paced(&k, &raw, sp, Some(6_000), |_| {}));
    let mut rng = rand::rng();
    let mut kills = 0;
    while kills < 6 && !producer.is_finished() {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..2_500)));
        let victim = rng.random_range(0..sinks.len());
        sinks[victim].kill9_and_restart()?;
        kills += 1;
    }
    let summary = producer.join().expect("producer")?;
    assert!(kills >= 5, "only {kills} kills while the load ran");
    wait_exact_table(&lake, chain, &summary.expected, Duration::from_secs(180))?;
    for s in &mut sinks {
        s.check_alive()?;
        s.stop()?;
    }
    svc.stop()?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

#[test]
fn exactly_once_under_kill_dash_nine() -> Result<()> {
    kill_sinks(1)
}

#[test]
fn exactly_once_with_two_sinks_under_kill_dash_nine() -> Result<()> {
    kill_sinks(2)
}

/// A zombie: a sink holding uncommitted rows is paused (SIGSTOP) past its group session;
/// another sink takes its partitions and commits them; the zombie wakes up (SIGCONT) with its
/// rows still waiting. They must not land: its commit is fenced on the offsets the table held
/// when its rows began, so the table holds every record exactly once, and both sinks go on.
#[test]
fn a_sink_woken_after_its_session_adds_nothing_twice() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 2)?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    // The zombie-to-be commits only every 40 s: what it reads waits in memory.
    let mut zombie = Sink::start(
        &ns,
        &lake,
        chain,
        &[
            ("INSTANCE", "0"),
            ("FLUSH_MAX_AGE", "40s"),
            ("FLUSH_MAX_ROWS", "10000000"),
        ],
    )?;
    let raw = topic(&ns, topics::raw(chain));
    let mut first = Spec::new(chain, 3_000);
    first.seed = 71;
    let a = loadgen::send(&kafka(), &raw, first, |_| {})?;
    // Everything clean is on the topic and the zombie has read it (its consumer group's lag
    // is not committed yet: give it a few seconds at its poll rate).
    wait_accounted(&topic(&ns, topics::audit(chain)), a.sent, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        table_rows(&lake, chain).map(|r| r.is_empty()).unwrap_or(true),
        "nothing committed yet"
    );
    let pid = zombie.child.id().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status()?;
    let mut other = Sink::start(&ns, &lake, chain, &[("INSTANCE", "1")])?;
    // The other sink gets the partitions once the zombie's session (10 s) expires.
    wait_exact_table(&lake, chain, &a.expected, Duration::from_secs(90))?;
    std::process::Command::new("kill").args(["-CONT", &pid]).status()?;
    // More load while both run; the zombie's old rows would double the first set.
    let mut second = Spec::new(chain, 2_000);
    second.seed = 72;
    let b = loadgen::send(&kafka(), &raw, second, |_| {})?;
    let mut want = a.expected.clone();
    want.extend(b.expected.iter().cloned());
    wait_exact_table(&lake, chain, &want, Duration::from_secs(120))?;
    // Past the zombie's 40 s flush age: still exactly once.
    std::thread::sleep(Duration::from_secs(45));
    assert_exact_table(&table_rows(&lake, chain)?, &want);
    zombie.check_alive()?;
    other.check_alive()?;
    zombie.stop()?;
    other.stop()?;
    svc.stop()?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

/// The registry down while the sink meets a writer schema it has not seen: the sink waits for
/// it (counting the waits) and dead-letters nothing; once the registry is back every record is
/// in the table exactly once. (It used to send each such record to `dlq.sink`, where
/// reconciliation counted it as accounted for.)
#[test]
fn a_registry_outage_delays_the_sink_and_dead_letters_nothing() -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 2)?;
    let dlq = topic(&ns, "dlq.sink".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(topics::create(
        &kafka(),
        &Default::default(),
        &[(dlq.clone(), false)],
        1,
    ))?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    // The sink reaches the real registry through a forwarder the test takes down.
    let url = url::Url::parse(&registry())?;
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("localhost"),
        url.port_or_known_default().unwrap_or(80)
    );
    let outage = Outage::start(&target)?;
    outage.down();
    let mut via = url.clone();
    via.set_host(Some("127.0.0.1"))?;
    via.set_port(Some(outage.port)).map_err(|()| anyhow::anyhow!("port"))?;
    let mut sink = Sink::start(&ns, &lake, chain, &[("SCHEMA_REGISTRY_URL", via.as_str())])?;
    let mut spec = Spec::new(chain, 2_000);
    spec.seed = 81;
    let s = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    wait_accounted(&topic(&ns, topics::audit(chain)), s.sent, Duration::from_secs(60))?;
    // Down for a while with every clean record waiting to be read by the sink.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let waits = loop {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", sink.port))?.text()?;
        let waits = metric_value(&text, "tributary_sink_registry_waits_total").unwrap_or(0.0);
        if waits >= 5.0 {
            break waits;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the sink never waited for the registry"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    sink.check_alive()?;
    assert!(
        read_all(&dlq)?.is_empty(),
        "records dead-lettered while the registry was down"
    );
    assert!(table_rows(&lake, chain).map(|r| r.is_empty()).unwrap_or(true));
    outage.up();
    wait_exact_table(&lake, chain, &s.expected, Duration::from_secs(120))?;
    assert!(
        read_all(&dlq)?.is_empty(),
        "records dead-lettered after the registry came back"
    );
    println!(
        "the sink waited {waits} times for the registry, then wrote {} rows",
        s.expected.len()
    );
    sink.stop()?;
    svc.stop()?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

/// A new optional field added to the chain's schema mid-stream reaches the table as a new
/// nullable column, without stopping the sink.
#[test]
fn schema_change_adds_a_column() -> Result<()> {
    use apache_avro::types::Value;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
    use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
    let chain = "unsubscribes";
    let ns = namespace(chain, 1)?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 500);
    spec.duplicate_share = 0.0;
    spec.invalid_share = 0.0;
    let s = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    wait_table(&lake, chain, s.expected.len(), Duration::from_secs(60))?;

    // Version 2 of the schema: one more optional field.
    let mut v2: serde_json::Value = serde_json::from_str(tributary_lake::chain_schema(chain).unwrap_or_default())?;
    v2["fields"].as_array_mut().expect("fields").push(serde_json::json!(
        {"name": "preference_center_url", "type": ["null", "string"], "default": null}
    ));
    let subject = topic(&ns, topics::subject(chain));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let id = rt
        .block_on(post_schema(
            &SrSettings::new(registry()),
            subject,
            SuppliedSchema::new(None, SchemaType::Avro, v2.to_string()),
        ))?
        .id;
    let schema = apache_avro::Schema::parse_str(&v2.to_string())?;
    // Re-encode the first 50 clean records under version 2, with new identities.
    let clean = read_all(&topic(&ns, topics::clean(chain)))?;
    let decoder = schema_registry_converter::async_impl::avro::AvroDecoder::new(SrSettings::new(registry()));
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let mut expected = s.expected.clone();
    for (i, r) in clean.iter().take(50).enumerate() {
        let Value::Record(mut fields) = rt.block_on(decoder.decode(r.value.as_deref()))?.value else {
            anyhow::bail!("record")
        };
        let mut tenant = String::new();
        for (k, v) in fields.iter_mut() {
            if k == "event_id" {
                *v = Value::String(format!("v2-{i}"));
            }
            if k == "tenant_id" {
                if let Value::String(t) = v {
                    tenant = t.clone();
                }
            }
        }
        fields.push((
            "preference_center_url".into(),
            Value::Union(1, Box::new(Value::String(format!("https://p.example/{i}")))),
        ));
        expected.insert(format!("{tenant}/v2-{i}"));
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&id.to_be_bytes());
        #[allow(deprecated)]
        bytes.extend(apache_avro::to_avro_datum(&schema, Value::Record(fields))?);
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&topic(&ns, topics::clean(chain))).payload(&bytes))
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let rows = wait_table(&lake, chain, expected.len(), Duration::from_secs(60))?;
    assert_exact_table(&rows, &expected);
    let table = rt.block_on(deltalake::open_table(
        tributary_lake::Lake::new(&lake)?.table_url(chain)?,
    ))?;
    let cols: Vec<String> = table.snapshot()?.schema().fields().map(|f| f.name().clone()).collect();
    assert!(
        cols.contains(&"preference_center_url".to_owned()),
        "new column in {cols:?}"
    );
    sink.check_alive()?;
    sink.stop()?;
    svc.stop()?;
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}

/// Another engine (the Python `deltalake` package with pyarrow) reads the local table and
/// finds the same rows, with standard types.
#[test]
fn python_deltalake_reads_the_same_rows() -> Result<()> {
    let chain = "subscriptions";
    let ns = namespace(chain, 2)?;
    let lake = lake_dir(&ns);
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 2_000);
    spec.seed = 21;
    let s = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    let rows = wait_table(&lake, chain, s.expected.len(), Duration::from_secs(60))?;
    assert_exact_table(&rows, &s.expected);
    sink.stop()?;
    svc.stop()?;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let venv = std::process::Command::new("bash")
        .arg(format!("{root}/dev/python-env.sh"))
        .output()?;
    anyhow::ensure!(
        venv.status.success(),
        "python env: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = format!("{}/bin/python", String::from_utf8_lossy(&venv.stdout).trim());
    let script = r#"
import json, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_dataset().to_table()
ids = sorted(f"{a}/{b}" for a, b in zip(t.column("tenant_id").to_pylist(), t.column("event_id").to_pylist()))
print(json.dumps({"ids": ids, "event_time": str(t.schema.field("event_time").type), "consent_at": str(t.schema.field("consent_at").type), "dates": sorted(set(t.column("event_date").to_pylist()))}))
# deltalake 1.6 sometimes aborts in its thread pools' teardown at interpreter exit
# ("terminate called without an active exception"): leave without tearing down.
import os
sys.stdout.flush()
os._exit(0)
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &format!("{lake}/{chain}")])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ids: std::collections::BTreeSet<String> = v["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        v["ids"].as_array().map(Vec::len).unwrap_or(0),
        "no row twice"
    );
    assert_eq!(ids, s.expected, "the Python reader sees the same rows");
    assert_eq!(v["event_time"], "timestamp[us, tz=UTC]");
    assert_eq!(v["consent_at"], "timestamp[us, tz=UTC]");
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}
