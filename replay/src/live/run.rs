//! The stage loops of `lineage run` on the Kafka bus: normalize, graph/detect and
//! sinks, each a consumer group, each committing only after its outputs are durable
//! (see the module docs of [`crate::live`] for the design).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lineage_core::{Action, Alert, DeadLetter, Inventory, LineageFact, Provenance, Source};
use lineage_detect::DetectorsConfig;
use lineage_graph::LineageGraph;
use lineage_ingest::{parser_for, Half, Normalized};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::Offset;
use rdkafka::Message;
use sha2::{Digest, Sha256};

use super::kafka::{
    commit, ensure_topics, group_consumer, header, lag, BusConfig, OutputProducer, RebalanceLog,
    TopicReader,
};
use super::metrics::Metrics;
use super::{LiveError, WireEvent, WireHalf, VAULT_REQUEST_HOLD};
use crate::AttributeStage;

/// How long a flush may wait for the broker before the batch counts as failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);
/// Event ids remembered for de-duplication (oldest forgotten first).
const SEEN_EVENTS: usize = 2_000_000;

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
pub struct LiveConfig {
    /// The bus.
    pub bus: BusConfig,
    /// Stages to run in this process.
    pub stages: Vec<StageName>,
    /// The inventory.
    pub inventory: Inventory,
    /// Detector settings.
    pub detectors: DetectorsConfig,
    /// Alert sinks the sinks stage sends to (besides `alerts.jsonl`).
    pub alert_sinks: lineage_sinks::alerts::AlertSinksConfig,
    /// Where the sinks stage writes `alerts.jsonl` and `actions.jsonl`.
    pub out_dir: PathBuf,
    /// Messages per batch.
    pub batch: usize,
    /// First-message poll wait.
    pub poll: Duration,
    /// Metrics shared with `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Raised on SIGTERM: finish the batch, commit, return.
    pub shutdown: Arc<AtomicBool>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("bus", &self.bus)
            .field("stages", &self.stages)
            .field("out_dir", &self.out_dir)
            .finish_non_exhaustive()
    }
}

