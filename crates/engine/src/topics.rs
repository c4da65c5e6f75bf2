//! Topic names of the contracts, and their creation.

use crate::error::{KafkaContext, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::time::Duration;

/// Every chain's name, in the registry's order ([`crate::chains`], `schemas/chains.txt`).
pub use crate::chains::NAMES as CHAINS;

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

/// How long raw and clean topics keep records (`retention.ms`, set when they are created):
/// they hold personal data, which the lake holds after them, so their copies must expire.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// The retention of raw and clean topics: `TOPIC_RETENTION` (humantime, e.g. `7d`, `36h`),
/// else [`DEFAULT_RETENTION`].
pub fn retention() -> Result<Duration> {
    match std::env::var("TOPIC_RETENTION") {
        Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim())
            .map_err(|e| crate::error::Error::Config(format!("TOPIC_RETENTION '{v}': {e}"))),
        _ => Ok(DEFAULT_RETENTION),
    }
}

/// Whether a (namespaced) topic is a raw or clean topic, whose records expire.
pub fn expires(name: &str) -> bool {
    let base = name.rsplit_once('.').map_or(name, |(head, _)| head);
    let kind = base.rsplit('.').next().unwrap_or(base);
    kind == "raw" || kind == "clean"
}

/// Creates topics that do not exist yet; existing ones are left as they are. Raw and clean
/// topics get a finite retention ([`retention`]).
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
    let retention_ms = retention()?.as_millis().to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, compacted)| {
            let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            if *compacted {
                t.set("cleanup.policy", "compact")
            } else if expires(name) {
                t.set("retention.ms", &retention_ms)
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

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn raw_and_clean_topics_expire_the_others_are_kept() {
        for t in ["raw.users", "clean.users", "t1.raw.mailings", "t1.clean.unsubscribes"] {
            assert!(expires(t), "{t}");
        }
        for t in [
            "dlq.users",
            "audit.users",
            "dlq.sink",
            "grants",
            "t1.grants",
            "t1.audit.users",
        ] {
            assert!(!expires(t), "{t}");
        }
        assert_eq!(DEFAULT_RETENTION, Duration::from_secs(604_800));
    }
}
