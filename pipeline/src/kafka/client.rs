//! The Kafka side of the bus: settings (`[bus]` in the config file), topic names,
//! topic creation, and thin producer/consumer wrappers over rdkafka that the stage
//! loops use. Every librdkafka property can be passed through (`[bus.librdkafka]`),
//! so SASL/TLS for MSK, Confluent Cloud or Event Hubs' Kafka endpoint is configuration.
//!
//! Producers are idempotent (`enable.idempotence=true`, `acks=all`) and report
//! delivery per message; [`OutputProducer::flush_all`] only returns `Ok` once every
//! message produced since the last flush is acknowledged by the broker, which is
//! what a stage waits for before it commits its input offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lineage_core::{DeadLetter, Source};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};
use serde::{Deserialize, Serialize};

use super::LiveError;

/// Which bus connects the stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// One process, in-process channels (the replay pipeline over `[run] inputs`).
    #[default]
    Embedded,
    /// Kafka topics; every stage is a consumer group.
    Kafka,
}

/// Topic names (all configurable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicNames {
    /// Prefix of the raw topics: `<prefix><source>` (`lineage.raw.cloudtrail`, …).
    pub raw_prefix: String,
    /// Normalized events, keyed by root credential.
    pub events: String,
    /// Lineage facts (compacted), read in full by every graph instance.
    pub identity: String,
    /// Alerts, keyed by dedup key.
    pub alerts: String,
    /// Revocation requests, keyed by idempotency key.
    pub actions: String,
    /// Dead letters, keyed by the raw record's key.
    pub dlq: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            raw_prefix: "lineage.raw.".into(),
            events: "lineage.events".into(),
            identity: "lineage.identity".into(),
            alerts: "lineage.alerts".into(),
            actions: "lineage.actions".into(),
            dlq: "lineage.dlq".into(),
        }
    }
}

impl TopicNames {
    /// The raw topic of `source`.
    pub fn raw(&self, source: Source) -> String {
        format!("{}{}", self.raw_prefix, source.as_str())
    }

