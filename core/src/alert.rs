//! What detection and response produce: [`Alert`]s for SOC queues and [`Action`]s
//! (revocation requests and their results).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::event::{AttributionMethod, CredentialRef};
use crate::ids::{AgentId, CredentialId, HumanId};

/// Alert severity, ordered from least to most urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Investigate soon.
    Medium,
    /// Investigate now.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// OCSF `severity_id` (1 informational … 5 critical).
    pub fn ocsf_id(self) -> u8 {
        match self {
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }
}

/// One hop in the lineage path shown with an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineageStep {
    /// `credential`, `agent` or `human`.
    pub node: SmolStr,
    /// Its identifier.
    pub id: SmolStr,
    /// How this hop was established.
    pub via: AttributionMethod,
}

/// A finding for the SOC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique alert id (stable for a dedup key: the key's fingerprint).
    pub id: SmolStr,
    /// Detector that raised it.
    pub detector: SmolStr,
    /// Severity.
    pub severity: Severity,
    /// One-line title.
    pub title: String,
    /// Why this is wrong, in a sentence an analyst can act on.
    pub summary: String,
    /// Event time of the first evidence event.
    pub first_seen: DateTime<Utc>,
    /// Event time of the latest evidence event.
    pub last_seen: DateTime<Utc>,
    /// Number of events folded into this alert by deduplication.
    pub count: u64,
    /// Dedup key: the same finding for the same credential is one alert.
    pub dedup_key: String,
    /// The credential used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// The root of its lineage chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_credential: Option<CredentialId>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    /// The accountable human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<HumanId>,
    /// Lineage path: used credential → … → root → agent → human.
    #[serde(default)]
    pub lineage_path: Vec<LineageStep>,
    /// MITRE ATT&CK technique ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitre: Vec<SmolStr>,
    /// Detector-specific evidence (the violated scope, the action, the resources…).
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// Event ids of the evidence events (the first ones, capped; `count` has the total).
    #[serde(default)]
    pub event_ids: Vec<SmolStr>,
    /// What the root credential reaches, as far as the graph knows when the alert opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<BlastRadius>,
}

/// What a root credential can reach: the credentials issued from it and what its
/// lineage has been seen doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlastRadius {
    /// The root credential.
    pub root: Option<CredentialId>,
    /// Credentials issued from it, transitively (sessions, child tokens, created keys).
    pub descendant_credentials: u64,
    /// Services its lineage used (first ones seen, capped).
    pub services: Vec<SmolStr>,
    /// Resources its lineage touched (first ones seen, capped).
    pub resources: Vec<SmolStr>,
    /// True when the caps cut the lists.
    pub truncated: bool,
}

/// What a response action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Set an AWS access key to `Inactive`.
    DeactivateAwsAccessKey,
    /// Revoke AWS role sessions issued before now.
    RevokeAwsRoleSessions,
    /// Revoke a Vault token by accessor.
    RevokeVaultAccessor,
    /// Revoke a GitHub token.
    RevokeGithubToken,
    /// Remove an Entra service-principal credential.
    RemoveEntraCredential,
}

/// Where an action is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    /// Requested, not yet decided.
    Requested,
    /// Would have run, but dry-run is on.
    DryRun,
    /// Waiting for a person to approve.
    PendingApproval,
    /// Refused by policy (denylist, not allowlisted, rate limit).
    Refused,
    /// The executor is being called: the ledger's intent record, written (and
    /// fsynced) before the call. Left alone by a crash, it is reconciled with the
    /// provider on the next start.
    Executing,
    /// Executed successfully.
    Done,
    /// Executed and failed.
    Failed,
}

/// What a revocation request rests on, so the response policy can tell strong
/// evidence (executed automatically) from weak (queued for a person).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// How the credential was tied to the owner: the strongest attribution method
    /// seen for it (`declared` for a credential the inventory binds to the owner's
    /// agent).
    pub method: crate::event::AttributionMethod,
    /// Confidence of that attribution in [0, 1].
    pub confidence: f32,
    /// Where the owner's departure is known from: `inventory` (an HR feed, declared)
    /// or `logs` (an account disabled, a member removed: reversible, and writable by
    /// whoever can write to the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departure: Option<String>,
    /// For a request raised by a CloudTrail record: whether the file it was read from
    /// validated against CloudTrail's signed digest files. Absent for sources that
    /// have no such mechanism (their trust is the transport's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_integrity: Option<RecordIntegrity>,
}

/// Whether the record behind a request is known to be the provider's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordIntegrity {
    /// Its file's SHA-256 matched a digest file whose RSA signature verified with
    /// CloudTrail's public key (`lineage replay --digest-public-keys`).
    DigestValidated,
    /// Not validated: no digest covered it, the digest or its signature did not
    /// verify, or validation was not run (live sources are never validated here:
    /// a file's digest arrives up to an hour after it).
    NotValidated,
}

/// A revocation request and, once executed, its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Idempotency key: executor + credential + reason. A repeated key is a no-op.
    pub idempotency_key: String,
    /// What to do.
    pub kind: ActionKind,
    /// On which credential.
    pub credential: CredentialRef,
    /// Why (the alert id or the operator's reason).
    pub reason: String,
    /// Who asked: the detector that raised it, or `operator` for a manual sweep. The
    /// response policy's per-detector mode reads this field.
    #[serde(default)]
    pub detector: String,
    /// What the request rests on (absent for an operator's own request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// Current status.
    pub status: ActionStatus,
    /// Result or error text once executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What the executor needs to find the credential, by kind: `user_name` (AWS key),
    /// `role_name` (AWS sessions), `org` (GitHub), `app_object_id` / `service_principal_id`
    /// (Entra), `accessor` is the credential id itself for Vault.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub target: serde_json::Value,
}
