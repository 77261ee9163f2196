//! `lineage connect`: runs one live connector and writes what it receives as raw
//! JSON-lines files, one file per batch (`<out>/<batch key>.jsonl`, written to a
//! temporary name, fsynced and renamed), then acks the batch so the connector
//! advances its checkpoint or deletes its SQS message (`lineage_pipeline::land`).
//!
//! The connector definitions are `lineage_ingest::connect::ConnectorSpec`, the same
//! structs a `[[source]]` table in `lineage.toml` is read into. `lineage ingest
//! <source> --from-checkpoint FILE <connector>` lands them on Kafka instead, and
//! `lineage run` follows the same connectors inside the pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use lineage_ingest::connect::{CheckpointStore, Connector, ConnectorSpec};
use lineage_pipeline::land::{follow, write_batch_files, LandOptions};

/// Arguments of `lineage connect`.
#[derive(Debug, Args)]
#[command(
    after_help = "To send batches to Kafka (`lineage.raw.<source>`) instead of files, \
use `lineage ingest <source> --to kafka --brokers HOST:PORT --from-checkpoint FILE <connector> …` \
with the same connector arguments. To detect on a live source, declare it as a [[source]] \
of `lineage run`."
)]
pub(crate) struct ConnectArgs {
    #[command(subcommand)]
    kind: ConnectorSpec,
    /// Checkpoint file (JSON, replaced atomically). Without it every run starts over.
    /// S3+SQS keeps its position in the queue and needs none.
    #[arg(long, global = true, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Output directory: one `<batch key>.jsonl` per batch.
    #[arg(long, short, global = true, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: LandOptions,
}

/// Builds the connector `spec`, keeping its checkpoint in `checkpoint` (none: every
/// run starts over).
pub(crate) fn build(spec: &ConnectorSpec, checkpoint: Option<&Path>) -> Result<Box<dyn Connector>> {
    let store = match checkpoint {
        Some(p) => CheckpointStore::new(p, spec.kind()),
        None => CheckpointStore::ephemeral(spec.kind()),
    };
    spec.build(store)
        .with_context(|| format!("starting the {} connector", spec.kind()))
}

pub(crate) fn run(args: ConnectArgs) -> Result<ExitCode> {
    let Some(out) = args.out.clone() else {
        bail!("--out DIR is required");
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut connector = build(&args.kind, args.checkpoint.as_deref())?;
    let stop = lineage_pipeline::shutdown_on_signals()?;
    follow(&args.kind, &args.run, connector.as_mut(), &stop, |batch| {
        write_batch_files(&out, batch)
    })?;
    let stats = serde_json::to_string(connector.stats())?;
    let mut err = std::io::stderr().lock();
    writeln!(err, "connect: {stats}")?;
    Ok(ExitCode::SUCCESS)
}
