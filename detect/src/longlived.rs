//! Long-lived credential used by an agent: a static credential (AWS `AKIA` key,
//! classic PAT, Entra client secret or certificate) used by an identity the graph
//! knows as an AI agent, MCP server or CI runner (configurable kinds), or whose
//! client fingerprint names an AI client. These are the credentials agents inherit
//! from a developer's shell (`~/.aws/credentials`, `.env`, `GITHUB_TOKEN`).

use lineage_core::inventory::AgentKind;
use lineage_core::{AttributedEvent, LineageFact, Severity};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;
use smol_str::SmolStr;

use crate::{fingerprint, AlertBook, Detector, Finding};

pub(crate) const NAME: &str = "long-lived-credential";
const MITRE: &[&str] = &["T1552.001", "T1078.004"];

/// Settings of the long-lived-credential detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongLivedConfig {
    /// Run this detector (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Agent kinds for which a long-lived credential is a finding
    /// (default `["ai-agent", "mcp-server", "ci"]`; services often legitimately hold keys).
    #[serde(default = "default_kinds")]
    pub agent_kinds: Vec<AgentKind>,
    /// Also flag uses whose user agent names an AI client, whoever they are attributed to (default true).
    #[serde(default = "yes")]
    pub use_fingerprints: bool,
    /// More user-agent substrings that identify AI clients (case-insensitive).
    #[serde(default)]
    pub extra_user_agents: Vec<String>,
}

const fn yes() -> bool {
    true
}

fn default_kinds() -> Vec<AgentKind> {
    vec![AgentKind::AiAgent, AgentKind::McpServer, AgentKind::Ci]
}

impl Default for LongLivedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            agent_kinds: default_kinds(),
            use_fingerprints: true,
            extra_user_agents: Vec::new(),
        }
    }
}

/// User agents remembered with their fingerprint; the cache is emptied when full.
const FINGERPRINT_CACHE: usize = 4096;

/// The long-lived-credential detector.
#[derive(Debug)]
pub struct LongLivedDetector {
    config: LongLivedConfig,
    /// User agent → what its fingerprint says. An agent sends the same few user
    /// agents over and over; matching every needle against each one was a tenth of
    /// the attribute stage's time.
    fingerprints: std::collections::HashMap<SmolStr, Option<SmolStr>, ahash::RandomState>,
}

impl LongLivedDetector {
    /// A detector with these settings.
    pub fn new(config: LongLivedConfig) -> Self {
        Self {
            config,
            fingerprints: Default::default(),
        }
    }

    fn fingerprint(&mut self, user_agent: &SmolStr) -> Option<SmolStr> {
        if let Some(known) = self.fingerprints.get(user_agent) {
            // A SmolStr clone: inline or a reference count, never an allocation.
            return known.clone();
        }
        let found =
            fingerprint::ai_client(user_agent, &self.config.extra_user_agents).map(SmolStr::from);
        if self.fingerprints.len() >= FINGERPRINT_CACHE {
            self.fingerprints.clear();
        }
        self.fingerprints.insert(user_agent.clone(), found.clone());
        found
    }
}

impl Detector for LongLivedDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(
        &mut self,
        event: &AttributedEvent,
        facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding> {
        self.find(event, facts, graph, None)
    }

    fn observe_folding(
        &mut self,
        event: &AttributedEvent,
        facts: &[LineageFact],
        graph: &LineageGraph,
        book: &AlertBook,
    ) -> Vec<Finding> {
        self.find(event, facts, graph, Some(book))
    }
}

impl LongLivedDetector {
    /// The finding of one event; with `book`, a repeat of an open alert comes back
    /// without title, summary or evidence (a key used all day would otherwise build
    /// them on every use, to be thrown away).
    fn find(
        &mut self,
        event: &AttributedEvent,
        _facts: &[LineageFact],
        graph: &LineageGraph,
        book: Option<&AlertBook>,
    ) -> Vec<Finding> {
        let use_ = &event.use_;
        let Some(cred) = use_.credential.as_ref().filter(|c| c.kind.is_long_lived()) else {
            return Vec::new();
        };
        let agent = event
            .attribution
            .agent
            .as_ref()
            .and_then(|id| graph.inventory().agent(id));
        let by_kind = agent.filter(|a| self.config.agent_kinds.contains(&a.kind));
        let by_fingerprint = if self.config.use_fingerprints {
            use_.client
                .user_agent
                .as_ref()
                .and_then(|ua| self.fingerprint(ua))
        } else {
            None
        };
        if by_kind.is_none() && by_fingerprint.is_none() {
            return Vec::new();
        }
        let who = event
            .attribution
            .agent
            .as_ref()
            .map(|a| a.as_str())
            .or(by_fingerprint.as_deref())
            .unwrap_or_default();
        // `NAME|who|credential`, built without `format!` (one per use of such a key).
        let id = cred.id.as_str();
        let mut dedup_key = String::with_capacity(NAME.len() + who.len() + id.len() + 2);
        for part in [NAME, "|", who, "|", id] {
            dedup_key.push_str(part);
        }
        if book.is_some_and(|b| b.folds(&dedup_key, use_.time)) {
            return vec![Finding {
                detector: NAME,
                severity: Severity::High,
                title: String::new(),
                summary: String::new(),
                dedup_key,
                distinct: None,
                mitre: MITRE,
                evidence: serde_json::Value::Null,
                actions: Vec::new(),
            }];
        }
        let why = match (by_kind, &by_fingerprint) {
            (Some(a), _) => format!("the inventory declares `{}` as {:?}", a.id, a.kind),
            (None, Some(client)) => format!("its client fingerprint says {client}"),
            (None, None) => return Vec::new(),
        };
        vec![Finding {
            detector: NAME,
            severity: Severity::High,
            title: format!("{who} uses long-lived {:?} {}", cred.kind, cred.id),
            summary: format!(
                "Long-lived credential {} ({:?}) was used by an agent: {why}. Agents should hold short-lived, scoped credentials (role sessions, OIDC, Vault tokens with a TTL).",
                cred.id, cred.kind
            ),
            dedup_key,
            distinct: None,
            mitre: MITRE,
            evidence: json!({
                "credential_kind": cred.kind,
                "user_agent": use_.client.user_agent,
                "fingerprint": by_fingerprint,
                "action": use_.operation.action(),
            }),
            actions: Vec::new(),
        }]
    }
}
