//! The local Kafka's SASL_SSL listener (SCRAM-SHA-512, certificates made by the launcher) with
//! KRaft ACLs per principal, as dev/kafka/run.sh makes them: a chain service runs end to end
//! over it as its own principal; a chain's principal is refused another chain's topics and a
//! service is refused what its role does not do; the CLI is the only writer of `grants`; a
//! wrong password is refused. The ACLs are made for this test's namespace by the launcher
//! (`dev/kafka/run.sh acls <namespace>`, through `namespace()`), as for the production names.
//! (Every service the other tests start runs as its principal the same way: tests/lib.rs.)

use anyhow::{bail, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tributary_engine::topics;
use tributary_tests::*;

/// The errors a client reports (a failed SASL handshake is reported so, not per request).
#[derive(Clone, Default)]
struct Errors(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl rdkafka::ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl rdkafka::consumer::ConsumerContext for Errors {}

/// The client settings of a principal (KAFKA_BOOTSTRAP and KAFKA_PROP_*, as the launcher wrote
/// them), with `GROUP`: a consumer group of its role in namespace `ns`.
fn principal_in(name: &str, ns: &str) -> Result<BTreeMap<String, String>> {
    anyhow::ensure!(
        principals_dir().is_some(),
        "no Kafka principals: KAFKA_PRINCIPALS_DIR (.infra/env) unset or KAFKA_SECURE=0"
    );
    let mut settings: BTreeMap<String, String> = principal_env(name)?.into_iter().collect();
    let group = match name {
        "serve" => "tributary-serve-check".to_owned(),
        "airflow" => topics::namespaced(ns, "tributary-ctl-check"),
        _ => topics::namespaced(ns, &format!("tributary-{name}-check")),
    };
    settings.insert("GROUP".into(), group);
    Ok(settings)
}

fn principal(name: &str) -> Result<BTreeMap<String, String>> {
    principal_in(name, "")
}

fn client(settings: &BTreeMap<String, String>) -> ClientConfig {
    let props = tributary_engine::kafka::props_from_env(settings);
    let mut c = tributary_engine::kafka::client_config(&settings["KAFKA_BOOTSTRAP"], &props);
    c.set("allow.auto.create.topics", "false");
    c
}

/// Produces one record as the principal: Ok(()) when written, Err with Kafka's answer when not.
fn produce(settings: &BTreeMap<String, String>, topic: &str) -> std::result::Result<(), KafkaError> {
    let p: FutureProducer = client(settings)
        .set("message.timeout.ms", "15000")
        // Not idempotent: a principal that may write nowhere (serve) would be refused its
        // producer id first, and the test wants the topic's own answer.
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(p.send(FutureRecord::to(topic).key("k").payload("{}"), Duration::from_secs(20)))
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Reads `topic`'s partition 0 from the start as the principal until a record or its end:
/// Ok(()) when allowed, Err with Kafka's answer when refused.
fn read(settings: &BTreeMap<String, String>, topic: &str) -> Result<std::result::Result<(), KafkaError>> {
    let c: BaseConsumer = client(settings)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        // The client finds its group's coordinator even for assign(): a group of its role.
        .set("group.id", &settings["GROUP"])
        .create()?;
    // No ACL at all on the topic: the metadata already says so (the client would otherwise
    // wait for a topic it cannot see).
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(20))?;
    if let Some(e) = md.topics().first().and_then(|t| t.error()) {
        return Ok(Err(KafkaError::MetadataFetch(e.into())));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => return Ok(Ok(())),
            Some(Err(e)) => return Ok(Err(e)),
            None => {}
        }
    }
    bail!("reading {topic}: neither a record, its end nor a refusal within 20 s")
}

/// Refused by an ACL: the topic's, or (for a principal that reads nothing, the gateway) the
/// group's before it.
fn refused(what: &str, r: std::result::Result<(), KafkaError>) {
    match r.map_err(|e| e.rdkafka_error_code()) {
        Err(Some(RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed)) => {}
        other => panic!("{what}: expected an authorization failure, got {other:?}"),
    }
}

fn allowed(what: &str, r: std::result::Result<(), KafkaError>) {
    if let Err(e) = r {
        panic!("{what}: refused: {e}");
    }
}

#[test]
fn each_principal_may_do_what_its_role_does_and_nothing_else() -> Result<()> {
    let ns = namespace_all(1)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(topics::create(
        &kafka(),
        &Default::default(),
        &[
            (topics::namespaced(&ns, "grants"), true),
            (topics::namespaced(&ns, "dlq.sink"), false),
        ],
        1,
    ))?;
    let t = |name: String| topics::namespaced(&ns, &name);
    let users = principal_in("users", &ns)?;
    let sink = principal_in("sink", &ns)?;
    let ingest = principal_in("ingest", &ns)?;
    let serve = principal_in("serve", &ns)?;
    let ctl = principal_in("ctl", &ns)?;
    let airflow = principal_in("airflow", &ns)?;
    assert_eq!(users["KAFKA_PROP_SECURITY_PROTOCOL"], "SASL_SSL");
    assert_ne!(
        users["KAFKA_BOOTSTRAP"],
        kafka(),
        "the principals connect to the SASL_SSL listener"
    );

    // Something to read in every topic the checks read.
    for name in [topics::raw("users"), topics::raw("mailings"), topics::clean("users")] {
        allowed(&format!("ctl writes {name}"), produce(&ctl, &t(name.clone())));
    }

    // A chain: its own topics yes, another chain's no.
    allowed("users reads raw.users", read(&users, &t(topics::raw("users")))?);
    refused("users reads raw.mailings", read(&users, &t(topics::raw("mailings")))?);
    refused(
        "users writes clean.mailings",
        produce(&users, &t(topics::clean("mailings"))),
    );
    refused(
        "users writes dlq.mailings",
        produce(&users, &t(topics::dlq("mailings"))),
    );
    refused(
        "users reads changelog.mailings",
        read(&users, &t(topics::changelog("mailings")))?,
    );
    refused(
        "users writes raw.users (only the gateway does)",
        produce(&users, &t(topics::raw("users"))),
    );
    refused("users writes grants", produce(&users, &t("grants".into())));

    // The sink reads clean topics and writes dlq.sink only.
    allowed("sink reads clean.users", read(&sink, &t(topics::clean("users")))?);
    refused("sink writes clean.users", produce(&sink, &t(topics::clean("users"))));
    refused("sink reads raw.users", read(&sink, &t(topics::raw("users")))?);

    // The gateway writes raw topics and reads nothing.
    allowed(
        "ingest writes raw.mailings",
        produce(&ingest, &t(topics::raw("mailings"))),
    );
    refused("ingest reads raw.mailings", read(&ingest, &t(topics::raw("mailings")))?);
    refused(
        "ingest writes clean.mailings",
        produce(&ingest, &t(topics::clean("mailings"))),
    );

    // serve reads clean topics and grants, writes nothing.
    allowed("serve reads clean.users", read(&serve, &t(topics::clean("users")))?);
    allowed("serve reads grants", read(&serve, &t("grants".into()))?);
    refused("serve writes grants", produce(&serve, &t("grants".into())));
    refused("serve reads raw.users", read(&serve, &t(topics::raw("users")))?);

    // The CLI is the only writer of grants; Airflow's jobs read, and write raw.blocklists only.
    allowed("ctl writes grants", produce(&ctl, &t("grants".into())));
    refused("airflow writes grants", produce(&airflow, &t("grants".into())));
    allowed("airflow reads clean.users", read(&airflow, &t(topics::clean("users")))?);
    allowed(
        "airflow writes raw.blocklists",
        produce(&airflow, &t(topics::raw("blocklists"))),
    );
    refused("airflow writes raw.users", produce(&airflow, &t(topics::raw("users"))));

    // A wrong password is no principal at all.
    let mut wrong = users.clone();
    wrong.insert("KAFKA_PROP_SASL_PASSWORD".into(), "not-the-password".into());
    let errors = Errors::default();
    let c: BaseConsumer<Errors> = client(&wrong).create_with_context(errors.clone())?;
    assert!(
        c.fetch_metadata(None, Duration::from_secs(10)).is_err(),
        "a wrong password got metadata"
    );
    // The client's errors are delivered when it is polled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while errors.0.lock().unwrap().is_empty() && Instant::now() < deadline {
        let _ = c.poll(Duration::from_millis(200));
    }
    let seen = errors.0.lock().unwrap().join("; ");
    assert!(
        seen.contains("Authentication") || seen.contains("authentication"),
        "a wrong password: expected an authentication failure, the client reported: {seen}"
    );
    Ok(())
}

