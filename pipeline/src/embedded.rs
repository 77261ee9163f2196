//! The live pipeline in one process (`lineage run` on the embedded bus, the
//! default): every `[[source]]` connector is followed until SIGTERM, and its records
//! go through the same stages as replay's and the Kafka bus's.
//!
//! ```text
//! source threads (one per [[source]])        attribute thread                 outputs thread
//! poll → normalize (parse, Sigma) ──batch──► Vault join → event-time gate ──► alerts.jsonl + [alerts] sinks
//!   ▲                                        → attribute + detect              actions → responder (ledger)
//!   └──────────── ack (after checkpoint) ◄── events table, checkpoint ────────  dead letters, events.jsonl
//! ```
//!
//! **Order across sources.** Each source is a stream with a watermark: the latest
//! event time it has delivered, and whether its last poll found nothing new
//! (caught up). A use waits in an event-time-ordered buffer until every stream has
//! passed its time or is caught up, so a departure in one source is applied before
//! the later uses in another, as replay's merge does, for as long as each source
//! delivers in roughly event-time order. A source that is busy but behind holds
//! uses back at most `[run] max_hold_ms`. Vault/OpenBao request and response
//! entries are joined first ([`crate::normalize::VaultJoin`]).
//!
//! **Acknowledgement follows durability.** Every `[run] checkpoint_secs`, and at
//! SIGTERM, the attribute thread closes the events table files, writes the graph
//! snapshot tables and its state (graph, detector baselines, alert book, counts,
//! and the ids of records it processed from batches not yet acknowledged) to
//! `<state_dir>/pipeline/`, then sends a checkpoint marker behind the last record it
//! covers. The outputs thread, on the marker, fsyncs every output it wrote, records
//! their lengths and replaces the manifest (`checkpoint.json`); only then are the
//! batches completed before the marker acknowledged to their sources (checkpoint
//! file advanced, SQS message deleted). A crash therefore leaves the last complete
//! checkpoint: on restart the state is restored, outputs that can be cut
//! (`events.jsonl`, `dead_letters.jsonl`, the `events` and `dead_letters` tables)
//! are cut back to it, the sources re-deliver what was not acknowledged, and
//! records the checkpoint already covers are recognised by id and skipped. Alerts
//! and actions are never cut: [`crate::outputs`] delivers each alert id and handles
//! each action key once per output directory, and the responder's write-ahead
//! ledger executes each revocation at most once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lineage_core::summary::SourceCounts;
use lineage_core::{Action, Alert, AttributedEvent, DeadLetter, Provenance, RunSummary, Source};
use lineage_ingest::connect::{BatchId, CheckpointStore, Connector, ConnectorSpec};
use lineage_ingest::Normalized;
use lineage_sinks::JsonLinesSink;
use lineage_tables::{
    DeadLetterTable, EventsCursor, EventsTable, LineageTables, TableCounts, TableCursor,
    TablesOptions, TABLES_DIR,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::{Outcome, Stage};
use crate::normalize::{normalize_record, VaultJoin};
use crate::{state_files, AttributeStage, Metrics, Pipeline, PipelineError, StageState};

/// Vault records a held request waits for its response before it passes alone.
const VAULT_HOLD_RECORDS: u64 = 5_000;
/// A request whose response has not come this long after it passes alone once its
/// source is caught up.
const VAULT_HOLD_QUIET: Duration = Duration::from_secs(2);
/// Batches in flight from the sources to the attribute thread.
const SOURCE_BATCHES: usize = 16;
/// Items in flight from the attribute thread to the outputs thread.
const OUTPUT_ITEMS: usize = 64;
/// Format of the checkpoint files.
const VERSION: u32 = 1;
/// The manifest, under `<state_dir>/pipeline/`.
const MANIFEST: &str = "checkpoint.json";

/// What an embedded run did (also in `<out_dir>/summary.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EmbeddedReport {
    /// Records read, normalized and dead-lettered, overall and per source.
    pub summary: RunSummary,
    /// Checkpoints completed by this process.
    pub checkpoints: u64,
    /// Records re-delivered after a restart that a checkpoint already covered.
    pub duplicates_skipped: u64,
}

