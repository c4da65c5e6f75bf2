//! Keeps the view current: first the lake, then the clean topics from exactly where the lake
//! ends.
//!
//! Invariant: every clean event is folded in once. The lake's snapshot is read together with
//! its `txn` versions (the next offset of each clean-topic partition it does not hold); the
//! topics are then read, `read_committed`, from those offsets (from the beginning where the
//! lake holds nothing of a partition). Clean topics keep days; the lake keeps everything, so
//! a suppression from last year holds after every topic has expired it. A restart rebuilds
//! from the lake and the topics' tails, never from whole topics.
//!
//! Readiness: false until every partition's position reached the high watermark it had when
//! the reader started (the instance has caught up); answers before that could miss a recent
//! unsubscribe, so the API answers 503 meanwhile.
//!
//! Each instance reads every partition (assigned, no consumer group): replicas add read
//! capacity; `HOLD_TENANTS` shards the tenants between instances when one instance's memory
//! is not enough.

use crate::metrics::Metrics;
use crate::App;
use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tributary_engine::topics;
use tributary_view::event::{self, CHAINS};

/// The clean topic of each read-side chain, as this instance names it.
pub fn clean_topics(namespace: &str) -> Vec<(&'static str, String)> {
    CHAINS
        .iter()
        .map(|c| (*c, topics::namespaced(namespace, &topics::clean(c))))
        .collect()
}