/// Runs the configured stages (one thread each) until shutdown or a stage fails.
pub fn run_kafka(cfg: &LiveConfig) -> Result<(), LiveError> {
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

/// Up to `max` messages: waits `wait` for the first, then takes what is ready.
fn poll_batch(
    consumer: &BaseConsumer<RebalanceLog>,
    max: usize,
    wait: Duration,
    stage: &str,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let mut timeout = wait;
    while out.len() < max {
        match consumer.poll(timeout) {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(stage, error = %e, "consumer error (retrying)");
                break;
            }
            Some(Ok(m)) => out.push(m.detach()),
        }
        timeout = Duration::ZERO;
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
}

impl IdentityQueue {
    fn open(bus: &BusConfig) -> Result<Self, LiveError> {
        Ok(Self {
            reader: TopicReader::all_partitions(bus, &bus.topics.identity)?,
            pending: BTreeMap::new(),
            seq: 0,
        })
    }

    /// Reads everything up to the current high watermark into the queue.
    fn catch_up(&mut self) -> Result<u64, LiveError> {
        let pending = &mut self.pending;
        let seq = &mut self.seq;
        self.reader.read_until(None, |m| {
            let Some(body) = m.payload() else { return };
            match serde_json::from_slice::<LineageFact>(body) {
                Ok(f) => {
                    *seq += 1;
                    pending.insert((f.time.timestamp_micros(), *seq), f);
                }
                Err(e) => {
                    tracing::warn!(error = %e, offset = m.offset(), "unreadable identity fact")
                }
            }
        })
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

fn normalize_stage(cfg: &LiveConfig) -> Result<(), LiveError> {
    const STAGE: &str = "normalize";
    let bus = &cfg.bus;
    let raw_topics: Vec<String> = Source::ALL.iter().map(|s| bus.topics.raw(*s)).collect();
    let refs: Vec<&str> = raw_topics.iter().map(String::as_str).collect();
    let consumer = group_consumer(bus, STAGE, &refs)?;
    let mut producer = OutputProducer::new(bus, "lineage-normalize")?;
    let mut identity = IdentityQueue::open(bus)?;
    let mut graph = LineageGraph::from_inventory(&cfg.inventory);
    identity.catch_up()?;
    for f in identity.due(i64::MAX) {
        graph.apply(&f);
    }
    cfg.metrics.set_ready(STAGE, true);
    let mut held: HashMap<smol_str::SmolStr, HeldRequest> = HashMap::new();
    let mut vault_seen: u64 = 0;
    let mut last_lag = Instant::now();
    let mut idle_since = Instant::now();
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE);
        let revoked = consumer.context().take_revoked();
        let mut events: Vec<(String, WireEvent)> = Vec::new();
        let mut facts: Vec<LineageFact> = Vec::new();
        let mut dead: Vec<(String, DeadLetter)> = Vec::new();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        // A held request whose partition may move is emitted alone now.
        let idle = batch.is_empty() && idle_since.elapsed() > Duration::from_secs(1);
        if batch.is_empty() && !idle && !revoked {
            if last_lag.elapsed() > Duration::from_secs(2) {
                record_lag(cfg, STAGE, &consumer);
                last_lag = Instant::now();
            }
            continue;
        }
        if !batch.is_empty() {
            idle_since = Instant::now();
            identity.catch_up()?;
            for f in identity.due(i64::MAX) {
                graph.apply(&f);
            }
        }
        for m in &batch {
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let Some(source) = bus.topics.source_of_raw(m.topic()) else {
                continue;
            };
            cfg.metrics.count(STAGE, source.as_str(), "in", 1);
            let provenance = Provenance::Kafka {
                topic: m.topic().into(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let payload = m.payload().unwrap_or_default();
            let broken = owned_header(m, "broken");
            let parsed = match (broken, parser_for(source)) {
                (Some(why), _) => Err(why),
                (None, None) => Err(format!("no parser for source `{source}`")),
                (None, Some(p)) => p
                    .parse_record(payload, provenance.clone())
                    .map_err(|e| e.to_string()),
            };
            let n: Normalized = match parsed {
                Ok(n) => n,
                Err(reason) => {
                    cfg.metrics
                        .count(STAGE, source.as_str(), "dead_lettered", 1);
                    dead.push((key, DeadLetter::new(source, reason, provenance, payload)));
                    continue;
                }
            };
            cfg.metrics.count(STAGE, source.as_str(), "out", 1);
            for f in &n.facts {
                graph.apply(f);
            }
            graph.observe(&n.use_);
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
                        cfg.metrics.count(STAGE, source.as_str(), "joined", 1);
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
            continue;
        }
        // The committed offset never passes a request still held.
        for h in held.values() {
            let e = next
                .entry((h.topic.clone(), h.partition))
                .or_insert(h.offset);
            *e = (*e).min(h.offset);
        }
        // Facts first and durable, then the events that carry them.
        for f in &facts {
            let body = serde_json::to_vec(f).expect("fact serializes");
            producer.send(&bus.topics.identity, fact_key(f).as_bytes(), &body, &[])?;
        }
        if !facts.is_empty() {
            producer.flush_all(FLUSH_TIMEOUT)?;
        }
        for (key, dl) in &dead {
            let body = serde_json::to_vec(dl).expect("dead letter serializes");
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
        producer.flush_all(FLUSH_TIMEOUT)?;
        commit(&consumer, &next)?;
        if last_lag.elapsed() > Duration::from_secs(2) {
            record_lag(cfg, STAGE, &consumer);
            last_lag = Instant::now();
        }
    }
    tracing::info!(stage = STAGE, "stopped");
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

fn record_lag(cfg: &LiveConfig, stage: &str, consumer: &BaseConsumer<RebalanceLog>) {
    cfg.metrics.replace_lag(stage, lag(consumer));
}

// ---------------------------------------------------------------- graph + detect

/// A bounded set of recently seen ids.
struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl SeenIds {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// True when `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

struct GraphState {
    stage: AttributeStage,
    identity: IdentityQueue,
    seen_events: SeenIds,
    /// Partitions whose history is in `stage`.
    rebuilt: HashSet<i32>,
}

impl GraphState {
    fn fresh(cfg: &LiveConfig) -> Result<Self, LiveError> {
        let stage = AttributeStage::new(&cfg.inventory, &cfg.detectors, None)
            .map_err(|e| LiveError::Config(format!("detectors: {e}")))?;
        let mut identity = IdentityQueue::open(&cfg.bus)?;
        identity.catch_up()?;
        Ok(Self {
            stage,
            identity,
            seen_events: SeenIds::new(SEEN_EVENTS),
            rebuilt: HashSet::new(),
        })
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

/// Runs one event through the stage; returns the alerts and actions it opened.
fn process_event(
    state: &mut GraphState,
    m: &OwnedMessage,
    cfg: &LiveConfig,
    live: bool,
    out: &mut GraphOutputs,
) {
    const STAGE: &str = "graph";
    let payload = m.payload().unwrap_or_default();
    let event: WireEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            if live {
                cfg.metrics.count(STAGE, "-", "dead_lettered", 1);
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
            return;
        }
    };
    let source = event.use_.source.as_str();
    if live {
        cfg.metrics.count(STAGE, source, "in", 1);
    }
    if !state.seen_events.insert(&event.dedup_id()) {
        if live {
            cfg.metrics.count(STAGE, source, "duplicate", 1);
        }
        return;
    }
    for f in state
        .identity
        .due(event.use_.time.timestamp_micros())
        .iter()
    {
        state.stage.apply_identity_fact(f);
    }
    let (alerts_before, actions_before) = {
        let book = state.stage.alerts();
        (book.alerts().len(), book.actions().len())
    };
    let ingested_ms = event.ingested_ms;
    let half = event.half.map(|h| match h {
        WireHalf::Request(id) => Half::Request(id),
        WireHalf::Response(id) => Half::Response(id),
    });
    state.stage.process(Normalized {
        use_: event.use_,
        facts: event.facts,
        half,
        rule_hits: Vec::new(),
    });
    if !live {
        return;
    }
    cfg.metrics.count(STAGE, source, "out", 1);
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
}

/// Replays partition `partition` of the events topic from 0 to `until` into the
/// state, with outputs suppressed.
fn rebuild_partition(
    state: &mut GraphState,
    cfg: &LiveConfig,
    partition: i32,
    until: i64,
) -> Result<(), LiveError> {
    if until <= 0 {
        return Ok(());
    }
    let started = Instant::now();
    let reader = TopicReader::one_partition(
        &cfg.bus,
        &cfg.bus.topics.events,
        partition,
        Offset::Beginning,
    )?;
    let mut msgs = Vec::new();
    reader.read_until(Some(&HashMap::from([(partition, until)])), |m| {
        msgs.push(m.detach())
    })?;
    let mut sink = GraphOutputs::default();
    for m in &msgs {
        process_event(state, m, cfg, false, &mut sink);
    }
    tracing::info!(
        partition,
        events = msgs.len(),
        secs = started.elapsed().as_secs_f64(),
        "rebuilt detector state from the partition's history"
    );
    Ok(())
}

fn graph_stage(cfg: &LiveConfig) -> Result<(), LiveError> {
    const STAGE: &str = "graph";
    let bus = &cfg.bus;
    let consumer = group_consumer(bus, STAGE, &[&bus.topics.events])?;
    let mut producer = OutputProducer::new(bus, "lineage-graph")?;
    // What is already on the output topics is never emitted again.
    let mut emitted_alerts: HashSet<String> = HashSet::new();
    TopicReader::all_partitions(bus, &bus.topics.alerts)?.read_until(None, |m| {
        if let Some(id) = header(m, "alert-id") {
            emitted_alerts.insert(id.to_owned());
        }
    })?;
    let mut emitted_actions: HashSet<Vec<u8>> = HashSet::new();
    TopicReader::all_partitions(bus, &bus.topics.actions)?.read_until(None, |m| {
        if let Some(k) = m.key() {
            emitted_actions.insert(k.to_vec());
        }
    })?;
    let mut state = GraphState::fresh(cfg)?;
    cfg.metrics.set_ready(STAGE, true);
    let mut last_lag = Instant::now();
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE);
        if consumer.context().take_revoked() {
            tracing::info!("partitions moved: dropping detector state, rebuilding per partition");
            state = GraphState::fresh(cfg)?;
        }
        if batch.is_empty() {
            if last_lag.elapsed() > Duration::from_secs(2) {
                record_lag(cfg, STAGE, &consumer);
                last_lag = Instant::now();
            }
            continue;
        }
        state.identity.catch_up()?;
        let mut out = GraphOutputs::default();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for m in &batch {
            if state.rebuilt.insert(m.partition()) {
                rebuild_partition(&mut state, cfg, m.partition(), m.offset())?;
            }
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            process_event(&mut state, m, cfg, true, &mut out);
        }
        for (a, ingested_ms) in &out.alerts {
            if !emitted_alerts.insert(a.id.to_string()) {
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
            if !emitted_actions.insert(a.idempotency_key.as_bytes().to_vec()) {
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
            let body = serde_json::to_vec(dl).expect("dead letter serializes");
            producer.send(&bus.topics.dlq, key.as_bytes(), &body, &[])?;
        }
        producer.flush_all(FLUSH_TIMEOUT)?;
        commit(&consumer, &next)?;
        if last_lag.elapsed() > Duration::from_secs(2) {
            record_lag(cfg, STAGE, &consumer);
            last_lag = Instant::now();
        }
    }
    tracing::info!(stage = STAGE, "stopped");
    Ok(())
}

// ---------------------------------------------------------------- sinks

/// Ids already in a JSON-lines file (field `field` of each line).
fn ids_in(path: &std::path::Path, field: &str) -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get(field).and_then(|x| x.as_str()).map(str::to_owned))
        .collect()
}

fn append(path: &std::path::Path) -> Result<std::io::BufWriter<std::fs::File>, LiveError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(std::io::BufWriter::new)
        .map_err(|e| LiveError::Io(format!("opening {}: {e}", path.display())))
}

fn sinks_stage(cfg: &LiveConfig) -> Result<(), LiveError> {
    const STAGE: &str = "sinks";
    let bus = &cfg.bus;
    std::fs::create_dir_all(&cfg.out_dir)
        .map_err(|e| LiveError::Io(format!("creating {}: {e}", cfg.out_dir.display())))?;
    let alerts_path = cfg.out_dir.join("alerts.jsonl");
    let actions_path = cfg.out_dir.join("actions.jsonl");
    let mut seen_alerts = ids_in(&alerts_path, "id");
    let mut seen_actions = ids_in(&actions_path, "idempotency_key");
    let mut alerts_file = append(&alerts_path)?;
    let mut actions_file = append(&actions_path)?;
    let mut fanout = if cfg.alert_sinks.sinks.is_empty() {
        None
    } else {
        let spool = cfg
            .alert_sinks
            .spool_dir
            .clone()
            .unwrap_or_else(|| cfg.out_dir.join("spool"));
        let mut f = lineage_sinks::alerts::AlertFanout::build(&cfg.alert_sinks, &spool)
            .map_err(|e| LiveError::Config(format!("alert sinks: {e}")))?;
        if let Err(e) = f.flush_spool() {
            tracing::warn!(error = %e, "alert spool not flushed");
        }
        Some(f)
    };
    let consumer = group_consumer(bus, STAGE, &[&bus.topics.alerts, &bus.topics.actions])?;
    cfg.metrics.set_ready(STAGE, true);
    let mut last_lag = Instant::now();
    loop {
        if cfg.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let batch = poll_batch(&consumer, cfg.batch, cfg.poll, STAGE);
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
            if m.topic() == bus.topics.alerts {
                cfg.metrics.count(STAGE, "alerts", "in", 1);
                let Ok(alert) = serde_json::from_slice::<Alert>(payload) else {
                    tracing::warn!(offset = m.offset(), "unreadable alert skipped");
                    cfg.metrics.count(STAGE, "alerts", "dead_lettered", 1);
                    continue;
                };
                if !seen_alerts.insert(alert.id.to_string()) {
                    cfg.metrics.count(STAGE, "alerts", "duplicate", 1);
                    continue;
                }
                alerts_file
                    .write_all(payload)
                    .and_then(|_| alerts_file.write_all(b"\n"))
                    .map_err(|e| LiveError::Io(format!("writing alerts: {e}")))?;
                if let Some(f) = fanout.as_mut() {
                    if let Err(e) = f.send(&alert) {
                        tracing::warn!(alert = %alert.id, error = %e, "alert sinks");
                    }
                }
                cfg.metrics.count(STAGE, "alerts", "out", 1);
            } else {
                cfg.metrics.count(STAGE, "actions", "in", 1);
                let Ok(action) = serde_json::from_slice::<Action>(payload) else {
                    tracing::warn!(offset = m.offset(), "unreadable action skipped");
                    cfg.metrics.count(STAGE, "actions", "dead_lettered", 1);
                    continue;
                };
                if !seen_actions.insert(action.idempotency_key.clone()) {
                    cfg.metrics.count(STAGE, "actions", "duplicate", 1);
                    continue;
                }
                actions_file
                    .write_all(payload)
                    .and_then(|_| actions_file.write_all(b"\n"))
                    .map_err(|e| LiveError::Io(format!("writing actions: {e}")))?;
                cfg.metrics.count(STAGE, "actions", "out", 1);
            }
        }
        for f in [&mut alerts_file, &mut actions_file] {
            f.flush()
                .and_then(|_| f.get_ref().sync_data())
                .map_err(|e| LiveError::Io(format!("syncing outputs: {e}")))?;
        }
        commit(&consumer, &next)?;
    }
    tracing::info!(stage = STAGE, "stopped");
    Ok(())
}
