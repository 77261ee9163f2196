//! Privilege and lineage changes: the moments a credential estate grows or an
//! identity gains power. Each rule is small and named in the alert's evidence:
//!
//! | rule | fires on |
//! |---|---|
//! | `access-key-for-other-user` | IAM `CreateAccessKey` whose key belongs to a different user than the caller |
//! | `role-chain` | a use through `max_session_hops` or more chained role sessions |
//! | `entra-credential-added` | a client secret, certificate or federated credential added to an Entra app/SP |
//! | `pat-granted` | a GitHub PAT granted access to an organisation |
//! | `vault-root-token` | a Vault/OpenBao token issued with the root identity (display name `root`) (critical) |
//! | `vault-sensitive-path` | a write to Vault `sys/audit*`, `sys/policy*`, `sys/policies/*`, `sys/auth*`, or `sys/generate-root*` (critical) |

use lineage_core::event::{CredentialKind, FactKind, IssuanceMethod, PrincipalKind};
use lineage_core::{AttributedEvent, LineageFact, Severity, Source};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Detector, Finding};

pub(crate) const NAME: &str = "privilege-change";

/// Settings of the privilege-change detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeChangeConfig {
    /// Run this detector (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Chained role sessions (session issued by a session…) at which a use is flagged (default 3).
    #[serde(default = "default_hops")]
    pub max_session_hops: usize,
}

const fn yes() -> bool {
    true
}

const fn default_hops() -> usize {
    3
}

impl Default for PrivilegeChangeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_session_hops: default_hops(),
        }
    }
}

/// The privilege-change detector.
#[derive(Debug)]
pub struct PrivilegeChangeDetector {
    config: PrivilegeChangeConfig,
}

impl PrivilegeChangeDetector {
    /// A detector with these settings.
    pub fn new(config: PrivilegeChangeConfig) -> Self {
        Self { config }
    }
}

fn finding(
    rule: &str,
    severity: Severity,
    title: String,
    summary: String,
    key: String,
    mitre: &'static [&'static str],
    evidence: serde_json::Value,
) -> Finding {
    let mut evidence = evidence;
    evidence["rule"] = json!(rule);
    Finding {
        detector: NAME,
        severity,
        title,
        summary,
        dedup_key: format!("{NAME}|{rule}|{key}"),
        distinct: None,
        mitre,
        evidence,
        actions: Vec::new(),
    }
}

