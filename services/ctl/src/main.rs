//! `tributary`: the command line of Tributary.

use clap::{Parser, Subcommand};
use tributary_ctl::loadgen;
use tributary_engine::topics;

#[derive(Parser)]
#[command(name = "tributary", version, about = "Tributary: the ingestion layer's command line")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    kafka_bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates every topic of the contracts that does not exist yet (raw, clean, dlq, audit,
    /// changelog per chain, and dlq.sink).
    Topics {
        /// Partitions of each new topic; a chain's changelog gets as many as its raw topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Only these chains (default: all five).
        #[arg(long, value_delimiter = ',')]
        chains: Vec<String>,
        /// Topic namespace: `<ns>.raw.users` and so on.
        #[arg(long, env = "TOPIC_NAMESPACE", default_value = "")]
        namespace: String,
    },
    /// Sends realistic synthetic raw events to raw.<chain>.
    Loadgen {
        /// The chain whose raw topic receives the events.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
        chain: String,
        /// How many records.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Share of exact duplicates of earlier records.
        #[arg(long, default_value_t = 0.1)]
        duplicates: f64,
        /// Share of invalid records.
        #[arg(long, default_value_t = 0.02)]
        invalid: f64,
        /// Seed: the same seed sends the same records.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Tenants to spread the events over.
        #[arg(long, value_delimiter = ',', default_value = "acme,globex,initech")]
        tenants: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tributary_engine::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Topics {
            partitions,
            chains,
            namespace,
        } => {
            let chains: Vec<String> = if chains.is_empty() {
                topics::CHAINS.iter().map(|c| (*c).to_owned()).collect()
            } else {
                chains
            };
            let mut all: Vec<(String, bool)> = chains.iter().flat_map(|c| topics::chain_topics(c)).collect();
            all.push(("dlq.sink".to_owned(), false));
            let all: Vec<(String, bool)> = all
                .into_iter()
                .map(|(t, c)| (topics::namespaced(&namespace, &t), c))
                .collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let created = rt.block_on(topics::create(
                &cli.kafka_bootstrap,
                &Default::default(),
                &all,
                partitions,
            ))?;
            println!(
                "{} topics checked, {} created{}",
                all.len(),
                created.len(),
                if created.is_empty() {
                    String::new()
                } else {
                    format!(": {}", created.join(", "))
                }
            );
        }
        Command::Loadgen {
            chain,
            count,
            duplicates,
            invalid,
            seed,
            tenants,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&duplicates) && (0.0..=1.0).contains(&invalid) && duplicates + invalid <= 1.0,
                "--duplicates and --invalid are shares between 0 and 1 that add up to at most 1"
            );
            let spec = loadgen::Spec {
                chain: chain.clone(),
                count,
                duplicate_share: duplicates,
                invalid_share: invalid,
                seed,
                tenants,
                spread_secs: 3600,
            };
            let started = std::time::Instant::now();
            let topic = format!("raw.{chain}");
            let s = loadgen::send(&cli.kafka_bootstrap, &topic, spec, |n| {
                eprint!(
                    "\rloadgen raw.{chain}: {n}/{count} ({:.0}%)",
                    n as f64 * 100.0 / count.max(1) as f64
                );
            })?;
            eprintln!();
            println!(
                "sent {} records to raw.{chain} in {:.1}s: {} valid, {} duplicates, {} invalid",
                s.sent,
                started.elapsed().as_secs_f64(),
                s.valid,
                s.duplicates,
                s.invalid
            );
        }
    }
    Ok(())
}