/// Runs the embedded live pipeline until `shutdown` is raised (SIGTERM) or a
/// stage fails. Builds every source first, so a bad source fails at start.
pub fn run(
    pipeline: &Pipeline,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
) -> Result<EmbeddedReport, PipelineError> {
    let run = &pipeline.settings.run;
    if pipeline.settings.sources.is_empty() {
        return Err(PipelineError::Config(
            "no [[source]] to follow: declare at least one (`lineage run --help` shows an example), or use `lineage replay` for an archive".into(),
        ));
    }
    let out_dir = run.out_dir.clone();
    let state_dir = run.state_dir();
    for d in [
        &out_dir,
        &state_dir.join("sources"),
        &state_dir.join("pipeline"),
    ] {
        std::fs::create_dir_all(d)
            .map_err(|e| PipelineError::Io(format!("creating {}: {e}", d.display())))?;
    }
    let mut sources = Vec::new();
    for (i, s) in pipeline.settings.sources.iter().enumerate() {
        let name = s.name(i);
        let spec = s.connector.clone();
        let store = if spec.needs_no_checkpoint() {
            CheckpointStore::ephemeral(spec.kind())
        } else {
            CheckpointStore::new(
                state_dir.join("sources").join(format!("{name}.json")),
                spec.kind(),
            )
        };
        let connector = spec
            .build(store)
            .map_err(|e| PipelineError::Source(name.clone(), e.to_string()))?;
        sources.push((name, spec, connector));
    }

    let restored = Restored::load(&state_dir)?;
    let (data_tx, data_rx) = mpsc::sync_channel::<FromSource>(SOURCE_BATCHES);
    let (out_tx, out_rx) = mpsc::sync_channel::<ToOutputs>(OUTPUT_ITEMS);
    let mut ack_txs = Vec::new();
    let mut names = Vec::new();
    let poll_interval = Duration::from_millis(run.poll_interval_ms.max(10));
    let limits = pipeline.limits();
    std::thread::scope(|scope| {
        let mut source_handles = Vec::new();
        for (index, (name, spec, connector)) in sources.into_iter().enumerate() {
            let (ack_tx, ack_rx) = mpsc::channel::<BatchId>();
            ack_txs.push(ack_tx);
            names.push(name.clone());
            let data_tx = data_tx.clone();
            let shutdown = shutdown.clone();
            let metrics = metrics.clone();
            let sigma = pipeline.sigma.clone();
            let handle = std::thread::Builder::new()
                .name(format!("source-{name}"))
                .spawn_scoped(scope, move || {
                    follow_source(SourceLoop {
                        index,
                        name,
                        spec,
                        connector,
                        data: Some(data_tx),
                        acks: ack_rx,
                        shutdown,
                        metrics,
                        sigma,
                        limits,
                        poll_interval,
                    })
                })
                .map_err(|e| PipelineError::Io(format!("starting a source thread: {e}")))?;
            source_handles.push(handle);
        }
        drop(data_tx);
        let outputs = {
            let metrics = metrics.clone();
            let out_dir = out_dir.clone();
            let state_dir = state_dir.clone();
            let restored_outputs = restored.outputs.clone();
            let ack_txs = std::mem::take(&mut ack_txs);
            std::thread::Builder::new()
                .name("outputs".into())
                .spawn_scoped(scope, move || {
                    outputs_loop(
                        pipeline,
                        &out_dir,
                        &state_dir,
                        restored_outputs,
                        out_rx,
                        ack_txs,
                        &metrics,
                    )
                })
                .map_err(|e| PipelineError::Io(format!("starting the outputs thread: {e}")))?
        };
        let attributed = attribute_loop(AttributeLoop {
            pipeline,
            state_dir: &state_dir,
            out_dir: &out_dir,
            restored,
            names: &names,
            data: data_rx,
            out: out_tx,
            shutdown: &shutdown,
            metrics: &metrics,
        });
        if attributed.is_err() {
            // Stop the sources; the outputs thread ends once the channel closes.
            shutdown.store(true, Ordering::SeqCst);
            metrics.set_failed();
        }
        let written = outputs
            .join()
            .unwrap_or_else(|_| Err(PipelineError::Stage("outputs", "panicked".into())));
        if written.is_err() {
            shutdown.store(true, Ordering::SeqCst);
            metrics.set_failed();
        }
        for h in source_handles {
            if h.join().is_err() {
                tracing::error!("a source thread panicked");
            }
        }
        let mut report = attributed?;
        report.checkpoints = written?;
        Ok(report)
    })
}

// ------------------------------------------------------------------- sources

/// What a source thread sends the attribute thread.
enum FromSource {
    /// A polled batch, normalized.
    Batch {
        stream: usize,
        id: BatchId,
        /// When the source handed it out (ms since the epoch), for latency.
        available_ms: i64,
        items: Vec<Item>,
    },
    /// The source's last poll found nothing new.
    CaughtUp { stream: usize },
    /// The source acknowledged these batches to its connector.
    Acked { stream: usize, ids: Vec<BatchId> },
}

/// One record of a batch.
#[allow(clippy::large_enum_variant)] // boxing every record would cost an allocation per record
enum Item {
    Record(Normalized),
    Dead(DeadLetter),
}

struct SourceLoop {
    index: usize,
    name: String,
    spec: ConnectorSpec,
    connector: Box<dyn Connector>,
    data: Option<SyncSender<FromSource>>,
    acks: Receiver<BatchId>,
    shutdown: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    sigma: Option<Arc<lineage_detect::sigma::SigmaRules>>,
    limits: lineage_ingest::ParseLimits,
    poll_interval: Duration,
}

