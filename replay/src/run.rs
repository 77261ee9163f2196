//! One replay run: files → parse (parallel) → event-time merge → attribute/detect →
//! sinks, with the counts written to `summary.json`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lineage_core::bus;
use lineage_core::summary::SourceCounts;
use lineage_core::{Action, Alert, AttributedEvent, RunSummary, Source};
use lineage_ingest::Normalized;
use lineage_pipeline::{AttributeStage, Pipeline};
use lineage_sinks::alerts::SinkStats;
use lineage_sinks::JsonLinesSink;
use lineage_tables::{EventsTable, EventsWritten, LineageTables, TablesOptions};

use crate::checkpoint::{self, Checkpoint, EventsState, InProgress, Manifest, SinkOffset};
use crate::merge::{merge, MergeInput, Merged};
use crate::parse::parse_input;
use crate::{
    expand_inputs_counting_digests, split_s3_inputs, InputFile, ParsedFile, ReplayError, S3Archive,
};
use lineage_pipeline::normalize::unreadable;

/// Records per batch on the embedded bus. A batch of records (about 700 bytes each)
/// stays within mimalloc's 512 KiB large-object limit: larger blocks get pages of
/// their own that are returned to the OS when freed, so every batch faulted fresh
/// (often 2 MiB transparent huge) pages in and the kernel zeroed them.
const BATCH: usize = 512;
const _: () = assert!(BATCH * std::mem::size_of::<Emitted>() <= 512 * 1024);
const _: () = assert!(BATCH * std::mem::size_of::<Attributed>() <= 512 * 1024);
/// Batches in flight per bus channel.
const IN_FLIGHT: usize = 8;

/// Settings of one replay.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// The stage graph's parts: inventory, detectors, Sigma rules, limits, alert
    /// sinks, responder.
    pub pipeline: std::sync::Arc<Pipeline>,
    /// Files, directories and globs.
    pub inputs: Vec<String>,
    /// Force a source instead of sniffing each file.
    pub source: Option<Source>,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Also write every attributed event to `events.jsonl`.
    pub write_events: bool,
    /// Parser threads (0 = one per core).
    pub threads: usize,
    /// Send the detectors' revocation requests through the responder of
    /// `[response]` (policy, ledger, executors); otherwise they are recorded as
    /// requested.
    pub respond: bool,
    /// Collect everything attributed to this owner (human id, e-mail or any alias) and
    /// prepare revocation requests for it (`lineage revoke --owner`).
    pub sweep_owner: Option<String>,
    /// Detector state file: restored before the run when it exists, written after it
    /// (so a replay of next month's archive continues this month's baselines).
    pub detector_state: Option<PathBuf>,
    /// Write the Parquet lineage tables under this directory (`lineage replay` uses
    /// `<out>/tables`); `None` skips them.
    pub tables: Option<PathBuf>,
    /// Where the archive is and how to merge it (S3, merge window, time range, progress).
    pub archive: ArchiveOptions,
}

/// How replay reads an archive: S3 access, the event-time merge, a time range and
/// progress reporting. The defaults suit local files and any archive whose file
/// names carry their time (CloudTrail's S3 layout, dated files or directories).
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Endpoint for `s3://` inputs instead of AWS (MinIO, LocalStack, moto); also
    /// switches to path-style addressing.
    pub s3_endpoint: Option<String>,
    /// How much older than its name's time a file's records may be (delivery delay).
    pub merge_window: chrono::Duration,
    /// Files parsed ahead of the merge (0 = four per parser thread).
    pub lookahead: usize,
    /// Uses before this time only teach the graph (their lineage facts are applied).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Records after this time are skipped, and files whose name says they start
    /// after it (by more than the merge window) are not read.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Called after each file is merged and at the end.
    pub progress: Option<ProgressHook>,
    /// Write a checkpoint (the manifest of finished files and the run's state, see
    /// [`crate::checkpoint`]) at most this often, at file boundaries; `None` = never.
    pub checkpoint_every: Option<std::time::Duration>,
    /// Continue from the checkpoint in the output directory, when there is one.
    pub resume: bool,
    /// Validate the local CloudTrail inputs against their digest files, signed with
    /// these public keys, and mark each revocation request with its record's
    /// integrity ([`crate::verify`]).
    pub digest_public_keys: Option<PathBuf>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            s3_endpoint: None,
            merge_window: chrono::Duration::hours(1),
            lookahead: 0,
            since: None,
            until: None,
            progress: None,
            checkpoint_every: None,
            resume: false,
            digest_public_keys: None,
        }
    }
}

