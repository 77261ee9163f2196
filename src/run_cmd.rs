//! `lineage run`: the live pipeline. With `[bus] kind = "kafka"` each stage
//! (normalize, graph/detect, sinks) is a consumer group, so a second process with the
//! same config shares the partitions; with the embedded bus (default) it runs the
//! `[run] inputs` through the replay pipeline in one process. Serves `/metrics` and
//! `/health` on `[run] metrics_addr`; SIGTERM finishes the batch, commits, exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lineage_core::Inventory;
use lineage_replay::live::{self, BusKind, LiveConfig, Metrics, StageName};
use lineage_replay::{replay, ReplayConfig};

/// Arguments of `lineage run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Settings file: `[bus]`, `[run]`, `[detectors]`, `[alerts]`.
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
    let run = settings.run.clone();
    let inventory = match &run.inventory {
        Some(p) => crate::cli::load_inventory(p)?,
        None => Inventory::default(),
    };
    let out_dir = run.out_dir.clone().unwrap_or_else(|| PathBuf::from("out"));
    if bus.instance_id.is_none() {
        bus.instance_id = Some(default_instance_id(&args.config));
    }
    let shutdown = live::shutdown_on_signals().context("signal handlers")?;
    let metrics = Arc::new(Metrics::default());
    let http = match &run.metrics_addr {
        Some(addr) => {
            let (bound, handle) = live::serve_metrics(addr, metrics.clone(), shutdown.clone())?;
            eprintln!("metrics: http://{bound}/metrics and /health");
            Some(handle)
        }
        None => None,
    };
    let result = match bus.kind {
        BusKind::Kafka => live::run_kafka(&LiveConfig {
            bus,
            stages: args.stages,
            inventory,
            detectors: settings.detectors.clone(),
            alert_sinks: settings.alerts.clone(),
            out_dir,
            batch: if run.batch == 0 { 2000 } else { run.batch },
            poll: Duration::from_millis(if run.poll_ms == 0 { 200 } else { run.poll_ms }),
            source_idle: Duration::from_millis(match run.source_idle_ms {
                0 => 2000,
                n => n,
            }),
            max_hold: Duration::from_millis(match run.max_hold_ms {
                0 => 30_000,
                n => n,
            }),
            tables: !run.no_tables,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        })
        .map_err(anyhow::Error::from),
        BusKind::Embedded => run_embedded(
            &run.inputs,
            inventory,
            &settings,
            out_dir,
            !run.no_tables,
            &metrics,
        ),
    };
    shutdown.store(true, Ordering::SeqCst);
    if let Some(h) = http {
        let _ = h.join();
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn run_embedded(
    inputs: &[String],
    inventory: Inventory,
    settings: &crate::cli::FileConfig,
    out_dir: PathBuf,
    tables: bool,
    metrics: &Metrics,
) -> Result<()> {
    anyhow::ensure!(
        !inputs.is_empty(),
        "the embedded bus needs `[run] inputs` (files, directories or globs); set `[bus] kind = \"kafka\"` to consume topics"
    );
    metrics.set_ready("embedded", true);
    let output = replay(&ReplayConfig {
        inputs: inputs.to_vec(),
        source: None,
        inventory,
        detectors: settings.detectors.clone(),
        out_dir: out_dir.clone(),
        write_events: false,
        threads: 0,
        limits: Default::default(),
        sigma: None,
        detector_state: None,
        sweep_owner: None,
        tables: tables.then(|| out_dir.join(lineage_sinks::tables::TABLES_DIR)),
        archive: Default::default(),
    })
    .context("embedded pipeline failed")?;
    for (source, c) in &output.summary.by_source {
        metrics.count("embedded", source, "in", c.read);
        metrics.count("embedded", source, "out", c.normalized);
        metrics.count("embedded", source, "dead_lettered", c.dead_lettered);
    }
    for a in &output.alerts {
        metrics.alert(&a.detector);
    }
    eprintln!(
        "run (embedded): {} read, {} alerts, outputs in {}",
        output.summary.read,
        output.alerts.len(),
        out_dir.display()
    );
    Ok(())
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
