//! Follows the compacted topic `grants`: every grant record replaces the grant of its key, a
//! tombstone (revocation) removes it at once. Expiry is checked where a grant is used, so a
//! revoked or expired grant is refused everywhere within a poll interval, far inside DESIGN's
//! 60 s.

use crate::App;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tributary_view::grants::{Grant, TOPIC};

pub fn follow(app: Arc<App>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let s = &app.settings;
    let topic = tributary_engine::topics::namespaced(&s.topic_namespace, TOPIC);
    let c: BaseConsumer = tributary_engine::kafka::client_config(&s.kafka_bootstrap, &s.kafka)
        .set(
            "group.id",
            format!("tributary-serve-grants-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    // The topic appears with the first `tributary grant create` (or `tributary topics`).
    let mut warned = false;
    while !shutdown.is_cancelled() {
        let exists = c.fetch_metadata(Some(&topic), Duration::from_secs(5)).is_ok_and(|md| {
            md.topics()
                .iter()
                .any(|t| t.error().is_none() && !t.partitions().is_empty())
        });
        if exists {
            break;
        }
        if !warned {
            tracing::info!(topic, "No grants topic yet; no grants until it exists");
            warned = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    while !shutdown.is_cancelled() {
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Kafka: grants consume error; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Some(Ok(m)) => {
                let id = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let mut grants = app.grants.write().expect("grants lock");
                match m.payload() {
                    None => {
                        if grants.remove(&id).is_some() {
                            tracing::info!(grant = %id, "Grant revoked");
                        }
                    }
                    Some(p) => match serde_json::from_slice::<Grant>(p) {
                        Ok(g) => {
                            tracing::info!(grant = %id, grantor = %g.grantor, grantee = %g.grantee, purpose = ?g.purpose, "Grant");
                            grants.insert(id, g);
                        }
                        // A grant that cannot be read grants nothing; the CLI writes them.
                        Err(e) => {
                            tracing::error!(grant = %id, offset = m.offset(), error = %e, "Unreadable grant record: ignored, grants nothing");
                            grants.remove(&id);
                        }
                    },
                }
                app.metrics.grants.set(grants.len() as i64);
            }
        }
    }
    Ok(())
}
