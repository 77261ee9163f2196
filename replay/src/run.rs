//! One replay run: files → parse (parallel) → event-time merge → attribute/detect →
//! sinks, with the counts written to `summary.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lineage_core::bus;
use lineage_core::summary::SourceCounts;
use lineage_core::{Action, Alert, AttributedEvent, Inventory, RunSummary, Source};
use lineage_detect::sigma::SigmaRules;
use lineage_detect::DetectorsConfig;
use lineage_ingest::{Normalized, ParseLimits};
use lineage_sinks::JsonLinesSink;
use rayon::prelude::*;

use crate::{expand_inputs, parse_file, AttributeStage, ReplayError};

/// Records per batch on the embedded bus.
const BATCH: usize = 4096;
/// Batches in flight per bus channel.
const IN_FLIGHT: usize = 8;

/// Settings of one replay.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Files, directories and globs.
    pub inputs: Vec<String>,
    /// Force a source instead of sniffing each file.
    pub source: Option<Source>,
    /// The inventory.
    pub inventory: Inventory,
    /// Detector settings.
    pub detectors: DetectorsConfig,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Also write every attributed event to `events.jsonl`.
    pub write_events: bool,
    /// Parser threads (0 = one per core).
    pub threads: usize,
    /// Parser limits.
    pub limits: ParseLimits,
    /// Sigma rules evaluated on every raw record of their log source.
    pub sigma: Option<std::sync::Arc<SigmaRules>>,
    /// Collect everything attributed to this owner (human id, e-mail or any alias) and
    /// prepare revocation requests for it (`lineage revoke --owner`).
    pub sweep_owner: Option<String>,
    /// Detector state file: restored before the run when it exists, written after it
    /// (so a replay of next month's archive continues this month's baselines).
    pub detector_state: Option<PathBuf>,
}

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayOutput {
    /// The counts (also in `summary.json`).
    pub summary: RunSummary,
    /// The alerts (also in `alerts.jsonl`), in order of first sighting.
    pub alerts: Vec<Alert>,
    /// Revocation requests raised by detectors (also in `actions.jsonl`).
    pub actions: Vec<Action>,
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

struct Keyed {
    time: i64,
    /// 0 when the record changes lineage: applied before uses in the same instant.
    priority: u8,
    file: u32,
    index: u32,
    record: Normalized,
}

/// Runs a replay.
pub fn replay(config: &ReplayConfig) -> Result<ReplayOutput, ReplayError> {
    let started = Instant::now();
    let files = expand_inputs(&config.inputs)?;
    // Detector settings that name files (an ASN database) fail here, before any parsing.
    let mut stage = AttributeStage::new(&config.inventory, &config.detectors, config.sigma.clone())
        .map_err(|e| ReplayError::Stage(e.to_string()))?;
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
    let mut dead_sink = JsonLinesSink::create(&config.out_dir.join("dead_letters.jsonl"))?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| ReplayError::Stage(e.to_string()))?;
    let parsed: Vec<_> = pool.install(|| {
        files
            .par_iter()
            .map(|p| parse_file(p, config.source, config.limits, config.sigma.as_deref()))
            .collect()
    });

    let mut summary = RunSummary {
        files: files.len() as u64,
        ..RunSummary::default()
    };
    let mut keyed = Vec::new();
    for (file_index, mut file) in parsed.into_iter().enumerate() {
        let c = &file.counts;
        summary.read += c.read;
        summary.normalized += c.normalized;
        summary.dead_lettered += c.dead_lettered;
        summary.joined_halves += file.joined;
        let source = file
            .source
            .or(file.dead_letters.first().map(|d| d.source))
            .unwrap_or(Source::CloudTrail);
        let entry: &mut SourceCounts = summary.by_source.entry(source.to_string()).or_default();
        entry.read += c.read;
        entry.normalized += c.normalized;
        entry.dead_lettered += c.dead_lettered;
        for d in file.dead_letters.drain(..) {
            dead_sink.write(&d)?;
        }
        keyed.extend(
            file.records
                .into_iter()
                .enumerate()
                .map(|(i, record)| Keyed {
                    time: record.use_.time.timestamp_micros(),
                    priority: u8::from(record.facts.is_empty()),
                    file: file_index as u32,
                    index: i as u32,
                    record,
                }),
        );
    }
    dead_sink.flush()?;
    pool.install(|| keyed.par_sort_unstable_by_key(|k| (k.time, k.priority, k.file, k.index)));

    let (stage, events_written) = run_stages(config, stage, keyed)?;
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
    let (alerts, actions) = stage.into_alerts().into_parts();
    let mut by_detector = BTreeMap::new();
    for a in &alerts {
        *by_detector.entry(a.detector.to_string()).or_insert(0u64) += 1;
    }
    summary.alerts_by_detector = by_detector;
    summary.alerts = alerts.len() as u64;
    let mut alert_sink = JsonLinesSink::create(&config.out_dir.join("alerts.jsonl"))?;
    for a in &alerts {
        alert_sink.write(a)?;
    }
    alert_sink.flush()?;
    let mut ocsf_sink = JsonLinesSink::create(&config.out_dir.join("alerts.ocsf.jsonl"))?;
    for a in &alerts {
        ocsf_sink.write(&lineage_sinks::ocsf::detection_finding(a))?;
    }
    ocsf_sink.flush()?;
    let mut action_sink = JsonLinesSink::create(&config.out_dir.join("actions.jsonl"))?;
    for a in &actions {
        action_sink.write(a)?;
    }
    action_sink.flush()?;
    summary.actions_requested = actions.len() as u64;
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.records_per_sec = summary.read as f64 / summary.elapsed_secs.max(1e-9);
    tracing::debug!(events_written, "replay finished");
    write_summary(&config.out_dir, &summary)?;
    Ok(ReplayOutput {
        summary,
        alerts,
        actions,
        sweep,
    })
}

