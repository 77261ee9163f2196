//! The stage loops of `lineage run` on the Kafka bus: normalize, graph/detect and
//! sinks, each a consumer group, each committing only after its outputs are durable
//! (see the module docs of [`crate::live`] for the design).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lineage_core::{Action, Alert, DeadLetter, LineageFact, Provenance, Source};
use lineage_graph::LineageGraph;
use lineage_ingest::{Half, Normalized};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::Offset;
use rdkafka::Message;
use sha2::{Digest, Sha256};

use super::client::{
    commit, committed_offset, dead_letter_payload, end_offsets, ensure_topics, group_consumer,
    header, lag, raw_partitions, BusConfig, OutputProducer, RebalanceLog, TopicReader,
};
use super::tables::{GraphTables, OutcomeTables};
use super::watermark::{Gate, SourceWatermark, WATERMARK_HEADER};
use super::{LiveError, WireEvent, WireHalf, VAULT_REQUEST_HOLD};
use crate::metrics::{Metrics, Outcome, Stage};
use crate::normalize::normalize_record;
use crate::outputs::id_fingerprint;
use crate::{AttributeStage, Pipeline};

/// How long a flush may wait for the broker before the batch counts as failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);
/// Event ids remembered for de-duplication (oldest forgotten first).
const SEEN_EVENTS: usize = 2_000_000;

/// Records normalize reads between two retention passes over its graph.
const NORMALIZE_EVICT_EVERY: u64 = 50_000;

/// A stage `lineage run --stages` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StageName {
    /// Raw topics → events, identity, DLQ.
    Normalize,
    /// Events → alerts, actions (attribution; runs together with `Detect`).
    Graph,
    /// Same loop as `Graph` (attribution and detection share the graph).
    Detect,
    /// Alerts and actions → files and alert sinks.
    Sinks,
}

impl std::str::FromStr for StageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "normalize" => Ok(Self::Normalize),
            "graph" => Ok(Self::Graph),
            "detect" => Ok(Self::Detect),
            "sinks" => Ok(Self::Sinks),
            other => Err(format!(
                "unknown stage `{other}` (normalize, graph, detect, sinks)"
            )),
        }
    }
}

/// Everything a `lineage run` on the Kafka bus needs.
#[derive(Clone)]
pub struct LiveConfig<'a> {
    /// The stage graph's parts (inventory, detectors, Sigma, alert sinks, responder).
    pub pipeline: &'a Pipeline,
    /// The bus (the settings' `[bus]` with command-line overrides).
    pub bus: BusConfig,
    /// Stages to run in this process.
    pub stages: Vec<StageName>,
    /// Where the sinks stage writes `alerts.jsonl` and `actions.jsonl`.
    pub out_dir: PathBuf,
    /// Messages per batch.
    pub batch: usize,
    /// First-message poll wait.
    pub poll: Duration,
    /// Graph stage: a caught-up raw partition counts as silent (no longer holds
    /// events back) once no raw partition progressed for this long.
    pub source_idle: Duration,
    /// Graph stage: the longest a use of a credential the graph does not know waits
    /// for a quiet raw partition.
    pub quiet_wait: Duration,
    /// Graph stage: the longest an event waits for a raw partition normalize is
    /// behind on.
    pub max_hold: Duration,
    /// Write the Parquet lineage tables under `<out_dir>/tables`.
    pub tables: bool,
    /// Metrics shared with `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Raised on SIGTERM: finish the batch, commit, return.
    pub shutdown: Arc<AtomicBool>,
}

impl<'a> LiveConfig<'a> {
    /// The Kafka runtime of `pipeline` on `bus`, running `stages` in this process.
    pub fn new(
        pipeline: &'a Pipeline,
        bus: BusConfig,
        stages: Vec<StageName>,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        let run = &pipeline.settings.run;
        Self {
            pipeline,
            bus,
            stages,
            out_dir: run.out_dir.clone(),
            batch: run.batch.max(1),
            poll: Duration::from_millis(run.poll_ms.max(1)),
            source_idle: Duration::from_millis(run.source_idle_ms),
            quiet_wait: Duration::from_millis(run.quiet_source_wait_ms),
            max_hold: Duration::from_millis(run.max_hold_ms),
            tables: !run.no_tables,
            metrics,
            shutdown,
        }
    }
}

impl std::fmt::Debug for LiveConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("bus", &self.bus)
            .field("stages", &self.stages)
            .field("out_dir", &self.out_dir)
            .finish_non_exhaustive()
    }
}

/// Runs the configured stages (one thread each) until shutdown or a stage fails.
pub fn run_kafka(cfg: &LiveConfig<'_>) -> Result<(), LiveError> {
    ensure_topics(&cfg.bus)?;
    let mut wanted: Vec<&'static str> = Vec::new();
    for s in &cfg.stages {
        let name = match s {
            StageName::Normalize => "normalize",
            StageName::Graph | StageName::Detect => "graph",
            StageName::Sinks => "sinks",
        };
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    for w in &wanted {
        cfg.metrics.set_ready(w, false);
    }
    let failed = std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|name| {
                let name: &'static str = name;
                let handle = scope.spawn(move || {
                    let r = match name {
                        "normalize" => normalize_stage(cfg),
                        "graph" => graph_stage(cfg),
                        _ => sinks_stage(cfg),
                    };
                    if let Err(e) = &r {
                        tracing::error!(stage = name, error = %e, "stage stopped");
                        cfg.metrics.set_failed();
                        // One stage down: stop the others cleanly too.
                        cfg.shutdown.store(true, Ordering::SeqCst);
                    }
                    r
                });
                (name, handle)
            })
            .collect();
        let mut first = None;
        for (name, h) in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(LiveError::Stage(name, "panicked".into())));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How long a batch keeps filling after its first message: each batch costs a
/// flush, a commit and an identity catch-up, so batches of a handful of messages
/// (what is ready the instant the first arrives) would make those dominate.
const BATCH_FILL: Duration = Duration::from_millis(50);

/// Up to `max` messages: waits `wait` for the first, then up to [`BATCH_FILL`] more
/// for the batch to fill.
fn poll_batch(
    consumer: &BaseConsumer<RebalanceLog>,
    max: usize,
    wait: Duration,
    stage: &str,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let mut timeout = wait;
    let mut fill_until: Option<Instant> = None;
    while out.len() < max {
        match consumer.poll(timeout) {
            None if fill_until.is_some_and(|t| Instant::now() < t) => {}
            None => break,
            Some(Err(e)) => {
                tracing::warn!(stage, error = %e, "consumer error (retrying)");
                break;
            }
            Some(Ok(m)) => out.push(m.detach()),
        }
        let until = *fill_until.get_or_insert_with(|| Instant::now() + BATCH_FILL);
        timeout = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(10));
    }
    out
}

fn ms_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn fact_key(fact: &LineageFact) -> String {
    let body = serde_json::to_vec(fact).expect("fact serializes");
    hex::encode(&Sha256::digest(&body)[..16])
}

/// Identity facts from `lineage.identity`, applied in event-time order.
struct IdentityQueue {
    reader: TopicReader,
    pending: BTreeMap<(i64, u64), LineageFact>,
    seq: u64,
    /// Watermarks read by the last catch-up (see [`IdentityQueue::catch_up`]).
    staged: Vec<SourceWatermark>,
}

