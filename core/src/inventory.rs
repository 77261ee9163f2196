//! The inventory file: who the humans are, which agents exist, which credentials and
//! principals each agent is bound to, and what each agent is allowed to do.
//!
//! It is TOML (see the README for a full example). Loading validates everything a
//! typo could break (unknown fields, unknown owners, duplicate ids, bad globs) and
//! reports the file, the line and the field, because a silently ignored binding is
//! an attribution that silently goes missing.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::event::Source;
use crate::ids::{AgentId, CredentialId, HumanId};

/// The file as written: `[[human]]` and `[[agent]]` tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Accountable humans.
    #[serde(default, rename = "human")]
    pub humans: Vec<Human>,
    /// Non-human identities.
    #[serde(default, rename = "agent")]
    pub agents: Vec<Agent>,
}

/// Whether a human is still with the organisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HumanStatus {
    /// Current employee or contractor.
    #[default]
    Active,
    /// Left; `departed_at` says when.
    Departed,
}

/// Names a human goes by in each source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aliases {
    /// AWS IAM user names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aws_iam_user: Vec<String>,
    /// AWS SSO / SAML role-session names and `sourceIdentity` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sso_session: Vec<String>,
    /// GitHub logins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github: Vec<String>,
    /// Entra user principal names or object ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entra_upn: Vec<String>,
    /// Vault entity aliases or display names (`oidc-alice@example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault: Vec<String>,
}

/// An accountable human.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Human {
    /// Stable id used everywhere else (`owner = "…"`).
    pub id: HumanId,
    /// E-mail address; also matched as an alias in every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Names in each source.
    #[serde(default)]
    pub aliases: Aliases,
    /// `active` (default) or `departed`.
    #[serde(default)]
    pub status: HumanStatus,
    /// When they departed (RFC 3339). Required when `status = "departed"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departed_at: Option<DateTime<Utc>>,
}

/// What kind of non-human identity an agent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// An AI coding or task agent (Claude Code, Cursor, Copilot…).
    AiAgent,
    /// An MCP server acting for an AI client.
    McpServer,
    /// A CI runner.
    Ci,
    /// A long-running service.
    Service,
}

impl AgentKind {
    /// True for AI agents and MCP servers, the identities whose use of a long-lived
    /// credential is a finding in itself.
    pub fn is_ai(self) -> bool {
        matches!(self, AgentKind::AiAgent | AgentKind::McpServer)
    }
}

/// What an agent is allowed to do in one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The source this scope applies to.
    pub source: Source,
    /// Action globs, matched case-insensitively (`s3:GetObject`, `ec2:Describe*`).
    pub actions: Vec<String>,
    /// Resource globs (`arn:aws:s3:::artifacts/*`). Empty means any resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

/// A non-human identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Stable id.
    pub id: AgentId,
    /// `ai-agent`, `mcp-server`, `ci` or `service`.
    pub kind: AgentKind,
    /// The accountable human's id.
    pub owner: HumanId,
    /// Where it runs (free text: host, cluster, repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Credential ids bound to this agent (AWS access key ids, token ids, accessors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialId>,
    /// AWS IAM users whose keys belong to this agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aws_iam_users: Vec<String>,
    /// Other principals whose credentials belong to this agent, in any source: a GitHub
    /// app slug or bot login, an Entra application (client) id or service-principal id,
    /// a Vault display name or entity id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// AWS roles (ARN or name) whose sessions belong to this agent when no issuance chain says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aws_roles: Vec<String>,
    /// User-agent globs that identify this agent's client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<String>,
    /// Declared scopes. An agent with no scope for a source is not scope-checked there.
    #[serde(default, rename = "scope", skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
}

/// A scope with its globs compiled.
///
/// Each list is one [`GlobSet`], so a check is one pass over the string whatever the
/// number of globs (globset answers literal, prefix and suffix globs without a
/// regex). Action globs are case-insensitive: they are compiled lowercased and the
/// action is lowercased before matching, which keeps `s3:Get*` a prefix test.
#[derive(Clone, Debug)]
pub struct CompiledScope {
    /// The scope as declared.
    pub declared: Scope,
    actions: GlobSet,
    resources: GlobSet,
}

/// Compiles `patterns` into one set; a bad glob is returned with its error.
fn glob_set<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    case_insensitive: bool,
    literal_separator: bool,
) -> Result<GlobSet, (String, String)> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .literal_separator(literal_separator)
            .build()
            .map_err(|e| (pattern.to_owned(), e.to_string()))?;
        set.add(glob);
    }
    set.build().map_err(|e| (String::new(), e.to_string()))
}

impl CompiledScope {
    fn compile(scope: &Scope) -> Result<Self, (String, String)> {
        let lowered: Vec<String> = scope.actions.iter().map(|p| p.to_lowercase()).collect();
        // A lowercased glob that no longer parses reports the declared pattern.
        let actions =
            glob_set(lowered.iter().map(String::as_str), false, false).map_err(|(bad, err)| {
                let declared = scope
                    .actions
                    .iter()
                    .find(|p| p.to_lowercase() == bad)
                    .cloned()
                    .unwrap_or(bad);
                (declared, err)
            })?;
        Ok(Self {
            declared: scope.clone(),
            actions,
            resources: glob_set(scope.resources.iter().map(String::as_str), false, false)?,
        })
    }