    /// The source a raw topic carries.
    pub fn source_of_raw(&self, topic: &str) -> Option<Source> {
        let name = topic.strip_prefix(&self.raw_prefix)?;
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Partition counts used when `lineage run` / `lineage ingest` create missing topics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionCounts {
    /// Raw topics. One by default: a source's records must be normalized in the
    /// order they were ingested (an `AssumeRole` before the session's first use).
    pub raw: i32,
    /// `lineage.events`: the unit of scale-out of the graph/detect stage.
    pub events: i32,
    /// `lineage.identity`.
    pub identity: i32,
    /// `lineage.alerts`, `lineage.actions` and `lineage.dlq`.
    pub outputs: i32,
}

impl Default for PartitionCounts {
    fn default() -> Self {
        Self {
            raw: 1,
            events: 6,
            identity: 1,
            outputs: 3,
        }
    }
}

/// `[bus]`: how stages are connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `embedded` (default) or `kafka`.
    pub kind: BusKind,
    /// Bootstrap servers (`host:port,…`).
    pub brokers: String,
    /// Consumer group prefix: each stage joins `<group_id>.<stage>`.
    pub group_id: String,
    /// Topic names.
    pub topics: TopicNames,
    /// Partition counts for topics `lineage` creates.
    pub partitions: PartitionCounts,
    /// Replication factor for topics `lineage` creates.
    pub replication_factor: i32,
    /// Create missing topics at start (the identity topic with `cleanup.policy=compact`).
    pub create_topics: bool,
    /// Topic configs for the topics `lineage` creates (`[bus.topic_config]`, e.g.
    /// `"retention.ms" = "86400000"`); the broker's defaults otherwise. The identity
    /// topic keeps `cleanup.policy=compact` (a broker ignores `retention.ms` for it).
    /// Topics that already exist are left as they are.
    pub topic_config: BTreeMap<String, String>,
    /// Static group membership: this process's stable member name (each stage's
    /// consumer joins as `<instance_id>.<stage>`, librdkafka's `group.instance.id`), so a
    /// restarted process takes its partitions back at once instead of waiting for the
    /// broker to expire the dead member. Unset: `lineage run` derives one from the host
    /// name and the config file's path; `""` turns static membership off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Any librdkafka property, passed through to every client (SASL, TLS, timeouts).
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            brokers: "127.0.0.1:9092".into(),
            group_id: "lineage".into(),
            topics: TopicNames::default(),
            partitions: PartitionCounts::default(),
            replication_factor: 1,
            create_topics: true,
            topic_config: BTreeMap::new(),
            instance_id: None,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl BusConfig {
    /// The largest payload lineage puts in one message: librdkafka's
    /// `message.max.bytes` (1,000,000 unless set in `[bus.librdkafka]`), less 64 KiB
    /// for the key, headers and batch framing. A raw record over it is dead-lettered at
    /// ingest, and a dead letter over it is sent with its original cut to fit
    /// ([`dead_letter_payload`]): a message the producer refuses would stop the stage
    /// on the same record after every restart.
    pub fn max_payload_bytes(&self) -> usize {
        let limit = self
            .librdkafka
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1_000_000);
        limit.saturating_sub(64 * 1024).max(4096)
    }

    fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for (k, v) in &self.librdkafka {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Names a librdkafka property that was refused, never its value (it can be a password).
fn config_error(what: &str, e: KafkaError) -> LiveError {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            LiveError::Kafka(format!("{what}: librdkafka property {key:?}: {desc}"))
        }
        e => LiveError::Kafka(format!("{what}: {e}")),
    }
}

/// Creates the topics the pipeline uses that do not exist yet.
pub fn ensure_topics(bus: &BusConfig) -> Result<(), LiveError> {
    if !bus.create_topics {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = bus
        .client_config("lineage-admin")
        .create()
        .map_err(|e| config_error("Kafka admin client", e))?;
    let t = &bus.topics;
    let p = &bus.partitions;
    let mut specs: Vec<(String, i32, bool)> = Source::ALL
        .iter()
        .map(|s| (t.raw(*s), p.raw, false))
        .collect();
    specs.push((t.events.clone(), p.events, false));
    specs.push((t.identity.clone(), p.identity, true));
    for name in [&t.alerts, &t.actions, &t.dlq] {
        specs.push((name.clone(), p.outputs, false));
    }
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|(name, parts, compact)| {
            let mut nt = NewTopic::new(
                name,
                (*parts).max(1),
                TopicReplication::Fixed(bus.replication_factor),
            );
            for (key, value) in &bus.topic_config {
                if !(*compact && key == "cleanup.policy") {
                    nt = nt.set(key, value);
                }
            }
            if *compact {
                nt.set("cleanup.policy", "compact")
            } else {
                nt
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| LiveError::Kafka(format!("runtime for the admin client: {e}")))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = rt
        .block_on(admin.create_topics(topics.iter(), &opts))
        .map_err(|e| LiveError::Kafka(format!("creating topics: {e}")))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => {
                return Err(LiveError::Kafka(format!("creating topic {name}: {code}")))
            }
        }
    }
    Ok(())
}

/// Delivery bookkeeping shared with librdkafka's callback thread.
#[derive(Default)]
pub(crate) struct Deliveries {
    acked: AtomicU64,
    failed: Mutex<Vec<String>>,
}

/// The producer context: hands delivery reports to [`Deliveries`].
pub(crate) struct Reports(Arc<Deliveries>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                let why = format!("{} [{}]: {e}", m.topic(), m.partition());
                tracing::warn!(error = %why, "Kafka delivery failed");
                self.0
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(why);
            }
        }
    }
}

/// An idempotent producer whose flush tells whether everything produced since the
/// last flush reached the broker.
pub(crate) struct OutputProducer {
    producer: BaseProducer<Reports>,
    deliveries: Arc<Deliveries>,
    bus: BusConfig,
    client_id: String,
}

impl OutputProducer {
    /// Builds an idempotent producer (`acks=all`).
    pub(crate) fn new(bus: &BusConfig, client_id: &str) -> Result<Self, LiveError> {
        let deliveries = Arc::new(Deliveries::default());
        let producer = Self::build(bus, client_id, deliveries.clone())?;
        Ok(Self {
            producer,
            deliveries,
            bus: bus.clone(),
            client_id: client_id.to_owned(),
        })
    }