impl IdentityQueue {
    fn open(bus: &BusConfig) -> Result<Self, LiveError> {
        Ok(Self {
            reader: TopicReader::all_partitions(bus, &bus.topics.identity)?,
            pending: BTreeMap::new(),
            seq: 0,
            staged: Vec::new(),
        })
    }

    /// Reads everything up to the current high watermark into the queue. Returns the
    /// source watermarks read by the *previous* call: a watermark is published after
    /// the facts it covers are acknowledged, on any identity partition, so only once
    /// the high watermarks are fetched again are those facts surely read.
    fn catch_up(&mut self) -> Result<Vec<SourceWatermark>, LiveError> {
        let ready = std::mem::take(&mut self.staged);
        let pending = &mut self.pending;
        let seq = &mut self.seq;
        let staged = &mut self.staged;
        self.reader.read_until(None, |m| {
            let Some(body) = m.payload() else { return };
            if header(m, WATERMARK_HEADER).is_some() {
                match serde_json::from_slice::<SourceWatermark>(body) {
                    Ok(w) => staged.push(w),
                    Err(e) => tracing::warn!(error = %e, "unreadable watermark"),
                }
                return;
            }
            match serde_json::from_slice::<LineageFact>(body) {
                Ok(f) => {
                    *seq += 1;
                    pending.insert((f.time.timestamp_micros(), *seq), f);
                }
                Err(e) => {
                    tracing::warn!(error = %e, offset = m.offset(), "unreadable identity fact")
                }
            }
        })?;
        Ok(ready)
    }

    /// Takes the facts whose time is at or before `until`.
    fn due(&mut self, until: i64) -> Vec<LineageFact> {
        let later = self.pending.split_off(&(until, u64::MAX));
        std::mem::replace(&mut self.pending, later)
            .into_values()
            .collect()
    }
}

// ---------------------------------------------------------------- normalize

struct HeldRequest {
    event: WireEvent,
    root: String,
    topic: String,
    partition: i32,
    offset: i64,
    held_at: u64,
}

fn normalize_stage(cfg: &LiveConfig<'_>) -> Result<(), LiveError> {
    const STAGE: Stage = Stage::Normalize;
    let bus = &cfg.bus;
    let raw_topics: Vec<String> = Source::ALL.iter().map(|s| bus.topics.raw(*s)).collect();
    let refs: Vec<&str> = raw_topics.iter().map(String::as_str).collect();
    let consumer = group_consumer(bus, STAGE.as_str(), &refs)?;
    let mut producer = OutputProducer::new(bus, "lineage-normalize")?;
    let mut identity = IdentityQueue::open(bus)?;
    let mut graph = LineageGraph::from_inventory(&cfg.pipeline.inventory);
    identity.catch_up()?;
    for f in identity.due(i64::MAX) {
        graph.apply(&f);
    }
    // Its graph only picks each event's key (the root credential); it forgets idle
    // credentials as the graph stage's does, or it would keep every session key
    // the run ever saw.
    let retain = Some(cfg.pipeline.settings.graph.retain_days)
        .filter(|d| *d > 0)
        .map(|d| chrono::Duration::days(d.min(365_000) as i64));
    let mut latest: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut since_eviction: u64 = 0;
    cfg.metrics.set_ready(STAGE.as_str(), true);
    let mut held: HashMap<smol_str::SmolStr, HeldRequest> = HashMap::new();
    let mut vault_seen: u64 = 0;
    let mut progress = SourceProgress {
        slack: cfg.batch as i64,
        ..SourceProgress::default()
    };
    let mut last_lag = Instant::now();
    let mut idle_since = Instant::now();
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE.as_str());
        let revoked = consumer.context().take_revoked();
        if revoked {
            progress.starts.clear();
        }
        let mut events: Vec<(String, WireEvent)> = Vec::new();
        let mut facts: Vec<LineageFact> = Vec::new();
        let mut dead: Vec<(String, DeadLetter)> = Vec::new();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        // A held request whose partition may move is emitted alone now.
        let idle = batch.is_empty() && idle_since.elapsed() > Duration::from_secs(1);
        if batch.is_empty() && !idle && !revoked {
            progress.publish_quiet(&consumer, &held, &mut producer, cfg, &mut last_lag)?;
            continue;
        }
        let t0 = Instant::now();
        if !batch.is_empty() {
            idle_since = Instant::now();
            identity.catch_up()?;
            for f in identity.due(i64::MAX) {
                graph.apply(&f);
            }
        }
        let t_identity = t0.elapsed();
        for m in &batch {
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let Some(source) = bus.topics.source_of_raw(m.topic()) else {
                continue;
            };
            cfg.metrics.record(STAGE, source.as_str(), Outcome::In, 1);
            let provenance = Provenance::Kafka {
                topic: m.topic().into(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let payload = m.payload().unwrap_or_default();
            let broken = owned_header(m, "broken");
            let parsed = match broken {
                Some(why) => Err(DeadLetter::new(source, why, provenance, payload)),
                None => normalize_record(
                    source,
                    payload,
                    provenance,
                    cfg.pipeline.limits(),
                    cfg.pipeline.sigma.as_deref(),
                ),
            };
            let n: Normalized = match parsed {
                Ok(n) => n,
                Err(dl) => {
                    cfg.metrics
                        .record(STAGE, source.as_str(), Outcome::DeadLettered, 1);
                    dead.push((key, dl));
                    continue;
                }
            };
            cfg.metrics.record(STAGE, source.as_str(), Outcome::Out, 1);
            let t = progress
                .max_time
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(i64::MIN);
            *t = (*t).max(n.use_.time.timestamp_micros());
            for f in &n.facts {
                graph.apply(f);
            }
            graph.observe(&n.use_);
            latest = latest.max(Some(n.use_.time));
            since_eviction += 1;
            if let (Some(retain), Some(latest), true) =
                (retain, latest, since_eviction >= NORMALIZE_EVICT_EVERY)
            {
                since_eviction = 0;
                graph.evict_inactive(latest - retain);
            }
            let root = graph
                .attribute(&n.use_)
                .root_credential
                .map(|c| c.to_string())
                .or_else(|| n.use_.credential.as_ref().map(|c| c.id.to_string()))
                .unwrap_or_else(|| {
                    format!(
                        "principal:{}",
                        n.use_.principal.id.as_deref().unwrap_or("-")
                    )
                });
            facts.extend(n.facts.iter().cloned());
            let ingested_ms = m.timestamp().to_millis().unwrap_or_else(ms_now);
            let event = WireEvent {
                raw_key: key,
                ingested_ms,
                half: n.half.map(|h| match h {
                    Half::Request(id) => WireHalf::Request(id),
                    Half::Response(id) => WireHalf::Response(id),
                }),
                use_: n.use_,
                facts: n.facts,
                rule_hits: n.rule_hits,
            };
            if source == Source::Vault {
                vault_seen += 1;
            }
            match &event.half {
                Some(WireHalf::Request(id)) => {
                    held.insert(
                        id.clone(),
                        HeldRequest {
                            event,
                            root,
                            topic: m.topic().to_owned(),
                            partition: m.partition(),
                            offset: m.offset(),
                            held_at: vault_seen,
                        },
                    );
                }
                Some(WireHalf::Response(id)) => {
                    if held.remove(id).is_some() {
                        cfg.metrics
                            .record(STAGE, source.as_str(), Outcome::Joined, 1);
                    }
                    events.push((root, event));
                }
                None => events.push((root, event)),
            }
        }
        // Requests whose response did not come in time (or the input went idle, or
        // partitions moved) are emitted alone, as replay keeps a lone request.
        let expired: Vec<smol_str::SmolStr> = held
            .iter()
            .filter(|(_, h)| idle || revoked || vault_seen - h.held_at >= VAULT_REQUEST_HOLD)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(h) = held.remove(&id) {
                events.push((h.root, h.event));
            }
        }
        if idle && batch.is_empty() && events.is_empty() {
            progress.publish_quiet(&consumer, &held, &mut producer, cfg, &mut last_lag)?;
            continue;
        }
        // The committed offset never passes a request still held.
        for h in held.values() {
            let e = next
                .entry((h.topic.clone(), h.partition))
                .or_insert(h.offset);
            *e = (*e).min(h.offset);
        }
        let t_parse = t0.elapsed();
        // Facts first and durable, then the events that carry them.
        for f in &facts {
            let body = serde_json::to_vec(f).expect("fact serializes");
            producer.send(&bus.topics.identity, fact_key(f).as_bytes(), &body, &[])?;
        }
        if !facts.is_empty() {
            producer.flush_all(FLUSH_TIMEOUT)?;
        }
        let t_facts = t0.elapsed();
        for (key, dl) in &dead {
            let body = dead_letter_payload(bus, dl);
            producer.send(&bus.topics.dlq, key.as_bytes(), &body, &[])?;
        }
        for (root, e) in &events {
            let body = serde_json::to_vec(e).expect("event serializes");
            producer.send(
                &bus.topics.events,
                root.as_bytes(),
                &body,
                &[("event-id", &e.raw_key)],
            )?;
        }
        // After the facts are acknowledged: how far in event time they now reach.
        let marks = progress.changed(&consumer, &held);
        send_watermarks(&producer, bus, &marks)?;
        let t_send = t0.elapsed();
        producer.flush_all(FLUSH_TIMEOUT)?;
        let t_flush = t0.elapsed();
        commit(&consumer, &next)?;
        tracing::debug!(
            stage = STAGE.as_str(),
            records = batch.len(),
            facts = facts.len(),
            identity_ms = t_identity.as_millis() as u64,
            parse_ms = t_parse.as_millis() as u64,
            facts_flushed_ms = t_facts.as_millis() as u64,
            sent_ms = t_send.as_millis() as u64,
            flushed_ms = t_flush.as_millis() as u64,
            committed_ms = t0.elapsed().as_millis() as u64,
            "batch (cumulative times)"
        );
        if last_lag.elapsed() > Duration::from_secs(2) {
            record_lag(cfg, STAGE, &consumer);
            last_lag = Instant::now();
        }
    }
    tracing::info!(stage = STAGE.as_str(), "stopped");
    Ok(())
}

