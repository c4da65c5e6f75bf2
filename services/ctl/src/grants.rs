//! `tributary grant create|list|revoke` over the compacted topic `grants` (key: grant id).
//! The CLI is the only writer of the topic; `serve` follows it.

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_view::grants::{self, Grant};

pub fn topic(namespace: &str) -> String {
    tributary_engine::topics::namespaced(namespace, grants::TOPIC)
}

/// Creates the grants topic when it does not exist (one partition, compacting promptly).
pub async fn ensure_topic(bootstrap: &str, namespace: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = tributary_engine::kafka::env_client_config(bootstrap)
        .create()
        .context("Kafka admin client")?;
    let name = topic(namespace);
    let mut t = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
    for (k, v) in grants::TOPIC_CONFIG {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics([&t], &opts).await? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((n, e)) => bail!("creating topic {n}: {e}"),
        }
    }
    Ok(())
}

/// Every live (not revoked) grant, read from the start of the topic to its end.
pub fn read_all(bootstrap: &str, namespace: &str) -> Result<BTreeMap<String, Grant>> {
    let name = topic(namespace);
    let c: BaseConsumer = tributary_engine::kafka::env_client_config(bootstrap)
        .set("group.id", "tributary-ctl-grants")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let (low, high) = c
        .fetch_watermarks(&name, 0, Duration::from_secs(30))
        .with_context(|| format!("reading {name}"))?;
    let mut out = BTreeMap::new();
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&name, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m?;
            let id = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            match m.payload() {
                None => {
                    out.remove(&id);
                }
                Some(p) => {
                    let g: Grant =
                        serde_json::from_slice(p).with_context(|| format!("grant {id} at offset {}", m.offset()))?;
                    out.insert(id, g);
                }
            }
            if m.offset() + 1 >= high {
                return Ok(out);
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("{name} not read to its end ({high}) within 60 s");
        }
    }
}

/// Writes one record (None: a tombstone) and waits until Kafka has it.
pub async fn write(bootstrap: &str, namespace: &str, id: &str, value: Option<&[u8]>) -> Result<()> {
    let p: FutureProducer = tributary_engine::kafka::env_client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let name = topic(namespace);
    let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(&name).key(id);
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    p.send(rec, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("writing grant {id} to {name}: {e}"))?;
    Ok(())
}