    fn build(
        bus: &BusConfig,
        client_id: &str,
        deliveries: Arc<Deliveries>,
    ) -> Result<BaseProducer<Reports>, LiveError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &bus.brokers)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000");
        for (k, v) in &bus.librdkafka {
            cfg.set(k, v);
        }
        cfg.create_with_context(Reports(deliveries))
            .map_err(|e| config_error("Kafka producer", e))
    }

    /// Queues one message; waits while librdkafka's queue is full.
    pub(crate) fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), LiveError> {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::to(topic).key(key).payload(payload).headers(hs);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    self.producer.poll(Duration::from_millis(20));
                }
                Err((e, _)) => return Err(LiveError::Kafka(format!("producing to {topic}: {e}"))),
            }
        }
    }

    /// Waits until every queued message is acknowledged; `Err` when any failed (the
    /// caller must not commit its input then). A producer left in a fatal state
    /// (idempotence sequence lost) is rebuilt.
    pub(crate) fn flush_all(&mut self, timeout: Duration) -> Result<(), LiveError> {
        // Serve the delivery reports first, against the clock. rdkafka 0.37's `flush`
        // takes its poll interval off the timeout for every event it serves, however
        // quickly: a producer that sent one message per request (a paced `ingest
        // --rate`) had a report per message waiting, and thousands of them made a
        // 120 s flush fail at once with "timed out".
        let deadline = Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(100));
        }
        let flushed = self
            .producer
            .flush(deadline.saturating_duration_since(Instant::now()));
        let failed: Vec<String> = std::mem::take(
            &mut *self
                .deliveries
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if let Some((code, why)) = self.producer.client().fatal_error() {
            tracing::warn!(%code, %why, "Kafka producer hit a fatal error; recreating it");
            self.producer = Self::build(&self.bus, &self.client_id, self.deliveries.clone())?;
            return Err(LiveError::Kafka(format!("producer fatal error: {why}")));
        }
        if let Err(e) = flushed {
            return Err(LiveError::Kafka(format!("flush: {e}")));
        }
        if !failed.is_empty() {
            return Err(LiveError::Kafka(format!(
                "{} message(s) not delivered, first: {}",
                failed.len(),
                failed[0]
            )));
        }
        Ok(())
    }
}

/// Logs rebalances and remembers that one happened (a stage that keeps
/// per-partition state rebuilds it).
#[derive(Default)]
pub(crate) struct RebalanceLog {
    stage: &'static str,
    revoked: AtomicBool,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(
                    stage = self.stage,
                    partitions = tpl.count(),
                    "partitions revoked"
                );
                self.revoked.store(true, Ordering::SeqCst);
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(stage = self.stage, partitions = ?describe(tpl, false), "partitions assigned")
            }
            Rebalance::Error(e) => {
                tracing::warn!(stage = self.stage, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(stage = self.stage, error = %e, "offset commit failed");
        }
    }
}

impl RebalanceLog {
    /// True once since the last call when partitions were revoked.
    pub(crate) fn take_revoked(&self) -> bool {
        self.revoked.swap(false, Ordering::SeqCst)
    }
}

/// `topic[partition]` for each element, with `=offset` when `offsets`.
fn describe(tpl: &TopicPartitionList, offsets: bool) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| {
            let tp = format!("{}[{}]", e.topic(), e.partition());
            if offsets {
                format!("{tp}={:?}", e.offset())
            } else {
                tp
            }
        })
        .collect()
}

