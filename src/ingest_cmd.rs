//! `lineage ingest`: sends raw audit-log records to the Kafka raw topics
//! (`lineage.raw.<source>`, key = source event id, idempotent producer), read either
//! from files (`--from`) or from a live connector resumed from its checkpoint
//! (`--from-checkpoint FILE <connector> …`, the connectors of `lineage connect`).
//!
//! Connector route: poll a batch → produce every record (dead letters to the DLQ)
//! → wait for the broker's acknowledgement of every message → ack the batch, which
//! replaces the checkpoint file atomically (or deletes the SQS message). A crash
//! between the produce and the ack sends that batch again on restart: the raw topic
//! then holds some records twice, with the same key, and the graph stage drops
//! events whose id it has already seen.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use lineage_ingest::connect::ConnectorSpec;
use lineage_pipeline::kafka::{ingest_to_kafka, BusConfig, IngestConfig, RawProducer};

use lineage_pipeline::land::{follow, LandOptions};

/// Arguments of `lineage ingest`.
#[derive(Debug, clap::Args)]
#[command(
    subcommand_value_name = "CONNECTOR",
    subcommand_help_heading = "Live connectors (instead of --from; resumed from --from-checkpoint)",
    after_help = "Examples:
  lineage ingest auto --from 'logs/**/*.json.gz' --to kafka --brokers 127.0.0.1:9092
  lineage ingest vault --to kafka --brokers 127.0.0.1:9092 \\
      --from-checkpoint /var/lib/lineage/bao.json vault-file /var/log/bao/audit.log
  lineage ingest github --to kafka --brokers 127.0.0.1:9092 \\
      --from-checkpoint gh.json github-audit --org acme --token-file /run/secrets/gh

With a connector, each batch is acknowledged (the checkpoint file replaced, the SQS \
message deleted) only after Kafka acknowledged every record of it. After a crash the \
last batch may be sent again: duplicates have the same key and are dropped \
downstream by event id. `lineage ingest <source> <connector> --help` lists the \
connector's arguments."
)]
pub(crate) struct IngestArgs {
    /// Source of the records: cloudtrail, entra, github, vault, or auto (sniff each
    /// file; with a connector, the connector's source).
    #[arg(value_enum)]
    source: lineage_ingest::connect::SourceChoice,
    /// Files, directories, quoted globs, or `-` for standard input.
    #[arg(long, num_args = 1.., value_name = "PATH|DIR|GLOB|-")]
    from: Vec<String>,
    /// Resume the connector named after the flags from this checkpoint file (JSON,
    /// created on the first run, replaced atomically after each batch is on Kafka).
    /// Holds positions only, never tokens. Not needed by s3-sqs (the queue is the
    /// position) or vault-socket (cannot be replayed).
    #[arg(long, global = true, value_name = "FILE")]
    from_checkpoint: Option<PathBuf>,
    /// Where to send them (only `kafka`).
    #[arg(long, global = true, default_value = "kafka", value_parser = ["kafka"])]
    to: String,
    /// Bootstrap servers (overrides `[bus] brokers` of --config).
    #[arg(long, global = true, value_name = "HOST:PORT,…")]
    brokers: Option<String>,
    /// Settings file with the `[bus]` table (topic names, librdkafka settings).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A librdkafka property, `key=value` (repeatable; e.g. -X security.protocol=SASL_SSL).
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    librdkafka: Vec<String>,
    /// Offered rate in records per second (for benchmarks, files only); default: as
    /// fast as possible.
    #[arg(long, value_name = "N")]
    rate: Option<u64>,
    #[command(flatten)]
    run: LandOptions,
    #[command(subcommand)]
    connector: Option<ConnectorSpec>,
}

/// Applies `--brokers` and `-X key=value` to the bus settings.
pub(crate) fn override_bus(
    bus: &mut BusConfig,
    brokers: Option<&str>,
    props: &[String],
) -> Result<()> {
    if let Some(b) = brokers {
        bus.brokers = b.to_owned();
    }
    for p in props {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("-X {p}: expected key=value"))?;
        bus.librdkafka.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(())
}

pub(crate) fn run(args: IngestArgs) -> Result<ExitCode> {
    let mut bus = match &args.config {
        Some(path) => lineage_pipeline::Settings::load(path)?.bus,
        None => BusConfig::default(),
    };
    override_bus(&mut bus, args.brokers.as_deref(), &args.librdkafka)?;
    if let Some(kind) = &args.connector {
        return run_connector(&args, kind, &bus);
    }
    if args.from.is_empty() {
        bail!(
            "say what to ingest: --from PATH|DIR|GLOB|- for files, or --from-checkpoint FILE \
             and a connector for a live source (e.g. `lineage ingest vault --from-checkpoint \
             cp.json vault-file /var/log/bao/audit.log`; see --help)"
        );
    }
    if args.from_checkpoint.is_some() {
        bail!(
            "--from-checkpoint resumes a live connector: name one after the flags (e.g. \
             `vault-file /var/log/bao/audit.log`), or drop it to ingest files with --from"
        );
    }
    let files: Vec<String> = if args.from.iter().any(|f| f == "-") {
        vec!["-".into()]
    } else {
        lineage_replay::expand_inputs(&args.from)?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    let report = ingest_to_kafka(&IngestConfig {
        files,
        source: args.source.source(),
        bus,
        rate: args.rate,
    })
    .context("ingest failed")?;
    println!(
        "{}",
        serde_json::to_string(&report).context("printing the report")?
    );
    Ok(ExitCode::SUCCESS)
}

/// Connector → `lineage.raw.<source>`: produce a batch, flush, then ack it.
fn run_connector(args: &IngestArgs, kind: &ConnectorSpec, bus: &BusConfig) -> Result<ExitCode> {
    if !args.from.is_empty() {
        bail!("give either --from (files) or a connector, not both");
    }
    if args.rate.is_some() {
        bail!("--rate applies to --from files only");
    }
    if let (Some(source), Some(named)) = (kind.source(), args.source.source()) {
        if named != source {
            bail!("this connector reads {source} records, not {named}: say `lineage ingest {source}` (or `auto`)");
        }
    }
    if args.from_checkpoint.is_none() && !kind.needs_no_checkpoint() {
        eprintln!(
            "ingest: no --from-checkpoint FILE: this run starts from the beginning and \
             its position is not kept"
        );
    }
    let mut producer = RawProducer::new(bus).context("connecting to Kafka")?;
    let mut connector = crate::connect_cmd::build(kind, args.from_checkpoint.as_deref())?;
    let stop = lineage_pipeline::shutdown_on_signals()?;
    let batches = follow(kind, &args.run, connector.as_mut(), &stop, |batch| {
        producer.produce_batch(batch.source, &batch.records, &batch.dead_letters)
    })
    .context("producing to Kafka (an unacknowledged batch is sent again on restart)")?;
    let mut report = serde_json::to_value(producer.report()).context("printing the report")?;
    report["batches"] = batches.into();
    report["connector"] = serde_json::to_value(connector.stats())?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
