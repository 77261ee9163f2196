//! `lineage ingest`: sends raw audit-log records to the Kafka raw topics
//! (`lineage.raw.<source>`, key = source event id, idempotent producer).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lineage_replay::live::{ingest_to_kafka, BusConfig, IngestConfig};

/// Arguments of `lineage ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Source of the records: cloudtrail, entra, github, vault, or auto (sniff each file).
    #[arg(value_enum)]
    source: crate::cli::SourceArg,
    /// Files, directories, quoted globs, or `-` for standard input.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH|DIR|GLOB|-")]
    from: Vec<String>,
    /// Where to send them (only `kafka`).
    #[arg(long, default_value = "kafka", value_parser = ["kafka"])]
    to: String,
    /// Bootstrap servers (overrides `[bus] brokers` of --config).
    #[arg(long, value_name = "HOST:PORT,…")]
    brokers: Option<String>,
    /// Settings file with the `[bus]` table (topic names, librdkafka settings).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A librdkafka property, `key=value` (repeatable; e.g. -X security.protocol=SASL_SSL).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    librdkafka: Vec<String>,
    /// Offered rate in records per second (for benchmarks); default: as fast as possible.
    #[arg(long, value_name = "N")]
    rate: Option<u64>,
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
        Some(path) => crate::cli::load_settings(path)?.bus,
        None => BusConfig::default(),
    };
    override_bus(&mut bus, args.brokers.as_deref(), &args.librdkafka)?;
    let report = ingest_to_kafka(&IngestConfig {
        inputs: args.from,
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
