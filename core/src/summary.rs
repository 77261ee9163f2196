//! The counts a run reports: what was read, normalized, dead-lettered, attributed
//! and alerted on. Replay writes it as `summary.json`; the CLI prints it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Record counts for one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Records read (`normalized + dead_lettered`).
    pub read: u64,
    /// Records normalized.
    pub normalized: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
}

/// A credential (or principal) that could not be attributed, with why and how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unattributed {
    /// The root credential, or the principal when no credential was named.
    pub subject: String,
    /// Why attribution failed.
    pub reason: String,
    /// Number of uses.
    pub uses: u64,
}

/// The outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Input files read.
    pub files: u64,
    /// Files among them that held no record (0 bytes, an empty gzip member, only
    /// whitespace or an empty `Records` list).
    #[serde(default)]
    pub empty_files: u64,
    /// CloudTrail digest files found beside the logs and not read as logs (they
    /// describe the log files; `lineage verify` checks them).
    #[serde(default)]
    pub digest_files: u64,
    /// Records read, all sources.
    pub read: u64,
    /// Records normalized.
    pub normalized: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Per-source counts.
    pub by_source: BTreeMap<String, SourceCounts>,
    /// Request entries folded into their response entry (Vault/OpenBao log each call
    /// twice); they are counted in `normalized` but are not separate uses.
    #[serde(default)]
    pub joined_halves: u64,
    /// Lineage facts applied to the graph.
    pub lineage_facts: u64,
    /// Uses performed by the cloud provider's own services (no credential, excluded from the attribution rate).
    pub service_events: u64,
    /// Uses attributed to an agent or a human.
    pub attributed: u64,
    /// Uses not attributed.
    pub unattributed: u64,
    /// `attributed / (normalized - service_events)`, in percent.
    pub attributed_pct: f64,
    /// Uses by attribution method.
    pub by_method: BTreeMap<String, u64>,
    /// The most frequent unattributed subjects (at most 20).
    pub top_unattributed: Vec<Unattributed>,
    /// Alerts by detector.
    pub alerts_by_detector: BTreeMap<String, u64>,
    /// Alerts in total.
    pub alerts: u64,
    /// Revocation requests raised by detectors (executed or not by the response policy).
    #[serde(default)]
    pub actions_requested: u64,
    /// Normalized records outside `--since`/`--until`: before `since` only their
    /// lineage facts were applied; after `until` they were skipped.
    #[serde(default)]
    pub outside_time_range: u64,
    /// Records older than what the event-time merge had already released (their
    /// file's name promised later times): delivered out of order. Zero unless file
    /// names understate how old their records are; widen `--merge-window` then.
    #[serde(default)]
    pub late_records: u64,
    /// Most parsed records held by the event-time merge at once (its memory bound).
    #[serde(default)]
    pub peak_buffered_records: u64,
    /// Most files held by the event-time merge at once.
    #[serde(default)]
    pub peak_buffered_files: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Records read per second.
    pub records_per_sec: f64,
}

impl RunSummary {
    /// True when every record read was normalized or dead-lettered.
    pub fn counts_add_up(&self) -> bool {
        self.read == self.normalized + self.dead_lettered
            && self
                .by_source
                .values()
                .all(|c| c.read == c.normalized + c.dead_lettered)
    }
}
