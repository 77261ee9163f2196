//! `lineage run`: the live pipeline. It follows the `[[source]]`s of the settings
//! file, attributes, detects, delivers alerts to the `[alerts]` sinks and sends
//! revocation requests through the responder, until SIGTERM. On the embedded bus
//! (the default) every stage runs in this process; with `[bus] kind = "kafka"` each
//! stage (normalize, graph/detect, sinks with the responder) is a consumer group,
//! so a second process with the same config shares the partitions. Serves
//! `/metrics` and `/health` on `[run] metrics_addr`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use lineage_core::Inventory;
use lineage_pipeline::kafka::{BusKind, LiveConfig, StageName};
use lineage_pipeline::{Metrics, Pipeline};

/// Arguments of `lineage run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A minimal lineage.toml (README \"Running live\" has one for every source):

  [run]
  inventory = \"inventory.toml\"
  out_dir = \"/var/lib/lineage/out\"
  metrics_addr = \"127.0.0.1:9464\"

  [[source]]
  kind = \"vault-file\"
  path = \"/var/log/bao/audit.log\"

  [[source]]
  kind = \"s3-sqs\"
  queue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/cloudtrail\"
  buckets = [\"org-cloudtrail-logs\"]

  [[alerts.sinks]]
  type = \"webhook\"
  url = \"https://soc.example/hooks/lineage\"

Source kinds: s3-sqs, lookup-events, vault-socket, vault-file, github-audit, entra-graph, \
directory (their settings are the flags of `lineage connect <kind> --help`). Revocation \
runs through [response] (dry-run unless it is turned off and an allowlist matches)."
)]
pub(crate) struct RunArgs {
    /// Settings file: `[run]`, `[[source]]`, `[detectors]`, `[alerts]`, `[response]`, `[bus]`.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Stages to run in this process (Kafka bus), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "normalize,graph,detect,sinks"
    )]
    stages: Vec<StageName>,
    /// Bootstrap servers (overrides `[bus] brokers`).
    #[arg(long, value_name = "HOST:PORT,…")]
    brokers: Option<String>,
    /// A librdkafka property, `key=value` (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    librdkafka: Vec<String>,
}

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
    let settings = crate::cli::load_settings(&args.config)?;
    let mut bus = settings.bus.clone();
    crate::ingest_cmd::override_bus(&mut bus, args.brokers.as_deref(), &args.librdkafka)?;
    let inventory = match &settings.run.inventory {
        Some(p) => crate::cli::load_inventory(p)?,
        None => Inventory::default(),
    };
    let sigma = match &settings.sigma_rules {
        Some(dir) => Some(Arc::new(crate::cli::load_sigma(dir)?)),
        None => None,
    };
    if bus.instance_id.is_none() {
        bus.instance_id = Some(default_instance_id(&args.config));
    }
    let metrics_addr = settings.run.metrics_addr.clone();
    let pipeline = Pipeline::new(settings, inventory, sigma);
    let shutdown = lineage_pipeline::shutdown_on_signals().context("signal handlers")?;
    let metrics = Arc::new(Metrics::default());
    let http = match &metrics_addr {
        Some(addr) => {
            let (bound, handle) =
                lineage_pipeline::http::serve(addr, metrics.clone(), shutdown.clone())?;
            eprintln!("metrics: http://{bound}/metrics and /health");
            Some(handle)
        }
        None => None,
    };
    let result = match bus.kind {
        BusKind::Kafka => lineage_pipeline::kafka::run_kafka(&LiveConfig::new(
            &pipeline,
            bus,
            args.stages,
            metrics.clone(),
            shutdown.clone(),
        ))
        .map_err(anyhow::Error::from),
        BusKind::Embedded => {
            lineage_pipeline::embedded::run(&pipeline, metrics.clone(), shutdown.clone())
                .map(|report| {
                    let s = &report.summary;
                    eprintln!(
                        "run (embedded): {} read = {} normalized + {} dead-lettered, {} alerts, {} duplicates skipped after a restart; outputs in {}",
                        s.read,
                        s.normalized,
                        s.dead_lettered,
                        s.alerts,
                        report.duplicates_skipped,
                        pipeline.settings.run.out_dir.display()
                    );
                })
                .map_err(anyhow::Error::from)
        }
    };
    shutdown.store(true, Ordering::SeqCst);
    if let Some(h) = http {
        let _ = h.join();
    }
    result.map(|_| ExitCode::SUCCESS)
}

/// The static group member name of this process when `[bus] instance_id` is unset:
/// the host name and a hash of the config file's absolute path, so restarting the
/// same `lineage run --config FILE` on the same host takes the same partitions back at
/// once, while two processes with different config files are different members.
fn default_instance_id(config: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let path = config
        .canonicalize()
        .unwrap_or_else(|_| config.to_path_buf());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("lineage-{host}-{:08x}", h.finish() as u32)
}
