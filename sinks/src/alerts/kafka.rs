//! The Kafka alert transport: each alert is produced to a topic, keyed by its
//! `dedup_key`, its JSON as the value, and waited for until the broker (all in-sync
//! replicas, `acks=all`) has it. The spooling around it is the HTTP sinks' own
//! ([`super::http::HttpSink`]): an alert Kafka does not take is spooled and re-sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lineage_core::Alert;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;

use super::http::{idempotency_key, Failure};

/// How much longer than `message.timeout.ms` a send waits for librdkafka's verdict
/// before giving up on the message itself.
const FLUSH_MARGIN: Duration = Duration::from_secs(5);

/// What a Kafka transport is built from.
#[derive(Clone)]
pub(crate) struct KafkaSettings {
    pub(crate) name: String,
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) timeout: Duration,
    pub(crate) librdkafka: BTreeMap<String, String>,
}

/// The delivery report of the one message in flight.
type Slot = Arc<Mutex<Option<Result<(), Failure>>>>;

struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Slot;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Slot) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(classify(e)),
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

/// A producer for one sink. Sends are synchronous: one message in flight, its
/// delivery report awaited, so alerts reach the topic in order.
pub(crate) struct KafkaTransport {
    settings: KafkaSettings,
    producer: BaseProducer<Reports>,
    /// How long to wait for a delivery report: `message.timeout.ms` and a margin.
    wait: Duration,
}

impl KafkaTransport {
    /// Builds the producer (it connects lazily, so a down broker is not an error
    /// here; a bad librdkafka property is).
    pub(crate) fn new(settings: KafkaSettings) -> Result<Self, String> {
        let (producer, message_timeout) = producer(&settings)?;
        Ok(Self {
            settings,
            producer,
            wait: message_timeout + FLUSH_MARGIN,
        })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.settings.topic
    }

    pub(crate) fn brokers(&self) -> &str {
        &self.settings.brokers
    }

    /// Produces `alert` and waits for its delivery report. librdkafka retries
    /// internally until `message.timeout.ms`; what is left after that is a
    /// transient failure (the sink spools it), unless the broker refused the
    /// payload itself (too large, invalid record).
    pub(crate) fn deliver(&mut self, alert: &Alert, body: &[u8]) -> Result<(), Failure> {
        let slot: Slot = Arc::new(Mutex::new(None));
        let ikey = idempotency_key(alert);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "idempotency-key",
                value: Some(ikey.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let record = BaseRecord::with_opaque_to(&self.settings.topic, slot.clone())
            .key(alert.dedup_key.as_bytes())
            .payload(body)
            .headers(headers);
        if let Err((e, _)) = self.producer.send(record) {
            return Err(classify(&e));
        }
        let flushed = self.producer.flush(self.wait);
        let outcome = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match (outcome, flushed) {
            (Some(r), _) => r,
            (None, Ok(())) => Err(Failure::Transient("no delivery report".into())),
            (None, Err(e)) => {
                // Still queued or in flight after message.timeout.ms and the margin:
                // drop it so it cannot arrive after the spooled copy is re-sent.
                self.producer
                    .purge(PurgeConfig::default().queue().inflight());
                self.producer.poll(Duration::from_millis(100));
                Err(Failure::Transient(format!(
                    "no delivery report within {:?}: {e}",
                    self.wait
                )))
            }
        };
        self.recover_if_fatal();
        result
    }

    /// An idempotent producer can hit a fatal error (e.g. the broker lost its
    /// sequence state); such a producer refuses everything after, so rebuild it.
    fn recover_if_fatal(&mut self) {
        if let Some((code, why)) = self.producer.client().fatal_error() {
            tracing::warn!(sink = %self.settings.name, %code, %why, "Kafka producer hit a fatal error; recreating it");
            match producer(&self.settings) {
                Ok((p, _)) => self.producer = p,
                Err(e) => {
                    tracing::error!(sink = %self.settings.name, error = %e, "could not recreate the Kafka producer")
                }
            }
        }
    }
}

fn producer(s: &KafkaSettings) -> Result<(BaseProducer<Reports>, Duration), String> {
    let mut cfg = ClientConfig::new();
    let timeout_ms = s.timeout.as_millis().clamp(1, i32::MAX as u128);
    cfg.set("bootstrap.servers", &s.brokers)
        .set("client.id", format!("lineage-{}", s.name))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("linger.ms", "0");
    for (k, v) in &s.librdkafka {
        cfg.set(k, v);
    }
    let message_timeout = cfg
        .get("message.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(s.timeout, Duration::from_millis);
    let p = cfg.create_with_context(Reports).map_err(|e| match e {
        // Named by property, never by value (which can be a SASL password).
        KafkaError::ClientConfig(_, desc, key, _) => {
            format!("Kafka producer: librdkafka property {key:?}: {desc}")
        }
        e => format!("Kafka producer: {e}"),
    })?;
    Ok((p, message_timeout))
}

fn classify(e: &KafkaError) -> Failure {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage,
        ) => Failure::Rejected(e.to_string()),
        _ => Failure::Transient(e.to_string()),
    }
}
