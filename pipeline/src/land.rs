//! Landing one live source's raw records without running the pipeline on them:
//! `lineage connect` writes each batch as a raw JSON-lines file, `lineage ingest
//! <source> --from-checkpoint F <kind>` produces it to the Kafka raw topics. Both use
//! [`follow`]: poll a batch, deliver it durably, and only then acknowledge it to the
//! connector (checkpoint advanced, SQS message deleted), so a crash in between
//! delivers that batch again on the next start, with the same key.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lineage_ingest::connect::checkpoint::write_atomically;
use lineage_ingest::connect::{single_line, Connector, ConnectorSpec, RawBatch};

use crate::PipelineError;

const fn d_poll_interval() -> u64 {
    5
}

/// How long a landing run goes on (the flags of `lineage connect` and `lineage
/// ingest` with a connector).
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct LandOptions {
    /// Exit 0 after this many seconds without new data (default: run until killed).
    #[arg(long, global = true, value_name = "SECS")]
    pub idle_exit: Option<u64>,
    /// Seconds to sleep when a poller is caught up.
    #[arg(long, global = true, default_value_t = d_poll_interval(), value_name = "SECS")]
    pub poll_interval: u64,
    /// Stop after this many batches (for backfills and tests).
    #[arg(long, global = true, value_name = "N")]
    pub max_batches: Option<u64>,
}

/// Sleeps `d`, waking early when `stop` is raised.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Polls `connector` and hands each batch to `deliver`, acknowledging it only after
/// `deliver` returned `Ok` (the batch is durable downstream). Returns the number of
/// batches delivered when `max_batches` or `idle_exit` ends the run, or once `stop`
/// is raised (SIGTERM: the in-flight batch is finished and acknowledged first).
pub fn follow(
    spec: &ConnectorSpec,
    opts: &LandOptions,
    connector: &mut dyn Connector,
    stop: &AtomicBool,
    mut deliver: impl FnMut(&RawBatch) -> Result<(), PipelineError>,
) -> Result<u64, PipelineError> {
    let mut last_data = Instant::now();
    let mut batches = 0u64;
    let idle = |last_data: Instant| {
        opts.idle_exit
            .is_some_and(|s| last_data.elapsed() >= Duration::from_secs(s))
    };
    let source_error =
        |e: &dyn std::fmt::Display| PipelineError::Source(spec.kind().into(), e.to_string());
    loop {
        if opts.max_batches.is_some_and(|m| batches >= m) || stop.load(Ordering::SeqCst) {
            break;
        }
        match connector.poll() {
            Ok(Some(batch)) => {
                batches += 1;
                let had_data = !batch.is_empty();
                deliver(&batch)?;
                connector
                    .ack(batch.id)
                    .map_err(|e| source_error(&format!("acking batch {}: {e}", batch.key)))?;
                tracing::info!(key = %batch.key, records = batch.records.len(), dead_letters = batch.dead_letters.len(), position = %batch.position, "batch delivered");
                if had_data {
                    last_data = Instant::now();
                }
            }
            Ok(None) => {
                if idle(last_data) {
                    break;
                }
                // The SQS and socket connectors wait inside poll; the pollers sleep here.
                if !spec.waits_in_poll() {
                    sleep_unless(stop, Duration::from_secs(opts.poll_interval));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "poll failed; retrying after the poll interval");
                if idle(last_data) {
                    return Err(source_error(&e));
                }
                sleep_unless(stop, Duration::from_secs(opts.poll_interval.max(1)));
            }
        }
    }
    Ok(batches)
}

/// A file name from a batch key.
fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

/// Writes a batch's records as `<out>/<batch key>.jsonl` (one record per line) and
/// its dead letters as `<batch key>.dead_letters.jsonl`, each atomically; a batch
/// delivered again after a crash has the same key and replaces its files.
pub fn write_batch_files(out: &Path, batch: &RawBatch) -> Result<(), PipelineError> {
    let io = |path: &Path, e: std::io::Error| {
        PipelineError::Io(format!("writing {}: {e}", path.display()))
    };
    let stem = file_stem(&batch.key);
    if !batch.records.is_empty() {
        let mut body = Vec::new();
        for r in &batch.records {
            body.extend_from_slice(&single_line(&r.bytes));
            body.push(b'\n');
        }
        let path = out.join(format!("{stem}.jsonl"));
        write_atomically(&path, &body).map_err(|e| io(&path, e))?;
    }
    if !batch.dead_letters.is_empty() {
        let mut body = Vec::new();
        for d in &batch.dead_letters {
            serde_json::to_writer(&mut body, d).map_err(|e| io(out, std::io::Error::other(e)))?;
            body.push(b'\n');
        }
        let path = out.join(format!("{stem}.dead_letters.jsonl"));
        write_atomically(&path, &body).map_err(|e| io(&path, e))?;
    }
    Ok(())
}