/// Where a replay is: for progress bars and periodic log lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Files merged so far.
    pub files_done: u64,
    /// Files in the run.
    pub files_total: u64,
    /// Bytes of the merged files (compressed, as stored), when sizes are known.
    pub bytes_done: u64,
    /// Bytes of all files, when sizes are known.
    pub bytes_total: u64,
    /// Records read so far.
    pub records: u64,
    /// True on the last call.
    pub finished: bool,
}

/// A progress callback.
#[derive(Clone)]
pub struct ProgressHook(pub std::sync::Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayOutput {
    /// The counts (also in `summary.json`).
    pub summary: RunSummary,
    /// The alerts (also in `alerts.jsonl`), in order of first sighting.
    pub alerts: Vec<Alert>,
    /// Revocation requests raised by detectors (also in `actions.jsonl`), with the
    /// responder's outcome when the replay responded.
    pub actions: Vec<Action>,
    /// What each `[alerts]` sink did with the alerts.
    pub alert_sinks: Vec<SinkStats>,
    /// Alerts a sink could neither deliver nor spool, with why.
    pub undelivered: Vec<String>,
    /// With `sweep_owner`: the owner it resolved to and each credential of theirs.
    pub sweep: Option<(lineage_core::HumanId, Vec<SweepItem>)>,
}

/// One credential of a swept owner.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SweepItem {
    /// The credential, who used it last and when.
    pub credential: crate::OwnedCredential,
    /// What its lineage reaches.
    pub blast_radius: lineage_core::BlastRadius,
    /// The revocation request (`None` for kinds nothing can revoke).
    pub action: Option<Action>,
}

/// The local CloudTrail files under `inputs` that validate against their signed
/// digests (canonical paths), with what did not validate logged.
fn validated_cloudtrail_files(
    inputs: &[String],
    keys: &Path,
) -> Result<std::sync::Arc<std::collections::HashSet<PathBuf>>, ReplayError> {
    let roots: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
    let report = crate::verify::verify(&roots, Some(keys))
        .map_err(|e| ReplayError::Output(format!("validating the CloudTrail digests: {e}")))?;
    for f in &report.findings {
        tracing::warn!(kind = %f.kind, file = %f.file, "{}", f.detail);
    }
    tracing::info!(
        digest_files = report.digest_files,
        signatures_valid = report.signatures_valid,
        validated_log_files = report.signed_log_paths.len(),
        problems = report.findings.len(),
        "CloudTrail digest validation"
    );
    Ok(std::sync::Arc::new(
        report
            .signed_log_paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect(),
    ))
}