fn consumer(app: &App) -> Result<BaseConsumer> {
    let s = &app.settings;
    let mut cfg = tributary_engine::kafka::client_config(&s.kafka_bootstrap, &s.kafka);
    cfg.set("group.id", format!("tributary-serve-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "20")
        .set("fetch.min.bytes", "1")
        .set("isolation.level", "read_committed");
    cfg.create().context("creating the Kafka consumer")
}

/// The partitions of each clean topic; waits (not ready) until every topic exists. None when
/// `shutdown` came first.
fn partitions(
    c: &BaseConsumer,
    topics: &[(&str, String)],
    shutdown: &CancellationToken,
) -> Result<Option<BTreeMap<String, Vec<i32>>>> {
    let mut warned = false;
    loop {
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        for (_, t) in topics {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            match c.fetch_metadata(Some(t), Duration::from_secs(2)) {
                Ok(md) => {
                    let parts: Vec<i32> = md
                        .topics()
                        .iter()
                        .filter(|mt| mt.error().is_none())
                        .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
                        .collect();
                    if parts.is_empty() {
                        missing.push(t.clone());
                    }
                    out.insert(t.clone(), parts);
                }
                Err(e) => missing.push(format!("{t} ({e})")),
            }
        }
        if missing.is_empty() {
            return Ok(Some(out));
        }
        if !warned {
            tracing::warn!(topics = ?missing, "Clean topics not there yet (run `tributary topics`); waiting");
            warned = true;
        }
        for _ in 0..10 {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writer schemas by registry id.
struct Schemas {
    url: String,
    by_id: HashMap<u32, apache_avro::Schema>,
}

impl Schemas {
    /// The writer schema of `id`, fetched once; a registry that does not answer is waited
    /// for with backoff (a dependency down delays, it never drops a record).
    fn get(
        &mut self,
        rt: &tokio::runtime::Runtime,
        id: u32,
        shutdown: &CancellationToken,
    ) -> Result<&apache_avro::Schema> {
        if !self.by_id.contains_key(&id) {
            let mut wait = Duration::from_millis(200);
            let text = loop {
                match rt.block_on(tributary_lake::registry_schema(&self.url, id)) {
                    Ok(t) => break t,
                    Err(e) if !shutdown.is_cancelled() => {
                        tracing::warn!(id, error = %e, "Registry lookup failed; retrying");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let schema = apache_avro::Schema::parse_str(&text).with_context(|| format!("writer schema {id}"))?;
            self.by_id.insert(id, schema);
        }
        Ok(&self.by_id[&id])
    }
}

/// Builds the view from the lake and follows the clean topics until `shutdown`. An error is
/// returned only for what cannot be handled (a clean record that cannot be typed); the
/// caller stops the service loudly.
pub fn run(app: Arc<App>, shutdown: CancellationToken) -> Result<()> {
    // The lake's runtime, shared with the sharing refresher: see `tributary_lake::io_runtime`.
    let rt = tributary_lake::io_runtime();
    let c = consumer(&app)?;
    let topics = clean_topics(&app.settings.topic_namespace);
    let Some(parts) = partitions(&c, &topics, &shutdown)? else {
        return Ok(());
    };
    let hold = app.settings.hold_tenants.clone();
    let keep = move |t: &str| hold.as_ref().is_none_or(|h| h.iter().any(|x| x == t));

    // 1. The lake, up to its txn versions.
    let started = Instant::now();
    let lake = tributary_lake::Lake::new(&app.settings.lake_uri).context("opening the lake")?;
    let mut loaded = tributary_view::lake::Loaded::default();
    for (chain, topic) in &topics {
        let mut batch = Vec::with_capacity(4096);
        let mut fold = |e: event::Event| {
            if keep(&e.tenant) {
                batch.push(e);
            }
        };
        rt.block_on(tributary_view::lake::load_chain(
            &lake,
            chain,
            app.settings.hold_tenants.as_deref(),
            Some((topic, &parts[topic])),
            &mut loaded,
            &mut fold,
        ))
        .with_context(|| format!("reading the lake's {chain} table"))?;
        let mut view = app.view.write().expect("view lock");
        for e in batch {
            view.apply(e);
        }
    }
    tracing::info!(
        files = loaded.files,
        bytes = loaded.bytes,
        events = loaded.events,
        seconds = started.elapsed().as_secs_f64(),
        "Lake read"
    );
    app.metrics.lake_events.set(loaded.events as i64);
    app.metrics.lake_seconds.set(started.elapsed().as_secs_f64());

    // 2. The topics, from where the lake ends.
    let mut tpl = TopicPartitionList::new();
    let mut target: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut chain_of: HashMap<String, &'static str> = HashMap::new();
    for (chain, topic) in &topics {
        chain_of.insert(topic.clone(), chain);
        for p in &parts[topic] {
            let (low, high) =
                tributary_engine::kafka::watermarks_patiently(&c, topic, *p, Duration::from_secs(120), &|| {
                    shutdown.is_cancelled()
                })
                .with_context(|| format!("watermarks of {topic}[{p}]"))?;
            let from = loaded.offsets.get(topic).and_then(|o| o.get(p)).copied();
            // The lake's version is the offset after its last record; the transaction's commit
            // marker sits there, so a topic emptied by retention starts one past it without
            // any record missing. More than that is records the lake never received.
            let start = match from {
                Some(o) if low > o + 1 => {
                    tracing::error!(topic, partition = p, lake_ends = o, topic_starts = low,
                        "The topic expired records the lake never received: offsets {o}..{low} are missing from the view");
                    app.metrics.gap_records.inc_by((low - o) as u64);
                    low
                }
                Some(o) => o.max(low),
                None => {
                    if low > 0 {
                        tracing::warn!(topic, partition = p, first = low,
                            "The lake holds nothing of this partition and the topic starts at {low}: earlier records were never written to the lake");
                    }
                    low
                }
            };
            tpl.add_partition_offset(topic, *p, Offset::Offset(start))?;
            if high > start {
                target.insert((topic.clone(), *p), high);
            }
        }
    }
    c.assign(&tpl).context("assigning the clean topics")?;
    tracing::info!(
        partitions = tpl.count(),
        behind = target.len(),
        "Following the clean topics"
    );

    let mut schemas = Schemas {
        url: app.settings.schema_registry_url.clone(),
        by_id: HashMap::new(),
    };
    let mut ready = false;
    let mut pending: Vec<event::Event> = Vec::with_capacity(1024);
    let mut counts = [0u64; CHAINS.len()];
    let mut last_lag = Instant::now() - Duration::from_secs(10);
    while !shutdown.is_cancelled() {
        app.health.beat();
        // Drain what is there (bounded), then fold it in under one write lock.
        let mut wait = Duration::from_millis(100);
        while pending.len() < 4096 {
            match c.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Kafka: consume error; retrying");
                    break;
                }
                Some(Ok(m)) => {
                    wait = Duration::ZERO;
                    let chain = chain_of.get(m.topic()).copied().context("record of an unknown topic")?;
                    let payload = m.payload().with_context(|| {
                        format!(
                            "{}[{}]@{}: a record without a value",
                            m.topic(),
                            m.partition(),
                            m.offset()
                        )
                    })?;
                    let (id, _) = tributary_engine::avro::split_wire(payload).with_context(|| {
                        format!(
                            "{}[{}]@{}: not in the Confluent wire format",
                            m.topic(),
                            m.partition(),
                            m.offset()
                        )
                    })?;
                    let schema = schemas.get(rt, id, &shutdown)?;
                    let e = event::from_avro(chain, schema, payload)
                        .with_context(|| format!("{}[{}]@{}", m.topic(), m.partition(), m.offset()))?;
                    if let Some(i) = CHAINS.iter().position(|c| *c == chain) {
                        counts[i] += 1;
                    }
                    if keep(&e.tenant) {
                        pending.push(e);
                    }
                }
            }
        }
        if !pending.is_empty() {
            let mut view = app.view.write().expect("view lock");
            for e in pending.drain(..) {
                view.apply(e);
            }
            app.metrics.addresses.set(view.keys() as i64);
        }
        for (i, n) in counts.iter_mut().enumerate() {
            if *n > 0 {
                app.metrics.applied.with_label_values(&[CHAINS[i]]).inc_by(*n);
                *n = 0;
            }
        }
        if !ready {
            let pos = c.position()?;
            target.retain(|(t, p), high| {
                let at = pos
                    .find_partition(t, *p)
                    .and_then(|e| e.offset().to_raw())
                    .unwrap_or(-1);
                at < *high
            });
            if target.is_empty() {
                ready = true;
                app.health.set_ready(true);
                let keys = app.view.read().expect("view lock").keys();
                app.metrics.addresses.set(keys as i64);
                tracing::info!(
                    addresses = keys,
                    seconds = started.elapsed().as_secs_f64(),
                    "Caught up: ready"
                );
            }
        }
        if last_lag.elapsed() > Duration::from_secs(5) {
            last_lag = Instant::now();
            report_lag(&c, &app.metrics, &parts);
        }
    }
    Ok(())
}

fn report_lag(c: &BaseConsumer, m: &Metrics, parts: &BTreeMap<String, Vec<i32>>) {
    let Ok(pos) = c.position() else { return };
    for (topic, ps) in parts {
        let mut lag = 0i64;
        for p in ps {
            let Ok((_, high)) = c.fetch_watermarks(topic, *p, Duration::from_secs(2)) else {
                continue;
            };
            let at = pos
                .find_partition(topic, *p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(high);
            lag += (high - at).max(0);
        }
        m.lag.with_label_values(&[topic]).set(lag);
    }
}
