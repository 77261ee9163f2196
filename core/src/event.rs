//! The event model: what a source said ([`CredentialUse`]), what changes the
//! lineage graph ([`LineageFact`]) and what attribution concluded ([`AttributedEvent`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

use crate::ids::{AgentId, CredentialId, HumanId};

/// The audit-log families lineage understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// AWS CloudTrail.
    #[serde(rename = "cloudtrail")]
    CloudTrail,
    /// Microsoft Entra ID sign-in and audit logs.
    Entra,
    /// GitHub audit log.
    #[serde(rename = "github")]
    GitHub,
    /// HashiCorp Vault / OpenBao audit device.
    Vault,
    /// A file (or its records) whose source could not be told: only dead letters
    /// carry it, counted on their own. Not in [`Source::ALL`] (no parser, no topic).
    Unknown,
}

impl Source {
    /// Every source, in a fixed order.
    pub const ALL: [Source; 4] = [
        Source::CloudTrail,
        Source::Entra,
        Source::GitHub,
        Source::Vault,
    ];

    /// The short lowercase name used in topics, paths and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::CloudTrail => "cloudtrail",
            Source::Entra => "entra",
            Source::GitHub => "github",
            Source::Vault => "vault",
            Source::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of credential was presented. `is_long_lived` drives the static-credential detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// AWS IAM user access key (`AKIA…`): long-lived until rotated.
    AwsAccessKey,
    /// AWS temporary session credential (`ASIA…`): from STS.
    AwsSessionKey,
    /// AWS console or SSO sign-in session (no access key in the record).
    AwsConsoleSession,
    /// GitHub classic personal access token.
    GithubClassicPat,
    /// GitHub fine-grained personal access token.
    GithubFineGrainedPat,
    /// GitHub App installation or user-to-server token.
    GithubAppToken,
    /// GitHub OAuth app token.
    GithubOauthToken,
    /// Vault service token.
    VaultServiceToken,
    /// Vault batch token.
    VaultBatchToken,
    /// Entra service-principal client secret.
    EntraClientSecret,
    /// Entra service-principal certificate.
    EntraCertificate,
    /// Entra federated identity credential (workload identity federation).
    EntraFederatedCredential,
    /// Entra managed identity.
    EntraManagedIdentity,
    /// Something else or not determinable from the record.
    Unknown,
}

impl CredentialKind {
    /// Credentials that stay valid until someone rotates or revokes them.
    pub fn is_long_lived(self) -> bool {
        matches!(
            self,
            CredentialKind::AwsAccessKey
                | CredentialKind::GithubClassicPat
                | CredentialKind::EntraClientSecret
                | CredentialKind::EntraCertificate
        )
    }

    /// The AWS credential kind implied by an access key id's prefix.
    pub fn from_aws_key_id(key: &str) -> Self {
        match key.get(..4) {
            Some("AKIA") => CredentialKind::AwsAccessKey,
            Some("ASIA") => CredentialKind::AwsSessionKey,
            _ => CredentialKind::Unknown,
        }
    }
}

/// A credential as named by a log record: never the secret, only its identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CredentialRef {
    /// What kind of credential.
    pub kind: CredentialKind,
    /// Its identifier (access key id, token id, accessor, key id).
    pub id: CredentialId,
    /// Who issued it: AWS account, GitHub org, Entra tenant, Vault cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<SmolStr>,
}

/// The kind of principal a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    /// AWS IAM user.
    IamUser,
    /// AWS assumed-role session.
    AssumedRole,
    /// AWS account root.
    Root,
    /// AWS federated user (GetFederationToken).
    FederatedUser,
    /// AWS Identity Center / SAML / web-identity user.
    SsoUser,
    /// A cloud provider service acting on its own behalf.
    Service,
    /// A human user account (GitHub, Entra).
    User,
    /// An application / service principal.
    ServicePrincipal,
    /// Anything else.
    Unknown,
}

/// Who the log says acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Kind of principal.
    pub kind: PrincipalKind,
    /// Stable id (AWS principalId, object id, login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<SmolStr>,
    /// Human-readable name (IAM user name, role name, login, UPN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SmolStr>,
    /// ARN or other fully qualified name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<SmolStr>,
    /// Account / org / tenant that owns the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<SmolStr>,
}

impl Principal {
    /// A principal of unknown kind with no identifiers.
    pub fn unknown() -> Self {
        Self {
            kind: PrincipalKind::Unknown,
            id: None,
            name: None,
            arn: None,
            account: None,
        }
    }
}

/// The session a credential belongs to, when the source tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionContext {
    /// Credential that issued this session, when the record itself says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_credential: Option<CredentialId>,
    /// ARN of the role (or user) whose session this is (`sessionIssuer.arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_arn: Option<SmolStr>,
    /// Role session name (the part after the role in an assumed-role ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<SmolStr>,
    /// `sourceIdentity` set when the session was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<SmolStr>,
    /// Whether the session was MFA-authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_authenticated: Option<bool>,
    /// When the session was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// Hints about the client software and network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHints {
    /// User agent string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<SmolStr>,
    /// Source IP address (or the calling service's name, as CloudTrail writes for AWS services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<SmolStr>,
    /// Client application (Entra app display name, OAuth app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_app: Option<SmolStr>,
    /// MCP server name, when the user agent or a header names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<SmolStr>,
}