/// Runs a replay.
pub fn replay(config: &ReplayConfig) -> Result<ReplayOutput, ReplayError> {
    let started = Instant::now();
    let (local, remote) = split_s3_inputs(&config.inputs);
    let s3 = (!remote.is_empty())
        .then(|| S3Archive::connect(config.archive.s3_endpoint.as_deref()))
        .transpose()?;
    let mut digest_files = 0;
    let mut files: Vec<InputFile> = if local.is_empty() {
        Vec::new()
    } else {
        let (local_files, digests) = expand_inputs_counting_digests(&local)?;
        digest_files += digests;
        local_files.into_iter().map(InputFile::Local).collect()
    };
    if let Some(s3) = &s3 {
        for (bucket, prefix) in &remote {
            files.extend(s3.list(bucket, prefix, &mut digest_files)?);
        }
    }
    let window = config
        .archive
        .merge_window
        .num_microseconds()
        .unwrap_or(i64::MAX);
    let lower_bound = |f: &InputFile| f.time_hint().map_or(i64::MIN, |t| t.saturating_sub(window));
    if let Some(until) = config.archive.until {
        // Nothing in a file that starts after `until` would be kept.
        let until = until.timestamp_micros();
        files.retain(|f| lower_bound(f) <= until);
    }
    let pipeline = &config.pipeline;
    let mut stage = pipeline
        .attribute_stage()
        .map_err(|e| ReplayError::Stage(e.to_string()))?;
    if let Some(keys) = &config.archive.digest_public_keys {
        stage.set_validated_files(validated_cloudtrail_files(&local, keys)?);
    }
    if let Some(path) = config.detector_state.as_ref().filter(|p| p.exists()) {
        let bad =
            |why: String| ReplayError::Output(format!("detector state {}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a state snapshot: {e}")))?;
        stage.restore(&map).map_err(bad)?;
    }
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|e| ReplayError::Output(format!("creating {}: {e}", config.out_dir.display())))?;
    let out_dir = config.out_dir.as_path();
    let names: Vec<String> = files.iter().map(InputFile::name).collect();
    let fingerprint = run_fingerprint(config, &files);
    let resumed = if config.archive.resume {
        resume_point(out_dir, &fingerprint)?
    } else {
        checkpoint::clear(out_dir)?;
        None
    };
    if let Some(cp) = &resumed {
        let state = checkpoint::read_state_file(out_dir, &cp.state_file())?;
        stage
            .restore_state(state, &pipeline.inventory)
            .map_err(|why| ReplayError::Output(format!("restoring the checkpoint: {why}")))?;
        tracing::info!(
            files_done = cp.merge.steps,
            files = files.len(),
            records = cp.summary.read,
            "resuming replay from its checkpoint"
        );
    }
    let dead_path = out_dir.join("dead_letters.jsonl");
    let mut dead_sink = match &resumed {
        Some(cp) => JsonLinesSink::resume(
            &dead_path,
            cp.dead_letters_jsonl.bytes,
            cp.dead_letters_jsonl.records,
        )?,
        None => JsonLinesSink::create(&dead_path)?,
    };
    let tables = (config.tables.as_ref())
        .map(|dir| LineageTables::new(dir, TablesOptions::default()))
        .transpose()?;
    let (mut dead_table, events_table) = match (&tables, &resumed) {
        (None, _) => (None, None),
        (Some(t), None) => (Some(t.dead_letters()?), Some(t.events()?)),
        (Some(t), Some(cp)) => {
            let events: EventsState = checkpoint::read_state_file(out_dir, &cp.events_file())?;
            let missing = |what: &str| {
                ReplayError::Output(format!(
                    "the checkpoint has no {what} table position (it was written without tables); run without --resume"
                ))
            };
            let dead = cp
                .dead_letters_table
                .as_ref()
                .ok_or_else(|| missing("dead_letters"))?;
            let ev = events.table.as_ref().ok_or_else(|| missing("events"))?;
            (
                Some(t.resume_dead_letters(dead)?),
                Some(t.resume_events(ev)?),
            )
        }
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| ReplayError::Stage(e.to_string()))?;
    let inputs: Vec<MergeInput> = files
        .iter()
        .enumerate()
        .map(|(rank, f)| MergeInput {
            rank: rank as u32,
            lower_bound: lower_bound(f),
        })
        .collect();
    let lookahead = match config.archive.lookahead {
        0 => 4 * pool.current_num_threads(),
        n => n,
    };
    let mut summary = match &resumed {
        Some(cp) => cp.summary.clone(),
        None => RunSummary {
            files: files.len() as u64,
            digest_files,
            ..RunSummary::default()
        },
    };
    let mut progress = Progress {
        files_total: files.len() as u64,
        bytes_total: files.iter().filter_map(InputFile::size).sum(),
        ..Progress::default()
    };
    if let Some(cp) = &resumed {
        progress.files_done = cp.merge.steps;
        progress.records = summary.read;
    }
    let since = config.archive.since.map(|t| t.timestamp_micros());
    let until = config.archive.until.map(|t| t.timestamp_micros());
    let mut outside = resumed.as_ref().map_or(0, |cp| cp.outside_time_range);
    let parse = |i: usize| {
        let file = &files[i];
        let run = || {
            parse_input(
                file,
                s3.as_ref(),
                config.source,
                pipeline.limits(),
                pipeline.sigma.as_deref(),
            )
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
            unreadable(
                &file.name(),
                config.source,
                "the parser panicked on this file (a bug: please report it with the file)".into(),
            )
        })
    };
    // The merge's file callback and its record callback (which takes checkpoints)
    // both need the counts and the dead-letter outputs.
    struct Taken<'a> {
        summary: &'a mut RunSummary,
        progress: &'a mut Progress,
        dead_sink: &'a mut JsonLinesSink,
        dead_table: &'a mut Option<lineage_tables::DeadLetterTable>,
    }
    let taken = RefCell::new(Taken {
        summary: &mut summary,
        progress: &mut progress,
        dead_sink: &mut dead_sink,
        dead_table: &mut dead_table,
    });
    let on_file = |i: usize, mut file: ParsedFile| -> Result<(), ReplayError> {
        let mut guard = taken.borrow_mut();
        let Taken {
            summary,
            progress,
            dead_sink,
            dead_table,
        } = &mut *guard;
        let c = &file.counts;
        summary.read += c.read;
        summary.normalized += c.normalized;
        summary.dead_lettered += c.dead_lettered;
        summary.joined_halves += file.joined;
        if c.read == 0 {
            // Counted, not attributed to any source.
            summary.empty_files += 1;
        }
        let source = file
            .source
            .or(file.dead_letters.first().map(|d| d.source))
            .unwrap_or(Source::CloudTrail);
        if c.read > 0 {
            let entry: &mut SourceCounts = summary.by_source.entry(source.to_string()).or_default();
            entry.read += c.read;
            entry.normalized += c.normalized;
            entry.dead_lettered += c.dead_lettered;
        }
        for d in file.dead_letters.drain(..) {
            dead_sink.write(&d)?;
            if let Some(t) = dead_table.as_mut() {
                t.write(&d)?;
            }
        }
        progress.files_done += 1;
        progress.bytes_done += files[i].size().unwrap_or(0);
        progress.records = summary.read;
        if let Some(hook) = &config.archive.progress {
            (hook.0)(progress);
        }
        Ok(())
    };
    let mut last_checkpoint = Instant::now();
    let mut generation = resumed.as_ref().map_or(0, |cp| cp.generation);
    let checkpoints = CheckpointContext {
        out_dir,
        names: &names,
        fingerprint: &fingerprint,
        events_jsonl: resumed.as_ref().and_then(|cp| cp.events_jsonl),
        in_flight: AtomicBool::new(false),
    };
    let (stage, events_written, merged, events_table) =
        run_stages(config, stage, events_table, &checkpoints, |emit| {
            let cursor = resumed.as_ref().map(|cp| &cp.merge);
            merge(
                &inputs,
                &pool,
                lookahead,
                cursor,
                parse,
                on_file,
                |merged| {
                    let record = match merged {
                        Merged::Record(r) => r,
                        Merged::Step(cursor) => {
                            // One checkpoint in the pipeline at a time: the next is due
                            // an interval after the previous one was emitted and once it
                            // is written.
                            let due = config
                                .archive
                                .checkpoint_every
                                .is_some_and(|every| last_checkpoint.elapsed() >= every)
                                && !checkpoints.in_flight.load(Ordering::Acquire);
                            if !due {
                                return Ok(());
                            }
                            checkpoints.in_flight.store(true, Ordering::Release);
                            generation += 1;
                            let mut guard = taken.borrow_mut();
                            let t = &mut *guard;
                            t.dead_sink.flush()?;
                            let dead_letters_table =
                                t.dead_table.as_mut().map(|d| d.checkpoint()).transpose()?;
                            let cp = Checkpoint {
                                generation,
                                merge: cursor(),
                                summary: t.summary.clone(),
                                outside_time_range: outside,
                                dead_letters_jsonl: SinkOffset {
                                    bytes: t.dead_sink.bytes(),
                                    records: t.dead_sink.written(),
                                },
                                dead_letters_table,
                                events_jsonl: None,
                            };
                            drop(guard);
                            last_checkpoint = Instant::now();
                            return emit(Emitted::Checkpoint(Box::new(cp)));
                        }
                    };
                    let t = record.use_.time.timestamp_micros();
                    if until.is_some_and(|u| t > u) {
                        outside += 1;
                        return Ok(());
                    }
                    if since.is_some_and(|s| t < s) {
                        outside += 1;
                        return emit(Emitted::FactsOnly(record));
                    }
                    emit(Emitted::Record(record))
                },
            )
        })?;
    dead_sink.flush()?;
    let dead_rows = dead_table.map(|t| t.finish()).transpose()?;
    summary.outside_time_range = outside;
    summary.late_records = merged.late_records;
    summary.peak_buffered_records = merged.peak_buffered_records;
    summary.peak_buffered_files = merged.peak_buffered_files;
    if merged.late_records > 0 {
        tracing::warn!(
            late = merged.late_records,
            "records were older than their file names suggest and were replayed out of time order; widen --merge-window"
        );
    }
    progress.finished = true;
    if let Some(hook) = &config.archive.progress {
        (hook.0)(&progress);
    }
    let sweep = match &config.sweep_owner {
        Some(who) => Some(sweep_of(&stage, who)?),
        None => None,
    };
    if let Some(path) = &config.detector_state {
        let text = serde_json::to_string(&stage.snapshot()).expect("state serializes");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| {
                ReplayError::Output(format!("writing detector state {}: {e}", path.display()))
            })?;
    }
    summary.lineage_facts = stage.facts;
    summary.service_events = stage.service_events;
    summary.attributed = stage.attributed;
    summary.unattributed = stage.unattributed;
    let attributable = stage.attributed + stage.unattributed;
    summary.attributed_pct = if attributable == 0 {
        100.0
    } else {
        100.0 * stage.attributed as f64 / attributable as f64
    };
    summary.by_method = stage.by_method();
    summary.top_unattributed = stage.top_unattributed(20);
    let table_counts = match (&tables, &events_table) {
        (Some(t), Some(events)) => Some(t.write_graph(events, stage.graph())?),
        _ => None,
    };
    let (alerts, actions) = stage.into_alerts().into_parts();
    let mut by_detector = BTreeMap::new();
    for a in &alerts {
        *by_detector.entry(a.detector.to_string()).or_insert(0u64) += 1;
    }
    summary.alerts_by_detector = by_detector;
    summary.alerts = alerts.len() as u64;
    // Alerts and actions leave through the same outputs as in the live modes; a
    // replay knows the end, so each alert goes out once with its final count.
    let spool = config.out_dir.join("spool");
    let mut alert_out = pipeline
        .alert_output_fresh(&config.out_dir, &spool)
        .map_err(|e| ReplayError::Output(e.to_string()))?;
    let mut undelivered = Vec::new();
    for a in &alerts {
        if let Err(e) = alert_out.deliver(a) {
            undelivered.push(format!("{}: {e}", a.id));
        }
    }
    if let Err(e) = alert_out.finish() {
        undelivered.push(e.to_string());
    }
    let alert_sinks = alert_out.sink_stats();
    let mut action_out = pipeline
        .action_output_fresh(&config.out_dir, config.respond)
        .map_err(|e| ReplayError::Output(e.to_string()))?;
    let mut handled = Vec::with_capacity(actions.len());
    for a in actions {
        if let Some(done) = action_out
            .handle(a)
            .map_err(|e| ReplayError::Output(e.to_string()))?
        {
            handled.push(done);
        }
    }
    action_out
        .sync()
        .map_err(|e| ReplayError::Output(e.to_string()))?;
    let actions = handled;
    summary.actions_requested = actions.len() as u64;
    if let (Some(t), Some(mut counts)) = (&tables, table_counts) {
        counts.dead_letters = dead_rows.unwrap_or(0);
        t.write_outcomes(&alerts, &actions, &mut counts)?;
    }
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.records_per_sec = summary.read as f64 / summary.elapsed_secs.max(1e-9);
    tracing::debug!(events_written, "replay finished");
    write_summary(&config.out_dir, &summary)?;
    if config.archive.checkpoint_every.is_some() || resumed.is_some() {
        checkpoint::write_manifest(
            out_dir,
            &Manifest {
                version: checkpoint::VERSION,
                fingerprint,
                complete: true,
                written_at: chrono::Utc::now(),
                files_total: names.len() as u64,
                finished: names,
                in_progress: Vec::new(),
                checkpoint: None,
            },
        )?;
    }
    Ok(ReplayOutput {
        summary,
        alerts,
        actions,
        sweep,
        alert_sinks,
        undelivered,
    })
}

