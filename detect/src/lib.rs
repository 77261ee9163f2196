//! `lineage-detect` owns the detectors: each looks at one attributed credential use
//! (with the lineage graph for context) and may return findings. Findings become
//! [`Alert`]s through the [`AlertBook`], which folds repeats of the same finding (same
//! dedup key) into one alert with a count, so a SOC sees one alert per problem,
//! not one per API call. Detectors must not write anywhere: sinks do that.
#![warn(missing_docs, unreachable_pub)]

mod book;
mod scope;

use lineage_core::{AttributedEvent, Severity};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};

pub use book::{AlertBook, Recorded};
pub use scope::OutOfScopeDetector;

/// What a detector found in one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Detector name.
    pub detector: &'static str,
    /// Severity.
    pub severity: Severity,
    /// One-line title.
    pub title: String,
    /// Why it is wrong.
    pub summary: String,
    /// Same key = same finding, folded into one alert.
    pub dedup_key: String,
    /// MITRE ATT&CK technique ids.
    pub mitre: &'static [&'static str],
    /// Detector-specific evidence.
    pub evidence: serde_json::Value,
}

/// A detector over attributed events.
pub trait Detector: Send {
    /// Stable name, used in configs, alerts and summaries.
    fn name(&self) -> &'static str;
    /// Looks at one event; returns what it found.
    fn observe(&mut self, event: &AttributedEvent, graph: &LineageGraph) -> Vec<Finding>;
}

/// Detector settings (the `[detectors]` table of the config).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    /// Out-of-scope use: an agent acting outside its declared scope.
    #[serde(default)]
    pub out_of_scope: scope::OutOfScopeConfig,
}

/// The enabled detectors, built from config.
pub fn build_detectors(config: &DetectorsConfig) -> Vec<Box<dyn Detector>> {
    let mut out: Vec<Box<dyn Detector>> = Vec::new();
    if config.out_of_scope.enabled {
        out.push(Box::new(OutOfScopeDetector::new(
            config.out_of_scope.clone(),
        )));
    }
    out
}

/// Name and one-line description of every detector, for `lineage detectors`.
pub fn catalogue() -> Vec<(&'static str, &'static str)> {
    vec![(
        scope::NAME,
        "an agent used a credential for an action or resource outside its declared scope (inventory [[agent.scope]])",
    )]
}

pub use scope::OutOfScopeConfig;