/// Per raw partition: how far normalize is, and the last watermark it sent.
#[derive(Default)]
struct SourceProgress {
    /// The latest event time normalized.
    max_time: HashMap<(String, i32), i64>,
    published: HashMap<(String, i32), SourceWatermark>,
    /// High watermarks last fetched.
    highs: HashMap<(String, i32), i64>,
    /// Committed offsets of assigned partitions nothing was consumed from yet.
    starts: HashMap<(String, i32), Option<i64>>,
    /// Records a partition may be behind and still count as caught up (a batch: a
    /// source streaming steadily is never at its high watermark, but it has no
    /// backlog).
    slack: i64,
}

impl SourceProgress {
    /// With no batch to process: sends the watermarks that changed and keeps the lag
    /// gauge current (idle is when it reads zero).
    fn publish_quiet(
        &mut self,
        consumer: &BaseConsumer<RebalanceLog>,
        held: &HashMap<smol_str::SmolStr, HeldRequest>,
        producer: &mut OutputProducer,
        cfg: &LiveConfig<'_>,
        last_lag: &mut Instant,
    ) -> Result<(), LiveError> {
        let marks = self.changed(consumer, held);
        if !marks.is_empty() {
            send_watermarks(producer, &cfg.bus, &marks)?;
            producer.flush_all(FLUSH_TIMEOUT)?;
        }
        if last_lag.elapsed() > Duration::from_secs(2) {
            record_lag(cfg, Stage::Normalize, consumer);
            *last_lag = Instant::now();
        }
        Ok(())
    }

    /// The watermarks of the assigned raw partitions that changed since last sent.
    fn changed(
        &mut self,
        consumer: &BaseConsumer<RebalanceLog>,
        held: &HashMap<smol_str::SmolStr, HeldRequest>,
    ) -> Vec<SourceWatermark> {
        let Self {
            max_time,
            published,
            highs,
            starts,
            slack,
        } = self;
        let Ok(position) = consumer.position() else {
            return Vec::new();
        };
        let mut nexts = Vec::new();
        for e in position.elements() {
            let key = (e.topic().to_owned(), e.partition());
            // No position yet means nothing was consumed since the partition was
            // assigned — after a restart that found it fully consumed, for ever. Then
            // the committed offset is where normalize stands.
            let next = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => *starts
                    .entry(key.clone())
                    .or_insert_with(|| committed_offset(consumer, &key)),
            };
            nexts.push((key, next));
        }
        // High watermarks only grow: ask the broker only for partitions that may have
        // reached theirs, all in one request.
        let ask: Vec<(String, i32)> = nexts
            .iter()
            .filter(|(key, next)| {
                !next.is_some_and(|n| n + *slack < highs.get(key).copied().unwrap_or(-1))
            })
            .map(|(key, _)| key.clone())
            .collect();
        match end_offsets(consumer, &ask, Duration::from_secs(2)) {
            Ok(answered) => highs.extend(answered),
            Err(e) => {
                tracing::debug!(error = %e, "end offsets unknown");
                for key in &ask {
                    highs.insert(key.clone(), -1);
                }
            }
        }
        let mut out = Vec::new();
        for (key, next) in nexts {
            let high = highs.get(&key).copied().unwrap_or(-1);
            let mut time_us = max_time.get(&key).copied().unwrap_or(i64::MIN);
            for h in held.values() {
                if h.topic == key.0 && h.partition == key.1 {
                    time_us = time_us.min(h.event.use_.time.timestamp_micros() - 1);
                }
            }
            // No backlog: at most a batch behind the high watermark. (A Vault request
            // held for its response lowers `time_us`; it is no backlog.)
            let caught_up = match next {
                Some(n) => high >= 0 && n + *slack >= high,
                None => high == 0,
            };
            let w = SourceWatermark {
                topic: key.0.clone(),
                partition: key.1,
                time_us,
                next_offset: next.unwrap_or(-1),
                caught_up,
            };
            if published.get(&key) != Some(&w) {
                published.insert(key, w.clone());
                out.push(w);
            }
        }
        out
    }
}