/// What the merge hands the attribute stage.
enum Emitted {
    /// A record to attribute and run detectors on.
    Record(Normalized),
    /// A record before `--since`: only its lineage facts are applied.
    FactsOnly(Normalized),
    /// Every record before this one is in: checkpoint (see [`crate::checkpoint`]).
    Checkpoint(Box<Checkpoint>),
}

/// What the attribute stage hands the events sink.
#[allow(clippy::large_enum_variant)] // boxing every event would cost an allocation per record
enum Attributed {
    /// An attributed event.
    Event(AttributedEvent),
    /// The stage's state for this checkpoint is written: the sink closes its files
    /// and writes the manifest.
    Checkpoint(Box<Checkpoint>),
}

/// What the events sink needs to write manifests.
struct CheckpointContext<'a> {
    out_dir: &'a Path,
    /// Input file names by rank.
    names: &'a [String],
    fingerprint: &'a str,
    /// Where `events.jsonl` stood at the checkpoint resumed from.
    events_jsonl: Option<SinkOffset>,
    /// A checkpoint is on its way through the pipeline.
    in_flight: AtomicBool,
}

impl CheckpointContext<'_> {
    fn manifest(&self, cp: Checkpoint) -> Manifest {
        let m = &cp.merge;
        Manifest {
            version: checkpoint::VERSION,
            fingerprint: self.fingerprint.to_owned(),
            complete: false,
            written_at: chrono::Utc::now(),
            files_total: self.names.len() as u64,
            finished: m
                .finished
                .iter()
                .map(|&r| self.names[r as usize].clone())
                .collect(),
            in_progress: m
                .released
                .iter()
                .map(|(&r, &released)| InProgress {
                    name: self.names[r as usize].clone(),
                    released,
                })
                .collect(),
            checkpoint: Some(cp),
        }
    }
}

