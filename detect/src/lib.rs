//! `lineage-detect` owns the detectors: each looks at one attributed credential use
//! (with the lineage facts its record carried and the lineage graph for context)
//! and may return findings. Findings become [`Alert`]s through the [`AlertBook`],
//! which folds repeats of the same finding (same dedup key, within the suppression
//! window) into one alert with a count, so a SOC sees one alert per problem, not one
//! per API call. Detectors may request revocations ([`Action`]s with status
//! `requested`); they never execute them and never write anywhere: sinks and
//! executors do that.
//!
//! Detector state is bounded (documented caps, oldest-first eviction) and can be
//! snapshotted and restored as JSON, so a restarted or rebalanced pipeline does not
//! relearn every baseline.
#![warn(missing_docs, unreachable_pub)]

mod anomaly;
pub mod asn;
mod book;
mod departed;
pub mod fingerprint;
mod longlived;
mod privilege;
mod scope;
pub mod sigma;

use lineage_core::{Action, AttributedEvent, LineageFact, Severity};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};

pub use anomaly::{
    AnomalyConfig, AnomalyDetector, AnomalyState, CredentialBaseline, MAX_ACTIONS, MAX_NETWORKS,
};
pub use book::{AlertBook, AlertBudget, Recorded, BUDGET_DETECTOR, MAX_DISTINCT_LISTED};
pub use departed::{revocation_request, DepartedOwnerConfig, DepartedOwnerDetector};
pub use longlived::{LongLivedConfig, LongLivedDetector};
pub use privilege::{PrivilegeChangeConfig, PrivilegeChangeDetector};
pub use scope::{OutOfScopeConfig, OutOfScopeDetector};

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
    /// What varies between findings folded into one alert (`("networks", "203.0.113.0/24")`):
    /// the alert's evidence lists the distinct values under that name (at most
    /// [`MAX_DISTINCT_LISTED`]) and counts them under `<name>_total`, so one
    /// alert per credential and rule still says every network or action it covers.
    pub distinct: Option<(&'static str, String)>,
    /// MITRE ATT&CK technique ids.
    pub mitre: &'static [&'static str],
    /// Detector-specific evidence.
    pub evidence: serde_json::Value,
    /// Revocations this finding asks for (status `requested`).
    pub actions: Vec<Action>,
}

/// A detector over attributed events.
pub trait Detector: Send {
    /// Stable name, used in configs, alerts and summaries.
    fn name(&self) -> &'static str;
    /// Looks at one event and the lineage facts its record carried; returns what it found.
    fn observe(
        &mut self,
        event: &AttributedEvent,
        facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding>;
    /// [`Detector::observe`], told which findings `book` would fold into an open
    /// alert. A detector that fires on many events of the same key (a long-lived key
    /// used all day) may return such a repeat with only its dedup key, actions,
    /// detector, severity and MITRE ids filled in: a repeat's title, summary and
    /// evidence are never read. The default ignores the book.
    fn observe_folding(
        &mut self,
        event: &AttributedEvent,
        facts: &[LineageFact],
        graph: &LineageGraph,
        book: &AlertBook,
    ) -> Vec<Finding> {
        let _ = book;
        self.observe(event, facts, graph)
    }
    /// The detector's learned state as JSON, for snapshots (`None` when stateless).
    fn snapshot(&self) -> Option<serde_json::Value> {
        None
    }
    /// Restores state written by [`Detector::snapshot`].
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    /// Forgets what it learned about credentials `known` says the graph no longer
    /// has (a live run's retention evicted them), so its state does not grow with
    /// every credential a long run ever saw.
    fn forget_credentials(&mut self, _known: &dyn Fn(&str) -> bool) {}
}

/// Detector settings (the `[detectors]` table of the config). Every detector is on
/// by default with the defaults documented on its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    /// Out-of-scope use: an agent acting outside its declared scope.
    #[serde(default)]
    pub out_of_scope: OutOfScopeConfig,
    /// Use of a credential whose owner had departed.
    #[serde(default)]
    pub departed_owner: DepartedOwnerConfig,
    /// Long-lived credentials used by AI agents, MCP servers and CI runners.
    #[serde(default)]
    pub long_lived: LongLivedConfig,
    /// Privilege and lineage changes.
    #[serde(default)]
    pub privilege_change: PrivilegeChangeConfig,
    /// Behavioural anomalies per credential.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// Seconds within which a repeat of the same finding folds into the open alert
    /// (default 86,400: one alert per finding per day).
    #[serde(default = "default_suppression_secs")]
    pub suppression_secs: u64,
    /// Alerts per hour before further Low and Medium findings fold into a summary
    /// alert (`[detectors.alert_budget]`).
    #[serde(default)]
    pub alert_budget: AlertBudget,
}

