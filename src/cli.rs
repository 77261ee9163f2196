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
    /// How many alerts to print (all are in alerts.jsonl).
    #[arg(long, default_value_t = 10)]
    show_alerts: usize,
    /// Print the alerts as JSON lines on stdout (for piping into a SOC queue) instead
    /// of the human-readable summary, which then goes to stderr.
    #[arg(long)]
    alerts_jsonl: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceArg {
    Auto,
    Cloudtrail,
    Entra,
    Github,
    Vault,
}

impl SourceArg {
    fn source(self) -> Option<Source> {
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
        Command::Simulate(args) => crate::demo::simulate(&args).map(|_| ExitCode::SUCCESS),
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
struct FileConfig {
    /// Directory of Sigma rules (same as --sigma-rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sigma_rules: Option<PathBuf>,
    /// Detector settings.
    #[serde(default)]
    detectors: DetectorsConfig,
}

fn load_settings(path: &Path) -> Result<FileConfig> {
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
    };
    let output = replay(&config).context("replay failed")?;
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