/// The inputs and settings a resume must match: file names and sizes, source,
/// inventory, detector settings, time range, merge window and outputs.
fn run_fingerprint(config: &ReplayConfig, files: &[InputFile]) -> String {
    let mut parts: Vec<Vec<u8>> = files
        .iter()
        .map(|f| format!("{}\0{:?}", f.name(), f.size()).into_bytes())
        .collect();
    parts.push(format!("{:?}", config.source).into_bytes());
    parts.push(serde_json::to_vec(&config.pipeline.inventory.file).unwrap_or_default());
    parts.push(serde_json::to_vec(&config.pipeline.settings.detectors).unwrap_or_default());
    let a = &config.archive;
    parts.push(format!("{:?} {:?} {:?}", a.since, a.until, a.merge_window).into_bytes());
    parts.push(format!("{} {:?}", config.write_events, config.tables).into_bytes());
    checkpoint::fingerprint(parts.iter().map(Vec::as_slice))
}

/// The checkpoint to resume from, after checking it belongs to these inputs.
fn resume_point(out_dir: &Path, fingerprint: &str) -> Result<Option<Checkpoint>, ReplayError> {
    let manifest_path = out_dir.join(checkpoint::MANIFEST_FILE);
    let Some(manifest) = checkpoint::read_manifest(out_dir)? else {
        tracing::warn!(
            manifest = %manifest_path.display(),
            "--resume: no checkpoint in the output directory; replaying from the beginning"
        );
        return Ok(None);
    };
    if manifest.complete {
        return Err(ReplayError::Output(format!(
            "--resume: the replay in {} already finished ({}); run without --resume to replay again",
            out_dir.display(),
            manifest_path.display()
        )));
    }
    if manifest.fingerprint != fingerprint {
        return Err(ReplayError::Output(format!(
            "--resume: the inputs or settings differ from the interrupted run's ({}: input files, their sizes, inventory, detector settings, --since/--until, --merge-window and outputs must be the same); run without --resume to start over",
            manifest_path.display()
        )));
    }
    Ok(manifest.checkpoint)
}

