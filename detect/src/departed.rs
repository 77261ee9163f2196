//! Departed owner: a credential used after its accountable human left. The first
//! such use raises a critical alert and requests revocation of every credential
//! attributed to that owner and their agents (those declared in the inventory and
//! those seen in use so far); credentials first seen later are added to later alerts.

use std::collections::{BTreeMap, HashMap};

use lineage_core::event::{AttributionMethod, CredentialKind, CredentialRef};
use lineage_core::{
    Action, ActionKind, ActionStatus, AttributedEvent, Evidence, HumanId, LineageFact, Severity,
};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Detector, Finding};

pub(crate) const NAME: &str = "departed-owner";

/// Settings of the departed-owner detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartedOwnerConfig {
    /// Run this detector (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Request revocation of the owner's credentials (default true; whether a request
    /// is executed is the response policy's decision, dry-run by default).
    #[serde(default = "yes")]
    pub request_revocation: bool,
    /// For a departure learned from the logs (an account disabled, a member removed:
    /// reversible, and writable by whoever can write to the source), how long after
    /// it revocation waits, seconds of event time (default 3600). Uses in that time
    /// are alerted at once; a re-enable or re-add in that time cancels the departure,
    /// and nothing is requested. Inventory departures act at once.
    #[serde(default = "d_grace")]
    pub log_departure_grace_secs: u64,
}

const fn d_grace() -> u64 {
    3600
}

const fn yes() -> bool {
    true
}

impl Default for DepartedOwnerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            request_revocation: true,
            log_departure_grace_secs: d_grace(),
        }
    }
}

/// The departed-owner detector.
#[derive(Debug)]
pub struct DepartedOwnerDetector {
    config: DepartedOwnerConfig,
    /// Credentials seen in use per owner (root credentials; bounded by the number of credentials).
    seen: HashMap<HumanId, BTreeMap<String, CredentialRef>>,
    /// Credentials already named in a revocation request, per owner.
    requested: HashMap<HumanId, std::collections::BTreeSet<String>>,
    /// The strongest attribution that tied each credential to its owner.
    methods: HashMap<String, (AttributionMethod, f32)>,
}

impl DepartedOwnerDetector {
    /// A detector with these settings.
    pub fn new(config: DepartedOwnerConfig) -> Self {
        Self {
            config,
            seen: HashMap::new(),
            requested: HashMap::new(),
            methods: HashMap::new(),
        }
    }

    /// Remembers `method` for `id` when it is stronger than what was seen before.
    fn note_method(&mut self, id: &str, method: AttributionMethod, confidence: f32) {
        match self.methods.get(id) {
            Some((m, _)) if strength(*m) >= strength(method) => {}
            _ => {
                self.methods.insert(id.to_owned(), (method, confidence));
            }
        }
    }
}

/// How strongly an attribution method ties a credential to a person: what the
/// inventory declares, then what the logs prove (issuance), then names.
fn strength(m: AttributionMethod) -> u8 {
    match m {
        AttributionMethod::Declared => 5,
        AttributionMethod::IssuanceChain => 4,
        AttributionMethod::PrincipalAlias => 3,
        AttributionMethod::SessionChain => 2,
        AttributionMethod::Fingerprint => 1,
        AttributionMethod::None => 0,
    }
}

/// The revocation that disables a credential of this kind.
pub(crate) fn revocation_kind(kind: CredentialKind) -> Option<ActionKind> {
    Some(match kind {
        CredentialKind::AwsAccessKey => ActionKind::DeactivateAwsAccessKey,
        CredentialKind::AwsSessionKey => ActionKind::RevokeAwsRoleSessions,
        CredentialKind::VaultServiceToken | CredentialKind::VaultBatchToken => {
            ActionKind::RevokeVaultAccessor
        }
        CredentialKind::GithubClassicPat
        | CredentialKind::GithubFineGrainedPat
        | CredentialKind::GithubAppToken
        | CredentialKind::GithubOauthToken => ActionKind::RevokeGithubToken,
        CredentialKind::EntraClientSecret
        | CredentialKind::EntraCertificate
        | CredentialKind::EntraFederatedCredential => ActionKind::RemoveEntraCredential,
        CredentialKind::AwsConsoleSession
        | CredentialKind::EntraManagedIdentity
        | CredentialKind::Unknown => return None,
    })
}