/// Splits a connector's origin `where#n` into a provenance.
fn provenance_of(origin: &str) -> Provenance {
    match origin.rsplit_once('#') {
        Some((path, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            Provenance::file(path, n.parse().unwrap_or(0))
        }
        _ => Provenance::file(origin, 0),
    }
}

/// Acknowledges `ids` to the connector and confirms them to the attribute thread
/// (which then forgets their record ids).
fn apply_acks(s: &mut SourceLoop, ids: Vec<BatchId>) {
    if ids.is_empty() {
        return;
    }
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        match s.connector.ack(id) {
            Ok(()) => done.push(id),
            // Not acknowledged: the source delivers it again after a restart, and
            // the checkpoint's record ids make that harmless.
            Err(e) => {
                tracing::warn!(source = %s.name, batch = id, error = %e, "acknowledging a batch failed")
            }
        }
    }
    if let Some(data) = &s.data {
        let _ = data.send(FromSource::Acked {
            stream: s.index,
            ids: done,
        });
    }
}

/// Sends to the attribute thread; false once it is gone.
fn send(s: &SourceLoop, msg: FromSource) -> bool {
    s.data.as_ref().is_some_and(|d| d.send(msg).is_ok())
}

fn follow_source(mut s: SourceLoop) {
    let mut caught_up_sent = false;
    loop {
        let ids: Vec<BatchId> = s.acks.try_iter().collect();
        apply_acks(&mut s, ids);
        if s.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match s.connector.poll() {
            Ok(Some(batch)) => {
                caught_up_sent = false;
                let available_ms = chrono::Utc::now().timestamp_millis();
                let mut items = Vec::with_capacity(batch.records.len() + batch.dead_letters.len());
                for r in &batch.records {
                    let item = match normalize_record(
                        batch.source,
                        &r.bytes,
                        provenance_of(&r.origin),
                        s.limits,
                        s.sigma.as_deref(),
                    ) {
                        Ok(n) => Item::Record(n),
                        Err(d) => Item::Dead(d),
                    };
                    items.push(item);
                }
                items.extend(batch.dead_letters.into_iter().map(Item::Dead));
                s.metrics
                    .record(Stage::Source, &s.name, Outcome::In, items.len() as u64);
                let msg = FromSource::Batch {
                    stream: s.index,
                    id: batch.id,
                    available_ms,
                    items,
                };
                if !send(&s, msg) {
                    break;
                }
            }
            Ok(None) => {
                if !caught_up_sent {
                    if !send(&s, FromSource::CaughtUp { stream: s.index }) {
                        break;
                    }
                    caught_up_sent = true;
                }
                if !s.spec.waits_in_poll() {
                    sleep_unless(&s.shutdown, s.poll_interval);
                }
            }
            Err(e) => {
                s.metrics.record(Stage::Source, &s.name, Outcome::Error, 1);
                tracing::warn!(source = %s.name, error = %e, "poll failed; retrying after the poll interval");
                sleep_unless(&s.shutdown, s.poll_interval.max(Duration::from_secs(1)));
            }
        }
    }
    // Stopping: the attribute thread finishes once every source has hung up; the last
    // checkpoint's acknowledgements still arrive, until the pipeline closes the channel.
    s.data = None;
    while let Ok(id) = s.acks.recv() {
        if let Err(e) = s.connector.ack(id) {
            tracing::warn!(source = %s.name, batch = id, error = %e, "acknowledging a batch failed");
        }
    }
    tracing::info!(source = %s.name, stats = ?s.connector.stats(), "source stopped");
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

// ------------------------------------------------------------------ restore

/// Where the outputs stood at a checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct OutputsCursor {
    dead_letters_jsonl: u64,
    events_jsonl: Option<u64>,
    dead_letters_table: Option<TableCursor>,
}

/// The attribute thread's part of a checkpoint.
#[derive(Serialize, Deserialize)]
struct AttributeCheckpoint {
    stage: StageState,
    summary: RunSummary,
    /// Ids of records processed from batches their sources had not acknowledged.
    processed_unacked: Vec<String>,
    events_table: Option<EventsCursor>,
}

/// [`AttributeCheckpoint`] without the stage, which writes itself.
#[derive(Serialize)]
struct AttributeCheckpointRest<'a> {
    summary: &'a RunSummary,
    processed_unacked: Vec<&'a str>,
    events_table: &'a Option<EventsCursor>,
}

/// `<state_dir>/pipeline/checkpoint.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    seq: u64,
    written_at: chrono::DateTime<chrono::Utc>,
    outputs: OutputsCursor,
}

fn state_file(state_dir: &Path, seq: u64) -> PathBuf {
    state_dir
        .join("pipeline")
        .join(format!("state-{seq}.json.gz"))
}

