//! `lineage ingest`: files (or standard input) → raw records framed with
//! `lineage_ingest::framing` → `lineage.raw.<source>`, one message per record, keyed
//! by the source event id, through an idempotent producer. Nothing is parsed into
//! the event model here beyond reading the event id for the key; unframeable bytes
//! are still sent (header `broken` = the reason) so the normalize stage
//! dead-letters and counts them, and a file whose source cannot be told goes to the
//! DLQ directly.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_ingest::framing::{frames, Frame};
use lineage_ingest::{decompress, parser_for, sniff_source};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;

use super::kafka::{ensure_topics, BusConfig, OutputProducer};
use super::LiveError;

/// What to ingest.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Files, directories, globs, or `-` for standard input.
    pub inputs: Vec<String>,
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
    /// Files sent to the DLQ because their source could not be told.
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

/// Sends every record of `cfg.inputs` to its raw topic and waits until the broker has all.
pub fn ingest_to_kafka(cfg: &IngestConfig) -> Result<IngestReport, LiveError> {
    ensure_topics(&cfg.bus)?;
    let mut producer = OutputProducer::new(&cfg.bus, "lineage-ingest")?;
    let mut report = IngestReport::default();
    let mut pace = Pacer::new(cfg.rate);
    let stdin = cfg.inputs.iter().any(|i| i == "-");
    let files: Vec<String> = if stdin {
        vec!["-".into()]
    } else {
        crate::expand_inputs(&cfg.inputs)
            .map_err(|e| LiveError::Config(e.to_string()))?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    for name in files {
        let raw = if name == "-" {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| LiveError::Io(format!("reading standard input: {e}")))?;
            b
        } else {
            std::fs::read(&name).map_err(|e| LiveError::Io(format!("reading {name}: {e}")))?
        };
        report.files += 1;
        send_file(
            &cfg.bus,
            &producer,
            &name,
            &raw,
            cfg.source,
            &mut report,
            &mut pace,
        )?;
        // Bounded memory: flush per file.
        producer.flush_all(Duration::from_secs(120))?;
    }
    producer.flush_all(Duration::from_secs(120))?;
    Ok(report)
}

fn send_file(
    bus: &BusConfig,
    producer: &OutputProducer,
    name: &str,
    raw: &[u8],
    forced: Option<Source>,
    report: &mut IngestReport,
    pace: &mut Pacer,
) -> Result<(), LiveError> {
    let (bytes, decode_error) = decompress(raw);
    let Some(source) = forced.or_else(|| sniff_source(&bytes)) else {
        if bytes.iter().all(u8::is_ascii_whitespace) && decode_error.is_none() {
            return Ok(());
        }
        let reason = decode_error.unwrap_or_else(|| {
            "could not tell which source wrote this file; pass the source".into()
        });
        let dl = DeadLetter::new(Source::CloudTrail, reason, Provenance::file(name, 0), raw);
        let body = serde_json::to_vec(&dl).expect("dead letter serializes");
        producer.send(&bus.topics.dlq, content_key(raw).as_bytes(), &body, &[])?;
        report.read += 1;
        report.dead_lettered += 1;
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
    for frame in frames(&bytes, envelope) {
        pace.wait();
        match frame {
            Frame::Record(n, record) => {
                let origin = format!("{name}:{n}");
                let key = parser
                    .and_then(|p| {
                        p.parse_record(
                            record,
                            Provenance::File {
                                path: SmolStr::new(name),
                                record: n,
                            },
                        )
                        .ok()
                    })
                    .map(|r| r.use_.event_id.to_string())
                    .unwrap_or_else(|| content_key(record));
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
    report.read += sent;
    report.produced += sent;
    *report.by_source.entry(source.to_string()).or_default() += sent;
    Ok(())
}
