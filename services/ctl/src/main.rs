//! `tributary`: the command line of Tributary.
//!
//! Its global settings (Kafka, the `[kafka]` passthrough, the registry, the topic namespace,
//! the lake, the Pushgateway, the topic retention) are loaded as every binary's are
//! (`settings::Global`, `tributary_engine::settings`): defaults, `--config FILE` or
//! `TRIBUTARY_CONFIG`, the environment, the flags; `--print-config` prints them.

mod settings;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches, Subcommand};
use settings::Global;
use std::process::ExitCode;
use tributary_ctl::job_metrics::JobRun;
use tributary_ctl::lake_ops::{self, human_bytes, parse_size};
use tributary_ctl::{loadgen, reconcile};
use tributary_engine::topics;

/// The whole command line: the global settings ([`Global`]) and the subcommands.
fn cli(c: clap::Command) -> clap::Command {
    // `--config` and `--print-config`, which the loader adds, are no global options.
    Command::augment_subcommands(c)
        .subcommand_required(false)
        .arg_required_else_help(true)
        .next_help_heading(None::<&str>)
}

/// The command line as `--help` shows it and usage errors name it.
fn full_command() -> clap::Command {
    tributary_engine::settings::command::<Global>(cli)
}

#[derive(Subcommand)]
enum Command {
    /// Lists the chains of the registry (schemas/chains.txt): one name a line, or with
    /// `--json` every chain's descriptor (port, window, schema, topics, table); with
    /// `--write-deploy` writes the deployment files derived from it (k8s, alerts).
    Chains(tributary_ctl::chains::ChainsArgs),
    /// Creates every topic of the contracts that does not exist yet (raw, clean, dlq, audit,
    /// changelog per chain, and dlq.sink). Raw and clean topics hold personal data the lake
    /// keeps after them: they get a finite retention, `TOPIC_RETENTION` (default 7d).
    Topics {
        /// Partitions of each new topic; a chain's changelog gets as many as its raw topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Only these chains (default: all five).
        #[arg(long, value_delimiter = ',')]
        chains: Vec<String>,
        /// Topic namespace: `<ns>.raw.users` and so on [default: the global --topic-namespace,
        /// TOPIC_NAMESPACE].
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Sends realistic synthetic raw events to raw.<chain>, in every source format the chain
    /// reads (json, csv, the ESP webhooks) or one of them, with exact duplicates and invalid
    /// records; prints what was sent and the exact clean set to expect.
    Loadgen(loadgen::Args),
    /// Bin-packs the small files of closed partitions (tenant_id, event_date) into files near
    /// the target size, rows sorted by email_sha256 then event_time; one atomic commit per
    /// partition, safe while the sink writes, idempotent.
    Compact {
        /// The lake root (`hdfs://host:port/path`, a local directory).
        /// [required; default: the global --lake-uri, LAKE_URI]
        #[arg(long)]
        lake: Option<String>,
        /// Only these chains (repeat or comma-separate; default: all five).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
        chain: Vec<String>,
        /// Print what would be done, change nothing.
        #[arg(long)]
        plan: bool,
        /// Size the output files aim at; smaller files are candidates.
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        target_size: u64,
        /// Compact a partition once it holds at least this many small files.
        #[arg(long, default_value_t = 4)]
        min_files: usize,
        /// A day is closed once at least this many days before today (UTC); 0 includes today.
        #[arg(long, default_value_t = 1)]
        closed_before_days: u32,
        /// Also print one JSON line with the plan and metrics.
        #[arg(long)]
        json: bool,
    },
    /// Deletes data files no table version references and older than the retention.
    Vacuum {
        /// The lake root.
        /// [required; default: the global --lake-uri, LAKE_URI]
        #[arg(long)]
        lake: Option<String>,
        /// Keep files removed (or never referenced) less than this long ago.
        #[arg(long, default_value = "168h", value_parser = humantime::parse_duration)]
        retention: std::time::Duration,
        /// Only these chains (default: all five).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
        chain: Vec<String>,
        /// List what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Checks that every raw offset is accounted for exactly once by the audit records, that
    /// received = clean + dlq + duplicate, and that the clean topic and the tables agree per
    /// tenant and day; writes a JSON report and Prometheus metrics; exits 1 on any
    /// discrepancy, naming it.
    Reconcile(ReconcileArgs),
    /// Erases every row holding an address from a tenant's tables, leaves a pseudonymous
    /// suppression record (blocklists, reason ERASED), records the request in the erasure
    /// ledger and verifies no live file still holds the address.
    Erase {
        /// The lake root.
        /// [required; default: the global --lake-uri, LAKE_URI]
        #[arg(long)]
        lake: Option<String>,
        #[arg(long)]
        tenant: String,
        /// The address to erase.
        #[arg(long, required_unless_present = "emails_file", conflicts_with = "emails_file")]
        email: Option<String>,
        /// A file of addresses, one a line.
        #[arg(long)]
        emails_file: Option<std::path::PathBuf>,
        /// The erasure ledger (default `<lake>/_erasure_ledger`): one JSON-lines file per request.
        #[arg(long)]
        ledger: Option<String>,
        /// Only these chains' tables (default: all five).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
        chains: Vec<String>,
        /// Topic namespace of raw.blocklists [default: the global --topic-namespace,
        /// TOPIC_NAMESPACE].
        #[arg(long)]
        namespace: Option<String>,
        /// Keep the files the tables removed (readable by time travel until vacuumed);
        /// by default the tenant's removed files are deleted from storage at once.
        #[arg(long)]
        keep_history: bool,
        /// How long to wait, before changing anything, for the sink to write into the tables
        /// what the clean topics hold when the erasure begins (rows still on their way would
        /// bring the address back); past it the erasure fails and changes nothing. 0: no wait.
        #[arg(long, env = "TRIBUTARY_ERASE_SINK_WAIT", default_value = "5m", value_parser = humantime::parse_duration)]
        sink_wait: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// The members of one list of one tenant, net of every suppression (DESIGN "The read
    /// side"), from the lake alone: to a CSV or Parquet file, or materialized into the lake's
    /// `audiences` table (partitioned by tenant and list, the list's members replaced atomically).
    Audience(AudienceArgs),
    /// Grants between companies over the compacted topic `grants`: create (prints the grant
    /// as JSON, with the grantee's Delta Sharing profile for an analytics grant), list, revoke.
    Grant {
        #[command(subcommand)]
        command: GrantCommand,
        /// Topic namespace: `<ns>.grants` [default: the global --topic-namespace,
        /// TOPIC_NAMESPACE].
        #[arg(long, global = true)]
        namespace: Option<String>,
    },
    /// Analytics grants' shared tables (Delta Sharing): `refresh` brings them up to date with
    /// the lake once (the DAG `tributary_sharing` runs it; `serve` does the same on a timer
    /// unless SHARING_REFRESH=off).
    Share {
        #[command(subcommand)]
        command: ShareCommand,
    },
    /// Dead letters of a chain: `list` them (one JSON line each), `replay` them to raw.<chain>
    /// once their cause is fixed, each exactly once (ledger topic `dlq.replayed`).
    Dlq {
        #[command(subcommand)]
        command: tributary_ctl::dlq::DlqCommand,
    },
    /// What the lake holds: per chain table its version, live files, rows, bytes, tenants and
    /// days, from the Delta log; `--show N` prints the first N rows of each table too.
    Tables {
        /// The lake root (`hdfs://host:port/path`, a local directory).
        /// [required; default: the global --lake-uri, LAKE_URI]
        #[arg(long)]
        lake: Option<String>,
        /// Only these chains' tables (default: all five).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
        chains: Vec<String>,
        /// Also print the first N rows of each table.
        #[arg(long, default_value_t = 0)]
        show: usize,
        /// Print the figures as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let loaded = tributary_engine::settings::load::<Global>(cli);
    let (print, matches) = (loaded.print, loaded.matches.clone());
    let resolved = Global::resolve(loaded);
    if print {
        return tributary_engine::settings::print_config(
            settings::NAME,
            resolved.map(|g| tributary_engine::settings::to_toml(&g)),
        );
    }
    if matches.subcommand().is_none() {
        full_command()
            .error(
                ErrorKind::MissingSubcommand,
                "'tributary' requires a subcommand but one was not provided (see --help)",
            )
            .exit();
    }
    let global = match resolved {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}: invalid configuration: {e}", settings::NAME);
            return ExitCode::from(2);
        }
    };
    // Before any thread: the library's Kafka clients read the passthrough from here.
    global.publish();
    tributary_engine::init_tracing();
    let command = Command::from_arg_matches(&matches)
        .map(|c| c.with_global(&global, &matches))
        .unwrap_or_else(|e| e.format(&mut full_command()).exit());
    match run(global, command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tributary: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The innermost subcommand's matches.
fn innermost(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => innermost(sub),
        None => matches,
    }
}

/// Whether the innermost subcommand's own `id` was given on the command line (not only its
/// default or its variable, which the global settings already hold, layered with the file).
fn given(matches: &ArgMatches, id: &str) -> bool {
    innermost(matches).value_source(id) == Some(ValueSource::CommandLine)
}

/// A subcommand's lake: its `--lake`, else the global lake; a usage error when neither is set.
fn required_lake(global: &Global, own: Option<String>) -> String {
    global.lake(own).unwrap_or_else(|| {
        full_command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  --lake <LAKE> \
                 (or the global --lake-uri, LAKE_URI, the file's lake_uri)",
            )
            .exit()
    })
}

impl Command {
    /// The subcommands the library declares read `--namespace` (and `TOPIC_NAMESPACE`) on
    /// their own: unless given on the command line, the global namespace (which also holds
    /// the file's and a global flag's) is theirs.
    fn with_global(mut self, global: &Global, matches: &ArgMatches) -> Command {
        // Asked only of the subcommands that have the flag (clap's debug builds insist).
        let ns = |n: &mut String| {
            if !given(matches, "namespace") {
                n.clone_from(&global.topic_namespace);
            }
        };
        match &mut self {
            Command::Loadgen(args) => ns(&mut args.namespace),
            Command::Dlq {
                command: tributary_ctl::dlq::DlqCommand::List(a),
            } => ns(&mut a.filter.namespace),
            Command::Dlq {
                command: tributary_ctl::dlq::DlqCommand::Replay(a),
            } => ns(&mut a.filter.namespace),
            _ => {}
        }
        self
    }
}

fn run(global: Global, command: Command) -> anyhow::Result<ExitCode> {
    let bootstrap = global.kafka_bootstrap.clone();
    let pushgateway = global.pushgateway.clone();
    match command {
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
            let namespace = global.namespace(namespace);
            let mut all: Vec<(String, bool)> = chains.iter().flat_map(|c| topics::chain_topics(c)).collect();
            all.push(("dlq.sink".to_owned(), false));
            let all: Vec<(String, bool)> = all
                .into_iter()
                .map(|(t, c)| (topics::namespaced(&namespace, &t), c))
                .collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let created = rt.block_on(topics::create(&bootstrap, global.kafka_props(), &all, partitions))?;
            // The compacted one-partition topics: grants, and the ledger of replayed dead letters.
            rt.block_on(tributary_ctl::grants::ensure_topic(&bootstrap, &namespace))?;
            rt.block_on(tributary_ctl::dlq::ensure_ledger(&bootstrap, &namespace))?;
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
        Command::Loadgen(args) => {
            let spec = args
                .spec()
                .unwrap_or_else(|msg| full_command().error(ErrorKind::InvalidValue, msg).exit());
            loadgen::run_cli(&bootstrap, &args, spec)?;
        }
        Command::Compact {
            lake,
            chain,
            plan,
            target_size,
            min_files,
            closed_before_days,
            json,
        } => {
            let lake = required_lake(&global, lake);
            let opts = tributary_lake::compact::CompactOptions {
                target_size,
                min_files,
                closed_before_days,
                today: None,
            };
            let mut run = JobRun::start("compact");
            let result = lake_ops::compact(&lake, &chain, &opts, plan);
            // A plan changes nothing: it is no run of the job.
            if !plan {
                run.compaction(&chain, &result);
                run.push(pushgateway.as_deref());
            }
            print_compaction(&result?, plan, json);
        }
        Command::Vacuum {
            lake,
            retention,
            chain,
            dry_run,
            json,
        } => {
            let lake = required_lake(&global, lake);
            let mut run = JobRun::start("vacuum");
            let result = lake_ops::vacuum(&lake, &chain, retention, dry_run);
            if !dry_run {
                run.vacuum(&chain, &result);
                run.push(pushgateway.as_deref());
            }
            let out = result?;
            for m in &out {
                println!(
                    "{}: {} files {}deleted (retention {})",
                    m.chain,
                    m.files_deleted,
                    if dry_run { "would be " } else { "" },
                    humantime::format_duration(retention)
                );
            }
            if json {
                println!("{}", serde_json::json!({"vacuum": out}));
            }
        }
        Command::Reconcile(args) => return reconcile_cmd(&global, args),
        Command::Audience(mut args) => {
            let lake = global.lake_or_local(args.lake.take());
            audience_cmd(args, &lake)?
        }
        Command::Grant { command, namespace } => grant_cmd(&bootstrap, &global.namespace(namespace), command)?,
        Command::Share {
            command: ShareCommand::Refresh { lake, namespace, json },
        } => tributary_ctl::share::refresh(
            &bootstrap,
            &global.namespace(namespace),
            &global.lake_or_local(lake),
            json,
        )?,
        Command::Chains(args) => print!("{}", tributary_ctl::chains::render(&args)),
        Command::Dlq { command } => tributary_ctl::dlq::run_cli(&bootstrap, command)?,
        Command::Tables {
            lake,
            chains,
            show,
            json,
        } => {
            let lake = required_lake(&global, lake);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let (stats, text) = rt.block_on(tributary_ctl::tables::report(&lake, &chains, show))?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                print!("{text}");
            }
        }
        Command::Erase {
            lake,
            tenant,
            email,
            emails_file,
            ledger,
            chains,
            namespace,
            keep_history,
            sink_wait,
            json,
        } => {
            let lake = required_lake(&global, lake);
            let namespace = global.namespace(namespace);
            let mut addresses: Vec<String> = email.into_iter().collect();
            if let Some(f) = emails_file {
                let text = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                addresses.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
            }
            let mut run = JobRun::start("erase");
            let result = lake_ops::erase(&lake_ops::EraseRequest {
                lake,
                tenant: tenant.clone(),
                addresses,
                bootstrap,
                namespace,
                ledger,
                chains: chains.clone(),
                keep_history,
                sink_wait,
            });
            run.erasure(&chains, &result);
            run.push(pushgateway.as_deref());
            let out = result?;
            println!("erasure {} for tenant {tenant}:", out.request_id);
            for t in &out.tables {
                println!(
                    "  {}: {} rows removed from {} of {} files ({} rows kept in the rewritten files)",
                    t.chain, t.rows_removed, t.files_rewritten, t.files_scanned, t.rows_kept
                );
            }
            println!(
                "  {} suppression record(s) (blocklists, reason ERASED, hash only) sent; ledger entry {}",
                out.suppressions_sent, out.ledger_entry
            );
            println!("  shares: the next share refresh rebuilds the grantees' shared files without the address");
            if keep_history {
                println!("  --keep-history: files the tables removed stay readable by time travel until vacuumed");
            } else {
                println!(
                    "  {} removed file(s) of tenant {tenant} deleted from storage: no time travel reads the address",
                    out.removed_files_deleted
                );
            }
            println!("  note: the address stays in raw/clean Kafka topics until their retention expires");
            if json {
                println!(
                    "{}",
                    serde_json::json!({"request_id": out.request_id, "tables": out.tables, "remaining": out.remaining, "removed_files_deleted": out.removed_files_deleted, "ledger": out.ledger_entry, "seconds": out.seconds})
                );
            }
            if !out.remaining.is_empty() {
                eprintln!("tributary erase: verification failed, live files still hold the address:");
                for r in &out.remaining {
                    eprintln!("  {r}");
                }
                return Ok(ExitCode::FAILURE);
            }
            println!("  verified: no live file of tenant {tenant} holds the address");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_compaction(out: &[lake_ops::ChainCompaction], plan_only: bool, json: bool) {
    for c in out {
        let Some(p) = &c.plan else { continue };
        if plan_only {
            println!(
                "{}: would rewrite {} files ({}) in {} partitions; table has {} files ({})",
                p.chain,
                p.files_to_rewrite,
                human_bytes(p.bytes_to_rewrite),
                p.partitions.len(),
                p.files_before,
                human_bytes(p.bytes_before)
            );
            for part in &p.partitions {
                let files: usize = part.bins.iter().map(|b| b.files.len()).sum();
                let bytes: u64 = part.bins.iter().map(|b| b.bytes).sum();
                println!(
                    "  tenant_id={} event_date={}: {files} files ({}) into {} bin(s)",
                    part.tenant_id,
                    part.event_date,
                    human_bytes(bytes),
                    part.bins.len()
                );
            }
        }
        if let Some(m) = &c.metrics {
            println!(
                "{}: {} partitions compacted ({} skipped): {} files ({}) -> {} files ({}); table {} files ({}) -> {} files ({}) in {:.1}s",
                m.chain,
                m.partitions_compacted,
                m.partitions_skipped,
                m.files_removed,
                human_bytes(m.bytes_removed),
                m.files_added,
                human_bytes(m.bytes_added),
                m.files_before,
                human_bytes(m.bytes_before),
                m.files_after,
                human_bytes(m.bytes_after),
                m.seconds
            );
        }
    }
    if json {
        let chains: Vec<serde_json::Value> = out
            .iter()
            .filter_map(|c| {
                c.plan
                    .as_ref()
                    .map(|p| serde_json::json!({"chain": p.chain, "plan": p, "metrics": c.metrics}))
            })
            .collect();
        println!("{}", serde_json::json!({"plan_only": plan_only, "chains": chains}));
    }
}

/// The arguments of `tributary reconcile`.
#[derive(clap::Args, Debug)]
struct ReconcileArgs {
    /// The lake root.
    /// [required; default: the global --lake-uri, LAKE_URI]
    #[arg(long)]
    lake: Option<String>,
    /// Where the JSON report goes.
    #[arg(long)]
    report: std::path::PathBuf,
    /// Prometheus text-format metrics (tributary_reconcile_*), for the textfile collector.
    #[arg(long)]
    metrics_file: Option<std::path::PathBuf>,
    /// Only these chains (default: all five).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(topics::CHAINS))]
    chains: Vec<String>,
    /// Topic namespace: `<ns>.raw.users` and so on (and consumer group `<ns>.tributary-<chain>`)
    /// [default: the global --topic-namespace, TOPIC_NAMESPACE].
    #[arg(long)]
    namespace: Option<String>,
    /// How long reading one topic to its end may take.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    read_timeout: std::time::Duration,
}

/// `tributary reconcile`'s exit code when nothing found a discrepancy but some chains could
/// not be checked (1 is a discrepancy: a result).
const EXIT_NOT_CHECKED: u8 = 3;

fn reconcile_cmd(global: &Global, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let lake = required_lake(global, args.lake);
    let chains = if args.chains.is_empty() {
        topics::CHAINS.iter().map(|c| (*c).to_owned()).collect()
    } else {
        args.chains
    };
    let mut run = JobRun::start("reconcile");
    let result = reconcile::run(&reconcile::Settings {
        bootstrap: global.kafka_bootstrap.clone(),
        registry: global.schema_registry_url.clone(),
        namespace: global.namespace(args.namespace),
        lake,
        chains: chains.clone(),
        read_timeout: args.read_timeout,
    });
    run.reconciliation(&chains, &result);
    run.push(global.pushgateway.as_deref());
    let (report, metrics_file) = (args.report, args.metrics_file);
    let out = result?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    std::fs::write(&report, serde_json::to_vec_pretty(&out.json())?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", report.display()))?;
    let ok = out.discrepancies() == 0;
    if let Some(path) = metrics_file {
        let previous = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| tributary_lake::reconcile::previous_success(&t));
        let text = tributary_lake::reconcile::prometheus(
            &out.reports,
            &out.errors,
            if ok { Some(now) } else { previous },
            now,
        );
        // Written whole then renamed, so a scraper never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    for r in &out.reports {
        let lag: u64 = r.clean.lag_records.values().sum();
        println!(
            "{}: {} audit records, received {} = clean {} + dlq {} + duplicate {}; {} rows compared; sink lag {lag} records; {} discrepancies",
            r.chain,
            r.audit_records,
            r.totals.get("received").unwrap_or(&0),
            r.totals.get("clean").unwrap_or(&0),
            r.totals.get("dlq").unwrap_or(&0),
            r.totals.get("duplicate").unwrap_or(&0),
            r.rows_compared,
            r.discrepancies.len()
        );
    }
    if ok {
        println!("reconciliation passed; report {}", report.display());
        return Ok(ExitCode::SUCCESS);
    }
    if out.reports.iter().all(|r| r.discrepancies.is_empty()) {
        // Only errors: Kafka, the registry or the lake could not be read (an outage, refused
        // credentials). An error to retry, not a result about the data.
        eprintln!(
            "tributary reconcile: {} chain(s) could not be checked (report {}), an error, not a discrepancy:",
            out.errors.len(),
            report.display()
        );
        for (c, e) in &out.errors {
            eprintln!("  {c}: {e}");
        }
        return Ok(ExitCode::from(EXIT_NOT_CHECKED));
    }
    eprintln!(
        "tributary reconcile: {} discrepancies (report {}):",
        out.discrepancies(),
        report.display()
    );
    for r in &out.reports {
        for d in &r.discrepancies {
            eprintln!("  {}: [{}] {}", r.chain, d.kind, d.message);
        }
    }
    for (c, e) in &out.errors {
        eprintln!("  {c}: [error] {e}");
    }
    Ok(ExitCode::FAILURE)
}

#[derive(clap::Args)]
struct AudienceArgs {
    #[arg(long)]
    tenant: String,
    /// The list id.
    #[arg(long)]
    list: String,
    /// Where to write: `FILE.csv` or `FILE.parquet` (by extension).
    #[arg(long, required_unless_present = "materialize")]
    out: Option<std::path::PathBuf>,
    /// The instant deciding which blocks have expired: RFC 3339 or Unix seconds (default now).
    #[arg(long)]
    as_of: Option<String>,
    /// The lake root (`hdfs://host:port/path`, a local directory) [default: the global
    /// --lake-uri, LAKE_URI, else .lake].
    #[arg(long)]
    lake: Option<String>,
    /// Also replace the list's members in the lake's `audiences` table.
    #[arg(long)]
    materialize: bool,
    /// Print one JSON line with what was done.
    #[arg(long)]
    json: bool,
}

fn audience_cmd(a: AudienceArgs, lake_uri: &str) -> anyhow::Result<()> {
    use tributary_view::export;
    let started = std::time::Instant::now();
    tributary_engine::normalize::tenant_id(&a.tenant).map_err(|e| anyhow::anyhow!("--tenant: {}", e.reason))?;
    let as_of = match &a.as_of {
        Some(s) => tributary_view::parse_time(s).map_err(|e| anyhow::anyhow!("--as-of {e}"))?,
        None => tributary_engine::normalize::now_micros(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lake = tributary_lake::Lake::new(lake_uri)?;
    let (view, loaded) = rt.block_on(export::tenant_view(&lake, &a.tenant))?;
    let rows = export::members(&view, &a.list, as_of);
    if let Some(out) = &a.out {
        let file = std::fs::File::create(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        match out.extension().and_then(|e| e.to_str()) {
            Some("parquet") => export::write_parquet(&rows, file)?,
            Some("csv") => export::write_csv(&rows, std::io::BufWriter::new(file))?,
            _ => anyhow::bail!("--out {}: name a .csv or .parquet file", out.display()),
        }
    }
    let version = if a.materialize {
        Some(rt.block_on(export::materialize(&lake, &a.tenant, &a.list, as_of, &rows))?)
    } else {
        None
    };
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"tenant": a.tenant, "list": a.list, "members": rows.len(),
                "as_of": tributary_view::fmt_time(as_of), "out": a.out,
                "table": a.materialize.then(|| format!("{}/{}", lake_uri.trim_end_matches('/'), export::AUDIENCES_TABLE)),
                "version": version, "files_read": loaded.files, "events_read": loaded.events, "seconds": secs})
        );
    } else {
        eprintln!(
            "audience {}/{}: {} members as of {} ({} events from {} files in {secs:.2} s)",
            a.tenant,
            a.list,
            rows.len(),
            tributary_view::fmt_time(as_of),
            loaded.events,
            loaded.files
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum GrantCommand {
    /// Grants `--to` use of some of `--from`'s data; prints the grant as one JSON object.
    Create {
        /// The grantor tenant.
        #[arg(long)]
        from: String,
        /// The grantee tenant.
        #[arg(long)]
        to: String,
        /// The granted chains.
        #[arg(long, value_delimiter = ',', required = true)]
        chains: Vec<String>,
        /// The granted columns; each must be in at least one granted chain.
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        /// enrichment (profile lookups by overlap) or analytics (Delta Sharing).
        #[arg(long, value_parser = ["enrichment", "analytics"])]
        purpose: String,
        /// Expiry: YYYY-MM-DD (the end of that day, UTC) or RFC 3339.
        #[arg(long)]
        expires: String,
        /// The tenants that exist [required, except in local mode (TRIBUTARY_LOCAL=1):
        /// acme,globex,initech].
        #[arg(long, env = "TENANTS", value_delimiter = ',')]
        tenants: Option<Vec<String>>,
        /// The Delta Sharing endpoint grantees are given.
        #[arg(
            long,
            env = "SHARING_ENDPOINT",
            default_value = "http://localhost:8090/delta-sharing"
        )]
        sharing_endpoint: String,
    },
    /// Prints every live grant, one JSON object a line (no key material).
    List,
    /// Ends a grant: a tombstone on `grants`; its key leaves the log at the next compaction.
    Revoke {
        /// The grant id.
        id: String,
    },
}

fn grant_cmd(bootstrap: &str, namespace: &str, command: GrantCommand) -> anyhow::Result<()> {
    use tributary_ctl::grants;
    use tributary_view::grants as g;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(grants::ensure_topic(bootstrap, namespace))?;
    match command {
        GrantCommand::Create {
            from,
            to,
            chains,
            columns,
            purpose,
            expires,
            tenants,
            sharing_endpoint,
        } => {
            let local = tributary_engine::config::local_mode(bootstrap);
            let kek = g::Kek::from_env(local).map_err(anyhow::Error::msg)?;
            let tenants = match tenants {
                Some(t) => t,
                None if local => tributary_engine::config::DEFAULT_TENANTS.map(str::to_owned).to_vec(),
                None => anyhow::bail!(tributary_engine::config::no_tenants_problem("set TENANTS or --tenants")),
            };
            let req = g::Request {
                grantor: from,
                grantee: to,
                chains,
                columns,
                purpose: if purpose == "analytics" {
                    g::Purpose::Analytics
                } else {
                    g::Purpose::Enrichment
                },
                expires,
            };
            let tenants: Vec<String> = tenants
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            let (grant, _key, token) = g::create(&req, &tenants, &kek, tributary_engine::normalize::now_micros())
                .map_err(|e| anyhow::anyhow!("grant create: {e}"))?;
            let value = serde_json::to_vec(&grant)?;
            rt.block_on(grants::write(bootstrap, namespace, &grant.grant_id, Some(&value)))?;
            let mut out = grant.public_json();
            if let Some(token) = token {
                out["profile"] = serde_json::json!({
                    "shareCredentialsVersion": 1,
                    "endpoint": sharing_endpoint.trim_end_matches('/'),
                    "bearerToken": token,
                    "expirationTime": grant.expires_at,
                });
            }
            println!("{out}");
        }
        GrantCommand::List => {
            for grant in grants::read_all(bootstrap, namespace)?.values() {
                println!("{}", grant.public_json());
            }
        }
        GrantCommand::Revoke { id } => {
            let all = grants::read_all(bootstrap, namespace)?;
            if !all.contains_key(&id) {
                anyhow::bail!("grant revoke: no live grant '{id}' (see `tributary grant list`)");
            }
            rt.block_on(grants::write(bootstrap, namespace, &id, None))?;
            println!("{}", serde_json::json!({"grant_id": id, "revoked": true}));
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ShareCommand {
    /// One refresh of every live analytics grant's shared tables; deletes those of revoked
    /// or expired grants.
    Refresh {
        /// The lake root (`hdfs://host:port/path`, a local directory) [default: the global
        /// --lake-uri, LAKE_URI, else .lake].
        #[arg(long)]
        lake: Option<String>,
        /// Topic namespace of `grants` [default: the global --topic-namespace, TOPIC_NAMESPACE].
        #[arg(long)]
        namespace: Option<String>,
        /// Print one JSON line with what was done.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> (Global, Command) {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut argv = vec![settings::NAME];
        argv.extend_from_slice(args);
        let loaded = tributary_engine::settings::load_from::<Global, _>(argv, &env, cli).unwrap();
        let matches = loaded.matches.clone();
        let global = Global::resolve(loaded).unwrap();
        let command = Command::from_arg_matches(&matches)
            .unwrap()
            .with_global(&global, &matches);
        (global, command)
    }

    #[test]
    fn the_command_line_holds_together() {
        full_command().debug_assert();
    }

    #[test]
    fn the_library_subcommands_take_the_global_namespace_unless_given_their_own() {
        let loadgen_ns = |c: Command| match c {
            Command::Loadgen(a) => a.namespace,
            _ => panic!("not loadgen"),
        };
        let (_, c) = parse(&["loadgen", "--chain", "users", "--topic-namespace", "g"], &[]);
        assert_eq!(loadgen_ns(c), "g");
        let (_, c) = parse(
            &[
                "--topic-namespace=g",
                "loadgen",
                "--chain",
                "users",
                "--namespace",
                "own",
            ],
            &[],
        );
        assert_eq!(loadgen_ns(c), "own");
        let (_, c) = parse(&["loadgen", "--chain", "users"], &[("TOPIC_NAMESPACE", "e")]);
        assert_eq!(loadgen_ns(c), "e");

        let dlq_ns = |c: Command| match c {
            Command::Dlq {
                command: tributary_ctl::dlq::DlqCommand::List(a),
            } => a.filter.namespace,
            Command::Dlq {
                command: tributary_ctl::dlq::DlqCommand::Replay(a),
            } => a.filter.namespace,
            _ => panic!("not dlq"),
        };
        let (_, c) = parse(&["dlq", "list", "--chain", "users"], &[("TOPIC_NAMESPACE", "e")]);
        assert_eq!(dlq_ns(c), "e");
        let (_, c) = parse(&["dlq", "replay", "--chain", "users", "--namespace", "own"], &[]);
        assert_eq!(dlq_ns(c), "own");
    }

    #[test]
    fn the_subcommands_own_lake_and_namespace_win_over_the_global_ones() {
        let (g, c) = parse(
            &["erase", "--tenant", "acme", "--email", "a@example.com"],
            &[("LAKE_URI", "/l"), ("TOPIC_NAMESPACE", "e")],
        );
        let Command::Erase { lake, namespace, .. } = c else {
            panic!("not erase")
        };
        assert_eq!((g.lake(lake), g.namespace(namespace)), (Some("/l".into()), "e".into()));
        let (g, c) = parse(
            &["grant", "--namespace", "own", "list", "--lake-uri", "/g"],
            &[("TOPIC_NAMESPACE", "e")],
        );
        let Command::Grant { namespace, .. } = c else {
            panic!("not grant")
        };
        assert_eq!(
            (g.namespace(namespace), g.lake_uri.as_deref()),
            ("own".into(), Some("/g"))
        );
        let (g, c) = parse(&["audience", "--tenant", "acme", "--list", "l", "--materialize"], &[]);
        let Command::Audience(a) = c else {
            panic!("not audience")
        };
        assert_eq!(g.lake_or_local(a.lake), settings::LOCAL_LAKE);
        let (g, c) = parse(
            &[
                "reconcile",
                "--report",
                "r.json",
                "--schema-registry-url",
                "http://r",
                "--pushgateway",
                "http://p",
            ],
            &[],
        );
        assert!(matches!(c, Command::Reconcile(_)));
        assert_eq!(
            (g.schema_registry_url.as_str(), g.pushgateway.as_deref()),
            ("http://r", Some("http://p"))
        );
    }
}