/// The chain service over SASL_SSL as its own principal: consumer group, transactions and
/// changelog all under its ACLs, every record accounted for. The same binary run as another
/// chain's principal stops with the refusal and writes nothing.
#[test]
fn a_chain_runs_end_to_end_as_its_principal_and_not_as_another() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 2)?;
    let env = |p: &BTreeMap<String, String>| -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let records = special_records(chain);
    produce_special(&topic(&ns, topics::raw(chain)), &records)?;

    // As mailings' principal: refused its topics, so it stops without writing anything.
    let as_other = env(&principal("mailings")?);
    let refs: Vec<(&str, &str)> = as_other.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut wrong = Service::start(chain, &ns, "0", &refs)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = wrong.child.try_wait()? {
            break st;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the users service as mailings' principal still runs after 60 s: it should stop on the refusal"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !status.success(),
        "refused its topics, the service must fail, not exit 0"
    );
    assert_eq!(read_all(&topic(&ns, topics::clean(chain)))?.len(), 0);
    assert_eq!(read_all(&topic(&ns, topics::audit(chain)))?.len(), 0);

    // As its own principal: every record accounted for.
    let own = env(&principal(chain)?);
    let refs: Vec<(&str, &str)> = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut svc = Service::start(chain, &ns, "0", &refs)?;
    svc.wait_ready(Duration::from_secs(60))?;
    let sums = wait_accounted(
        &topic(&ns, topics::audit(chain)),
        records.len() as u64,
        Duration::from_secs(90),
    )?;
    let dlq = records.iter().filter(|r| r.class.is_some()).count() as u64;
    assert_eq!(sums.received, records.len() as u64);
    assert_eq!(sums.dlq, dlq);
    assert_eq!(read_all(&topic(&ns, topics::clean(chain)))?.len() as u64, sums.clean);
    assert!(sums.clean > 0);
    // And it kept going through a restart (restore from its changelog, as its principal).
    svc.kill9_and_restart()?;
    svc.wait_ready(Duration::from_secs(60))?;
    svc.stop()?;
    Ok(())
}

