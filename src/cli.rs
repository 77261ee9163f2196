//! Argument definitions and the command dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lineage_core::Inventory;
use lineage_ingest::connect::SourceChoice;
use lineage_pipeline::{Pipeline, Settings};
use lineage_replay::{replay, ReplayConfig};
use lineage_sinks::{render_alert, render_summary, JsonLinesSink};

/// Exit code when `--strict` is given and records were dead-lettered.
pub(crate) const EXIT_DEAD_LETTERS: u8 = 3;
/// Exit code when the demo's self-score misses its targets.
pub(crate) const EXIT_SCORE_MISSED: u8 = 2;

/// lineage: which agent used which credential, on whose behalf.
///
/// Reads AWS CloudTrail audit logs (Entra ID, GitHub and Vault follow), builds the
/// identity-lineage graph (credential → parent credential → agent → human owner),
/// attributes every credential use, and raises alerts for out-of-scope use.
///
/// Start with `lineage demo`: it simulates a small company, replays its logs and
/// scores itself. Exit codes: 0 ran (dead letters are written, not fatal); 1 could
/// not run (bad arguments, unreadable inventory, unwritable output); 2 the demo
/// missed its quality targets; 3 `--strict` was given and records were dead-lettered.
#[derive(Debug, Parser)]
#[command(name = "lineage", version, about, long_about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log debug details to stderr (or set LINEAGE_LOG=debug, info, …).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Query the lineage tables with SQL (DataFusion), or serve them to Postgres clients.
    ///
    /// Tables: events, credentials, identities, edges, alerts, actions, dead_letters
    /// (written by `lineage replay --out DIR` under DIR/tables). Without a query, an
    /// interactive shell reads queries from stdin. Exit 1 on a bad query.
    ///
    /// Example: lineage sql --tables out/tables "SELECT owner, count(*) FROM events GROUP BY owner"
    Sql(crate::sql_cmd::SqlArgs),
    /// Simulate a small enterprise, replay its logs, print alerts and score the result.
    ///
    /// Needs nothing but this binary: no Kafka, no cloud account. Exits 2 when the
    /// self-score misses its targets (attribution ≥ 99%, alert recall 100%, no false positives).
    Demo(DemoArgs),
    /// Replay archived audit logs (files, directories, globs; .json, .json.gz, JSON lines).
    ///
    /// Writes alerts.jsonl, dead_letters.jsonl and summary.json to --out. Every
    /// record read is either normalized or dead-lettered with its reason and original
    /// bytes: read = normalized + dead-lettered.
    ///
    /// Example: lineage replay 'logs/AWSLogs/**/*.json.gz' --inventory inventory.toml --out out/
    Replay(ReplayArgs),
    /// Write a simulated enterprise: inventory.toml, CloudTrail logs in the S3
    /// delivery layout (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz)
    /// and ground_truth.json. Deterministic for a seed.
    Simulate(SimulateArgs),
    /// Revoke every credential attributed to a departed owner and their agents.
    ///
    /// Replays the given logs to find what the owner and their agents used, prints
    /// each credential with its blast radius and last use, then sends a revocation
    /// request for each through the response policy and ledger (`[response]` in
    /// --config). Dry-run unless the config turns it off; --dry-run forces it.
    Revoke(RevokeArgs),
    /// Check a local copy of a CloudTrail trail against its digest files: every log
    /// file's SHA-256, the digest chain and (with --public-keys) the signatures.
    ///
    /// Reports tampered, missing and uncovered log files; exit 1 when anything does
    /// not verify. Example: lineage verify ./AWSLogs --public-keys keys.json
    Verify(crate::verify_cmd::VerifyArgs),
    /// Revocation requests in the ledger: list them, approve or reject queued ones.
    Actions {
        #[command(subcommand)]
        command: ActionsCommand,
        /// Settings file with the `[response]` table (ledger path, policy, executors).
        #[arg(long, short, global = true, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List the detectors and what each looks for.
    Detectors {
        /// Print the `[detectors]` settings with their defaults, as TOML for a --config file.
        #[arg(long)]
        defaults: bool,
    },
    /// Check an inventory file and print what it declares.
    Inventory {
        /// The inventory TOML file.
        file: PathBuf,
    },
    /// Run a live connector (S3+SQS, LookupEvents, Vault socket/file, GitHub, Entra)
    /// and write what it receives as raw JSON-lines files, one per batch, acking
    /// each batch (advancing the checkpoint) only after its file is durable.
    ///
    /// Example: lineage connect vault-file /var/log/bao/audit.log --checkpoint cp.json --out raw/
    Connect(crate::connect_cmd::ConnectArgs),
    /// Lineage pictures from the lineage tables.
    Graph {
        #[command(subcommand)]
        command: crate::graph_cmd::GraphCommand,
    },
    /// Send raw audit-log records to Kafka (`lineage.raw.<source>`, keyed by event id).
    ///
    /// Example: lineage ingest auto --from logs/ --to kafka --brokers 127.0.0.1:9092
    Ingest(crate::ingest_cmd::IngestArgs),
    /// Run the live pipeline: follow the `[[source]]`s of --config, attribute, detect,
    /// alert the `[alerts]` sinks and respond, until SIGTERM.
    ///
    /// On the embedded bus (the default) everything runs in this process; with
    /// `[bus] kind = "kafka"` every stage is a consumer group, so more processes
    /// share the partitions. See README "Running live".
    ///
    /// Example: lineage run --config lineage.toml
    Run(crate::run_cmd::RunArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Files, directories (walked for .json/.json.gz/.jsonl/.log) or quoted globs.
    #[arg(required = true, value_name = "PATH|DIR|GLOB")]
    inputs: Vec<String>,
    /// Inventory TOML: humans, agents, credential bindings, declared scopes. Without it
    /// nothing can be attributed to an agent.
    #[arg(long, short, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// Source format of the inputs; `auto` sniffs each file's field names.
    #[arg(long, value_enum, default_value_t = SourceChoice::Auto)]
    source: SourceChoice,
    /// Also write every attributed event to events.jsonl.
    #[arg(long)]
    events: bool,
    /// Parser threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Records larger than this many bytes are dead-lettered.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_record_bytes: usize,
    /// Exit 3 if any record was dead-lettered.
    #[arg(long)]
    strict: bool,
    /// Settings file (TOML): a `[detectors]` table tuning each detector
    /// (`lineage detectors --defaults` prints every setting with its default).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of Sigma rules (aws/cloudtrail, azure/signinlogs|auditlogs,
    /// github/audit) to evaluate on the raw records; rules that cannot be used are
    /// listed on stderr.
    #[arg(long, value_name = "DIR")]
    sigma_rules: Option<PathBuf>,
    /// Detector state file (JSON): restored before the run if it exists and written
    /// after it, so anomaly baselines carry over between replays.
    #[arg(long, value_name = "FILE")]
    detector_state: Option<PathBuf>,
    /// Send the detectors' revocation requests through the response policy and
    /// ledger (`[response]` in --config; dry-run unless the config turns it off).
    #[arg(long)]
    respond: bool,
    /// How many alerts to print (all are in alerts.jsonl).
    #[arg(long, default_value_t = 10)]
    show_alerts: usize,
    /// Print the alerts as JSON lines on stdout (for piping into a SOC queue) instead
    /// of the human-readable summary, which then goes to stderr.
    #[arg(long)]
    alerts_jsonl: bool,
    /// Do not write the Parquet lineage tables (by default under --out/tables, for
    /// `lineage sql`).
    #[arg(long)]
    no_tables: bool,
    #[command(flatten)]
    archive: crate::archive_args::ArchiveArgs,
}

#[derive(Debug, clap::Args)]
struct RevokeArgs {
    /// The owner: human id, e-mail or any alias.
    #[arg(long, value_name = "ID|EMAIL")]
    owner: String,
    /// Logs to replay to find the owner's credentials (files, directories, globs).
    #[arg(required = true, value_name = "PATH|DIR|GLOB")]
    inputs: Vec<String>,
    /// Inventory TOML.
    #[arg(long, short, value_name = "FILE")]
    inventory: PathBuf,
    /// Settings file with the `[response]` table.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Record what would be done; call nothing, whatever the config says.
    #[arg(long)]
    dry_run: bool,
    /// Where the replay writes its outputs (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ActionsCommand {
    /// Every request in the ledger with its latest status.
    List,
    /// Approve a queued request (by the id `list` shows); it then runs through the policy as `auto`.
    Approve {
        /// Id or idempotency key.
        id: String,
        /// Who approves (recorded in the ledger).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Reject a queued request; it is recorded and never executed.
    Reject {
        /// Id or idempotency key.
        id: String,
        /// Why (recorded in the ledger).
        #[arg(long, default_value = "rejected")]
        reason: String,
        /// Who rejects (recorded in the ledger).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Random seed: the same seed writes the same files.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Number of humans.
    #[arg(long, default_value_t = 8)]
    pub(crate) humans: usize,
    #[command(flatten)]
    pub(crate) size: EstateSize,
    /// Output directory.
    #[arg(long, short)]
    pub(crate) out: PathBuf,
    /// Replace `AWSLogs/`, `Entra/`, `GitHub/`, `Vault/` in the output directory even
    /// when an earlier `lineage simulate` did not write them (without it, such
    /// folders, which could be a real log mirror, are left alone and the command fails).
    #[arg(long)]
    pub(crate) force: bool,
    /// Add benign noise a naive detector alerts on: CI runners on a fresh
    /// hosted-runner address per job, serverless egress, pods over three subnets,
    /// office NAT, one developer's agent travelling for a day, and a deployment day
    /// of new (declared) writes. The ground truth expects no alert from any of it.
    #[arg(long)]
    pub(crate) noise: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Random seed for the simulated enterprise.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Keep the simulated logs and outputs in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub(crate) keep: Option<PathBuf>,
    /// How many alerts to print.
    #[arg(long, default_value_t = 5)]
    pub(crate) show_alerts: usize,
    /// Simulate with benign noise (see `lineage simulate --help`). The bar becomes:
    /// every seeded attack found, and at most one alert per 10,000 events (at least
    /// one) from benign activity.
    #[arg(long)]
    pub(crate) noise: bool,
    #[command(flatten)]
    pub(crate) size: EstateSize,
}

/// How big a simulated estate is (`lineage simulate` and `lineage demo`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct EstateSize {
    /// Number of agents (AI agents, MCP servers, CI runners, services).
    #[arg(long, default_value_t = 12)]
    pub(crate) agents: usize,
    /// Days of activity.
    #[arg(long, default_value_t = 3)]
    pub(crate) days: u32,
    /// Average API calls per agent per day (with `--agents 120 --days 10
    /// --calls-per-agent-day 800`, about a million events).
    #[arg(long, default_value_t = 200)]
    pub(crate) calls_per_agent_day: u32,
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args),
        Command::Replay(args) => run_replay(args),
        Command::Sql(args) => crate::sql_cmd::run(args),
        Command::Simulate(args) => crate::demo::simulate(&args).map(|_| ExitCode::SUCCESS),
        Command::Revoke(args) => run_revoke(args),
        Command::Actions { command, config } => run_actions(command, config.as_deref()),
        Command::Detectors { defaults } => {
            if defaults {
                let text = toml::to_string(&Settings::default()).context("printing defaults")?;
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            for (name, what) in lineage_detect::catalogue() {
                println!("{name:<22} {what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect(args) => crate::connect_cmd::run(args),
        Command::Verify(args) => crate::verify_cmd::run(args),
        Command::Graph { command } => crate::graph_cmd::run(command),
        Command::Ingest(args) => crate::ingest_cmd::run(args),
        Command::Run(args) => crate::run_cmd::run(args),
        Command::Inventory { file } => {
            let inv = load_inventory(&file)?;
            println!(
                "{}: {} humans, {} agents, {} bound credentials, {} declared scopes",
                file.display(),
                inv.humans().len(),
                inv.agents().len(),
                inv.agents()
                    .iter()
                    .map(|a| a.credentials.len())
                    .sum::<usize>(),
                inv.agents().iter().map(|a| a.scopes.len()).sum::<usize>()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn load_settings(path: &Path) -> Result<Settings> {
    Ok(Settings::load(path)?)
}

/// The settings of `--config`, or the defaults.
pub(crate) fn settings_or_default(path: Option<&Path>) -> Result<Settings> {
    path.map_or_else(|| Ok(Settings::default()), load_settings)
}

pub(crate) fn load_sigma(dir: &Path) -> Result<lineage_detect::sigma::SigmaRules> {
    let (rules, problems) = lineage_detect::sigma::SigmaRules::load_dir(dir)
        .with_context(|| format!("reading Sigma rules from {}", dir.display()))?;
    eprintln!(
        "sigma: {} rules loaded from {}, {} not usable",
        rules.rules().len(),
        dir.display(),
        problems.len()
    );
    for p in &problems {
        eprintln!("sigma: skipped {}: {}", p.path.display(), p.reason);
    }
    Ok(rules)
}

fn status_counts(actions: &[lineage_core::Action]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for a in actions {
        *counts
            .entry(format!("{:?}", a.status).to_ascii_lowercase())
            .or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_revoke(args: RevokeArgs) -> Result<ExitCode> {
    let mut settings = settings_or_default(args.config.as_deref())?;
    if args.dry_run {
        settings.response.policy.dry_run = true;
    }
    let response = settings.response.clone();
    let ledger = settings.ledger();
    let pipeline = Pipeline::new(settings, load_inventory(&args.inventory)?, None);
    let temp;
    let out = match &args.out {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let output = replay(&ReplayConfig {
        pipeline: std::sync::Arc::new(pipeline),
        inputs: args.inputs.clone(),
        source: None,
        out_dir: out,
        write_events: false,
        threads: 0,
        respond: false,
        detector_state: None,
        sweep_owner: Some(args.owner.clone()),
        tables: None,
        archive: Default::default(),
    })
    .context("replaying the logs to find the owner's credentials")?;
    let (owner, items) = output.sweep.expect("sweep requested");
    println!(
        "{} credential(s) attributed to {owner} and their agents:",
        items.len()
    );
    println!(
        "{:<44} {:<24} {:<22} {:>7}  {:<20}  blast radius",
        "credential", "kind", "agent", "uses", "last use"
    );
    for item in &items {
        let c = &item.credential;
        println!(
            "{:<44} {:<24} {:<22} {:>7}  {:<20}  {} issued, services {}",
            c.credential.id,
            format!("{:?}", c.credential.kind),
            c.agent.as_ref().map(|a| a.as_str()).unwrap_or("-"),
            c.uses,
            c.last_used.format("%Y-%m-%d %H:%M:%S"),
            item.blast_radius.descendant_credentials,
            if item.blast_radius.services.is_empty() {
                "-".to_owned()
            } else {
                item.blast_radius.services.join(",")
            }
        );
    }
    let mut responder = lineage_respond::build_responder(&response, &ledger)
        .context("opening the response ledger")?;
    responder
        .reconcile()
        .context("settling interrupted revocations in the ledger")?;
    let mut results = Vec::new();
    for item in items {
        match item.action {
            Some(action) => {
                let a = responder
                    .submit(action)
                    .context("recording in the ledger")?;
                println!(
                    "  {:<44} {:?}: {}",
                    a.credential.id,
                    a.status,
                    a.result.as_deref().unwrap_or("")
                );
                results.push(a);
            }
            None => println!(
                "  {:<44} skipped: nothing can revoke a {:?}",
                item.credential.credential.id, item.credential.credential.kind
            ),
        }
    }
    println!(
        "response: {} ({})",
        status_counts(&results),
        ledger.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_actions(command: ActionsCommand, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings_or_default(config)?;
    let ledger = settings.ledger();
    let mut responder = lineage_respond::build_responder(&settings.response, &ledger)
        .context("opening the response ledger")?;
    match command {
        ActionsCommand::List => {
            let entries: Vec<_> = responder.ledger().entries().cloned().collect();
            if entries.is_empty() {
                println!("no actions in {}", ledger.display());
            }
            for e in entries {
                println!(
                    "{}  {:<16} {:<28} {:<44} {:<16} {}",
                    e.id,
                    format!("{:?}", e.action.status),
                    format!("{:?}", e.action.kind),
                    e.action.credential.id,
                    e.detector,
                    e.action.result.as_deref().unwrap_or("")
                );
            }
        }
        ActionsCommand::Approve { id, by } => {
            let a = responder.approve(&id, &by)?;
            println!("{:?}: {}", a.status, a.result.as_deref().unwrap_or(""));
        }
        ActionsCommand::Reject { id, reason, by } => {
            let a = responder.reject(&id, &reason, &by)?;
            println!("{:?}: {}", a.status, a.result.as_deref().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn load_inventory(path: &Path) -> Result<Inventory> {
    Inventory::load(path).context("loading the inventory")
}

fn run_replay(args: ReplayArgs) -> Result<ExitCode> {
    let inventory = match &args.inventory {
        Some(p) => load_inventory(p)?,
        None => {
            eprintln!("warning: no --inventory given: uses can only be attributed through IAM user names, which match nothing yet");
            Inventory::default()
        }
    };
    let mut settings = settings_or_default(args.config.as_deref())?;
    settings.run.max_record_bytes = args.max_record_bytes;
    let sigma = match args.sigma_rules.as_ref().or(settings.sigma_rules.as_ref()) {
        Some(dir) => Some(std::sync::Arc::new(load_sigma(dir)?)),
        None => None,
    };
    let ledger = settings.ledger();
    let pipeline = Pipeline::new(settings, inventory, sigma);
    let config = ReplayConfig {
        pipeline: std::sync::Arc::new(pipeline),
        inputs: args.inputs,
        source: args.source.source(),
        out_dir: args.out.clone(),
        write_events: args.events,
        threads: args.threads,
        respond: args.respond,
        detector_state: args.detector_state.clone(),
        sweep_owner: None,
        tables: (!args.no_tables).then(|| args.out.join(lineage_tables::TABLES_DIR)),
        archive: args.archive.options()?,
    };
    let output = replay(&config).context("replay failed")?;
    if args.respond && !output.actions.is_empty() {
        eprintln!(
            "response: {} request(s) through the policy ({}); ledger {}",
            output.actions.len(),
            status_counts(&output.actions),
            ledger.display()
        );
    }
    for st in &output.alert_sinks {
        eprintln!(
            "alert sink {} ({}): {} delivered, {} spooled, {} pending in spool, {} rejected, {} refused by a full spool",
            st.name, st.kind, st.delivered, st.spooled, st.pending, st.rejected, st.spool_refused
        );
    }
    if !output.undelivered.is_empty() {
        for u in &output.undelivered {
            eprintln!("alert sinks: {u}");
        }
        anyhow::bail!(
            "{} alert(s) could not be delivered nor spooled (see above)",
            output.undelivered.len()
        );
    }
    if args.alerts_jsonl {
        eprint!("{}", render_summary(&output.summary));
        let mut sink = JsonLinesSink::stdout();
        for a in &output.alerts {
            sink.write(a)?;
        }
        sink.flush()?;
    } else {
        print!("{}", render_summary(&output.summary));
        let mut alerts = output.alerts.clone();
        alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
        for a in alerts.iter().take(args.show_alerts) {
            print!("{}", render_alert(a));
        }
        println!("outputs: {}", args.out.display());
    }
    if args.strict && output.summary.dead_lettered > 0 {
        return Ok(ExitCode::from(EXIT_DEAD_LETTERS));
    }
    Ok(ExitCode::SUCCESS)
}