impl Detector for PrivilegeChangeDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(
        &mut self,
        event: &AttributedEvent,
        facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding> {
        let use_ = &event.use_;
        let actor = event
            .attribution
            .agent
            .as_ref()
            .map(|a| a.to_string())
            .or_else(|| event.attribution.owner.as_ref().map(|h| h.to_string()))
            .or_else(|| use_.principal.name.as_ref().map(|n| n.to_string()))
            .unwrap_or_else(|| "unknown".into());
        let mut out = Vec::new();
        for fact in facts {
            let FactKind::CredentialIssued {
                child,
                issued_by,
                issued_to,
                method,
                ..
            } = &fact.kind
            else {
                continue;
            };
            let to = issued_to.as_deref().unwrap_or("?");
            let by_root = issued_by.kind == PrincipalKind::Root;
            if *method == IssuanceMethod::CreateAccessKey && by_root && issued_to.is_none() {
                // No `userName` in the request: the root user made a key for itself.
                out.push(finding(
                    "root-access-key",
                    Severity::High,
                    format!("the account root user created an access key ({})", child.id),
                    "The root user created an access key for itself: root keys cannot be \
                     limited by IAM policy, and AWS advises against having any."
                        .to_owned(),
                    child.id.to_string(),
                    &["T1098.001"],
                    json!({ "new_key": child.id, "by": issued_by }),
                ));
                continue;
            }
            // A key for the caller itself (no `userName`, or the caller's own name) is
            // not one for another user.
            if *method == IssuanceMethod::CreateAccessKey
                && issued_to.is_some()
                && issued_by.name.as_deref() != Some(to)
            {
                out.push(finding(
                    "access-key-for-other-user",
                    Severity::High,
                    format!("{actor} created access key {} for IAM user {to}", child.id),
                    format!(
                        "`{}` created a long-lived access key for a different user (`{to}`): a classic persistence step.",
                        issued_by.name.as_deref().unwrap_or("?")
                    ),
                    child.id.to_string(),
                    &["T1098.001"],
                    json!({ "new_key": child.id, "for_user": to, "by": issued_by }),
                ));
            }
            if fact.source == Source::Vault && to == "root" {
                out.push(finding(
                    "vault-root-token",
                    Severity::Critical,
                    format!("{actor} created a Vault root token ({})", child.id),
                    "A token with the root policy can do anything in Vault, including disable its audit devices; root tokens should exist only during break-glass.".to_owned(),
                    child.id.to_string(),
                    &["T1078.001", "T1098"],
                    json!({ "token_accessor": child.id, "created_by": issued_by }),
                ));
            }
            match child.kind {
                CredentialKind::EntraClientSecret
                | CredentialKind::EntraCertificate
                | CredentialKind::EntraFederatedCredential => {
                    out.push(finding(
                        "entra-credential-added",
                        Severity::High,
                        format!("{actor} added a {:?} to Entra application {to}", child.kind),
                        format!("A new credential ({}) can now sign in as `{to}`; check it was expected and who holds it.", child.id),
                        child.id.to_string(),
                        &["T1098.001"],
                        json!({ "credential": child, "application": to }),
                    ));
                }
                CredentialKind::GithubFineGrainedPat | CredentialKind::GithubClassicPat => {
                    out.push(finding(
                        "pat-granted",
                        Severity::Medium,
                        format!("personal access token {} granted organisation access ({to})", child.id),
                        format!("`{actor}` granted a personal access token access to the organisation; PATs act with their owner's rights until revoked."),
                        child.id.to_string(),
                        &["T1098"],
                        json!({ "credential": child, "owner": to }),
                    ));
                }
                _ => {}
            }
        }
        let session_hops = event
            .attribution
            .chain
            .iter()
            .filter(|c| {
                graph
                    .credential(c)
                    .is_some_and(|m| m.kind == CredentialKind::AwsSessionKey)
            })
            .count();
        if session_hops >= self.config.max_session_hops {
            let root = event
                .attribution
                .root_credential
                .as_ref()
                .map(|c| c.as_str())
                .unwrap_or("-");
            out.push(finding(
                "role-chain",
                Severity::Medium,
                format!("{actor} works through {session_hops} chained role sessions"),
                format!("A session {session_hops} role hops away from root credential {root} was used; long chains hide who acts and can escalate privileges."),
                root.to_owned(),
                &["T1548", "T1078.004"],
                json!({ "chain": event.attribution.chain, "session_hops": session_hops }),
            ));
        }
        // Unauthenticated entries (OpenBao's own `sys/audit/test` write when an audit
        // device starts) are the server talking to itself, not an identity changing it.
        if use_.source == Source::Vault
            && use_.credential.is_some()
            && !use_.operation.read_only.unwrap_or(false)
        {
            if let Some(path) = use_.resources.iter().find(|p| {
                [
                    "sys/audit",
                    "sys/policy",
                    "sys/policies/",
                    "sys/auth",
                    "sys/generate-root",
                ]
                .iter()
                .any(|prefix| p.starts_with(prefix))
            }) {
                let severity = if path.starts_with("sys/generate-root") {
                    Severity::Critical
                } else {
                    Severity::High
                };
                out.push(finding(
                    "vault-sensitive-path",
                    severity,
                    format!("{actor} changed Vault `{path}`"),
                    format!("`{actor}` performed `{}` on `{path}`, which controls Vault's audit trail, policies, auth methods or root tokens.", use_.operation.name),
                    format!("{actor}|{path}"),
                    &["T1562.008", "T1098"],
                    json!({ "path": path, "operation": use_.operation.name, "outcome": use_.outcome }),
                ));
            }
        }
        out
    }
}