/// An erasure whose `ERASED` suppression record Kafka refuses fails: the person would
/// otherwise be erased from the lake but not suppressed. (It exited 0 before: a producer's
/// flush returns Ok whatever became of its records.) As the Airflow principal, which may
/// write `raw.blocklists`, the same erasure passes and its record is there.
#[test]
fn an_erasure_whose_suppression_kafka_refuses_fails() -> Result<()> {
    let ns = namespace_all(1)?;
    let lake = std::env::temp_dir().join(format!("lake-{ns}"));
    let erase = |principal: &str| -> Result<std::process::Output> {
        let settings = principal_in(principal, &ns)?;
        Ok(std::process::Command::new(bin("tributary"))
            .args(["erase", "--lake", lake.to_str().unwrap_or_default(), "--tenant", "acme"])
            .args(["--email", "refused@example.com", "--namespace", &ns, "--sink-wait", "0"])
            .env("KAFKA_BOOTSTRAP", &settings["KAFKA_BOOTSTRAP"])
            .envs(settings.iter().filter(|(k, _)| k.starts_with("KAFKA_PROP_")))
            .env("KAFKA_PROP_MESSAGE_TIMEOUT_MS", "15000")
            .output()?)
    };
    let out = erase("sink")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an erasure whose suppression was refused passed");
    assert!(stderr.contains("not acknowledged by Kafka"), "{stderr}");
    let raw = topics::namespaced(&ns, &topics::raw("blocklists"));
    assert!(read_all(&raw)?.is_empty(), "nothing reached {raw}");
    let out = erase("airflow")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_all(&raw)?.len(), 1, "the suppression record");
    let _ = std::fs::remove_dir_all(&lake);
    Ok(())
}