fn send_watermarks(
    producer: &OutputProducer,
    bus: &BusConfig,
    marks: &[SourceWatermark],
) -> Result<(), LiveError> {
    for w in marks {
        let body = serde_json::to_vec(w).expect("watermark serializes");
        producer.send(
            &bus.topics.identity,
            w.key().as_bytes(),
            &body,
            &[(WATERMARK_HEADER, "1")],
        )?;
    }
    Ok(())
}

fn owned_header(m: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let hs = m.headers()?;
    hs.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn record_lag(cfg: &LiveConfig<'_>, stage: Stage, consumer: &BaseConsumer<RebalanceLog>) {
    cfg.metrics.replace_lag(stage, lag(consumer));
}

// ---------------------------------------------------------------- graph + detect

/// A bounded set of recently seen ids, each kept as the first 128 bits of its
/// SHA-256: 16 bytes in the set and 16 in the queue instead of two copies of the
/// text (2M ids took hundreds of MB as strings), and no one can make two ids
/// collide.
struct SeenIds {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    cap: usize,
}

impl SeenIds {
    /// The ids' fingerprints, oldest first (for a snapshot).
    fn fingerprints(&self) -> impl Iterator<Item = &u128> {
        self.order.iter()
    }

    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn fingerprint(id: &str) -> u128 {
        id_fingerprint(id.as_bytes())
    }

    /// True when `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        self.insert_fingerprint(Self::fingerprint(id))
    }

    /// [`SeenIds::insert`] of a fingerprint.
    fn insert_fingerprint(&mut self, f: u128) -> bool {
        if !self.set.insert(f) {
            return false;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(f);
        true
    }
}

/// An event waiting for the watermarks to pass its time.
struct HeldEvent {
    partition: i32,
    offset: i64,
    since: Instant,
    event: WireEvent,
}

struct GraphState {
    stage: AttributeStage,
    identity: IdentityQueue,
    gate: Gate,
    seen_events: SeenIds,
    /// Partitions whose history is in `stage`.
    rebuilt: HashSet<i32>,
    /// Where each partition's rebuild stopped (the offsets a snapshot covers for a
    /// partition no message came from since).
    rebuilt_until: HashMap<i32, i64>,
    /// Events waiting, in event-time order.
    held: BTreeMap<(i64, u64), HeldEvent>,
    /// Offsets of held events, by partition (the commit never passes them).
    held_offsets: HashMap<i32, BTreeSet<i64>>,
    /// Next offset after the last message received, by partition.
    consumed: HashMap<i32, i64>,
    seq: u64,
    /// The latest event time processed (µs): identity facts at or before it are late.
    processed_until: i64,
}

impl GraphState {
    fn fresh(cfg: &LiveConfig<'_>) -> Result<Self, LiveError> {
        let stage = cfg.pipeline.live_attribute_stage()?;
        let mut identity = IdentityQueue::open(&cfg.bus)?;
        let mut gate = Gate::new(
            raw_partitions(&cfg.bus)?,
            cfg.source_idle,
            cfg.quiet_wait,
            cfg.max_hold,
        );
        // Twice: watermarks take effect one catch-up after they are read.
        identity.catch_up()?;
        for w in identity.catch_up()? {
            gate.update(w);
        }
        Ok(Self {
            stage,
            identity,
            gate,
            seen_events: SeenIds::new(SEEN_EVENTS),
            rebuilt: HashSet::new(),
            rebuilt_until: HashMap::new(),
            held: BTreeMap::new(),
            held_offsets: HashMap::new(),
            consumed: HashMap::new(),
            seq: 0,
            processed_until: i64::MIN,
        })
    }

    /// Catches up with the identity table and the source watermarks.
    fn catch_up(&mut self) -> Result<(), LiveError> {
        for w in self.identity.catch_up()? {
            self.gate.update(w);
        }
        Ok(())
    }

    /// Fingerprints (hex) of the events seen and processed, oldest first: the
    /// snapshot's de-duplication set. Held events are seen but not processed; they
    /// are left out, so a restart from the snapshot (which re-reads from before them,
    /// see [`GraphState::commit_offsets`]) processes them instead of skipping them as
    /// duplicates.
    fn processed_fingerprints(&self) -> Vec<String> {
        let held: HashSet<u128> = self
            .held
            .values()
            .map(|h| SeenIds::fingerprint(&h.event.dedup_id()))
            .collect();
        self.seen_events
            .fingerprints()
            .filter(|f| !held.contains(f))
            .map(|f| format!("{f:032x}"))
            .collect()
    }

    /// The offsets to commit: never past a held event.
    fn commit_offsets(&self, topic: &str) -> HashMap<(String, i32), i64> {
        self.consumed
            .iter()
            .map(|(p, next)| {
                let held = self.held_offsets.get(p).and_then(|s| s.first().copied());
                ((topic.to_owned(), *p), held.map_or(*next, |h| h.min(*next)))
            })
            .collect()
    }
}

/// Outputs of one batch of the graph stage.
#[derive(Default)]
struct GraphOutputs {
    /// Alerts with the ingest time (ms) of the event that opened them.
    alerts: Vec<(Alert, i64)>,
    actions: Vec<Action>,
    dead: Vec<(String, DeadLetter)>,
}

/// Decodes an event message; `None` (and a dead letter when `live`) when unreadable.
fn decode_event(
    m: &OwnedMessage,
    cfg: &LiveConfig<'_>,
    live: bool,
    out: &mut GraphOutputs,
) -> Option<WireEvent> {
    let payload = m.payload().unwrap_or_default();
    match serde_json::from_slice(payload) {
        Ok(e) => Some(e),
        Err(e) => {
            if live {
                cfg.metrics
                    .record(Stage::Graph, "-", Outcome::DeadLettered, 1);
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                out.dead.push((
                    key,
                    DeadLetter::new(
                        Source::CloudTrail,
                        format!("unreadable event on {}: {e}", m.topic()),
                        Provenance::Kafka {
                            topic: m.topic().into(),
                            partition: m.partition(),
                            offset: m.offset(),
                        },
                        payload,
                    ),
                ));
            }
            None
        }
    }
}

/// Runs one event through the stage, writing its table row and collecting (when
/// `live`) the alerts and actions it opened.
#[allow(clippy::too_many_arguments)]
fn process_event(
    state: &mut GraphState,
    tables: &mut Option<GraphTables>,
    partition: i32,
    offset: i64,
    event: WireEvent,
    cfg: &LiveConfig<'_>,
    live: bool,
    out: &mut GraphOutputs,
) -> Result<(), LiveError> {
    const STAGE: Stage = Stage::Graph;
    let source = event.use_.source.as_str();
    // Before the facts: a late departure among them re-evaluates recent uses, and
    // what that raises goes out with this event's outputs.
    let (alerts_before, actions_before) = {
        let book = state.stage.alerts();
        (book.alerts().len(), book.actions().len())
    };
    let time_us = event.use_.time.timestamp_micros();
    for f in state.identity.due(time_us).iter() {
        state.stage.apply_identity_fact(f);
    }
    state.processed_until = state.processed_until.max(time_us);
    let ingested_ms = event.ingested_ms;
    let half = event.half.map(|h| match h {
        WireHalf::Request(id) => Half::Request(id),
        WireHalf::Response(id) => Half::Response(id),
    });
    let attributed = state.stage.process(Normalized {
        use_: event.use_,
        facts: event.facts,
        half,
        rule_hits: event.rule_hits,
    });
    if let Some(t) = tables.as_mut() {
        t.write(partition, offset, &attributed)?;
    }
    write_corrections(state, tables)?;
    if !live {
        return Ok(());
    }
    cfg.metrics.record(STAGE, source, Outcome::Out, 1);
    cfg.metrics
        .observe_latency((ms_now() - ingested_ms).max(0) as f64 / 1000.0);
    let book = state.stage.alerts();
    out.alerts.extend(
        book.alerts()[alerts_before..]
            .iter()
            .map(|a| (a.clone(), ingested_ms)),
    );
    out.actions
        .extend(book.actions()[actions_before..].iter().cloned());
    Ok(())
}

/// Writes the attribution corrections late facts caused (see
/// [`AttributeStage::apply_identity_fact`]) as the events' next revisions.
fn write_corrections(
    state: &mut GraphState,
    tables: &mut Option<GraphTables>,
) -> Result<(), LiveError> {
    let corrections = state.stage.take_corrections();
    if let Some(t) = tables.as_mut() {
        for c in &corrections {
            t.write_revision(&c.event, c.revision)?;
        }
    }
    Ok(())
}

/// Replays the events topic's partitions from 0 to their `until` offsets into the
/// state, with outputs suppressed, all partitions merged in event-time order (as the
/// gate released them: facts from the identity table are applied by event time, so
/// replaying one partition after another would apply a later fact to an earlier
/// event of the next partition).
fn rebuild_partitions(
    state: &mut GraphState,
    tables: &mut Option<GraphTables>,
    cfg: &LiveConfig<'_>,
    until: &HashMap<i32, i64>,
) -> Result<usize, LiveError> {
    rebuild_partitions_from(state, tables, cfg, &HashMap::new(), until)
}

/// [`rebuild_partitions`] from `from` (a snapshot's offsets; 0 for a partition it
/// does not name).
fn rebuild_partitions_from(
    state: &mut GraphState,
    tables: &mut Option<GraphTables>,
    cfg: &LiveConfig<'_>,
    from: &HashMap<i32, i64>,
    until: &HashMap<i32, i64>,
) -> Result<usize, LiveError> {
    state.rebuilt.extend(until.keys().copied());
    state
        .rebuilt_until
        .extend(until.iter().map(|(p, u)| (*p, *u)));
    let start = |p: &i32| from.get(p).copied().unwrap_or(0);
    let until: HashMap<i32, i64> = until
        .iter()
        .filter(|(p, u)| **u > start(p))
        .map(|(p, u)| (*p, *u))
        .collect();
    if until.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    let mut reader = TopicReader::partitions(
        &cfg.bus,
        &cfg.bus.topics.events,
        until
            .keys()
            .map(|p| (*p, Offset::Offset(start(p))))
            .collect(),
    )?;
    let mut msgs = Vec::new();
    reader.read_until(Some(&until), |m| msgs.push(m.detach()))?;
    let mut sink = GraphOutputs::default();
    let mut events: Vec<(i32, i64, WireEvent)> = Vec::with_capacity(msgs.len());
    for m in &msgs {
        match decode_event(m, cfg, false, &mut sink) {
            Some(e) if state.seen_events.insert(&e.dedup_id()) => {
                events.push((m.partition(), m.offset(), e))
            }
            _ => {
                if let Some(t) = tables.as_mut() {
                    t.skip(m.partition(), m.offset());
                }
            }
        }
    }
    let n = events.len();
    events.sort_by_key(|(p, o, e)| (e.use_.time, *p, *o));
    for (partition, offset, e) in events {
        process_event(state, tables, partition, offset, e, cfg, false, &mut sink)?;
    }
    let mut partitions: Vec<i32> = until.keys().copied().collect();
    partitions.sort_unstable();
    tracing::info!(
        ?partitions,
        ?from,
        events = n,
        secs = started.elapsed().as_secs_f64(),
        "rebuilt detector state from the partitions' history"
    );
    Ok(n)
}

/// A graph instance's state as of some offsets of its partitions of `lineage.events`:
/// written every [`SNAPSHOT_EVERY`] and at shutdown under
/// `<state_dir>/graph-snapshot/`, and restored at start when the same partitions are
/// assigned, so a restart re-reads only what came after it instead of every
/// partition from offset 0.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotMeta {
    /// The state file it goes with (`state-<generation>.json.gz`).
    generation: u64,
    /// Per partition: every event before this offset is in the state (the offsets the
    /// stage committed). Events after it that are in the state too (released out of
    /// order before a held one) are in `seen`.
    offsets: BTreeMap<i32, i64>,
    /// Fingerprints (hex) of the events processed most recently (de-duplication on
    /// re-read).
    seen: Vec<String>,
    /// The latest event time processed (µs).
    processed_until: i64,
    /// The consumer group and events topic it is of (another is not restored).
    group: String,
    topic: String,
    /// High watermarks of the output topics (`lineage.alerts`, `lineage.actions`) when
    /// it was written: what was emitted before is in the state's alert book, so a
    /// restart that restores it reads only what came after to emit nothing twice.
    #[serde(default)]
    outputs: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// How long the start-up read of the output topics waits for more after reaching
/// their reported ends (see [`TopicReader::read_to_quiet_end`]).
const OUTPUT_READ_IDLE: Duration = Duration::from_millis(500);

/// What the graph stage has put on the output topics (alert ids, action idempotency
/// keys, as [`id_fingerprint`]s), so a state rebuilt or restored never emits one twice.
/// At start it reads only what came after the snapshot when there is one; the whole
/// topics when a state is rebuilt without it ([`EmittedOutputs::read_all`]).
struct EmittedOutputs {
    alerts: HashSet<u128>,
    actions: HashSet<u128>,
    alerts_reader: TopicReader,
    actions_reader: TopicReader,
    /// True once the topics were read from their beginning.
    complete: bool,
    /// Messages read from the output topics so far.
    read: u64,
}

impl EmittedOutputs {
    fn fingerprint(id: &[u8]) -> u128 {
        id_fingerprint(id)
    }

    /// Reads the output topics from the snapshot's watermarks when the snapshot is of
    /// this group and topic, else from the beginning.
    fn load(cfg: &LiveConfig<'_>) -> Result<Self, LiveError> {
        let bus = &cfg.bus;
        let meta: Option<SnapshotMeta> = std::fs::read(snapshot_dir(cfg).join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|m: &SnapshotMeta| m.group == bus.group_id && m.topic == bus.topics.events);
        let from = |topic: &str| {
            meta.as_ref()
                .and_then(|m| m.outputs.get(topic).cloned())
                .unwrap_or_default()
        };
        let (alerts_from, actions_from) = (from(&bus.topics.alerts), from(&bus.topics.actions));
        let complete = alerts_from.is_empty() && actions_from.is_empty();
        let mut out = Self {
            alerts: HashSet::new(),
            actions: HashSet::new(),
            alerts_reader: TopicReader::all_partitions_from(bus, &bus.topics.alerts, &alerts_from)?,
            actions_reader: TopicReader::all_partitions_from(
                bus,
                &bus.topics.actions,
                &actions_from,
            )?,
            complete,
            read: 0,
        };
        out.read_new()?;
        cfg.metrics.set_output_ids_read(out.read);
        Ok(out)
    }

    /// Reads what the readers have not read yet.
    fn read_new(&mut self) -> Result<(), LiveError> {
        let alerts = &mut self.alerts;
        self.read += self
            .alerts_reader
            .read_to_quiet_end(OUTPUT_READ_IDLE, |m| {
                if let Some(id) = header(m, "alert-id") {
                    alerts.insert(Self::fingerprint(id.as_bytes()));
                }
            })?;
        let actions = &mut self.actions;
        self.read += self
            .actions_reader
            .read_to_quiet_end(OUTPUT_READ_IDLE, |m| {
                if let Some(k) = m.key() {
                    actions.insert(Self::fingerprint(k));
                }
            })?;
        Ok(())
    }

    /// Reads both topics from the beginning, when a state is rebuilt without the
    /// snapshot (it raises again what was emitted before the snapshot).
    fn read_all(&mut self, cfg: &LiveConfig<'_>) -> Result<(), LiveError> {
        if self.complete {
            return Ok(());
        }
        let bus = &cfg.bus;
        self.alerts_reader = TopicReader::all_partitions(bus, &bus.topics.alerts)?;
        self.actions_reader = TopicReader::all_partitions(bus, &bus.topics.actions)?;
        self.read_new()?;
        self.complete = true;
        cfg.metrics.set_output_ids_read(self.read);
        Ok(())
    }

    /// True the first time an alert id is seen (emit it).
    fn first_alert(&mut self, id: &str) -> bool {
        self.alerts.insert(Self::fingerprint(id.as_bytes()))
    }

    /// True the first time an action's idempotency key is seen (emit it).
    fn first_action(&mut self, key: &str) -> bool {
        self.actions.insert(Self::fingerprint(key.as_bytes()))
    }

    /// The output topics' high watermarks now (for the snapshot).
    fn watermarks(
        &self,
        cfg: &LiveConfig<'_>,
    ) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, LiveError> {
        let bus = &cfg.bus;
        Ok(BTreeMap::from([
            (
                bus.topics.alerts.clone(),
                self.alerts_reader.high_watermarks()?.into_iter().collect(),
            ),
            (
                bus.topics.actions.clone(),
                self.actions_reader.high_watermarks()?.into_iter().collect(),
            ),
        ]))
    }
}

/// How often the graph stage writes its snapshot (when it processed something).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);

fn snapshot_dir(cfg: &LiveConfig<'_>) -> PathBuf {
    cfg.pipeline.settings.run.state_dir().join("graph-snapshot")
}

/// Writes the state and then its meta file (which names the state file), so a crash
/// between the two leaves the previous snapshot whole; removes older state files.
fn write_snapshot(
    cfg: &LiveConfig<'_>,
    state: &GraphState,
    emitted: &EmittedOutputs,
) -> Result<(), LiveError> {
    let started = Instant::now();
    let dir = snapshot_dir(cfg);
    let meta_path = dir.join("meta.json");
    let previous: Option<SnapshotMeta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let generation = previous.as_ref().map_or(1, |m| m.generation + 1);
    let state_path = dir.join(format!("state-{generation}.json.gz"));
    crate::state_files::write_gz_json(&state_path, |w| state.stage.write_state(w))
        .map_err(LiveError::Io)?;
    let mut offsets: BTreeMap<i32, i64> = state.rebuilt_until.clone().into_iter().collect();
    offsets.extend(
        state
            .commit_offsets(&cfg.bus.topics.events)
            .into_iter()
            .map(|((_, p), o)| (p, o)),
    );
    let meta = SnapshotMeta {
        generation,
        offsets,
        seen: state.processed_fingerprints(),
        processed_until: state.processed_until,
        group: cfg.bus.group_id.clone(),
        topic: cfg.bus.topics.events.clone(),
        outputs: emitted.watermarks(cfg)?,
    };
    crate::state_files::write_json(&meta_path, &meta).map_err(LiveError::Io)?;
    if let Some(p) = previous {
        let _ = std::fs::remove_file(dir.join(format!("state-{}.json.gz", p.generation)));
    }
    tracing::debug!(
        generation,
        secs = started.elapsed().as_secs_f64(),
        "graph stage snapshot written"
    );
    Ok(())
}

/// Restores the snapshot into a fresh `state` when it covers exactly the `assigned`
/// partitions; returns its offsets (where the rebuild starts), or `None` (a full
/// rebuild) when there is none, it is unreadable or it covers other partitions.
fn restore_snapshot(
    cfg: &LiveConfig<'_>,
    state: &mut GraphState,
    assigned: &HashMap<i32, i64>,
) -> Option<HashMap<i32, i64>> {
    let dir = snapshot_dir(cfg);
    let meta: SnapshotMeta = match std::fs::read(dir.join("meta.json")) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "graph snapshot unreadable: rebuilding from offset 0");
                return None;
            }
        },
        Err(_) => return None,
    };
    let mut covered: Vec<i32> = meta.offsets.keys().copied().collect();
    let mut wanted: Vec<i32> = assigned.keys().copied().collect();
    covered.sort_unstable();
    wanted.sort_unstable();
    if covered != wanted {
        tracing::info!(
            ?covered,
            assigned = ?wanted,
            "graph snapshot covers other partitions: rebuilding from offset 0"
        );
        return None;
    }
    // A snapshot past where the group stands is of another history (the topic was
    // recreated, the group reset): its state would claim events never processed.
    let ahead = meta
        .offsets
        .iter()
        .any(|(p, o)| assigned.get(p).is_some_and(|until| o > until));
    if meta.group != cfg.bus.group_id || meta.topic != cfg.bus.topics.events || ahead {
        tracing::warn!(
            group = %meta.group,
            topic = %meta.topic,
            offsets = ?meta.offsets,
            committed = ?assigned,
            "graph snapshot is of another group, topic or history: rebuilding from offset 0"
        );
        return None;
    }
    let path = dir.join(format!("state-{}.json.gz", meta.generation));
    let restored = crate::state_files::read_gz_json::<crate::StageState>(&path)
        .and_then(|s| state.stage.restore_state(s, &cfg.pipeline.inventory));
    if let Err(e) = restored {
        tracing::warn!(error = %e, "graph snapshot not restored: rebuilding from offset 0");
        state.stage = cfg.pipeline.live_attribute_stage().ok()?;
        return None;
    }
    for f in &meta.seen {
        if let Ok(f) = u128::from_str_radix(f, 16) {
            state.seen_events.insert_fingerprint(f);
        }
    }
    state.processed_until = meta.processed_until;
    // The identity facts the restored graph already has (re-applying one changes
    // nothing; it is not late for a stage that has processed nothing yet).
    for f in state.identity.due(meta.processed_until) {
        state.stage.apply_identity_fact(&f);
    }
    tracing::info!(
        generation = meta.generation,
        offsets = ?meta.offsets,
        "graph stage state restored from its snapshot"
    );
    Some(meta.offsets.into_iter().collect())
}