/// Merge stage → attribute stage → (optional) events sink, connected by the embedded bus.
fn run_stages(
    config: &ReplayConfig,
    mut stage: AttributeStage,
    keyed: Vec<Keyed>,
) -> Result<(AttributeStage, u64), ReplayError> {
    let (events_tx, events_rx) = bus::channel::<Normalized>("lineage.events", IN_FLIGHT);
    let (attributed_tx, attributed_rx) =
        bus::channel::<AttributedEvent>("lineage.attributed", IN_FLIGHT);
    let write_events = config.write_events;
    let events_path = config.out_dir.join("events.jsonl");
    std::thread::scope(|scope| {
        let attribute = scope.spawn(move || {
            for batch in events_rx {
                let out: Vec<AttributedEvent> =
                    batch.into_iter().map(|r| stage.process(r)).collect();
                if write_events {
                    attributed_tx
                        .publish(out)
                        .map_err(|e| ReplayError::Stage(e.to_string()))?;
                }
            }
            Ok::<_, ReplayError>(stage)
        });
        let sink = scope.spawn(move || {
            if !write_events {
                drop(attributed_rx);
                return Ok::<u64, ReplayError>(0);
            }
            let mut sink = JsonLinesSink::create(&events_path)?;
            for batch in attributed_rx {
                for e in &batch {
                    sink.write(e)?;
                }
            }
            sink.flush()?;
            Ok(sink.written())
        });
        let mut batch = Vec::with_capacity(BATCH);
        let mut publish_error = None;
        for k in keyed {
            batch.push(k.record);
            if batch.len() == BATCH {
                if let Err(e) =
                    events_tx.publish(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                {
                    publish_error = Some(e);
                    break;
                }
            }
        }
        if publish_error.is_none() {
            publish_error = events_tx.publish(batch).err();
        }
        drop(events_tx);
        let stage = attribute
            .join()
            .map_err(|_| ReplayError::Stage("attribute stage panicked".into()))??;
        let written = sink
            .join()
            .map_err(|_| ReplayError::Stage("events sink panicked".into()))??;
        if let Some(e) = publish_error {
            return Err(ReplayError::Stage(e.to_string()));
        }
        Ok((stage, written))
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
