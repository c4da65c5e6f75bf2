//! Smoke tests against the real local infrastructure (Kafka, the Confluent-compatible schema
//! registry, HDFS). Addresses come from `KAFKA_BOOTSTRAP`, `SCHEMA_REGISTRY_URL` and `HDFS_URL`
//! (see `.infra/env`), falling back to the local defaults. Every test uses its own random
//! topic / subject / directory names so they can run concurrently and repeatedly.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use apache_avro::types::Value;
use hdfs_native::{ClientBuilder, HdfsError, WriteOptions};
use rand::RngCore;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn kafka_bootstrap() -> String {
    env_or("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

fn registry_url() -> String {
    env_or("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7")
        .trim_end_matches('/')
        .to_string()
}

fn hdfs_url() -> String {
    env_or("HDFS_URL", "hdfs://localhost:9000")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------------
// Kafka
// ---------------------------------------------------------------------------------------------

fn admin_client() -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .context("creating Kafka admin client")
}

async fn create_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) -> anyhow::Result<()> {
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &opts)
        .await
        .context("create_topics request")?;
    for result in results {
        result.map_err(|(name, code)| anyhow!("creating topic {name} failed: {code:?}"))?;
    }
    Ok(())
}

async fn delete_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) {
    let opts = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    // Best effort cleanup: a failure here must not mask the test outcome.
    let _ = admin.delete_topics(&[topic], &opts).await;
}

/// Runs a blocking librdkafka transactional call off the async worker threads.
async fn blocking<F>(what: &'static str, f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Result<(), KafkaError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .with_context(|| format!("{what}: blocking task panicked"))?
        .with_context(|| what.to_string())
}

async fn produce_batch(producer: &FutureProducer, topic: &str, prefix: &str, count: usize) -> anyhow::Result<()> {
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let payload = format!("{prefix} payload {i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&payload), KAFKA_TIMEOUT)
            .await
            .map_err(|(e, _)| anyhow!("producing {key}: {e}"))?;
    }
    Ok(())
}

/// Reads partition 0 of `topic` from the beginning until partition EOF and returns the keys of
/// all data records seen. Bounded by a deadline instead of sleeps.
async fn read_all_keys(topic: &str, isolation_level: &str) -> anyhow::Result<Vec<String>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("tributary-infra-test"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation_level)
        .create()
        .context("creating consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;

    let deadline = Instant::now() + KAFKA_TIMEOUT;
    let mut keys = Vec::new();
    loop {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(|| anyhow!("timed out reading {topic} ({isolation_level}); got {keys:?}"))?;
        match tokio::time::timeout(remaining, consumer.recv()).await {
            Err(_) => bail!("timed out reading {topic} ({isolation_level}); got {keys:?}"),
            Ok(Err(KafkaError::PartitionEOF(_))) => break,
            Ok(Err(e)) => return Err(e).context("consumer error"),
            Ok(Ok(msg)) => {
                let key = msg
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transactional_round_trip() -> anyhow::Result<()> {
    let topic = unique("tributary-infra-tx");
    let admin = admin_client()?;
    create_topic(&admin, &topic).await?;

    let result = async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("transactional.id", unique("tributary-infra-txid"))
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()
            .context("creating transactional producer")?;

        let p = producer.clone();
        blocking("init_transactions", move || p.init_transactions(KAFKA_TIMEOUT)).await?;

        // Transaction 1: 10 records, committed.
        producer.begin_transaction().context("begin_transaction 1")?;
        produce_batch(&producer, &topic, "committed", 10).await?;
        let p = producer.clone();
        blocking("commit_transaction", move || p.commit_transaction(KAFKA_TIMEOUT)).await?;

        // Transaction 2: 5 records, aborted.
        producer.begin_transaction().context("begin_transaction 2")?;
        produce_batch(&producer, &topic, "aborted", 5).await?;
        let p = producer.clone();
        blocking("abort_transaction", move || p.abort_transaction(KAFKA_TIMEOUT)).await?;

        let committed = read_all_keys(&topic, "read_committed").await?;
        let expected: Vec<String> = (0..10).map(|i| format!("committed-{i}")).collect();
        ensure!(
            committed == expected,
            "read_committed consumer saw {committed:?}, expected {expected:?}"
        );

        let uncommitted = read_all_keys(&topic, "read_uncommitted").await?;
        ensure!(
            uncommitted.len() == 15,
            "read_uncommitted consumer saw {} records: {uncommitted:?}",
            uncommitted.len()
        );
        ensure!(
            uncommitted.iter().filter(|k| k.starts_with("aborted-")).count() == 5,
            "read_uncommitted consumer should see the 5 aborted records: {uncommitted:?}"
        );
        anyhow::Ok(())
    }
    .await;

    delete_topic(&admin, &topic).await;
    result
}

// ---------------------------------------------------------------------------------------------
// Schema registry
// ---------------------------------------------------------------------------------------------

const SCHEMA_V1: &str = r#"{
  "type": "record",
  "name": "InfraProbe",
  "namespace": "tributary.test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "long"}
  ]
}"#;

/// Compatible evolution: new optional field with a null default.
const SCHEMA_V2: &str = r#"{
  "type": "record",
  "name": "InfraProbe",
  "namespace": "tributary.test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]
}"#;

