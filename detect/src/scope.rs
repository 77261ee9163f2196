//! Out-of-scope use: the agent a use is attributed to declared what it may do in
//! this source, and this action or resource is not in it.

use lineage_core::inventory::CompiledScope;
use lineage_core::{AttributedEvent, LineageFact, Severity};
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
    /// Scratch buffers for the current event's `service:operation` as written and
    /// lowercased (scope globs match case-insensitively); reused, as this runs per event.
    action: String,
    lowered: String,
    /// Indexes of the agent's scopes (in this source) whose actions allow the
    /// current event's action: the globs run once per scope, not once per resource.
    matching: Vec<usize>,
}

impl OutOfScopeDetector {
    /// A detector with these settings.
    pub fn new(config: OutOfScopeConfig) -> Self {
        Self {
            config,
            action: String::new(),
            lowered: String::new(),
            matching: Vec::new(),
        }
    }
}

impl Detector for OutOfScopeDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(
        &mut self,
        event: &AttributedEvent,
        _facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding> {
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
        // The common case (a declared scope allows the action and every resource)
        // allocates nothing.
        let in_source = |s: &&CompiledScope| s.declared.source == use_.source;
        let declared = inventory.scopes_of(index);
        if !declared.iter().any(|s| in_source(&s)) {
            return Vec::new();
        }
        self.action.clear();
        let _ = use_.operation.write_action(&mut self.action);
        self.lowered.clear();
        if self.action.is_ascii() {
            self.lowered.push_str(&self.action);
            self.lowered.make_ascii_lowercase();
        } else {
            self.lowered.push_str(&self.action.to_lowercase());
        }
        let lowered = self.lowered.as_str();
        self.matching.clear();
        self.matching.extend(
            declared
                .iter()
                .enumerate()
                .filter(|(_, s)| in_source(s) && s.allows_lowercase_action(lowered))
                .map(|(i, _)| i),
        );
        let matching = || self.matching.iter().map(|&i| &declared[i]);
        let outside_scope = |r: &&str| !matching().any(|s| s.allows_resource(r));
        if !self.matching.is_empty()
            && !use_
                .resources
                .iter()
                .map(|r| r.as_str())
                .any(|r| outside_scope(&r))
        {
            return Vec::new();
        }
        let action = self.action.as_str();
        let scopes: Vec<&CompiledScope> = declared.iter().filter(in_source).collect();
        let (why, outside): (String, Vec<&str>) = if self.matching.is_empty() {
            (
                format!("action `{action}` is not in its declared scope"),
                Vec::new(),
            )
        } else {
            let outside: Vec<&str> = use_
                .resources
                .iter()
                .map(|r| r.as_str())
                .filter(outside_scope)
                .collect();
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
            distinct: None,
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
            actions: Vec::new(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlertBook;
    use chrono::{TimeZone, Utc};
    use lineage_core::event::*;
    use lineage_core::{AgentId, CredentialId, HumanId, Inventory};
    use std::path::Path;

    const INVENTORY: &str = r#"
[[human]]
id = "alice"

[[agent]]
id = "claude"
kind = "ai-agent"
owner = "alice"

[[agent.scope]]
source = "cloudtrail"
actions = ["s3:GetObject", "ec2:Describe*"]
resources = ["arn:aws:s3:::dev-*"]

[[agent]]
id = "unscoped"
kind = "service"
owner = "alice"
"#;

    fn event(
        agent: &str,
        service: &str,
        op: &str,
        resources: &[&str],
        ok: bool,
    ) -> AttributedEvent {
        AttributedEvent {
            use_: CredentialUse {
                source: Source::CloudTrail,
                event_id: format!("{op}-{}", resources.len()).into(),
                time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                credential: Some(CredentialRef {
                    kind: CredentialKind::AwsAccessKey,
                    id: CredentialId::new("AKIA1"),
                    issuer: None,
                }),
                principal: Principal::unknown(),
                session: SessionContext::default(),
                client: ClientHints::default(),
                operation: Operation {
                    service: service.into(),
                    name: op.into(),
                    read_only: None,
                },
                resources: resources.iter().map(|r| (*r).into()).collect(),
                outcome: if ok {
                    Outcome::ok()
                } else {
                    Outcome {
                        success: false,
                        error_code: Some("AccessDenied".into()),
                    }
                },
                region: None,
                provenance: Provenance::file("t", 1),
            },
            attribution: Attribution {
                chain: vec![CredentialId::new("AKIA1")],
                root_credential: Some(CredentialId::new("AKIA1")),
                agent: Some(AgentId::new(agent)),
                owner: Some(HumanId::new("alice")),
                method: AttributionMethod::Declared,
                confidence: 1.0,
                unattributed_reason: None,
            },
        }
    }

    fn run(events: &[AttributedEvent]) -> Vec<lineage_core::Alert> {
        let inv = Inventory::from_toml_str(INVENTORY, Path::new("t.toml")).unwrap();
        let graph = LineageGraph::from_inventory(&inv);
        let mut d = OutOfScopeDetector::new(OutOfScopeConfig::default());
        let mut book = AlertBook::default();
        for e in events {
            for f in d.observe(e, &[], &graph) {
                book.record(f, e);
            }
        }
        book.into_alerts()
    }

    #[test]
    fn in_scope_use_raises_nothing() {
        let alerts = run(&[
            event(
                "claude",
                "s3",
                "GetObject",
                &["arn:aws:s3:::dev-bucket/x"],
                true,
            ),
            event("claude", "ec2", "DescribeInstances", &[], true),
            event("unscoped", "iam", "CreateUser", &[], true),
        ]);
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn action_outside_scope_is_an_alert_with_path_and_scope() {
        let alerts = run(&[event(
            "claude",
            "secretsmanager",
            "GetSecretValue",
            &[],
            true,
        )]);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.agent.as_ref().unwrap().as_str(), "claude");
        assert_eq!(a.owner.as_ref().unwrap().as_str(), "alice");
        assert_eq!(a.evidence["action"], "secretsmanager:GetSecretValue");
        assert!(a.evidence["declared_scopes"][0]["actions"].is_array());
        assert_eq!(a.lineage_path.len(), 3);
        assert_eq!(
            a.dedup_key,
            "out-of-scope|claude|AKIA1|secretsmanager:GetSecretValue"
        );
    }

    #[test]
    fn resource_outside_scope_is_an_alert_and_denied_is_medium() {
        let alerts = run(&[event(
            "claude",
            "s3",
            "GetObject",
            &["arn:aws:s3:::prod-data/x"],
            false,
        )]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::Medium);
        assert_eq!(
            alerts[0].evidence["resources_outside_scope"][0],
            "arn:aws:s3:::prod-data/x"
        );
    }

    #[test]
    fn repeats_fold_into_one_alert_with_a_count() {
        let e = event("claude", "iam", "CreateUser", &[], true);
        let alerts = run(&[e.clone(), e.clone(), e]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].count, 3);
    }
}