/// A consumer in group `<group_id>.<stage>` subscribed to `topics`, committing
/// manually, starting from the earliest offset when the group has none.
pub(crate) fn group_consumer(
    bus: &BusConfig,
    stage: &'static str,
    topics: &[&str],
) -> Result<BaseConsumer<RebalanceLog>, LiveError> {
    let mut cfg = bus.client_config(&format!("lineage-{stage}"));
    cfg.set("group.id", format!("{}.{stage}", bus.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Latency: a caught-up consumer's fetch waits at most this long at the broker.
        .set("fetch.wait.max.ms", "50");
    if let Some(id) = bus.instance_id.as_deref().filter(|s| !s.is_empty()) {
        cfg.set("group.instance.id", format!("{id}.{stage}"));
    }
    // Pass-through wins over the defaults above, as for producers.
    for (k, v) in &bus.librdkafka {
        cfg.set(k, v);
    }
    let c: BaseConsumer<RebalanceLog> = cfg
        .create_with_context(RebalanceLog {
            stage,
            revoked: AtomicBool::new(false),
        })
        .map_err(|e| config_error("Kafka consumer", e))?;
    c.subscribe(topics)
        .map_err(|e| LiveError::Kafka(format!("subscribing to {topics:?}: {e}")))?;
    Ok(c)
}

/// Commits `next` (topic, partition) → next offset to read. Asynchronously: the
/// outputs of those messages are already acknowledged, so a commit that fails (logged
/// by [`RebalanceLog`]) or is lost in a crash only means a re-delivery, which the
/// stages de-duplicate. (A synchronous commit waits without a timeout, and tansu 0.6
/// was seen to leave one unanswered after a group member was SIGKILLed and replaced.)
pub(crate) fn commit(
    consumer: &BaseConsumer<RebalanceLog>,
    next: &HashMap<(String, i32), i64>,
) -> Result<(), LiveError> {
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| LiveError::Kafka(format!("offset list: {e}")))?;
    }
    tracing::debug!(stage = consumer.context().stage, offsets = ?describe(&tpl, true), "commit");
    consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Async)
        .map_err(|e| LiveError::Kafka(format!("commit: {e}")))
}

/// Reads partitions of one topic outside any group (the identity table, the output
/// topics' keys for de-duplication, a partition's history when state is rebuilt).
pub(crate) struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    /// Next offset to read, by partition, as far as this reader has read.
    next: HashMap<i32, i64>,
}

impl TopicReader {
    /// A reader of every partition of `topic` from the beginning.
    pub(crate) fn all_partitions(bus: &BusConfig, topic: &str) -> Result<Self, LiveError> {
        Self::all_partitions_from(bus, topic, &BTreeMap::new())
    }