/// The operation performed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Service (`s3`, `iam`, `repo`, `secret`…).
    pub service: SmolStr,
    /// Operation name (`GetObject`, `api.request`, `read`…).
    pub name: SmolStr,
    /// Whether the operation only reads, when the source tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

impl Operation {
    /// `service:name`, the form scope globs are written in (`s3:GetObject`).
    pub fn action(&self) -> String {
        let mut action = String::with_capacity(self.service.len() + 1 + self.name.len());
        let _ = self.write_action(&mut action);
        action
    }

    /// Writes [`Operation::action`] into `out` (a reused buffer or an Arrow string
    /// builder), for per-event callers that should not allocate.
    pub fn write_action(&self, out: &mut impl fmt::Write) -> fmt::Result {
        // Three plain writes: `write!` goes through `fmt::write` and its argument
        // table, a measurable cost at one call per event per detector.
        out.write_str(&self.service)?;
        out.write_char(':')?;
        out.write_str(&self.name)
    }
}

/// Whether the call succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// True unless the source reports an error.
    pub success: bool,
    /// Error code as the source writes it (`AccessDenied`, `403`, `permission denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<SmolStr>,
}

impl Outcome {
    /// A successful call.
    pub fn ok() -> Self {
        Self {
            success: true,
            error_code: None,
        }
    }

    /// True when the error code says the caller was not allowed.
    pub fn is_access_denied(&self) -> bool {
        self.error_code.as_deref().is_some_and(|c| {
            let c = c.to_ascii_lowercase();
            c.contains("accessdenied")
                || c.contains("unauthorized")
                || c.contains("forbidden")
                || c.contains("permission denied")
                || c == "403"
        })
    }
}

/// Where a record was read, so an analyst can find the original.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Provenance {
    /// A file: path and 1-based record number (line for line-delimited files, index
    /// in the `Records` array for CloudTrail delivery files).
    File {
        /// Path as given to the reader.
        path: SmolStr,
        /// 1-based record number within the file.
        record: u64,
    },
    /// A Kafka message.
    Kafka {
        /// Topic name.
        topic: SmolStr,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Standard input or an in-memory buffer.
    Stream {
        /// Name of the stream.
        name: SmolStr,
        /// 1-based record number.
        record: u64,
    },
}

impl Provenance {
    /// A file location.
    pub fn file(path: impl AsRef<str>, record: u64) -> Self {
        Provenance::File {
            path: SmolStr::new(path.as_ref()),
            record,
        }
    }
}

impl Provenance {
    /// Writes the [`Display`](fmt::Display) form into `out` with plain string writes
    /// (no `fmt::write`; the events table writes one per row).
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut number = itoa::Buffer::new();
        match self {
            Provenance::File { path, record } | Provenance::Stream { name: path, record } => {
                out.write_str(path)?;
                out.write_char('#')?;
                out.write_str(number.format(*record))
            }
            Provenance::Kafka {
                topic,
                partition,
                offset,
            } => {
                out.write_str(topic)?;
                out.write_char('/')?;
                out.write_str(number.format(*partition))?;
                out.write_char('@')?;
                out.write_str(number.format(*offset))
            }
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// One use of a credential, normalized from any source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialUse {
    /// Which source produced it.
    pub source: Source,
    /// The source's own event id (CloudTrail `eventID`, GitHub `_document_id`…).
    pub event_id: SmolStr,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The credential presented, when the record names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// Who the log says acted.
    pub principal: Principal,
    /// Session context.
    #[serde(default)]
    pub session: SessionContext,
    /// Client hints.
    #[serde(default)]
    pub client: ClientHints,
    /// What was done.
    pub operation: Operation,
    /// Resources touched (ARNs or source-specific names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<SmolStr>,
    /// Success or error.
    pub outcome: Outcome,
    /// Region or location, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<SmolStr>,
    /// Where it was read.
    pub provenance: Provenance,
}

/// How a credential came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssuanceMethod {
    /// IAM `CreateAccessKey`.
    CreateAccessKey,
    /// STS `AssumeRole`.
    AssumeRole,
    /// STS `AssumeRoleWithSAML`.
    AssumeRoleWithSaml,
    /// STS `AssumeRoleWithWebIdentity`.
    AssumeRoleWithWebIdentity,
    /// STS `GetSessionToken`.
    GetSessionToken,
    /// STS `GetFederationToken`.
    GetFederationToken,
    /// Any other issuance (Vault token create, GitHub grant, Entra credential add).
    Other,
}

