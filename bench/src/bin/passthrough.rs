//! The baseline: a bare rdkafka transactional pass-through copy. Reads a topic
//! `read_committed` and copies every record to another topic, committing input offsets in
//! the same transaction every 100 ms, exactly like a chain service but doing no work per
//! record. Stops after `count` records and prints its own CPU seconds.
//!
//! Usage: passthrough BOOTSTRAP FROM TO COUNT

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: passthrough BOOTSTRAP FROM TO COUNT");
    let (bootstrap, from, to, count) = (&args[1], &args[2], &args[3], args[4].parse::<u64>()?);
    // The chain producer's defaults, and as there the `KAFKA_PROP_*` settings over them.
    let producer: ThreadedProducer<_> =
        tributary_engine::kafka::producer_config(bootstrap, &tributary_engine::kafka::env_props())
            .set("transactional.id", format!("passthrough-{from}"))
            .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("passthrough-{from}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[from])?;
    let started = Instant::now();
    let mut copied = 0u64;
    let mut open: Option<Instant> = None;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            if open.is_none() {
                producer.begin_transaction()?;
                open = Some(Instant::now());
            }
            let mut rec = BaseRecord::to(to).payload(m.payload().unwrap_or(&[]));
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            let mut rec = rec;
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            next.insert(m.partition(), m.offset() + 1);
            copied += 1;
        }
        let done = copied >= count;
        if open.is_some_and(|o| done || o.elapsed() >= Duration::from_millis(100)) {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &next {
                tpl.add_partition_offset(from, *p, Offset::Offset(*o))?;
            }
            let cgm = consumer
                .group_metadata()
                .ok_or_else(|| anyhow::anyhow!("no group metadata"))?;
            producer.send_offsets_to_transaction(&tpl, &cgm, Duration::from_secs(30))?;
            // As the chain commits: rdkafka's own commit_transaction waits out a 100 ms poll.
            tributary_engine::kafka::commit_transaction(&producer, Duration::from_secs(30))?;
            open = None;
        }
        if done {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = tributary_bench::cpu_seconds("self").unwrap_or(f64::NAN);
    let rss = tributary_bench::peak_rss_bytes("self").unwrap_or(0);
    println!("{{\"copied\":{copied},\"wall_seconds\":{wall},\"cpu_seconds\":{cpu},\"peak_rss_bytes\":{rss}}}");
    Ok(())
}