    /// A reader of every partition of `topic`, each from its offset in `from` (from
    /// the beginning when `from` does not name it).
    pub(crate) fn all_partitions_from(
        bus: &BusConfig,
        topic: &str,
        from: &BTreeMap<i32, i64>,
    ) -> Result<Self, LiveError> {
        let consumer = Self::consumer(bus)?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(20))
            .map_err(|e| LiveError::Kafka(format!("metadata of {topic}: {e}")))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(LiveError::Kafka(format!("topic {topic} has no partitions")));
        }
        let starts = partitions
            .iter()
            .map(|p| {
                let start = from
                    .get(p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                (*p, start)
            })
            .collect();
        Self::assigned(consumer, topic, starts)
    }

    /// A reader of some partitions of `topic`, each from its start.
    pub(crate) fn partitions(
        bus: &BusConfig,
        topic: &str,
        starts: Vec<(i32, Offset)>,
    ) -> Result<Self, LiveError> {
        Self::assigned(Self::consumer(bus)?, topic, starts)
    }

    fn consumer(bus: &BusConfig) -> Result<BaseConsumer, LiveError> {
        let mut cfg = bus.client_config("lineage-reader");
        // A group id is required by librdkafka even without subscribing; nothing is committed.
        cfg.set("group.id", format!("{}.reader", bus.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A reader catches up to a high watermark it just fetched: a fetch parked at
            // the broker for the default 500 ms (tansu answers it only then) would make
            // every catch-up of the identity table cost that much.
            .set("fetch.wait.max.ms", "10");
        for (k, v) in &bus.librdkafka {
            cfg.set(k, v);
        }
        cfg.create().map_err(|e| config_error("Kafka reader", e))
    }

    fn assigned(
        consumer: BaseConsumer,
        topic: &str,
        starts: Vec<(i32, Offset)>,
    ) -> Result<Self, LiveError> {
        let mut tpl = TopicPartitionList::new();
        for (p, start) in &starts {
            tpl.add_partition_offset(topic, *p, *start)
                .map_err(|e| LiveError::Kafka(format!("offset list: {e}")))?;
        }
        let partitions: Vec<i32> = starts.iter().map(|(p, _)| *p).collect();
        consumer
            .assign(&tpl)
            .map_err(|e| LiveError::Kafka(format!("assigning {topic}: {e}")))?;
        // A partition started at an offset stands there: started at its end, it is
        // read to its end already (no message would come to say so).
        let next = starts
            .iter()
            .filter_map(|(p, start)| match start {
                Offset::Offset(o) => Some((*p, *o)),
                _ => None,
            })
            .collect();
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
            next,
        })
    }

    /// High watermarks now, by partition (one request for all of them).
    pub(crate) fn high_watermarks(&self) -> Result<HashMap<i32, i64>, LiveError> {
        let keys: Vec<(String, i32)> = self
            .partitions
            .iter()
            .map(|p| (self.topic.clone(), *p))
            .collect();
        Ok(end_offsets(&self.consumer, &keys, Duration::from_secs(20))?
            .into_iter()
            .map(|((_, p), high)| (p, high))
            .collect())
    }

    /// Calls `f` for every message until each partition reaches `until` (exclusive) or,
    /// without `until`, at least the high watermark as of this call (and whatever else
    /// is already fetched). Returns messages read.
    pub(crate) fn read_until(
        &mut self,
        until: Option<&HashMap<i32, i64>>,
        mut f: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<u64, LiveError> {
        let hwm;
        let targets = match until {
            Some(u) => u,
            None => {
                hwm = self.high_watermarks()?;
                &hwm
            }
        };
        // Where this reader stands (earlier calls included): a partition already read
        // to its target needs no poll, so a catch-up with nothing new returns at once.
        let position = &mut self.next;
        let done = |position: &HashMap<i32, i64>| {
            targets
                .iter()
                .all(|(p, t)| *t <= 0 || position.get(p).is_some_and(|next| *next >= *t))
        };
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(position) {
            if Instant::now() > deadline {
                return Err(LiveError::Kafka(format!(
                    "reading {} to {targets:?} timed out at {position:?}",
                    self.topic
                )));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => tracing::warn!(topic = %self.topic, error = %e, "reader"),
                Some(Ok(m)) => {
                    let target = targets.get(&m.partition()).copied().unwrap_or(0);
                    // Catching up (no `until`), a message past the watermark fetched
                    // at the start is delivered too: the reader's position moves past
                    // it, so skipping it here would lose it for good.
                    if until.is_none() || m.offset() < target {
                        f(&m);
                        n += 1;
                    }
                    position.insert(m.partition(), m.offset() + 1);
                }
            }
        }
        if until.is_none() {
            // What the consumer already fetched is delivered as well. Besides saving a
            // round trip, this reads a partition's last batch on a broker whose high
            // watermark lags behind it (tansu 0.6 reports the last batch's base offset),
            // which reading only to the watermark would never reach while the
            // partition is idle.
            while let Some(r) = self.consumer.poll(Duration::ZERO) {
                match r {
                    Err(e) => tracing::warn!(topic = %self.topic, error = %e, "reader"),
                    Ok(m) => {
                        f(&m);
                        n += 1;
                        position.insert(m.partition(), m.offset() + 1);
                    }
                }
            }
        }
        Ok(n)
    }

    /// [`TopicReader::read_until`] to the end, then keeps reading until nothing has
    /// come for `idle`. For a start-up read begun at a recorded offset: tansu reports
    /// a partition's end as its last batch's base offset, so a reader started there
    /// stands at the "end" with that batch still unread. Not for the hot path.
    pub(crate) fn read_to_quiet_end(
        &mut self,
        idle: Duration,
        mut f: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<u64, LiveError> {
        let mut n = self.read_until(None, &mut f)?;
        while let Some(r) = self.consumer.poll(idle) {
            match r {
                Err(e) => tracing::warn!(topic = %self.topic, error = %e, "reader"),
                Ok(m) => {
                    f(&m);
                    n += 1;
                    self.next.insert(m.partition(), m.offset() + 1);
                }
            }
        }
        Ok(n)
    }
}

/// The high watermarks (end offsets) of `partitions`, asked in one request per broker
/// (`ListOffsets` for the latest offset, as a watermark query does) rather than one
/// round trip per partition: a catch-up before every batch paid one per partition.
pub(crate) fn end_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, LiveError> {
    let mut out = HashMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in partitions {
        tpl.add_partition_offset(topic, *p, Offset::End)
            .map_err(|e| LiveError::Kafka(format!("offset list: {e}")))?;
    }
    let answered = consumer
        .offsets_for_times(tpl, timeout)
        .map_err(|e| LiveError::Kafka(format!("end offsets: {e}")))?;
    for e in answered.elements() {
        if let Err(err) = e.error() {
            return Err(LiveError::Kafka(format!(
                "end offset of {}[{}]: {err}",
                e.topic(),
                e.partition()
            )));
        }
        let high = match e.offset() {
            Offset::Offset(o) => o,
            // Not answered: unknown.
            _ => -1,
        };
        out.insert((e.topic().to_owned(), e.partition()), high);
    }
    Ok(out)
}

/// Consumer lag of an assigned consumer: high watermark − position, by partition.
pub(crate) fn lag(consumer: &BaseConsumer<RebalanceLog>) -> Vec<(String, i32, i64)> {
    let Ok(position) = consumer.position() else {
        return Vec::new();
    };
    let keys: Vec<(String, i32)> = position
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let Ok(highs) = end_offsets(consumer, &keys, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in position.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let Some(&high) = highs.get(&key).filter(|h| **h >= 0) else {
            continue;
        };
        // A partition nothing was consumed from since assignment has no position:
        // there the group's committed offset (or, never committed, the log start)
        // stands in.
        let pos = match e.offset() {
            Offset::Offset(o) => o,
            _ => committed_offset(consumer, &key).unwrap_or(0),
        };
        out.push((e.topic().to_owned(), e.partition(), (high - pos).max(0)));
    }
    out
}

/// The group's committed offset of one partition (`None` when never committed).
pub(crate) fn committed_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    key: &(String, i32),
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&key.0, key.1);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(2))
        .map_err(|e| tracing::debug!(error = %e, topic = %key.0, partition = key.1, "committed offset unknown"))
        .ok()?;
    match committed.elements().first().map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// A message header's value as text.