/// What an executor needs to find the credential: the IAM user owning an AWS key,
/// the role of a session, the GitHub org, the Entra application.
fn target_of(graph: &LineageGraph, cred: &CredentialRef) -> serde_json::Value {
    let principal = graph.credential(&cred.id).and_then(|m| m.principal.clone());
    match cred.kind {
        CredentialKind::AwsAccessKey => json!({
            "user_name": principal.as_deref().map(|p| p.rsplit('/').next().unwrap_or(p)),
            "account": cred.issuer,
        }),
        CredentialKind::AwsSessionKey => json!({
            "role_name": principal.as_deref().filter(|p| p.contains(":role/")).map(|p| p.rsplit('/').next().unwrap_or(p)),
            "account": cred.issuer,
        }),
        CredentialKind::GithubClassicPat
        | CredentialKind::GithubFineGrainedPat
        | CredentialKind::GithubAppToken
        | CredentialKind::GithubOauthToken => {
            json!({ "org": cred.issuer, "owner_login": principal })
        }
        CredentialKind::EntraClientSecret
        | CredentialKind::EntraCertificate
        | CredentialKind::EntraFederatedCredential => {
            json!({ "app_id": principal, "tenant": cred.issuer })
        }
        _ => serde_json::Value::Null,
    }
}

/// A revocation request for one credential of `owner`, raised by `by` (a detector
/// name, or `operator` for a manual sweep); `None` for kinds nothing can revoke.
pub fn revocation_request(
    graph: &LineageGraph,
    cred: &CredentialRef,
    owner: &HumanId,
    by: &str,
    reason: String,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<Action> {
    let kind = revocation_kind(cred.kind)?;
    let mut target = target_of(graph, cred);
    if !target.is_object() {
        target = json!({});
    }
    target["owner"] = json!(owner);
    if let Some(agent) = graph
        .inventory()
        .agents()
        .iter()
        .find(|a| &a.owner == owner && a.credentials.contains(&cred.id))
    {
        target["agent"] = json!(agent.id);
    }
    // Role-wide: every session of the role is revoked, so one request per account,
    // role and departure, however many sessions (each named as its caller chose).
    let subject = match (kind, target.get("role_name").and_then(|v| v.as_str())) {
        (ActionKind::RevokeAwsRoleSessions, Some(role)) => format!(
            "{}/{role}",
            target
                .get("account")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown-account")
        ),
        _ => cred.id.to_string(),
    };
    Some(Action {
        idempotency_key: format!("{kind:?}:{subject}:{by}:{owner}").to_ascii_lowercase(),
        kind,
        credential: cred.clone(),
        reason,
        detector: by.to_owned(),
        evidence: None,
        requested_at: at,
        status: ActionStatus::Requested,
        result: None,
        target,
    })
}

/// What the departed-owner detector has learned (credentials seen per owner and
/// those already in a revocation request), for snapshots.
#[derive(serde::Deserialize)]
struct DepartedState {
    seen: HashMap<HumanId, BTreeMap<String, CredentialRef>>,
    requested: HashMap<HumanId, std::collections::BTreeSet<String>>,
    #[serde(default)]
    methods: HashMap<String, (AttributionMethod, f32)>,
}

/// [`DepartedState`] borrowed, for writing a snapshot without copying the state.
#[derive(serde::Serialize)]
struct DepartedStateRef<'a> {
    seen: &'a HashMap<HumanId, BTreeMap<String, CredentialRef>>,
    requested: &'a HashMap<HumanId, std::collections::BTreeSet<String>>,
    methods: &'a HashMap<String, (AttributionMethod, f32)>,
}

