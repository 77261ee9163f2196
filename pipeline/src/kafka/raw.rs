//! `lineage ingest`: files (or standard input) → raw records framed with
//! `lineage_ingest::framing` → `lineage.raw.<source>`, one message per record, keyed
//! by the source event id, through an idempotent producer. Nothing is parsed into
//! the event model here beyond reading the event id for the key; unframeable bytes
//! are still sent (header `broken` = the reason) so the normalize stage
//! dead-letters and counts them, and a file whose source cannot be told goes to the
//! DLQ directly.
//!
//! [`RawProducer`] is the same producer for records that arrive in batches from a
//! live connector (`lineage ingest <source> --from-checkpoint FILE <connector>`):
//! [`RawProducer::produce_batch`] sends a batch with the same keys and headers and
//! returns only once the broker acknowledged every message, so the caller acks the
//! connector batch (advancing its checkpoint) only after that. A crash in between
//! re-delivers the batch: its records reach the raw topic twice, with the same keys,
//! and the graph stage drops events whose id it has seen (see "Delivery" in the
//! module doc of [`crate::kafka`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_ingest::connect::{single_line, RawRecord};
use lineage_ingest::framing::{frames, Frame};
use lineage_ingest::{decompress, parser_for, sniff_source, SourceParser};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;

use super::client::{dead_letter_payload, ensure_topics, BusConfig, OutputProducer};
use super::LiveError;

/// What to ingest.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Files (directories and globs already expanded, e.g. by
    /// `lineage_replay::expand_inputs`), or `-` for standard input.
    pub files: Vec<String>,
    /// Force a source instead of sniffing each file.
    pub source: Option<Source>,
    /// The bus.
    pub bus: BusConfig,
    /// Offered rate in records per second (benchmarks); `None` = as fast as possible.
    pub rate: Option<u64>,
}

/// What an ingest sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Files (or streams) read.
    pub files: u64,
    /// Records (and unframeable fragments) read.
    pub read: u64,
    /// Messages sent to raw topics (including unframeable fragments).
    pub produced: u64,
    /// Records sent to the DLQ: each record of a file whose source could not be told
    /// (source `unknown`), and records too large for the broker.
    pub dead_lettered: u64,
    /// Messages per raw topic.
    pub by_source: BTreeMap<String, u64>,
}

/// Holds a send loop to an offered rate.
struct Pacer {
    per_record: Option<std::time::Duration>,
    started: std::time::Instant,
    sent: u32,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Self {
        Self {
            per_record: rate
                .filter(|r| *r > 0)
                .map(|r| std::time::Duration::from_secs_f64(1.0 / r as f64)),
            started: std::time::Instant::now(),
            sent: 0,
        }
    }