pub(crate) fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    use rdkafka::message::Headers;
    let hs = m.headers()?;
    hs.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Every partition of the raw topics, from the broker's metadata.
pub(crate) fn raw_partitions(bus: &BusConfig) -> Result<Vec<(String, i32)>, LiveError> {
    let consumer = TopicReader::consumer(bus)?;
    let mut out = Vec::new();
    for source in Source::ALL {
        let topic = bus.topics.raw(source);
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(20))
            .map_err(|e| LiveError::Kafka(format!("metadata of {topic}: {e}")))?;
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            out.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
    }
    Ok(out)
}

/// A dead letter as a message payload that fits [`BusConfig::max_payload_bytes`]: as
/// is when it fits, else with its original cut ([`DeadLetter::truncate_original`],
/// which says so in the reason) until it does.
pub(crate) fn dead_letter_payload(bus: &BusConfig, dl: &DeadLetter) -> Vec<u8> {
    let max = bus.max_payload_bytes();
    let mut body = serde_json::to_vec(dl).expect("dead letter serializes");
    let kept = |d: &DeadLetter| {
        d.original
            .as_ref()
            .or(d.original_base64.as_ref())
            .map_or(0, String::len)
    };
    let mut room = kept(dl);
    while body.len() > max && room > 0 {
        // JSON escaping may make the text longer in the message than in memory, so
        // cut by the excess and a margin, and again if that was not enough.
        room = room.saturating_sub(body.len() - max + 1024);
        let mut cut = dl.clone();
        cut.truncate_original(room);
        body = serde_json::to_vec(&cut).expect("dead letter serializes");
    }
    body
}