    /// True when one of the action globs matches `action` (case-insensitively).
    pub fn allows_action(&self, action: &str) -> bool {
        if action.bytes().any(|b| b.is_ascii_uppercase()) || !action.is_ascii() {
            self.actions.is_match(action.to_lowercase())
        } else {
            self.actions.is_match(action)
        }
    }

    /// [`CompiledScope::allows_action`] for an action the caller already lowercased
    /// (no allocation; for callers that check one action against several scopes).
    pub fn allows_lowercase_action(&self, lowered: &str) -> bool {
        self.actions.is_match(lowered)
    }

    /// True when the scope names no resources or one of its globs matches `resource`.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.is_match(resource)
    }
}

/// A loaded, validated inventory.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// The declarations.
    pub file: InventoryFile,
    /// Compiled scopes, `scopes[i]` for `file.agents[i]`.
    scopes: Vec<Vec<CompiledScope>>,
    /// Every agent's user-agent globs in one set (case-insensitive) …
    user_agents: GlobSet,
    /// … and the index in `file.agents` of each glob's agent.
    user_agent_owner: Vec<usize>,
    /// Agent id → index in `file.agents` (looked up once per event by detectors).
    agent_index: HashMap<AgentId, usize>,
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::InventoryIo {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates inventory text; `path` is used in error messages only.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, CoreError> {
        let file: InventoryFile = toml::from_str(text).map_err(|e| {
            let (line, field) = e
                .span()
                .map(|span| line_and_key_at(text, span.start))
                .unwrap_or((0, None));
            let message = e.message().trim().to_owned();
            let message = match field {
                Some(f) if f.ends_with("_at") => {
                    format!("field `{f}`: {message} (expected an RFC 3339 time such as 2026-01-02T00:00:00Z)")
                }
                Some(f) if !message.contains(&format!("`{f}`")) => {
                    format!("field `{f}`: {message}")
                }
                _ => message,
            };
            CoreError::InventoryInvalid {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        Self::from_file(file, text, path)
    }

    /// Validates declarations built in code (the simulator writes them).
    pub fn from_declarations(file: InventoryFile) -> Result<Self, CoreError> {
        Self::from_file(file, "", Path::new("<inventory>"))
    }

    fn from_file(file: InventoryFile, text: &str, path: &Path) -> Result<Self, CoreError> {
        let invalid = |needle: &str, message: String| CoreError::InventoryInvalid {
            path: path.to_owned(),
            line: find_line(text, needle),
            message,
        };
        let mut human_ids = HashSet::new();
        for h in &file.humans {
            if !human_ids.insert(h.id.clone()) {
                return Err(invalid(
                    &format!("\"{}\"", h.id),
                    format!("field `id`: human `{}` is declared twice", h.id),
                ));
            }
            if h.status == HumanStatus::Departed && h.departed_at.is_none() {
                return Err(invalid(
                    &format!("\"{}\"", h.id),
                    format!(
                        "field `departed_at`: human `{}` has status = \"departed\" but no departed_at (RFC 3339 time)",
                        h.id
                    ),
                ));
            }
        }
        let mut agent_ids = HashSet::new();
        let mut bound_credentials = HashSet::new();
        let mut scopes = Vec::with_capacity(file.agents.len());
        let mut user_agents = GlobSetBuilder::new();
        let mut user_agent_owner = Vec::new();
        for a in &file.agents {
            if !agent_ids.insert(a.id.clone()) {
                return Err(invalid(
                    &format!("\"{}\"", a.id),
                    format!("field `id`: agent `{}` is declared twice", a.id),
                ));
            }
            if !human_ids.contains(&a.owner) {
                return Err(invalid(
                    &format!("owner = \"{}\"", a.owner),
                    format!(
                        "field `owner`: agent `{}` names owner `{}`, which is not a declared [[human]]",
                        a.id, a.owner
                    ),
                ));
            }
            for c in &a.credentials {
                if !bound_credentials.insert(c.clone()) {
                    return Err(invalid(
                        &format!("\"{c}\""),
                        format!(
                            "field `credentials`: credential `{c}` is bound to more than one agent (agent `{}`)",
                            a.id
                        ),
                    ));
                }
            }
            let compiled = a
                .scopes
                .iter()
                .map(CompiledScope::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|(pattern, err)| {
                    invalid(
                        &pattern,
                        format!(
                            "field `scope`: agent `{}`: bad glob `{pattern}`: {err}",
                            a.id
                        ),
                    )
                })?;
            scopes.push(compiled);
            for p in &a.user_agents {
                let glob = GlobBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        invalid(
                            p,
                            format!("field `user_agents`: agent `{}`: bad glob `{p}`: {e}", a.id),
                        )
                    })?;
                user_agents.add(glob);
                user_agent_owner.push(scopes.len() - 1);
            }
        }
        let agent_index = file
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let user_agents = user_agents
            .build()
            .map_err(|e| invalid("user_agents", format!("field `user_agents`: {e}")))?;
        Ok(Self {
            file,
            scopes,
            user_agents,
            user_agent_owner,
            agent_index,
        })
    }

    /// Humans, in declaration order.
    pub fn humans(&self) -> &[Human] {
        &self.file.humans
    }

    /// Agents, in declaration order.
    pub fn agents(&self) -> &[Agent] {
        &self.file.agents
    }

    /// The agent with this id.
    pub fn agent(&self, id: &AgentId) -> Option<&Agent> {
        self.agent_index(id).map(|i| &self.file.agents[i])
    }

    /// The human with this id.
    pub fn human(&self, id: &HumanId) -> Option<&Human> {
        self.file.humans.iter().find(|h| &h.id == id)
    }

    /// Compiled scopes of the agent at `index` in [`Inventory::agents`].
    pub fn scopes_of(&self, index: usize) -> &[CompiledScope] {
        self.scopes.get(index).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Index of the agent with this id.
    pub fn agent_index(&self, id: &AgentId) -> Option<usize> {
        self.agent_index.get(id).copied()
    }

    /// The first agent whose user-agent globs match `user_agent`.
    pub fn agent_by_user_agent(&self, user_agent: &str) -> Option<&Agent> {
        if self.user_agents.is_empty() || !self.user_agents.is_match(user_agent) {
            return None;
        }
        self.user_agents
            .matches(user_agent)
            .into_iter()
            .map(|glob| self.user_agent_owner[glob])
            .min()
            .map(|i| &self.file.agents[i])
    }
}

/// 1-based line of byte offset `at`, and the `key` of a `key = value` on that line.
fn line_and_key_at(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let line = text[..at].bytes().filter(|&b| b == b'\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    (line, key)
}

/// 1-based line of the first occurrence of `needle`, 0 when absent.
fn find_line(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|at| text[..at].bytes().filter(|&b| b == b'\n').count() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[human]]
id = "alice"
email = "alice@example.com"
aliases = { aws_iam_user = ["alice"], github = ["alice-gh"] }

[[human]]
id = "bob"
status = "departed"
departed_at = "2026-01-02T00:00:00Z"

[[agent]]
id = "claude-alice"
kind = "ai-agent"
owner = "alice"
credentials = ["AKIAEXAMPLE000000001"]
user_agents = ["*claude-code*"]

[[agent.scope]]
source = "cloudtrail"
actions = ["s3:GetObject", "ec2:Describe*"]
resources = ["arn:aws:s3:::artifacts/*"]
"#;

    fn load(text: &str) -> Result<Inventory, CoreError> {
        Inventory::from_toml_str(text, Path::new("inv.toml"))
    }

    #[test]
    fn good_inventory_loads_and_scopes_match() {
        let inv = load(GOOD).unwrap();
        assert_eq!(inv.humans().len(), 2);
        let scope = &inv.scopes_of(0)[0];
        assert!(scope.allows_action("s3:getobject"));
        assert!(scope.allows_action("ec2:DescribeInstances"));
        assert!(!scope.allows_action("iam:CreateUser"));
        assert!(scope.allows_resource("arn:aws:s3:::artifacts/a/b.tar"));
        assert!(!scope.allows_resource("arn:aws:s3:::prod-secrets/x"));
        assert_eq!(
            inv.agent_by_user_agent("aws-cli/2 md/claude-code/1.0")
                .map(|a| a.id.as_str()),
            Some("claude-alice")
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let inv = load(GOOD).unwrap();
        let text = toml::to_string(&inv.file).unwrap();
        let again = load(&text).unwrap();
        assert_eq!(again.file, inv.file);
    }

    #[test]
    fn wrong_agent_kind_names_line_and_field() {
        let bad = GOOD.replace("kind = \"ai-agent\"", "kind = \"robot\"");
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.starts_with("inv.toml:14:"), "{err}");
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected_with_its_line() {
        let bad = GOOD
            .replace("runtime", "x")
            .replace("owner = \"alice\"", "owner = \"alice\"\nownr = \"bob\"");
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("inv.toml:16:"), "{err}");
        assert!(err.contains("ownr"), "{err}");
    }

    #[test]
    fn unknown_owner_is_rejected_with_its_line() {
        let bad = GOOD.replace("owner = \"alice\"", "owner = \"carol\"");
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("inv.toml:15:"), "{err}");
        assert!(err.contains("owner") && err.contains("carol"), "{err}");
    }

    #[test]
    fn departed_without_time_is_rejected() {
        let bad = GOOD.replace("departed_at = \"2026-01-02T00:00:00Z\"\n", "");
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("departed_at"), "{err}");
    }

    #[test]
    fn bad_time_names_field() {
        let bad = GOOD.replace("2026-01-02T00:00:00Z", "yesterday");
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("inv.toml:10:"), "{err}");
        assert!(
            err.contains("departed_at") && err.contains("RFC 3339"),
            "{err}"
        );
    }
}