    fn wait(&mut self) {
        let Some(step) = self.per_record else { return };
        self.sent = self.sent.saturating_add(1);
        let due = self.started + step * self.sent;
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// A record's key when it has no event id: a content hash.
fn content_key(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!("sha256:{}", hex::encode(&d[..16]))
}

/// The raw-topic key of one record: the source event id when the source's parser
/// reads one, a content hash otherwise. `path` and `n` (1-based record number) are the
/// provenance the parser is handed.
fn record_key(parser: Option<&dyn SourceParser>, path: &str, n: u64, record: &[u8]) -> String {
    parser
        .and_then(|p| {
            p.parse_record(
                record,
                Provenance::File {
                    path: SmolStr::new(path),
                    record: n,
                },
            )
            .ok()
        })
        .map(|r| r.use_.event_id.to_string())
        .unwrap_or_else(|| content_key(record))
}

/// Sends a dead letter to the DLQ, keyed by a hash of its original bytes.
fn send_dead_letter(
    bus: &BusConfig,
    producer: &OutputProducer,
    dl: &DeadLetter,
) -> Result<(), LiveError> {
    let original = dl
        .original
        .as_deref()
        .or(dl.original_base64.as_deref())
        .unwrap_or_default();
    let body = dead_letter_payload(bus, dl);
    producer.send(
        &bus.topics.dlq,
        content_key(original.as_bytes()).as_bytes(),
        &body,
        &[],
    )
}

/// The dead letter of a raw record too large for one message on the bus.
fn oversized(bus: &BusConfig, source: Source, origin: &str, bytes: &[u8]) -> DeadLetter {
    DeadLetter::new(
        source,
        format!(
            "record is {} bytes, over the bus's {}-byte message limit (librdkafka \
             `message.max.bytes` less room for headers): raise `message.max.bytes` in \
             [bus.librdkafka] and the broker's limit to carry it, or replay the file",
            bytes.len(),
            bus.max_payload_bytes()
        ),
        Provenance::Stream {
            name: SmolStr::new(origin),
            record: 1,
        },
        bytes,
    )
}

/// How long a flush waits for the broker's acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// The raw-topic producer for batches from live connectors (see the module doc).
pub struct RawProducer {
    bus: BusConfig,
    producer: OutputProducer,
    report: IngestReport,
}

impl RawProducer {
    /// Creates the topics if needed (`[bus] create_topics`) and connects an
    /// idempotent producer (`acks=all`).
    pub fn new(bus: &BusConfig) -> Result<Self, LiveError> {
        ensure_topics(bus)?;
        Ok(Self {
            bus: bus.clone(),
            producer: OutputProducer::new(bus, "lineage-ingest")?,
            report: IngestReport::default(),
        })
    }

    /// Sends `records` of `source` to `lineage.raw.<source>` (key = source event id,
    /// header `origin`) and `dead_letters` to the DLQ, then waits until the broker has
    /// acknowledged every one of them. `Ok` means all are durable: only then may the
    /// caller ack the connector batch. On `Err` nothing may be acked; sending the
    /// same batch again is safe (duplicates carry the same keys).
    pub fn produce_batch(
        &mut self,
        source: Source,
        records: &[RawRecord],
        dead_letters: &[DeadLetter],
    ) -> Result<(), LiveError> {
        let topic = self.bus.topics.raw(source);
        let parser = parser_for(source);
        let mut too_large = 0u64;
        for r in records {
            // One line, as `lineage connect` writes it and `ingest --from` reads it:
            // a raw newline in JSON is whitespace, so the value is unchanged.
            let bytes = single_line(&r.bytes);
            if bytes.len() > self.bus.max_payload_bytes() {
                let dl = oversized(&self.bus, source, &r.origin, &bytes);
                send_dead_letter(&self.bus, &self.producer, &dl)?;
                too_large += 1;
                continue;
            }
            let key = record_key(parser, &r.origin, 1, &bytes);
            self.producer
                .send(&topic, key.as_bytes(), &bytes, &[("origin", &r.origin)])?;
        }
        for dl in dead_letters {
            send_dead_letter(&self.bus, &self.producer, dl)?;
        }
        self.producer.flush_all(FLUSH_TIMEOUT)?;
        let n = records.len() as u64 - too_large;
        self.report.read += n + too_large + dead_letters.len() as u64;
        self.report.produced += n;
        self.report.dead_lettered += too_large + dead_letters.len() as u64;
        if n > 0 {
            *self.report.by_source.entry(source.to_string()).or_default() += n;
        }
        Ok(())
    }

    /// What was produced (and acknowledged) so far; `files` stays 0.
    pub fn report(&self) -> &IngestReport {
        &self.report
    }
}

/// Sends every record of `cfg.inputs` to its raw topic and waits until the broker has all.
pub fn ingest_to_kafka(cfg: &IngestConfig) -> Result<IngestReport, LiveError> {
    let mut raw = RawProducer::new(&cfg.bus)?;
    let mut report = IngestReport::default();
    let mut pace = Pacer::new(cfg.rate);
    let stdin = cfg.files.iter().any(|i| i == "-");
    let stdin_only = vec!["-".to_owned()];
    let files = if stdin { &stdin_only } else { &cfg.files };
    for name in files.iter().cloned() {
        let bytes = if name == "-" {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| LiveError::Io(format!("reading standard input: {e}")))?;
            b
        } else {
            std::fs::read(&name).map_err(|e| LiveError::Io(format!("reading {name}: {e}")))?
        };
        report.files += 1;
        send_file(&raw, &name, &bytes, cfg.source, &mut report, &mut pace)?;
        // Bounded memory: flush per file.
        raw.producer.flush_all(FLUSH_TIMEOUT)?;
    }
    raw.producer.flush_all(FLUSH_TIMEOUT)?;
    Ok(report)
}

fn send_file(
    raw_producer: &RawProducer,
    name: &str,
    raw: &[u8],
    forced: Option<Source>,
    report: &mut IngestReport,
    pace: &mut Pacer,
) -> Result<(), LiveError> {
    let (bus, producer) = (&raw_producer.bus, &raw_producer.producer);
    let (bytes, decode_error) = decompress(raw);
    let Some(source) = forced.or_else(|| sniff_source(&bytes)) else {
        if bytes.iter().all(u8::is_ascii_whitespace) && decode_error.is_none() {
            return Ok(());
        }
        // A damaged stream: one dead letter of the file's bytes. Otherwise one per
        // record, under `unknown`, as replay counts them.
        let letters = match decode_error {
            Some(why) => vec![DeadLetter::new(
                Source::Unknown,
                why,
                Provenance::file(name, 0),
                raw,
            )],
            None => lineage_ingest::unknown_source_dead_letters(&bytes, name, "pass --source"),
        };
        for dl in &letters {
            let body = dead_letter_payload(bus, dl);
            producer.send(&bus.topics.dlq, content_key(&body).as_bytes(), &body, &[])?;
        }
        report.read += letters.len() as u64;
        report.dead_lettered += letters.len() as u64;
        return Ok(());
    };
    let topic = bus.topics.raw(source);
    let parser = parser_for(source);
    let envelope = parser.map(|p| p.envelope_keys()).unwrap_or(&[]);
    let mut sent = 0u64;
    if let Some(why) = decode_error {
        let origin = format!("{name}:0");
        producer.send(
            &topic,
            content_key(raw).as_bytes(),
            &[],
            &[("origin", &origin), ("broken", &why)],
        )?;
        sent += 1;
    }
    let mut too_large = 0u64;
    for frame in frames(&bytes, envelope) {
        pace.wait();
        let (Frame::Record(n, b) | Frame::Broken(n, b, _)) = &frame;
        if b.len() > bus.max_payload_bytes() {
            let dl = oversized(bus, source, &format!("{name}:{n}"), b);
            send_dead_letter(bus, producer, &dl)?;
            too_large += 1;
            continue;
        }
        match frame {
            Frame::Record(n, record) => {
                let origin = format!("{name}:{n}");
                let key = record_key(parser, name, n, record);
                producer.send(&topic, key.as_bytes(), record, &[("origin", &origin)])?;
            }
            Frame::Broken(n, fragment, why) => {
                let origin = format!("{name}:{n}");
                producer.send(
                    &topic,
                    content_key(fragment).as_bytes(),
                    fragment,
                    &[("origin", &origin), ("broken", &why)],
                )?;
            }
        }
        sent += 1;
    }
    report.read += sent + too_large;
    report.produced += sent;
    report.dead_lettered += too_large;
    *report.by_source.entry(source.to_string()).or_default() += sent;
    Ok(())
}