/// Something that changes the lineage graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineageFact {
    /// When it took effect.
    pub time: DateTime<Utc>,
    /// Where it was learned (source name, or `inventory`).
    pub source: Source,
    /// Event id of the record it was learned from.
    pub event_id: SmolStr,
    /// What changed.
    pub kind: FactKind,
}

/// The kinds of lineage change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "kebab-case")]
pub enum FactKind {
    /// A credential was issued: `child` now exists, derived from `parent` when known.
    CredentialIssued {
        /// The credential that made the call that issued it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<CredentialRef>,
        /// The new credential.
        child: CredentialRef,
        /// Who made the call.
        issued_by: Principal,
        /// Whom the credential belongs to (IAM user for `CreateAccessKey`, role ARN for `AssumeRole`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issued_to: Option<SmolStr>,
        /// How it was issued.
        method: IssuanceMethod,
        /// Role session name, for STS sessions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_name: Option<SmolStr>,
        /// `sourceIdentity` set on the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_identity: Option<SmolStr>,
    },
    /// A credential's status changed (`Inactive`, `Active`) or it was deleted/revoked.
    CredentialStatusChanged {
        /// The credential.
        credential: CredentialRef,
        /// New status, as the source writes it (`Active`, `Inactive`, `Deleted`, `Revoked`).
        status: SmolStr,
        /// Who changed it.
        changed_by: Principal,
    },
    /// A human was recorded as the owner of an agent, an application / service
    /// principal, or a credential.
    OwnerAssigned {
        /// The owned thing: agent id, application or service-principal id, or credential id.
        subject: SmolStr,
        /// The owner: a human id or any alias of one (UPN, login, e-mail).
        owner: SmolStr,
    },
    /// A human left (account disabled, deleted, removed from org).
    OwnerDeparted {
        /// The human, when resolved; otherwise the source's account name.
        human: SmolStr,
    },
    /// A human is back (account re-enabled or restored, re-added to the org): a
    /// departure learned from the logs no longer holds. An inventory departure (an
    /// HR record) is not undone by the logs.
    OwnerReinstated {
        /// The human, when resolved; otherwise the source's account name.
        human: SmolStr,
    },
}

/// How attribution reached its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributionMethod {
    /// The credential itself is bound to an agent or human in the inventory.
    Declared,
    /// Walked issuance edges (parent credential → child) back to a declared root.
    IssuanceChain,
    /// The session's issuer (role, federation) is bound to an agent or human.
    SessionChain,
    /// The principal (IAM user, SSO session name, login) is an alias of a human or bound to an agent.
    PrincipalAlias,
    /// The client fingerprint (user agent) names the agent.
    Fingerprint,
    /// Nothing matched.
    None,
}

/// What attribution concluded for one use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// The credential chain from the used credential (first) to its root (last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<CredentialId>,
    /// The root credential of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_credential: Option<CredentialId>,
    /// The agent that used it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    /// The accountable human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<HumanId>,
    /// How the answer was reached.
    pub method: AttributionMethod,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Why it could not be attributed, when `owner` and `agent` are both empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattributed_reason: Option<String>,
}

impl Attribution {
    /// An explicit "could not attribute" with its reason.
    pub fn unattributed(chain: Vec<CredentialId>, reason: impl Into<String>) -> Self {
        Self {
            root_credential: chain.last().cloned(),
            chain,
            agent: None,
            owner: None,
            method: AttributionMethod::None,
            confidence: 0.0,
            unattributed_reason: Some(reason.into()),
        }
    }

    /// True when an owner or an agent was found.
    pub fn is_attributed(&self) -> bool {
        self.owner.is_some() || self.agent.is_some()
    }
}

/// A credential use with its attribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributedEvent {
    /// The use.
    #[serde(rename = "use")]
    pub use_: CredentialUse,
    /// What attribution concluded.
    pub attribution: Attribution,
}

#[cfg(test)]
mod tests {
    use super::{Operation, Provenance};

    #[test]
    fn provenance_display_names_the_record() {
        let file = Provenance::File {
            path: "AWSLogs/1/CloudTrail/x.json.gz".into(),
            record: 17,
        };
        assert_eq!(file.to_string(), "AWSLogs/1/CloudTrail/x.json.gz#17");
        let kafka = Provenance::Kafka {
            topic: "lineage.raw.cloudtrail".into(),
            partition: 3,
            offset: 9_000_000_001,
        };
        assert_eq!(kafka.to_string(), "lineage.raw.cloudtrail/3@9000000001");
        let stream = Provenance::Stream {
            name: "vault-socket".into(),
            record: u64::MAX,
        };
        assert_eq!(stream.to_string(), format!("vault-socket#{}", u64::MAX));
    }

    #[test]
    fn action_is_service_colon_name() {
        let op = Operation {
            service: "s3".into(),
            name: "GetObject".into(),
            read_only: Some(true),
        };
        assert_eq!(op.action(), "s3:GetObject");
    }
}
