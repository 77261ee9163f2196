//! Argument definitions and the command dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use lineage_core::{Inventory, Source};
use lineage_detect::DetectorsConfig;
use lineage_ingest::ParseLimits;
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
    /// Run the live pipeline (`[bus]`, `[run]` in --config): on the Kafka bus every
    /// stage is a consumer group, so more processes share the partitions.
    ///
    /// Example: lineage run --config lineage.toml --stages normalize,graph,detect,sinks
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
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    source: SourceArg,
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
    },
    /// Reject a queued request; it is recorded and never executed.
    Reject {
        /// Id or idempotency key.
        id: String,
        /// Why (recorded in the ledger).
        #[arg(long, default_value = "rejected")]
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SourceArg {
    Auto,
    Cloudtrail,
    Entra,
    Github,
    Vault,
}

impl SourceArg {
    pub(crate) fn source(self) -> Option<Source> {
        match self {
            SourceArg::Auto => None,
            SourceArg::Cloudtrail => Some(Source::CloudTrail),
            SourceArg::Entra => Some(Source::Entra),
            SourceArg::Github => Some(Source::GitHub),
            SourceArg::Vault => Some(Source::Vault),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Random seed: the same seed writes the same files.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Number of humans.
    #[arg(long, default_value_t = 8)]
    pub(crate) humans: usize,
    /// Number of agents (AI agents, MCP servers, CI runners, services).
    #[arg(long, default_value_t = 12)]
    pub(crate) agents: usize,
    /// Days of activity.
    #[arg(long, default_value_t = 3)]
    pub(crate) days: u32,
    /// Average API calls per agent per day.
    #[arg(long, default_value_t = 200)]
    pub(crate) calls_per_agent_day: u32,
    /// Output directory.
    #[arg(long, short)]
    pub(crate) out: PathBuf,
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
                let text = toml::to_string(&FileConfig::default()).context("printing defaults")?;
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            for (name, what) in lineage_detect::catalogue() {
                println!("{name:<22} {what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Connect(args) => crate::connect_cmd::run(args),
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

/// The settings file.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Directory of Sigma rules (same as --sigma-rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sigma_rules: Option<PathBuf>,
    /// Detector settings.
    #[serde(default)]
    pub(crate) detectors: DetectorsConfig,
    /// Response: revocation policy, ledger and executors (dry-run by default).
    #[serde(default)]
    response: lineage_sinks::response::ResponseConfig,
    /// SOC alert sinks beyond `alerts.jsonl`: rotated JSON lines, OCSF, webhooks,
    /// Slack; failing HTTP sinks retry and spool to disk.
    #[serde(default)]
    pub(crate) alerts: lineage_sinks::alerts::AlertSinksConfig,
    /// How the live pipeline's stages are connected (`lineage run`, `lineage ingest`).
    #[serde(default)]
    pub(crate) bus: lineage_replay::live::BusConfig,
    /// `lineage run`: metrics address, inventory, inputs (embedded bus), out dir.
    #[serde(default)]
    pub(crate) run: lineage_replay::live::RunConfig,
}

pub(crate) fn load_settings(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn load_sigma(dir: &Path) -> Result<lineage_detect::sigma::SigmaRules> {
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
    let mut settings = match &args.config {
        Some(path) => load_settings(path)?,
        None => FileConfig::default(),
    };
    if args.dry_run {
        settings.response.policy.dry_run = true;
    }
    let temp;
    let out = match &args.out {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let output = replay(&ReplayConfig {
        inputs: args.inputs.clone(),
        source: None,
        inventory: load_inventory(&args.inventory)?,
        detectors: settings.detectors.clone(),
        out_dir: out,
        write_events: false,
        threads: 0,
        limits: ParseLimits::default(),
        sigma: None,
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
    let mut responder = lineage_sinks::response::build_responder(&settings.response)
        .context("opening the response ledger")?;
    let mut results = Vec::new();
    for item in items {
        match item.action {
            Some(action) => {
                let a = responder
                    .submit(action, "operator")
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
        settings.response.ledger.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_actions(command: ActionsCommand, config: Option<&Path>) -> Result<ExitCode> {
    let settings = match config {
        Some(path) => load_settings(path)?,
        None => FileConfig::default(),
    };
    let mut responder = lineage_sinks::response::build_responder(&settings.response)
        .context("opening the response ledger")?;
    match command {
        ActionsCommand::List => {
            let entries: Vec<_> = responder.ledger().entries().cloned().collect();
            if entries.is_empty() {
                println!("no actions in {}", settings.response.ledger.display());
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
        ActionsCommand::Approve { id } => {
            let a = responder.approve(&id)?;
            println!("{:?}: {}", a.status, a.result.as_deref().unwrap_or(""));
        }
        ActionsCommand::Reject { id, reason } => {
            let a = responder.reject(&id, &reason)?;
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
    let settings = match &args.config {
        Some(path) => load_settings(path)?,
        None => FileConfig::default(),
    };
    let sigma = match args.sigma_rules.as_ref().or(settings.sigma_rules.as_ref()) {
        Some(dir) => Some(std::sync::Arc::new(load_sigma(dir)?)),
        None => None,
    };
    let config = ReplayConfig {
        inputs: args.inputs,
        source: args.source.source(),
        inventory,
        detectors: settings.detectors,
        out_dir: args.out.clone(),
        write_events: args.events,
        threads: args.threads,
        limits: ParseLimits {
            max_record_bytes: args.max_record_bytes,
        },
        sigma,
        detector_state: args.detector_state.clone(),
        sweep_owner: None,
        tables: (!args.no_tables).then(|| args.out.join(lineage_sinks::tables::TABLES_DIR)),
        archive: args.archive.options()?,
    };
    let mut output = replay(&config).context("replay failed")?;
    if args.respond && !output.actions.is_empty() {
        let mut responder = lineage_sinks::response::build_responder(&settings.response)
            .context("opening the response ledger")?;
        let mut done = Vec::with_capacity(output.actions.len());
        for action in std::mem::take(&mut output.actions) {
            // Keys are `kind:credential:detector:owner`; credential ids may contain `:`.
            let by = action
                .idempotency_key
                .rsplit(':')
                .nth(1)
                .unwrap_or("detector")
                .to_owned();
            done.push(
                responder
                    .submit(action, &by)
                    .context("recording in the ledger")?,
            );
        }
        let mut sink = JsonLinesSink::create(&args.out.join("actions.jsonl"))?;
        for a in &done {
            sink.write(a)?;
        }
        sink.flush()?;
        eprintln!(
            "response: {} request(s) through the policy ({}); ledger {}",
            done.len(),
            status_counts(&done),
            settings.response.ledger.display()
        );
        output.actions = done;
    }
    if !settings.alerts.sinks.is_empty() {
        let spool = settings
            .alerts
            .spool_dir
            .clone()
            .unwrap_or_else(|| args.out.join("spool"));
        let mut fanout = lineage_sinks::alerts::AlertFanout::build(&settings.alerts, &spool)
            .context("building the alert sinks")?;
        let _ = fanout.flush_spool();
        let mut failures = 0;
        for a in &output.alerts {
            if let Err(e) = fanout.send(a) {
                failures += 1;
                eprintln!("alert sinks: {e:#}");
            }
        }
        for st in fanout.stats() {
            eprintln!(
                "alert sink {} ({}): {} delivered, {} spooled, {} pending in spool, {} rejected, {} refused by a full spool",
                st.name, st.kind, st.delivered, st.spooled, st.pending, st.rejected, st.spool_refused
            );
        }
        if failures > 0 {
            anyhow::bail!("{failures} alert(s) could not be delivered nor spooled (see above)");
        }
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