/// What a restart continues from.
struct Restored {
    seq: u64,
    attribute: Option<AttributeCheckpoint>,
    outputs: OutputsCursor,
}

impl Restored {
    fn load(state_dir: &Path) -> Result<Self, PipelineError> {
        let path = state_dir.join("pipeline").join(MANIFEST);
        let manifest: Manifest = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                PipelineError::Io(format!(
                    "{}: not a checkpoint manifest ({e}); move it away to start afresh",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A first start: `dead_letters.jsonl` and `events.jsonl` start empty
                // (cut to the empty cursor); alerts and actions are delivered once.
                return Ok(Self {
                    seq: 0,
                    attribute: None,
                    outputs: OutputsCursor::default(),
                });
            }
            Err(e) => return Err(PipelineError::Io(format!("{}: {e}", path.display()))),
        };
        if manifest.version != VERSION {
            return Err(PipelineError::Io(format!(
                "{}: checkpoint format {} (this lineage writes {VERSION}); move the state directory away to start afresh",
                path.display(),
                manifest.version
            )));
        }
        let attribute: AttributeCheckpoint =
            state_files::read_gz_json(&state_file(state_dir, manifest.seq))
                .map_err(PipelineError::Io)?;
        tracing::info!(
            checkpoint = manifest.seq,
            written_at = %manifest.written_at,
            records = attribute.summary.read,
            "restoring the pipeline from its last checkpoint"
        );
        Ok(Self {
            seq: manifest.seq,
            attribute: Some(attribute),
            outputs: manifest.outputs,
        })
    }
}

// ---------------------------------------------------------------- attribute

/// What the attribute thread sends the outputs thread.
#[allow(clippy::large_enum_variant)]
enum ToOutputs {
    Event(AttributedEvent),
    Dead(DeadLetter),
    Alert(Alert, i64),
    Action(Action),
    Checkpoint {
        seq: u64,
        /// Batches to acknowledge once the checkpoint is complete, per source.
        acks: Vec<(usize, BatchId)>,
        summary: RunSummary,
    },
}

struct AttributeLoop<'a> {
    pipeline: &'a Pipeline,
    state_dir: &'a Path,
    out_dir: &'a Path,
    restored: Restored,
    names: &'a [String],
    data: Receiver<FromSource>,
    out: SyncSender<ToOutputs>,
    shutdown: &'a AtomicBool,
    metrics: &'a Metrics,
}

/// A stream's progress in event time.
#[derive(Clone, Copy, Debug)]
struct Mark {
    time_us: i64,
    caught_up: bool,
}

/// A batch whose records are not all processed, or whose acknowledgement the source
/// has not confirmed.
#[derive(Default)]
struct Track {
    remaining: usize,
    /// Ids of its records processed so far.
    keys: Vec<String>,
}

/// What travels with a record through the Vault join.
struct Tag {
    batch: (usize, BatchId),
    available_ms: i64,
    key: String,
}

/// A record waiting in the event-time buffer.
struct Held {
    record: Normalized,
    batch: (usize, BatchId),
    since: Instant,
    available_ms: i64,
}

/// The id a record is recognised by when a source delivers it again.
fn record_key(n: &Normalized) -> String {
    let half = match &n.half {
        None => "",
        Some(lineage_ingest::Half::Request(_)) => ":req",
        Some(lineage_ingest::Half::Response(_)) => ":resp",
    };
    format!("{}:{}{half}", n.use_.source, n.use_.event_id)
}

fn dead_key(d: &DeadLetter) -> String {
    let mut h = Sha256::new();
    h.update(d.provenance.to_string().as_bytes());
    h.update([0]);
    h.update(d.reason.as_bytes());
    h.update([0]);
    h.update(d.original.as_deref().unwrap_or_default().as_bytes());
    h.update(d.original_base64.as_deref().unwrap_or_default().as_bytes());
    format!("dl:{}", hex::encode(&h.finalize()[..16]))
}

fn count_source(summary: &mut RunSummary, source: Source, normalized: bool) {
    summary.read += 1;
    let c: &mut SourceCounts = summary.by_source.entry(source.to_string()).or_default();
    c.read += 1;
    if normalized {
        summary.normalized += 1;
        c.normalized += 1;
    } else {
        summary.dead_lettered += 1;
        c.dead_lettered += 1;
    }
}

struct Attributor<'a> {
    stage: AttributeStage,
    summary: RunSummary,
    marks: Vec<Mark>,
    joins: Vec<VaultJoin<Tag>>,
    tracks: HashMap<(usize, BatchId), Track>,
    completed: Vec<(usize, BatchId)>,
    skip: HashSet<String>,
    held: BTreeMap<(i64, u8, u64), Held>,
    seq: u64,
    events: Option<EventsTable>,
    tables: Option<LineageTables>,
    out: &'a SyncSender<ToOutputs>,
    metrics: &'a Metrics,
    max_hold: Duration,
    duplicates: u64,
}