/// Incompatible evolution: new required field without a default (a reader with this schema
/// cannot read data written with V1/V2).
const SCHEMA_V3_INCOMPATIBLE: &str = r#"{
  "type": "record",
  "name": "InfraProbe",
  "namespace": "tributary.test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "required_extra", "type": "int"}
  ]
}"#;

fn avro_schema(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(
        Some("tributary.test.InfraProbe".to_string()),
        SchemaType::Avro,
        schema.to_string(),
    )
}

async fn delete_subject(http: &reqwest::Client, base: &str, subject: &str) {
    // Best effort; the registry may have deletion disabled.
    let _ = http.delete(format!("{base}/subjects/{subject}")).send().await;
    let _ = http
        .delete(format!("{base}/subjects/{subject}?permanent=true"))
        .send()
        .await;
}

#[tokio::test]
async fn registry_avro_round_trip_and_incompatible_change_refused() -> anyhow::Result<()> {
    let base = registry_url();
    let topic = unique("tributary-infra-sr");
    let subject = format!("{topic}-value");
    let sr = SrSettings::new(base.clone());
    let http = reqwest::Client::new();

    let result = async {
        let v1 = post_schema(&sr, subject.clone(), avro_schema(SCHEMA_V1))
            .await
            .context("registering v1")?;

        // Encode with the topic name strategy: the encoder resolves `<topic>-value` latest.
        let encoder = AvroEncoder::new(sr.clone());
        let id_value = uuid::Uuid::new_v4().to_string();
        let n_value = rand::rng().next_u64() as i64;
        let bytes = encoder
            .encode(
                vec![("id", Value::String(id_value.clone())), ("n", Value::Long(n_value))],
                SubjectNameStrategy::TopicNameStrategy(topic.clone(), false),
            )
            .await
            .context("encoding")?;
        ensure!(bytes.len() > 5, "encoded payload too short: {bytes:?}");
        ensure!(bytes[0] == 0, "magic byte should be 0, got {}", bytes[0]);
        let wire_id = u32::from_be_bytes(bytes[1..5].try_into()?);
        ensure!(
            wire_id == v1.id,
            "schema id in payload ({wire_id}) != registered id ({})",
            v1.id
        );

        let decoder = AvroDecoder::new(sr.clone());
        let decoded = decoder.decode(Some(&bytes)).await.context("decoding")?;
        let expected = Value::Record(vec![
            ("id".to_string(), Value::String(id_value)),
            ("n".to_string(), Value::Long(n_value)),
        ]);
        ensure!(
            decoded.value == expected,
            "decoded {:?}, expected {expected:?}",
            decoded.value
        );

        // Compatible evolution is accepted and gets its own id.
        let v2 = post_schema(&sr, subject.clone(), avro_schema(SCHEMA_V2))
            .await
            .context("registering compatible v2")?;
        ensure!(v2.id != v1.id, "v2 got the same id as v1 ({})", v1.id);

        // Incompatible evolution is refused by the converter ...
        match post_schema(&sr, subject.clone(), avro_schema(SCHEMA_V3_INCOMPATIBLE)).await {
            Ok(registered) => bail!("incompatible schema was accepted with id {}", registered.id),
            Err(e) => ensure!(!e.retriable, "expected a non-retriable error, got {e:?}"),
        }

        // ... and at the HTTP level with 409 Conflict.
        let body = serde_json::json!({
            "schema": SCHEMA_V3_INCOMPATIBLE,
            "schemaType": "AVRO",
        });
        let response = http
            .post(format!("{base}/subjects/{subject}/versions"))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .context("raw POST of incompatible schema")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        ensure!(
            status == reqwest::StatusCode::CONFLICT,
            "expected 409 for incompatible schema, got {status}: {text}"
        );

        // The subject still has exactly the two accepted versions.
        let versions: Vec<u32> = http
            .get(format!("{base}/subjects/{subject}/versions"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ensure!(versions.len() == 2, "expected 2 versions, got {versions:?}");
        anyhow::Ok(())
    }
    .await;

    delete_subject(&http, &base, &subject).await;
    result
}

// ---------------------------------------------------------------------------------------------
// HDFS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hdfs_write_list_read_rename() -> anyhow::Result<()> {
    let client = ClientBuilder::new()
        .with_url(hdfs_url())
        .build()
        .context("building HDFS client")?;
    let dir = format!("/tributary-test/{}", uuid::Uuid::new_v4());
    let file = format!("{dir}/data.bin");
    let renamed = format!("{dir}/renamed.bin");

    let mut data = vec![0u8; 8 * 1024 + 123];
    rand::rng().fill_bytes(&mut data);

    let result = async {
        client.mkdirs(&dir, 0o755, true).await.context("mkdirs")?;

        let mut writer = client.create(&file, WriteOptions::default()).await.context("create")?;
        let written = writer.write_bytes(data.clone().into()).await?;
        ensure!(written == data.len(), "wrote {written} of {} bytes", data.len());
        writer.close().await.context("close")?;

        let listing = client.list_status(&dir, false).await.context("list")?;
        let entries: Vec<(String, usize, bool)> = listing.iter().map(|s| (s.path.clone(), s.length, s.isdir)).collect();
        ensure!(
            entries == vec![(file.clone(), data.len(), false)],
            "unexpected listing of {dir}: {entries:?}"
        );

        let mut reader = client.read(&file).await.context("open for read")?;
        ensure!(reader.file_length() == data.len(), "file length mismatch");
        let read_back = reader.read_bytes(reader.file_length()).await?;
        ensure!(read_back.as_ref() == data.as_slice(), "read-back bytes differ");

        client.rename(&file, &renamed, false).await.context("rename")?;
        match client.get_file_info(&file).await {
            Err(HdfsError::FileNotFound(_)) => {}
            Ok(status) => bail!("old path still present after rename: {status:?}"),
            Err(e) => return Err(e).context("stat of old path"),
        }
        let status = client.get_file_info(&renamed).await.context("stat new path")?;
        ensure!(
            !status.isdir && status.length == data.len(),
            "renamed file has unexpected status {status:?}"
        );
        let mut reader = client.read(&renamed).await?;
        let read_back = reader.read_bytes(reader.file_length()).await?;
        ensure!(read_back.as_ref() == data.as_slice(), "renamed file bytes differ");

        ensure!(
            client.delete(&dir, true).await.context("delete")?,
            "delete returned false"
        );
        match client.get_file_info(&dir).await {
            Err(HdfsError::FileNotFound(_)) => {}
            Ok(status) => bail!("directory still present after delete: {status:?}"),
            Err(e) => return Err(e).context("stat of deleted dir"),
        }
        anyhow::Ok(())
    }
    .await;

    if result.is_err() {
        let _ = client.delete(&dir, true).await;
    }
    result
}
