//! Topic names of the contracts, and their creation.

use crate::error::{KafkaContext, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::time::Duration;

pub const CHAINS: [&str; 5] = ["users", "unsubscribes", "blocklists", "subscriptions", "mailings"];

/// Puts a namespace in front of a topic name (`<ns>.raw.users`), so that several
/// environments or test runs can share one cluster; the empty namespace is the contract's
/// own names.
pub fn namespaced(namespace: &str, topic: &str) -> String {
    if namespace.is_empty() {
        topic.to_owned()
    } else {
        format!("{namespace}.{topic}")
    }
}

pub fn raw(chain: &str) -> String {
    format!("raw.{chain}")
}
pub fn clean(chain: &str) -> String {
    format!("clean.{chain}")
}
pub fn dlq(chain: &str) -> String {
    format!("dlq.{chain}")
}
pub fn audit(chain: &str) -> String {
    format!("audit.{chain}")
}
/// The compacted dedup-state changelog; partition `p` holds the state of `raw.<chain>[p]`.
pub fn changelog(chain: &str) -> String {
    format!("changelog.{chain}")
}
pub fn subject(chain: &str) -> String {
    format!("clean.{chain}-value")
}

/// Every topic of one chain with its settings: (name, compacted).
pub fn chain_topics(chain: &str) -> Vec<(String, bool)> {
    vec![
        (raw(chain), false),
        (clean(chain), false),
        (dlq(chain), false),
        (audit(chain), false),
        (changelog(chain), true),
    ]
}

/// Creates topics that do not exist yet; existing ones are left as they are.
pub async fn create(
    bootstrap: &str,
    extra: &std::collections::BTreeMap<String, String>,
    topics: &[(String, bool)],
    partitions: i32,
) -> Result<Vec<String>> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        cfg.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = cfg.create().ctx("creating admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, compacted)| {
            let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            if *compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new.iter(), &opts).await.ctx("creating topics")?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(crate::error::Error::Internal(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(created)
}