impl Attributor<'_> {
    fn send(&self, m: ToOutputs) -> Result<(), PipelineError> {
        self.out
            .send(m)
            .map_err(|_| PipelineError::Stage("outputs", "stopped".into()))
    }

    fn done_one(&mut self, batch: (usize, BatchId), key: Option<String>) {
        if let Some(t) = self.tracks.get_mut(&batch) {
            if let Some(k) = key {
                t.keys.push(k);
            }
            t.remaining = t.remaining.saturating_sub(1);
            if t.remaining == 0 {
                self.completed.push(batch);
            }
        }
    }

    fn take_batch(
        &mut self,
        stream: usize,
        id: BatchId,
        available_ms: i64,
        items: Vec<Item>,
    ) -> Result<(), PipelineError> {
        let batch = (stream, id);
        self.tracks.insert(
            batch,
            Track {
                remaining: items.len(),
                keys: Vec::new(),
            },
        );
        if items.is_empty() {
            self.completed.push(batch);
        }
        let mut joined = Vec::new();
        let mut pass = Vec::new();
        for item in items {
            match item {
                Item::Dead(d) => {
                    let key = dead_key(&d);
                    if self.skip.remove(&key) {
                        self.duplicates += 1;
                        self.metrics.record(
                            Stage::Normalize,
                            d.source.as_str(),
                            Outcome::Duplicate,
                            1,
                        );
                        self.done_one(batch, Some(key));
                        continue;
                    }
                    count_source(&mut self.summary, d.source, false);
                    self.metrics.record(
                        Stage::Normalize,
                        d.source.as_str(),
                        Outcome::DeadLettered,
                        1,
                    );
                    self.send(ToOutputs::Dead(d))?;
                    self.done_one(batch, Some(key));
                }
                Item::Record(n) => {
                    let key = record_key(&n);
                    if self.skip.remove(&key) {
                        self.duplicates += 1;
                        self.metrics.record(
                            Stage::Normalize,
                            n.use_.source.as_str(),
                            Outcome::Duplicate,
                            1,
                        );
                        self.done_one(batch, Some(key));
                        continue;
                    }
                    // Counted once processed (or folded into its response), so a
                    // checkpoint's counts cover exactly the records its state does.
                    self.metrics
                        .record(Stage::Normalize, n.use_.source.as_str(), Outcome::Out, 1);
                    let t = n.use_.time.timestamp_micros();
                    let mark = &mut self.marks[stream];
                    mark.time_us = mark.time_us.max(t);
                    mark.caught_up = false;
                    self.joins[stream].push(
                        n,
                        Tag {
                            batch,
                            available_ms,
                            key,
                        },
                        &mut pass,
                        &mut joined,
                    );
                }
            }
        }
        for t in joined {
            self.summary.joined_halves += 1;
            count_source(&mut self.summary, Source::Vault, true);
            self.done_one(t.batch, Some(t.key));
        }
        self.hold(pass);
        Ok(())
    }

    fn hold(&mut self, pass: Vec<(Normalized, Tag)>) {
        for (
            record,
            Tag {
                batch,
                available_ms,
                ..
            },
        ) in pass
        {
            self.seq += 1;
            let key = (
                record.use_.time.timestamp_micros(),
                u8::from(record.facts.is_empty()),
                self.seq,
            );
            self.held.insert(
                key,
                Held {
                    record,
                    batch,
                    since: Instant::now(),
                    available_ms,
                },
            );
        }
        self.metrics.set_held(self.held.len());
    }

    fn caught_up(&mut self, stream: usize) {
        self.marks[stream].caught_up = true;
        let mut pass = Vec::new();
        self.joins[stream].flush_older_than(VAULT_HOLD_QUIET, &mut pass);
        self.hold(pass);
    }

    /// The time every stream has passed (or `i64::MAX` when all are caught up).
    fn watermark(&self) -> i64 {
        self.marks
            .iter()
            .zip(&self.joins)
            .map(|(m, j)| {
                let t = match j.earliest_held() {
                    Some(h) => m.time_us.min(h - 1),
                    None => m.time_us,
                };
                if m.caught_up && j.held() == 0 {
                    i64::MAX
                } else {
                    t
                }
            })
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Processes what the watermark (or the hold limit) releases, in event-time order.
    fn release(&mut self) -> Result<(), PipelineError> {
        // A quiet source's Vault requests whose responses have not come pass alone.
        let mut pass = Vec::new();
        for (m, j) in self.marks.iter().zip(self.joins.iter_mut()) {
            if m.caught_up && j.held() > 0 {
                j.flush_older_than(VAULT_HOLD_QUIET, &mut pass);
            }
        }
        if !pass.is_empty() {
            self.hold(pass);
        }
        let watermark = self.watermark();
        while let Some(entry) = self.held.first_entry() {
            let (time, _, _) = *entry.key();
            if time > watermark && entry.get().since.elapsed() < self.max_hold {
                break;
            }
            let h = entry.remove();
            self.process(h)?;
        }
        self.metrics.set_held(self.held.len());
        Ok(())
    }

    fn process(&mut self, h: Held) -> Result<(), PipelineError> {
        let key = record_key(&h.record);
        let source = h.record.use_.source;
        let (alerts_before, actions_before) = {
            let book = self.stage.alerts();
            (book.alerts().len(), book.actions().len())
        };
        count_source(&mut self.summary, source, true);
        let event = self.stage.process(h.record);
        let corrections = self.stage.take_corrections();
        if let Some(t) = self.events.as_mut() {
            t.write(&event)?;
            for c in &corrections {
                t.write_revision(&c.event, c.revision)?;
            }
        }
        self.metrics
            .record(Stage::Graph, source.as_str(), Outcome::Out, 1);
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.metrics
            .observe_latency((now_ms - h.available_ms).max(0) as f64 / 1000.0);
        let (alerts, actions) = {
            let book = self.stage.alerts();
            (
                book.alerts()[alerts_before..].to_vec(),
                book.actions()[actions_before..].to_vec(),
            )
        };
        self.send(ToOutputs::Event(event))?;
        for a in alerts {
            self.metrics.alert(&a.detector);
            self.send(ToOutputs::Alert(a, h.available_ms))?;
        }
        for a in actions {
            self.metrics.action();
            self.send(ToOutputs::Action(a))?;
        }
        // Every alert and action so far is out: closed alerts can leave memory.
        self.stage.retire_closed_alerts();
        self.done_one(h.batch, Some(key));
        Ok(())
    }

    fn acked(&mut self, stream: usize, ids: Vec<BatchId>) {
        for id in ids {
            self.tracks.remove(&(stream, id));
        }
    }

    /// Writes the state, the events table's cursor and the snapshot tables, then
    /// sends the checkpoint marker after the last record it covers.
    fn checkpoint(&mut self, state_dir: &Path, seq: u64) -> Result<(), PipelineError> {
        let started = Instant::now();
        let mut cursor = None;
        if let (Some(events), Some(tables)) = (self.events.take(), self.tables.as_ref()) {
            let mut events = events;
            let c = events.checkpoint()?;
            let written = events.finish()?;
            tables.write_graph(&written, self.stage.graph())?;
            self.events = Some(tables.resume_events(&c)?);
            cursor = Some(c);
        }
        self.fill_summary();
        let processed_unacked: Vec<&str> = self
            .tracks
            .values()
            .flat_map(|t| t.keys.iter().map(String::as_str))
            .collect();
        let unacked = processed_unacked.len();
        let rest = AttributeCheckpointRest {
            summary: &self.summary,
            processed_unacked,
            events_table: &cursor,
        };
        let stage = &self.stage;
        state_files::write_gz_json(&state_file(state_dir, seq), |w| {
            // `{"stage": <the stage's state>, "summary": …, …}`, streamed.
            w.write_all(b"{\"stage\":").map_err(serde_json::Error::io)?;
            stage.write_state(&mut *w)?;
            let rest = serde_json::to_vec(&rest)?;
            w.write_all(b",").map_err(serde_json::Error::io)?;
            w.write_all(&rest[1..]).map_err(serde_json::Error::io)
        })
        .map_err(PipelineError::Io)?;
        let acks = std::mem::take(&mut self.completed);
        tracing::debug!(
            checkpoint = seq,
            acks = acks.len(),
            unacked,
            held = self.held.len(),
            secs = started.elapsed().as_secs_f64(),
            "pipeline state written"
        );
        self.send(ToOutputs::Checkpoint {
            seq,
            acks,
            summary: self.summary.clone(),
        })
    }

    fn fill_summary(&mut self) {
        let s = &mut self.summary;
        s.lineage_facts = self.stage.facts;
        s.service_events = self.stage.service_events;
        s.attributed = self.stage.attributed;
        s.unattributed = self.stage.unattributed;
        let attributable = self.stage.attributed + self.stage.unattributed;
        s.attributed_pct = if attributable == 0 {
            100.0
        } else {
            100.0 * self.stage.attributed as f64 / attributable as f64
        };
        s.by_method = self.stage.by_method();
        s.top_unattributed = self.stage.top_unattributed(20);
        let book = self.stage.alerts();
        s.alerts = book.opened_by_detector().values().sum();
        s.actions_requested = book.actions_requested();
        s.alerts_by_detector = book
            .opened_by_detector()
            .iter()
            .map(|(d, n)| (d.to_string(), *n))
            .collect();
    }
}