impl Detector for DepartedOwnerDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn snapshot(&self) -> Option<serde_json::Value> {
        serde_json::to_value(DepartedStateRef {
            seen: &self.seen,
            requested: &self.requested,
            methods: &self.methods,
        })
        .ok()
    }

    /// Forgets the credentials the graph forgot (idle for the live run's retention):
    /// what each owner was seen using, how strongly, and which were requested. A
    /// forgotten credential used after its owner's departure still alerts on that
    /// use; a repeated revocation request is a no-op for the responder's ledger.
    fn forget_credentials(&mut self, known: &dyn Fn(&str) -> bool) {
        for credentials in self.seen.values_mut() {
            credentials.retain(|id, _| known(id));
        }
        self.seen.retain(|_, credentials| !credentials.is_empty());
        self.methods.retain(|id, _| known(id));
        for ids in self.requested.values_mut() {
            ids.retain(|id| known(id));
        }
        self.requested.retain(|_, ids| !ids.is_empty());
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
        let state: DepartedState =
            serde_json::from_value(state).map_err(|e| format!("departed-owner state: {e}"))?;
        self.seen = state.seen;
        self.requested = state.requested;
        self.methods = state.methods;
        Ok(())
    }

    fn observe(
        &mut self,
        event: &AttributedEvent,
        _facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding> {
        let a = &event.attribution;
        let Some(owner) = &a.owner else {
            return Vec::new();
        };
        let use_ = &event.use_;
        // Not hourly AWS session keys: covered by their root, and keeping them would
        // grow this map with every session.
        for id in use_
            .credential
            .iter()
            .filter(|c| c.kind != CredentialKind::AwsSessionKey)
            .map(|c| c.id.as_str())
            .chain(a.root_credential.iter().map(|c| c.as_str()))
        {
            self.note_method(id, a.method, a.confidence);
        }
        // Remember the credential chain's root (and the used credential) for this owner.
        let seen = self.seen.entry(owner.clone()).or_default();
        // Hourly AWS session keys are covered by their root; keeping them would grow
        // this map with every session.
        if let Some(c) = use_
            .credential
            .as_ref()
            .filter(|c| c.kind != CredentialKind::AwsSessionKey)
        {
            // Looked up before inserting: the key is allocated only for a new credential.
            if !seen.contains_key(c.id.as_str()) {
                seen.insert(c.id.to_string(), c.clone());
            }
        }
        if let Some(root) = a.root_credential.as_ref() {
            if !seen.contains_key(root.as_str()) {
                let kind = graph
                    .credential(root)
                    .map(|m| m.kind)
                    .unwrap_or(CredentialKind::Unknown);
                seen.insert(
                    root.to_string(),
                    CredentialRef {
                        kind,
                        id: root.clone(),
                        issuer: None,
                    },
                );
            }
        }
        let Some(departed_at) = graph.departed_at(owner) else {
            return Vec::new();
        };
        if use_.time < departed_at {
            return Vec::new();
        }
        // Everything of this owner: credentials seen in use, and those declared for their agents.
        let mut all = self.seen.get(owner).cloned().unwrap_or_default();
        for agent in graph
            .inventory()
            .agents()
            .iter()
            .filter(|ag| &ag.owner == owner)
        {
            for c in &agent.credentials {
                all.entry(c.to_string()).or_insert_with(|| CredentialRef {
                    kind: graph
                        .credential(c)
                        .map(|m| m.kind)
                        .unwrap_or(CredentialKind::from_aws_key_id(c.as_str())),
                    id: c.clone(),
                    issuer: None,
                });
            }
        }
        let declared: Vec<String> = graph
            .inventory()
            .agents()
            .iter()
            .filter(|ag| &ag.owner == owner)
            .flat_map(|ag| ag.credentials.iter().map(|c| c.to_string()))
            .collect();
        for id in &declared {
            self.note_method(id, AttributionMethod::Declared, 1.0);
        }
        let from_logs = graph.departure_from_logs(owner);
        let departure = if from_logs { "logs" } else { "inventory" };
        let grace_until = from_logs.then(|| {
            departed_at
                + chrono::Duration::seconds(
                    self.config.log_departure_grace_secs.min(i64::MAX as u64) as i64,
                )
        });
        let in_grace = grace_until.is_some_and(|g| use_.time < g);
        let requested = self.requested.entry(owner.clone()).or_default();
        let mut actions = Vec::new();
        if self.config.request_revocation && !in_grace {
            for (id, cred) in &all {
                if requested.contains(id) {
                    continue;
                }
                let reason = format!("owner {owner} departed at {departed_at}");
                let Some(mut action) =
                    revocation_request(graph, cred, owner, "departed-owner", reason, use_.time)
                else {
                    continue;
                };
                let (method, confidence) = self
                    .methods
                    .get(id)
                    .copied()
                    .unwrap_or((AttributionMethod::None, 0.0));
                action.evidence = Some(Evidence {
                    method,
                    confidence,
                    departure: Some(departure.into()),
                    record_integrity: None,
                });
                requested.insert(id.clone());
                actions.push(action);
            }
        }
        let root = a
            .root_credential
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("-");
        let who = a
            .agent
            .as_ref()
            .map(|x| format!("agent `{x}`"))
            .unwrap_or_else(|| "a credential".into());
        vec![Finding {
            detector: NAME,
            severity: Severity::Critical,
            title: format!("{who} of departed owner {owner} is still in use"),
            summary: format!(
                "{who} used {} ({}) at {}, after its owner {owner} departed at {departed_at}. Root credential {root}.",
                use_.credential.as_ref().map(|c| c.id.as_str()).unwrap_or("no named credential"),
                use_.operation.action(),
                use_.time,
            ),
            dedup_key: format!("{NAME}|{owner}|{root}"),
            distinct: None,
            mitre: &["T1078.004", "T1098"],
            evidence: json!({
                "owner": owner,
                "departed_at": departed_at,
                "action": use_.operation.action(),
                "source": use_.source,
                "source_ip": use_.client.source_ip,
                "credentials_of_owner": all.keys().collect::<Vec<_>>(),
                "departure": departure,
                "revocation_waits_until": grace_until.filter(|_| in_grace),
            }),
            actions,
        }]
    }
}