/// Where the rebuild of a fresh state stops for each assigned partition of the
/// events topic: the first offset this assignment hands out (the first message of
/// `batch`, else the group's committed offset; 0 when there is neither).
fn rebuild_targets(
    consumer: &BaseConsumer<RebalanceLog>,
    topic: &str,
    batch: &[OwnedMessage],
) -> HashMap<i32, i64> {
    let mut until: HashMap<i32, i64> = HashMap::new();
    for m in batch {
        until.entry(m.partition()).or_insert(m.offset());
    }
    if let Ok(assigned) = consumer.assignment() {
        for e in assigned.elements_for_topic(topic) {
            until.entry(e.partition()).or_insert_with(|| {
                committed_offset(consumer, &(topic.to_owned(), e.partition())).unwrap_or(0)
            });
        }
    }
    until
}

fn graph_stage(cfg: &LiveConfig<'_>) -> Result<(), LiveError> {
    const STAGE: Stage = Stage::Graph;
    let bus = &cfg.bus;
    let consumer = group_consumer(bus, STAGE.as_str(), &[&bus.topics.events])?;
    let mut producer = OutputProducer::new(bus, "lineage-graph")?;
    // What is already on the output topics is never emitted again.
    let mut emitted = EmittedOutputs::load(cfg)?;
    let mut tables = if cfg.tables {
        Some(GraphTables::open(
            &cfg.out_dir.join(lineage_tables::TABLES_DIR),
        )?)
    } else {
        None
    };
    let mut state = GraphState::fresh(cfg)?;
    cfg.metrics.set_ready(STAGE.as_str(), true);
    let mut last_lag = Instant::now();
    let mut last_commit: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_snapshot = Instant::now();
    let mut snapshot_due = false;
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE.as_str());
        if consumer.context().take_revoked() {
            tracing::info!("partitions moved: dropping detector state, rebuilding per partition");
            state = GraphState::fresh(cfg)?;
            last_commit.clear();
        }
        if batch.is_empty() && state.held.is_empty() {
            if let Some(t) = tables.as_mut() {
                t.checkpoint(state.stage.graph(), false)?;
            }
            if last_lag.elapsed() > Duration::from_secs(2) {
                record_lag(cfg, STAGE, &consumer);
                last_lag = Instant::now();
            }
            continue;
        }
        let t0 = Instant::now();
        state.catch_up()?;
        let t_identity = t0.elapsed();
        let mut out = GraphOutputs::default();
        if state.rebuilt.is_empty() && !batch.is_empty() {
            // The first batch of a fresh state: restore the snapshot when it covers
            // the assigned partitions, then rebuild every assigned partition at once
            // from where it stops (from offset 0 without one).
            let until = rebuild_targets(&consumer, &bus.topics.events, &batch);
            let from = restore_snapshot(cfg, &mut state, &until);
            if from.is_none() {
                // Rebuilt from offset 0: it raises again what was emitted before the
                // snapshot too.
                emitted.read_all(cfg)?;
            }
            let n = rebuild_partitions_from(
                &mut state,
                &mut tables,
                cfg,
                from.as_ref().unwrap_or(&HashMap::new()),
                &until,
            )?;
            cfg.metrics.set_rebuild(from.is_some(), n);
        }
        for m in &batch {
            let (p, offset) = (m.partition(), m.offset());
            if !state.rebuilt.contains(&p) {
                // Assigned after the rebuild without a revocation (not with the eager
                // protocol used here): rebuilt alone, before its first event.
                rebuild_partitions(&mut state, &mut tables, cfg, &HashMap::from([(p, offset)]))?;
            }
            state.consumed.insert(p, offset + 1);
            let Some(event) = decode_event(m, cfg, true, &mut out) else {
                if let Some(t) = tables.as_mut() {
                    t.skip(p, offset);
                }
                continue;
            };
            cfg.metrics
                .record(STAGE, event.use_.source.as_str(), Outcome::In, 1);
            if !state.seen_events.insert(&event.dedup_id()) {
                cfg.metrics
                    .record(STAGE, event.use_.source.as_str(), Outcome::Duplicate, 1);
                if let Some(t) = tables.as_mut() {
                    t.skip(p, offset);
                }
                continue;
            }
            state.seq += 1;
            state.held_offsets.entry(p).or_default().insert(offset);
            state.held.insert(
                (event.use_.time.timestamp_micros(), state.seq),
                HeldEvent {
                    partition: p,
                    offset,
                    since: Instant::now(),
                    event,
                },
            );
        }
        // Release, in event-time order, what the watermarks let go: a use waiting for
        // a quiet source's facts does not hold back the uses after it; a backlog does.
        let mut after: Option<(i64, u64)> = None;
        loop {
            let next = match after {
                None => state.held.keys().next(),
                Some(k) => state
                    .held
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .map(|(k, _)| k)
                    .next(),
            };
            let Some(&key) = next else { break };
            let h = &state.held[&key];
            let known = h
                .event
                .use_
                .credential
                .as_ref()
                .is_none_or(|c| state.stage.graph().credential(&c.id).is_some());
            if !state.gate.releases(key.0, h.since, known) {
                if state.gate.backlog_holds(key.0, h.since) {
                    break;
                }
                after = Some(key);
                continue;
            }
            let h = state.held.remove(&key).expect("held");
            if let Some(s) = state.held_offsets.get_mut(&h.partition) {
                s.remove(&h.offset);
            }
            process_event(
                &mut state,
                &mut tables,
                h.partition,
                h.offset,
                h.event,
                cfg,
                true,
                &mut out,
            )?;
        }
        // Facts older than what was processed are late (their source delivered them
        // after the uses, or the gate stopped waiting): applied now rather than at the
        // next event, so a late departure re-evaluates the uses it concerns at once.
        let (alerts_before, actions_before) = {
            let book = state.stage.alerts();
            (book.alerts().len(), book.actions().len())
        };
        for f in state.identity.due(state.processed_until) {
            state.stage.apply_identity_fact(&f);
        }
        write_corrections(&mut state, &mut tables)?;
        let book = state.stage.alerts();
        out.alerts.extend(
            book.alerts()[alerts_before..]
                .iter()
                .map(|a| (a.clone(), ms_now())),
        );
        out.actions
            .extend(book.actions()[actions_before..].iter().cloned());
        cfg.metrics.set_held(state.held.len());
        // Every alert and action so far is in `out`: closed alerts can leave memory.
        state.stage.retire_closed_alerts();
        let t_process = t0.elapsed();
        for (a, ingested_ms) in &out.alerts {
            if !emitted.first_alert(&a.id) {
                continue;
            }
            let body = serde_json::to_vec(a).expect("alert serializes");
            producer.send(
                &bus.topics.alerts,
                a.dedup_key.as_bytes(),
                &body,
                &[
                    ("alert-id", a.id.as_str()),
                    ("ingested-ms", &ingested_ms.to_string()),
                ],
            )?;
            cfg.metrics.alert(&a.detector);
        }
        for a in &out.actions {
            if !emitted.first_action(&a.idempotency_key) {
                continue;
            }
            let body = serde_json::to_vec(a).expect("action serializes");
            producer.send(
                &bus.topics.actions,
                a.idempotency_key.as_bytes(),
                &body,
                &[],
            )?;
            cfg.metrics.action();
        }
        for (key, dl) in &out.dead {
            let body = dead_letter_payload(bus, dl);
            producer.send(&bus.topics.dlq, key.as_bytes(), &body, &[])?;
        }
        let sent = !out.alerts.is_empty() || !out.actions.is_empty() || !out.dead.is_empty();
        if sent {
            producer.flush_all(FLUSH_TIMEOUT)?;
        }
        let next = state.commit_offsets(&bus.topics.events);
        let changed: HashMap<(String, i32), i64> = next
            .into_iter()
            .filter(|(k, v)| last_commit.get(k) != Some(v))
            .collect();
        let t_flushed = t0.elapsed();
        commit(&consumer, &changed)?;
        last_commit.extend(changed);
        let t_committed = t0.elapsed();
        if let Some(t) = tables.as_mut() {
            t.checkpoint(state.stage.graph(), false)?;
        }
        snapshot_due |= !batch.is_empty();
        if snapshot_due && !state.rebuilt.is_empty() && last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            write_snapshot(cfg, &state, &emitted)?;
            last_snapshot = Instant::now();
            snapshot_due = false;
        }
        tracing::debug!(
            stage = STAGE.as_str(),
            records = batch.len(),
            held = state.held.len(),
            identity_ms = t_identity.as_millis() as u64,
            processed_ms = t_process.as_millis() as u64,
            flushed_ms = t_flushed.as_millis() as u64,
            committed_ms = t_committed.as_millis() as u64,
            tables_ms = t0.elapsed().as_millis() as u64,
            "batch (cumulative times)"
        );
        if last_lag.elapsed() > Duration::from_secs(2) {
            record_lag(cfg, STAGE, &consumer);
            last_lag = Instant::now();
        }
    }
    if let Some(t) = tables.as_mut() {
        t.checkpoint(state.stage.graph(), true)?;
    }
    if !state.rebuilt.is_empty() {
        write_snapshot(cfg, &state, &emitted)?;
    }
    tracing::info!(stage = STAGE.as_str(), held = state.held.len(), "stopped");
    Ok(())
}