const fn default_suppression_secs() -> u64 {
    86_400
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        Self {
            out_of_scope: OutOfScopeConfig::default(),
            departed_owner: DepartedOwnerConfig::default(),
            long_lived: LongLivedConfig::default(),
            privilege_change: PrivilegeChangeConfig::default(),
            anomaly: AnomalyConfig::default(),
            suppression_secs: default_suppression_secs(),
            alert_budget: AlertBudget::default(),
        }
    }
}

/// A detector could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A file a detector needs could not be loaded.
    #[error("detector `{detector}`: {reason}")]
    Setup {
        /// The detector.
        detector: &'static str,
        /// What went wrong, naming the file.
        reason: String,
    },
}

/// The enabled detectors, built from config.
pub fn build_detectors(config: &DetectorsConfig) -> Result<Vec<Box<dyn Detector>>, DetectError> {
    let mut out: Vec<Box<dyn Detector>> = Vec::new();
    if config.out_of_scope.enabled {
        out.push(Box::new(OutOfScopeDetector::new(
            config.out_of_scope.clone(),
        )));
    }
    if config.departed_owner.enabled {
        out.push(Box::new(DepartedOwnerDetector::new(
            config.departed_owner.clone(),
        )));
    }
    if config.long_lived.enabled {
        out.push(Box::new(LongLivedDetector::new(config.long_lived.clone())));
    }
    if config.privilege_change.enabled {
        out.push(Box::new(PrivilegeChangeDetector::new(
            config.privilege_change.clone(),
        )));
    }
    if config.anomaly.enabled {
        let d = AnomalyDetector::from_config(config.anomaly.clone()).map_err(|reason| {
            DetectError::Setup {
                detector: anomaly::NAME,
                reason,
            }
        })?;
        out.push(Box::new(d));
    }
    Ok(out)
}

/// Name and one-line description of every detector, for `lineage detectors`.
pub fn catalogue() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            scope::NAME,
            "an agent used a credential for an action or resource outside its declared scope (inventory [[agent.scope]])",
        ),
        (
            departed::NAME,
            "a credential was used after its accountable owner departed (inventory or learned from Entra/GitHub); requests revocation of every credential of that owner and their agents",
        ),
        (
            longlived::NAME,
            "a long-lived credential (AWS AKIA key, classic PAT, Entra client secret/certificate) used by an AI agent, MCP server or CI runner, known from the inventory or its client fingerprint",
        ),
        (
            privilege::NAME,
            "access key created for another user, long role chains, SP/federated credential added, PAT granted org access, Vault root/audit/policy changes",
        ),
        (
            sigma::NAME,
            "Sigma rules (aws/cloudtrail, azure/signinlogs, azure/auditlogs, github/audit) evaluated on raw records; load with --sigma-rules DIR",
        ),
        (
            anomaly::NAME,
            "per-credential behaviour after a learning period: new network, new action, volume spike, dormant credential reactivated, two networks at once, access-denied bursts",
        ),
    ]
}
