//! Out-of-scope use: the agent a use is attributed to declared what it may do in
//! this source, and this action or resource is not in it.

use lineage_core::{AttributedEvent, Severity};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Detector, Finding};

pub(crate) const NAME: &str = "out-of-scope";

/// Settings of the out-of-scope detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutOfScopeConfig {
    /// Run this detector (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Also alert when the out-of-scope call was denied by the provider (default true):
    /// a denied attempt still shows an agent reaching for what it should not.
    #[serde(default = "default_true")]
    pub include_denied: bool,
}

const fn default_true() -> bool {
    true
}

impl Default for OutOfScopeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            include_denied: true,
        }
    }
}

/// The out-of-scope detector.
#[derive(Debug)]
pub struct OutOfScopeDetector {
    config: OutOfScopeConfig,
}

impl OutOfScopeDetector {
    /// A detector with these settings.
    pub fn new(config: OutOfScopeConfig) -> Self {
        Self { config }
    }
}

impl Detector for OutOfScopeDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &AttributedEvent, graph: &LineageGraph) -> Vec<Finding> {
        let Some(agent_id) = &event.attribution.agent else {
            return Vec::new();
        };
        let use_ = &event.use_;
        if !use_.outcome.success && !self.config.include_denied {
            return Vec::new();
        }
        let inventory = graph.inventory();
        let Some(index) = inventory.agent_index(agent_id) else {
            return Vec::new();
        };
        let scopes: Vec<_> = inventory
            .scopes_of(index)
            .iter()
            .filter(|s| s.declared.source == use_.source)
            .collect();
        if scopes.is_empty() {
            return Vec::new();
        }
        let action = use_.operation.action();
        let matching: Vec<_> = scopes.iter().filter(|s| s.allows_action(&action)).collect();
        let (why, outside): (String, Vec<&str>) = if matching.is_empty() {
            (
                format!("action `{action}` is not in its declared scope"),
                Vec::new(),
            )
        } else {
            let outside: Vec<&str> = use_
                .resources
                .iter()
                .map(|r| r.as_str())
                .filter(|r| !matching.iter().any(|s| s.allows_resource(r)))
                .collect();
            if outside.is_empty() {
                return Vec::new();
            }
            (
                format!(
                    "resource `{}` is outside its declared scope for `{action}`",
                    outside[0]
                ),
                outside,
            )
        };
        let root = event
            .attribution
            .root_credential
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("-");
        let severity = if use_.outcome.success {
            Severity::High
        } else {
            Severity::Medium
        };
        let owner = event
            .attribution
            .owner
            .as_ref()
            .map(|h| h.as_str())
            .unwrap_or("unknown owner");
        vec![Finding {
            detector: NAME,
            severity,
            title: format!("{agent_id} used {action} outside its declared scope"),
            summary: format!(
                "Agent `{agent_id}` (owner {owner}) {}: {why}. Credential {} → root {root}.",
                if use_.outcome.success {
                    "succeeded"
                } else {
                    "tried and was denied"
                },
                use_.credential
                    .as_ref()
                    .map(|c| c.id.as_str())
                    .unwrap_or("-"),
            ),
            dedup_key: format!("{NAME}|{agent_id}|{root}|{action}"),
            mitre: &["T1078.004"],
            evidence: json!({
                "action": action,
                "resources_outside_scope": outside,
                "resources": use_.resources,
                "declared_scopes": scopes.iter().map(|s| &s.declared).collect::<Vec<_>>(),
                "outcome": use_.outcome,
                "source_ip": use_.client.source_ip,
                "user_agent": use_.client.user_agent,
            }),
        }]
    }
}