/// Producer (the merge) → attribute stage → (optional) events sink, connected by the
/// embedded bus. `produce` gets a function that sends one record downstream.
fn run_stages<T>(
    config: &ReplayConfig,
    mut stage: AttributeStage,
    events_table: Option<EventsTable>,
    checkpoints: &CheckpointContext<'_>,
    produce: impl FnOnce(&mut dyn FnMut(Emitted) -> Result<(), ReplayError>) -> Result<T, ReplayError>,
) -> Result<(AttributeStage, u64, T, Option<EventsWritten>), ReplayError> {
    let (events_tx, events_rx) = bus::channel::<Emitted>("lineage.events", IN_FLIGHT);
    let (attributed_tx, attributed_rx) =
        bus::channel::<Attributed>("lineage.attributed", IN_FLIGHT);
    let write_events = config.write_events;
    let publish = write_events || events_table.is_some();
    let events_path = config.out_dir.join("events.jsonl");
    let out_dir = checkpoints.out_dir;
    std::thread::scope(|scope| {
        let attribute = scope.spawn(move || {
            for batch in events_rx {
                let mut out: Vec<Attributed> = Vec::with_capacity(batch.len());
                for emitted in batch {
                    match emitted {
                        Emitted::Record(r) => {
                            let event = stage.process(r);
                            if publish {
                                out.push(Attributed::Event(event));
                            }
                        }
                        Emitted::FactsOnly(r) => stage.apply_facts(&r),
                        Emitted::Checkpoint(cp) => {
                            checkpoint::write_state_file(out_dir, &cp.state_file(), |w| {
                                stage.write_state(w)
                            })?;
                            out.push(Attributed::Checkpoint(cp));
                        }
                    }
                }
                attributed_tx
                    .publish(out)
                    .map_err(|e| ReplayError::Stage(e.to_string()))?;
            }
            Ok::<_, ReplayError>(stage)
        });
        let sink = scope.spawn(move || {
            let mut sink = match (write_events, checkpoints.events_jsonl) {
                (false, _) => None,
                (true, None) => Some(JsonLinesSink::create(&events_path)?),
                (true, Some(at)) => {
                    Some(JsonLinesSink::resume(&events_path, at.bytes, at.records)?)
                }
            };
            let mut table = events_table;
            for batch in attributed_rx {
                for item in batch {
                    let e = match item {
                        Attributed::Event(e) => e,
                        Attributed::Checkpoint(mut cp) => {
                            if let Some(sink) = sink.as_mut() {
                                sink.flush()?;
                                cp.events_jsonl = Some(SinkOffset {
                                    bytes: sink.bytes(),
                                    records: sink.written(),
                                });
                            }
                            let state = EventsState {
                                table: table.as_mut().map(EventsTable::checkpoint).transpose()?,
                            };
                            checkpoint::write_state_file(out_dir, &cp.events_file(), |w| {
                                serde_json::to_writer(w, &state)
                            })?;
                            checkpoint::write_manifest(out_dir, &checkpoints.manifest(*cp))?;
                            checkpoints.in_flight.store(false, Ordering::Release);
                            continue;
                        }
                    };
                    if let Some(sink) = sink.as_mut() {
                        sink.write(&e)?;
                    }
                    if let Some(table) = table.as_mut() {
                        table.write(&e)?;
                    }
                }
            }
            let written = match sink.as_mut() {
                Some(sink) => {
                    sink.flush()?;
                    sink.written()
                }
                None => 0,
            };
            Ok::<_, ReplayError>((written, table.map(EventsTable::finish).transpose()?))
        });
        let mut batch = Vec::with_capacity(BATCH);
        let mut send = |record: Emitted| -> Result<(), ReplayError> {
            batch.push(record);
            if batch.len() == BATCH {
                events_tx
                    .publish(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .map_err(|e| ReplayError::Stage(e.to_string()))?;
            }
            Ok(())
        };
        let produced = produce(&mut send);
        let flushed = events_tx
            .publish(batch)
            .map_err(|e| ReplayError::Stage(e.to_string()));
        drop(events_tx);
        let stage = attribute
            .join()
            .map_err(|_| ReplayError::Stage("attribute stage panicked".into()))??;
        let (written, table) = sink
            .join()
            .map_err(|_| ReplayError::Stage("events sink panicked".into()))??;
        let produced = produced?;
        flushed?;
        Ok((stage, written, produced, table))
    })
}

/// Everything attributed to `who`, with revocation requests raised by `operator`.
fn sweep_of(
    stage: &AttributeStage,
    who: &str,
) -> Result<(lineage_core::HumanId, Vec<SweepItem>), ReplayError> {
    let graph = stage.graph();
    let owner = match graph.human_by_alias(who) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return Err(ReplayError::Output(format!(
                "`{who}` is no human in the inventory (id, e-mail or alias)"
            )))
        }
        Err(many) => {
            return Err(ReplayError::Output(format!(
                "`{who}` is ambiguous: {}",
                many.iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let mut items: Vec<SweepItem> = stage
        .credentials_of(&owner)
        .into_iter()
        .map(|credential| {
            let action = lineage_detect::revocation_request(
                graph,
                &credential.credential,
                &owner,
                "operator",
                format!("operator sweep of {owner}'s credentials"),
                chrono::Utc::now(),
            );
            SweepItem {
                blast_radius: graph.blast_radius(&credential.credential.id),
                credential,
                action,
            }
        })
        .collect();
    items.sort_by_key(|i| std::cmp::Reverse(i.credential.last_used));
    Ok((owner, items))
}

fn write_summary(dir: &Path, summary: &RunSummary) -> Result<(), ReplayError> {
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(summary).expect("summary serializes");
    std::fs::write(&path, text + "\n")
        .map_err(|e| ReplayError::Output(format!("writing {}: {e}", path.display())))
}