// ---------------------------------------------------------------- sinks

fn append(path: &std::path::Path) -> Result<lineage_sinks::JsonLinesSink, LiveError> {
    Ok(lineage_sinks::JsonLinesSink::append(path)?)
}

fn sinks_stage(cfg: &LiveConfig<'_>) -> Result<(), LiveError> {
    const STAGE: Stage = Stage::Sinks;
    let bus = &cfg.bus;
    std::fs::create_dir_all(&cfg.out_dir)
        .map_err(|e| LiveError::Io(format!("creating {}: {e}", cfg.out_dir.display())))?;
    let state_dir = cfg.pipeline.settings.run.state_dir();
    let mut alerts = cfg
        .pipeline
        .alert_output(&cfg.out_dir, &state_dir.join("spool"))?;
    // The responder: the same policy, dry-run default, approval queue and ledger as
    // every other mode. Actions are keyed by idempotency key, so one key is always
    // on one partition, handled by one process at a time.
    let mut actions = cfg.pipeline.action_output(&cfg.out_dir, true)?;
    let dead_path = cfg.out_dir.join("dead_letters.jsonl");
    let mut seen_dead: HashSet<String> = std::fs::read_to_string(&dead_path)
        .unwrap_or_default()
        .lines()
        .map(|l| content_id(l.as_bytes()))
        .collect();
    let mut dead_file = append(&dead_path)?;
    let mut tables = cfg.tables.then(|| OutcomeTables::new(&cfg.out_dir));
    let consumer = group_consumer(
        bus,
        STAGE.as_str(),
        &[&bus.topics.alerts, &bus.topics.actions, &bus.topics.dlq],
    )?;
    cfg.metrics.set_ready(STAGE.as_str(), true);
    let mut last_lag = Instant::now();
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE.as_str());
        if let Some(t) = tables.as_mut() {
            t.refresh(false)?;
        }
        if batch.is_empty() {
            if last_lag.elapsed() > Duration::from_secs(2) {
                record_lag(cfg, STAGE, &consumer);
                last_lag = Instant::now();
            }
            continue;
        }
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for m in &batch {
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            let payload = m.payload().unwrap_or_default();
            if let Some(t) = tables.as_mut() {
                t.touch();
            }
            if m.topic() == bus.topics.dlq {
                cfg.metrics.record(STAGE, "dead_letters", Outcome::In, 1);
                if serde_json::from_slice::<DeadLetter>(payload).is_err() {
                    tracing::warn!(offset = m.offset(), "unreadable dead letter skipped");
                    continue;
                }
                if !seen_dead.insert(content_id(payload)) {
                    cfg.metrics
                        .record(STAGE, "dead_letters", Outcome::Duplicate, 1);
                    continue;
                }
                dead_file.write_raw(payload)?;
                cfg.metrics.record(STAGE, "dead_letters", Outcome::Out, 1);
                continue;
            }
            if m.topic() == bus.topics.alerts {
                cfg.metrics.record(STAGE, "alerts", Outcome::In, 1);
                let Ok(alert) = serde_json::from_slice::<Alert>(payload) else {
                    tracing::warn!(offset = m.offset(), "unreadable alert skipped");
                    cfg.metrics
                        .record(STAGE, "alerts", Outcome::DeadLettered, 1);
                    continue;
                };
                // A sink that cannot take it retries and spools; `Err` (not even the
                // spool took it) stops the stage before this offset is committed.
                if alerts.deliver(&alert)? {
                    cfg.metrics.record(STAGE, "alerts", Outcome::Out, 1);
                } else {
                    cfg.metrics.record(STAGE, "alerts", Outcome::Duplicate, 1);
                }
            } else {
                cfg.metrics.record(STAGE, "actions", Outcome::In, 1);
                let Ok(action) = serde_json::from_slice::<Action>(payload) else {
                    tracing::warn!(offset = m.offset(), "unreadable action skipped");
                    cfg.metrics
                        .record(STAGE, "actions", Outcome::DeadLettered, 1);
                    continue;
                };
                match actions.handle(action)? {
                    Some(done) => {
                        tracing::info!(key = %done.idempotency_key, status = ?done.status, result = done.result.as_deref().unwrap_or(""), "action handled");
                        cfg.metrics.record(STAGE, "actions", Outcome::Out, 1);
                    }
                    None => cfg.metrics.record(STAGE, "actions", Outcome::Duplicate, 1),
                }
            }
        }
        alerts.sync()?;
        actions.sync()?;
        dead_file.sync()?;
        commit(&consumer, &next)?;
    }
    alerts.finish()?;
    if let Some(t) = tables.as_mut() {
        t.refresh(true)?;
    }
    tracing::info!(stage = STAGE.as_str(), "stopped");
    Ok(())
}

/// The id a dead letter is de-duplicated by: its JSON line's hash (a re-delivered
/// record has the same provenance, reason and bytes).
fn content_id(line: &[u8]) -> String {
    hex::encode(&Sha256::digest(line)[..16])
}