fn attribute_loop(l: AttributeLoop<'_>) -> Result<EmbeddedReport, PipelineError> {
    let pipeline = l.pipeline;
    let run = &pipeline.settings.run;
    let mut stage = pipeline.live_attribute_stage()?;
    let mut summary = RunSummary::default();
    let mut skip = HashSet::new();
    let tables = if run.no_tables {
        None
    } else {
        Some(LineageTables::new(
            l.out_dir.join(TABLES_DIR),
            TablesOptions::default(),
        )?)
    };
    let mut events = None;
    let mut seq = l.restored.seq;
    if let Some(cp) = l.restored.attribute {
        stage
            .restore_state(cp.stage, &pipeline.inventory)
            .map_err(|e| PipelineError::Io(format!("restoring the pipeline state: {e}")))?;
        summary = cp.summary;
        skip = cp.processed_unacked.into_iter().collect();
        if let (Some(t), Some(c)) = (tables.as_ref(), cp.events_table.as_ref()) {
            events = Some(t.resume_events(c)?);
        }
    }
    if events.is_none() {
        events = tables.as_ref().map(LineageTables::events).transpose()?;
    }
    let n = l.names.len();
    let mut a = Attributor {
        stage,
        summary,
        marks: vec![
            Mark {
                time_us: i64::MIN,
                caught_up: false,
            };
            n
        ],
        joins: (0..n).map(|_| VaultJoin::new(VAULT_HOLD_RECORDS)).collect(),
        tracks: HashMap::new(),
        completed: Vec::new(),
        skip,
        held: BTreeMap::new(),
        seq: 0,
        events,
        tables,
        out: &l.out,
        metrics: l.metrics,
        max_hold: Duration::from_millis(run.max_hold_ms.max(1)),
        duplicates: 0,
    };
    l.metrics.set_ready("embedded", true);
    let every = Duration::from_secs(run.checkpoint_secs.max(1));
    let mut last_checkpoint = Instant::now();
    let mut dirty = false;
    let mut stopping = false;
    loop {
        if !stopping && l.shutdown.load(Ordering::SeqCst) {
            stopping = true;
        }
        match l.data.recv_timeout(Duration::from_millis(100)) {
            Ok(FromSource::Batch {
                stream,
                id,
                available_ms,
                items,
            }) => {
                dirty = true;
                a.take_batch(stream, id, available_ms, items)?;
            }
            Ok(FromSource::CaughtUp { stream }) => a.caught_up(stream),
            Ok(FromSource::Acked { stream, ids }) => a.acked(stream, ids),
            Err(RecvTimeoutError::Timeout) => {}
            // Every source has stopped.
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !stopping {
            a.release()?;
        }
        if (dirty || !a.completed.is_empty()) && last_checkpoint.elapsed() >= every {
            seq += 1;
            a.checkpoint(l.state_dir, seq)?;
            last_checkpoint = Instant::now();
            dirty = false;
        }
    }
    // Stopped: what waits in the buffer is not processed (its batches are not
    // acknowledged, so the sources deliver it again on the next start).
    seq += 1;
    a.checkpoint(l.state_dir, seq)?;
    if let Some(events) = a.events.take() {
        let written = events.finish()?;
        if let Some(t) = a.tables.as_ref() {
            t.write_graph(&written, a.stage.graph())?;
        }
    }
    tracing::info!(
        held = a.held.len(),
        checkpoint = seq,
        "attribute stage stopped"
    );
    Ok(EmbeddedReport {
        summary: a.summary,
        checkpoints: 0,
        duplicates_skipped: a.duplicates,
    })
}

// ------------------------------------------------------------------ outputs

fn outputs_loop(
    pipeline: &Pipeline,
    out_dir: &Path,
    state_dir: &Path,
    restored: OutputsCursor,
    rx: Receiver<ToOutputs>,
    acks: Vec<Sender<BatchId>>,
    metrics: &Metrics,
) -> Result<u64, PipelineError> {
    let run = &pipeline.settings.run;
    let mut alerts = pipeline.alert_output(out_dir, &state_dir.join("spool"))?;
    let mut actions = pipeline.action_output(out_dir, true)?;
    let dead_path = out_dir.join("dead_letters.jsonl");
    let mut dead = JsonLinesSink::resume(&dead_path, restored.dead_letters_jsonl, 0)?;
    let events_path = out_dir.join("events.jsonl");
    let mut events = match (run.events, restored.events_jsonl) {
        (false, _) => None,
        (true, Some(at)) => Some(JsonLinesSink::resume(&events_path, at, 0)?),
        (true, None) => Some(JsonLinesSink::create(&events_path)?),
    };
    let tables = if run.no_tables {
        None
    } else {
        Some(LineageTables::new(
            out_dir.join(TABLES_DIR),
            TablesOptions::default(),
        )?)
    };
    let mut dead_table: Option<DeadLetterTable> = match (&tables, &restored.dead_letters_table) {
        (None, _) => None,
        (Some(t), Some(c)) => Some(t.resume_dead_letters(c)?),
        (Some(t), None) => Some(t.dead_letters()?),
    };
    let mut checkpoints = 0u64;
    let mut outcomes_dirty = true;
    let mut last_outcomes = Instant::now();
    for msg in rx {
        match msg {
            ToOutputs::Event(e) => {
                if let Some(s) = events.as_mut() {
                    s.write(&e)?;
                }
            }
            ToOutputs::Dead(d) => {
                dead.write(&d)?;
                if let Some(t) = dead_table.as_mut() {
                    t.write(&d)?;
                }
            }
            ToOutputs::Alert(a, available_ms) => {
                if alerts.deliver(&a)? {
                    outcomes_dirty = true;
                    metrics.record(Stage::Sinks, "alerts", Outcome::Out, 1);
                    let now = chrono::Utc::now().timestamp_millis();
                    tracing::info!(alert = %a.id, detector = %a.detector, latency_ms = now - available_ms, "alert delivered");
                }
            }
            ToOutputs::Action(a) => {
                if let Some(done) = actions.handle(a)? {
                    outcomes_dirty = true;
                    metrics.record(Stage::Sinks, "actions", Outcome::Out, 1);
                    tracing::info!(key = %done.idempotency_key, status = ?done.status, result = done.result.as_deref().unwrap_or(""), "action handled");
                }
            }
            ToOutputs::Checkpoint {
                seq,
                acks: done,
                summary,
            } => {
                alerts.sync()?;
                actions.sync()?;
                dead.sync()?;
                if let Some(s) = events.as_mut() {
                    s.sync()?;
                }
                let cursor = OutputsCursor {
                    dead_letters_jsonl: dead.bytes(),
                    events_jsonl: events.as_ref().map(JsonLinesSink::bytes),
                    dead_letters_table: dead_table
                        .as_mut()
                        .map(DeadLetterTable::checkpoint)
                        .transpose()?,
                };
                state_files::write_json(
                    &state_dir.join("pipeline").join(MANIFEST),
                    &Manifest {
                        version: VERSION,
                        seq,
                        written_at: chrono::Utc::now(),
                        outputs: cursor,
                    },
                )
                .map_err(PipelineError::Io)?;
                remove_older_states(state_dir, seq);
                write_summary(out_dir, &summary)?;
                for (stream, id) in done {
                    // A stopped source no longer listens; its batch is delivered again.
                    let _ = acks[stream].send(id);
                }
                checkpoints += 1;
                if outcomes_dirty && last_outcomes.elapsed() >= Duration::from_secs(15) {
                    refresh_outcome_tables(out_dir, tables.as_ref())?;
                    outcomes_dirty = false;
                    last_outcomes = Instant::now();
                }
            }
        }
    }
    drop(acks);
    alerts.finish()?;
    actions.sync()?;
    if let Some(t) = dead_table.take() {
        t.finish()?;
    }
    refresh_outcome_tables(out_dir, tables.as_ref())?;
    for st in alerts.sink_stats() {
        tracing::info!(sink = %st.name, kind = %st.kind, delivered = st.delivered, spooled = st.spooled, pending = st.pending, "alert sink");
    }
    Ok(checkpoints)
}

fn remove_older_states(state_dir: &Path, seq: u64) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("pipeline")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let n = name
            .strip_prefix("state-")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<u64>().ok());
        if n.is_some_and(|n| n < seq) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn write_summary(out_dir: &Path, summary: &RunSummary) -> Result<(), PipelineError> {
    state_files::write_json(&out_dir.join("summary.json"), summary).map_err(PipelineError::Io)
}

/// Rewrites the `alerts` and `actions` tables from the JSON-lines files (the
/// `dead_letters` table streams).
fn refresh_outcome_tables(
    out_dir: &Path,
    tables: Option<&LineageTables>,
) -> Result<(), PipelineError> {
    let Some(tables) = tables else {
        return Ok(());
    };
    let alerts: Vec<Alert> = read_jsonl(&out_dir.join(crate::outputs::ALERTS_FILE));
    let actions: Vec<Action> = read_jsonl(&out_dir.join(crate::outputs::ACTIONS_FILE));
    let mut counts = TableCounts::default();
    tables.write_outcomes(&alerts, &actions, &mut counts)?;
    Ok(())
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_split_into_provenance() {
        assert_eq!(
            provenance_of("s3://b/k.json.gz#3").to_string(),
            "s3://b/k.json.gz#3"
        );
        assert_eq!(
            provenance_of("socket:1.2.3.4").to_string(),
            "socket:1.2.3.4#0"
        );
        assert_eq!(provenance_of("a#b").to_string(), "a#b#0");
    }
}
