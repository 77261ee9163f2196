//! The graph structure and how facts, inventory and observed uses change it.

/// Keyed by ids that come from the logs, looked up several times per event: aHash
/// (randomly seeded per process, so still resistant to crafted-collision input) is
/// several times cheaper than the standard SipHash here.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use chrono::{DateTime, Utc};
use lineage_core::event::{
    CredentialKind, CredentialRef, CredentialUse, FactKind, IssuanceMethod, LineageFact,
    PrincipalKind,
};
use lineage_core::inventory::{HumanStatus, Inventory};
use lineage_core::{AgentId, BlastRadius, CredentialId, HumanId};
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use smol_str::SmolStr;

/// Auth-method prefixes Vault/OpenBao put in front of a token's display name.
const VAULT_AUTH_PREFIXES: &[&str] = &[
    "oidc-",
    "jwt-",
    "userpass-",
    "ldap-",
    "okta-",
    "github-",
    "radius-",
];

/// A vertex of the lineage graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Node {
    /// A credential.
    Credential(CredentialId),
    /// A non-human identity.
    Agent(AgentId),
    /// A human.
    Human(HumanId),
}

/// An edge of the lineage graph.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Edge {
    /// Child credential → the credential whose call issued it.
    IssuedFrom {
        /// How.
        method: IssuanceMethod,
        /// When.
        at: DateTime<Utc>,
    },
    /// Credential → agent it is bound to in the inventory.
    BoundTo,
    /// Agent → its accountable human.
    OwnedBy,
}

/// What the graph knows about one credential.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CredentialMeta {
    /// Graph vertex.
    pub node: NodeIndex,
    /// Kind, from the id's shape or the issuing call.
    pub kind: CredentialKind,
    /// The principal it belongs to: IAM user name for access keys, role ARN for sessions.
    pub principal: Option<SmolStr>,
    /// Role session name (STS sessions).
    pub session_name: Option<SmolStr>,
    /// `sourceIdentity` (STS sessions).
    pub source_identity: Option<SmolStr>,
    /// When it was issued, when the logs showed it.
    pub issued_at: Option<DateTime<Utc>>,
    /// Last status change (`Inactive`, `Deleted`…), with its time.
    pub status: Option<(SmolStr, DateTime<Utc>)>,
    /// First and last time a use was observed.
    pub first_used: Option<DateTime<Utc>>,
    /// Last time a use was observed.
    pub last_used: Option<DateTime<Utc>>,
    /// Services used through this credential's lineage (when it is a root), capped.
    pub services: Vec<SmolStr>,
    /// Resources touched through this credential's lineage (when it is a root), capped.
    pub resources: Vec<SmolStr>,
    /// True when a cap cut `services` or `resources`.
    pub reach_truncated: bool,
}

/// Services remembered per root credential for blast radius.
pub const MAX_REACH_SERVICES: usize = 32;
/// Resources remembered per root credential for blast radius.
pub const MAX_REACH_RESOURCES: usize = 16;

/// The identity-lineage graph with its lookup indexes.
///
/// It serializes (for replay checkpoints) without its inventory: a checkpoint is
/// restored with [`LineageGraph::restore`] against the same inventory.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LineageGraph {
    pub(crate) graph: StableGraph<Node, Edge>,
    pub(crate) credentials: HashMap<CredentialId, CredentialMeta>,
    pub(crate) agents: HashMap<AgentId, NodeIndex>,
    pub(crate) humans: HashMap<HumanId, NodeIndex>,
    pub(crate) agent_owner: HashMap<AgentId, HumanId>,
    /// IAM user names and other principal names/ids bound to agents.
    pub(crate) principal_agent: HashMap<SmolStr, AgentId>,
    /// Owners learned from the logs: subject (app id, SP id, agent id) → human.
    pub(crate) learned_owner: HashMap<SmolStr, HumanId>,
    pub(crate) role_agent: HashMap<SmolStr, AgentId>,
    /// Lower-cased alias → humans that claim it (more than one = ambiguous).
    pub(crate) alias_humans: HashMap<String, Vec<HumanId>>,
    pub(crate) departures: HashMap<HumanId, DateTime<Utc>>,
    /// Humans whose departure was learned from the logs, not declared in the inventory.
    #[serde(default)]
    pub(crate) departures_from_logs: std::collections::HashSet<HumanId>,
    /// When each human was last reinstated (a log departure undone), for history.
    #[serde(default)]
    pub(crate) reinstated: HashMap<HumanId, DateTime<Utc>>,
    #[serde(skip)]
    pub(crate) inventory: Inventory,
    facts_applied: u64,
}

impl LineageGraph {
    /// A graph serialized (with serde) by a checkpoint, given back the inventory it
    /// was built from (not serialized: the caller checks it is the same file).
    pub fn restore(mut self, inventory: &Inventory) -> Self {
        self.inventory = inventory.clone();
        self
    }

    /// A graph seeded from the inventory: humans, agents, declared bindings and aliases.
    pub fn from_inventory(inventory: &Inventory) -> Self {
        let mut g = Self {
            inventory: inventory.clone(),
            ..Self::default()
        };
        for h in inventory.humans() {
            let n = g.graph.add_node(Node::Human(h.id.clone()));
            g.humans.insert(h.id.clone(), n);
            if h.status == HumanStatus::Departed {
                if let Some(at) = h.departed_at {
                    g.departures.insert(h.id.clone(), at);
                }
            }
            let a = &h.aliases;
            let own_id = h.id.0.to_string();
            let names = a
                .aws_iam_user
                .iter()
                .chain(&a.sso_session)
                .chain(&a.github)
                .chain(&a.entra_upn)
                .chain(&a.vault)
                .chain(h.email.iter())
                .chain(std::iter::once(&own_id));
            for name in names {
                let entry = g.alias_humans.entry(name.to_ascii_lowercase()).or_default();
                if !entry.contains(&h.id) {
                    entry.push(h.id.clone());
                }
            }
        }
        for a in inventory.agents() {
            let n = g.graph.add_node(Node::Agent(a.id.clone()));
            g.agents.insert(a.id.clone(), n);
            if let Some(&owner) = g.humans.get(&a.owner) {
                g.graph.add_edge(n, owner, Edge::OwnedBy);
            }
            g.agent_owner.insert(a.id.clone(), a.owner.clone());
            for c in &a.credentials {
                let kind = CredentialKind::from_aws_key_id(c.as_str());
                let cn = g.credential_node(c, kind);
                g.graph.add_edge(cn, n, Edge::BoundTo);
            }
            for u in a.aws_iam_users.iter().chain(&a.principals) {
                g.principal_agent.insert(SmolStr::new(u), a.id.clone());
            }
            for r in &a.aws_roles {
                g.role_agent.insert(SmolStr::new(r), a.id.clone());
                if let Some(name) = r.rsplit('/').next() {
                    g.role_agent
                        .entry(SmolStr::new(name))
                        .or_insert_with(|| a.id.clone());
                }
            }
        }
        g
    }

    /// The vertex of a credential, created on first sight.
    pub(crate) fn credential_node(&mut self, id: &CredentialId, kind: CredentialKind) -> NodeIndex {
        if let Some(meta) = self.credentials.get_mut(id) {
            if meta.kind == CredentialKind::Unknown {
                meta.kind = kind;
            }
            return meta.node;
        }
        let node = self.graph.add_node(Node::Credential(id.clone()));
        self.credentials.insert(
            id.clone(),
            CredentialMeta {
                node,
                kind,
                principal: None,
                session_name: None,
                source_identity: None,
                issued_at: None,
                status: None,
                first_used: None,
                last_used: None,
                services: Vec::new(),
                resources: Vec::new(),
                reach_truncated: false,
            },
        );
        node
    }

    fn touch(&mut self, c: &CredentialRef) -> &mut CredentialMeta {
        self.credential_node(&c.id, c.kind);
        self.credentials.get_mut(&c.id).expect("just inserted")
    }

    /// Applies one lineage fact. Facts must arrive in event-time order.
    pub fn apply(&mut self, fact: &LineageFact) {
        self.facts_applied += 1;
        match &fact.kind {
            FactKind::CredentialIssued {
                parent,
                child,
                issued_to,
                method,
                session_name,
                source_identity,
                ..
            } => {
                let child_meta = self.touch(child);
                child_meta.issued_at = Some(fact.time);
                if issued_to.is_some() {
                    child_meta.principal = issued_to.clone();
                }
                if session_name.is_some() {
                    child_meta.session_name = session_name.clone();
                }
                if source_identity.is_some() {
                    child_meta.source_identity = source_identity.clone();
                }
                let child_node = child_meta.node;
                if let Some(parent) = parent {
                    if parent.id == child.id {
                        return;
                    }
                    let parent_node = self.touch(parent).node;
                    // A credential has one issuer: a repeated fact replaces the edge.
                    let old: Vec<_> = self
                        .graph
                        .edges_directed(child_node, Direction::Outgoing)
                        .filter(|e| matches!(e.weight(), Edge::IssuedFrom { .. }))
                        .map(|e| e.id())
                        .collect();
                    for e in old {
                        self.graph.remove_edge(e);
                    }
                    self.graph.add_edge(
                        child_node,
                        parent_node,
                        Edge::IssuedFrom {
                            method: *method,
                            at: fact.time,
                        },
                    );
                }
            }
            FactKind::CredentialStatusChanged {
                credential, status, ..
            } => {
                self.touch(credential).status = Some((status.clone(), fact.time));
            }
            FactKind::OwnerAssigned { subject, owner } => {
                let Ok(Some(owner)) = self.human_by_alias(owner) else {
                    return;
                };
                let agent = AgentId::new(subject);
                if let (Some(&a), Some(&h)) = (self.agents.get(&agent), self.humans.get(&owner)) {
                    self.graph.add_edge(a, h, Edge::OwnedBy);
                    self.agent_owner.insert(agent, owner.clone());
                }
                self.learned_owner.insert(subject.clone(), owner);
            }
            FactKind::OwnerDeparted { human } => {
                if let Ok(Some(h)) = self.human_by_alias(human) {
                    if !self.departures.contains_key(&h) {
                        self.departures.insert(h.clone(), fact.time);
                        self.departures_from_logs.insert(h);
                    }
                }
            }
            FactKind::OwnerReinstated { human } => {
                if let Ok(Some(h)) = self.human_by_alias(human) {
                    // Only what the logs said can the logs take back.
                    if self.departures_from_logs.remove(&h) {
                        self.departures.remove(&h);
                    }
                    self.reinstated.insert(h, fact.time);
                }
            }
        }
    }

    /// Records what a use shows about its credential (its principal, its session,
    /// when it was used). Call before [`LineageGraph::attribute`].
    pub fn observe(&mut self, use_: &CredentialUse) {
        let Some(c) = &use_.credential else { return };
        let time = use_.time;
        let principal_kind = use_.principal.kind;
        let principal_name = use_.principal.name.clone();
        let issuer = use_.session.issuer_arn.clone();
        let session_name = use_.session.role_session_name.clone();
        let source_identity = use_.session.source_identity.clone();
        let meta = self.touch(c);
        if meta.first_used.is_none() {
            meta.first_used = Some(time);
        }
        meta.last_used = Some(time);
        if meta.principal.is_none() {
            meta.principal = match principal_kind {
                PrincipalKind::AssumedRole => issuer,
                PrincipalKind::IamUser | PrincipalKind::User | PrincipalKind::ServicePrincipal => {
                    principal_name
                }
                _ => None,
            };
        }
        if meta.session_name.is_none() {
            meta.session_name = session_name;
        }
        if meta.source_identity.is_none() {
            meta.source_identity = source_identity;
        }
    }

    /// Records that a use reached `service` and `resources` through `root`'s lineage.
    pub fn record_reach(&mut self, root: &CredentialId, use_: &CredentialUse) {
        let Some(meta) = self.credentials.get_mut(root) else {
            return;
        };
        // Once a list is full and marked truncated, a use can change nothing in it:
        // skip the comparisons (a busy root credential fills its resources quickly,
        // and every later use compared each of its resources with all 16).
        let services_settled = meta.reach_truncated && meta.services.len() >= MAX_REACH_SERVICES;
        let resources_settled = meta.reach_truncated && meta.resources.len() >= MAX_REACH_RESOURCES;
        let service = &use_.operation.service;
        if !services_settled && !meta.services.iter().any(|s| s == service) {
            if meta.services.len() < MAX_REACH_SERVICES {
                meta.services.push(service.clone());
            } else {
                meta.reach_truncated = true;
            }
        }
        if resources_settled {
            return;
        }
        for r in &use_.resources {
            if !meta.resources.iter().any(|x| x == r) {
                if meta.resources.len() < MAX_REACH_RESOURCES {
                    meta.resources.push(r.clone());
                } else {
                    meta.reach_truncated = true;
                }
            }
        }
    }

    /// What a root credential reaches: its issued descendants and its lineage's observed reach.
    pub fn blast_radius(&self, root: &CredentialId) -> BlastRadius {
        let Some(meta) = self.credentials.get(root) else {
            return BlastRadius {
                root: Some(root.clone()),
                ..BlastRadius::default()
            };
        };
        // Walk issuance edges backwards (children point at their parent), bounded by the graph size.
        let mut descendants = 0u64;
        let mut stack = vec![meta.node];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            for e in self.graph.edges_directed(n, Direction::Incoming) {
                if matches!(e.weight(), Edge::IssuedFrom { .. }) && seen.insert(e.source()) {
                    descendants += 1;
                    stack.push(e.source());
                }
            }
        }
        BlastRadius {
            root: Some(root.clone()),
            descendant_credentials: descendants,
            services: meta.services.clone(),
            resources: meta.resources.clone(),
            truncated: meta.reach_truncated,
        }
    }

    /// Forgets the credentials nothing has happened to since `cutoff` (no use, no
    /// issuance, no status change at or after it), unless the inventory declares them
    /// or a credential that is kept descends from them: the chain a recent use is
    /// attributed through is never cut. A deleted or revoked credential counts from
    /// its status change, so its tombstone stays for as long as a live one would,
    /// and a late use of it still finds it. Returns how many were forgotten.
    ///
    /// Humans, agents, aliases, learned owners and departures are not evicted: they
    /// grow with the estate, not with traffic.
    pub fn evict_inactive(&mut self, cutoff: DateTime<Utc>) -> usize {
        let recent = |m: &CredentialMeta| {
            [m.last_used, m.issued_at, m.status.as_ref().map(|s| s.1)]
                .into_iter()
                .flatten()
                .any(|t| t >= cutoff)
        };
        let mut keep: std::collections::HashSet<NodeIndex> = self
            .credentials
            .values()
            .filter(|m| {
                recent(m)
                    || self
                        .graph
                        .edges_directed(m.node, Direction::Outgoing)
                        .any(|e| matches!(e.weight(), Edge::BoundTo))
            })
            .map(|m| m.node)
            .collect();
        // Every ancestor of a kept credential stays.
        let mut stack: Vec<NodeIndex> = keep.iter().copied().collect();
        while let Some(n) = stack.pop() {
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                if matches!(e.weight(), Edge::IssuedFrom { .. }) && keep.insert(e.target()) {
                    stack.push(e.target());
                }
            }
        }
        let evict: Vec<CredentialId> = self
            .credentials
            .iter()
            .filter(|(_, m)| !keep.contains(&m.node))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &evict {
            if let Some(m) = self.credentials.remove(id) {
                self.graph.remove_node(m.node);
            }
        }
        evict.len()
    }

    /// The credential this one was issued from, with the edge.
    pub fn parent_of(&self, id: &CredentialId) -> Option<(&CredentialId, &Edge)> {
        let meta = self.credentials.get(id)?;
        self.graph
            .edges_directed(meta.node, Direction::Outgoing)
            .find(|e| matches!(e.weight(), Edge::IssuedFrom { .. }))
            .and_then(|e| match &self.graph[e.target()] {
                Node::Credential(p) => Some((p, e.weight())),
                _ => None,
            })
    }

    /// The agent a credential is bound to in the inventory.
    pub fn declared_agent(&self, id: &CredentialId) -> Option<&AgentId> {
        let meta = self.credentials.get(id)?;
        self.graph
            .edges_directed(meta.node, Direction::Outgoing)
            .find(|e| matches!(e.weight(), Edge::BoundTo))
            .and_then(|e| match &self.graph[e.target()] {
                Node::Agent(a) => Some(a),
                _ => None,
            })
    }

    /// What the graph knows of a credential.
    pub fn credential(&self, id: &CredentialId) -> Option<&CredentialMeta> {
        self.credentials.get(id)
    }

    /// The accountable human of an agent.
    pub fn owner_of(&self, agent: &AgentId) -> Option<&HumanId> {
        self.agent_owner.get(agent)
    }

    /// When a human departed, if they have.
    pub fn departed_at(&self, human: &HumanId) -> Option<DateTime<Utc>> {
        self.departures.get(human).copied()
    }

    /// When a human was last reinstated (a departure learned from the logs undone by
    /// a re-enable or re-add), if ever.
    pub fn reinstated_at(&self, human: &HumanId) -> Option<DateTime<Utc>> {
        self.reinstated.get(human).copied()
    }

    /// True when a human's departure was learned from the logs (an account disabled,
    /// a member removed) rather than declared in the inventory.
    pub fn departure_from_logs(&self, human: &HumanId) -> bool {
        self.departures_from_logs.contains(human)
    }

    /// The human an alias names: `Ok(None)` when nobody claims it, `Err(humans)` when
    /// several do (ambiguous matches are reported, never guessed).
    ///
    /// Vault/OpenBao display names carry the auth method as a prefix
    /// (`oidc-alice@example.com`, `userpass-alice`, `ldap-alice`); when the whole name
    /// is no alias, the name after a known prefix is tried, so an inventory that lists
    /// a human's e-mail or login also resolves their Vault tokens.
    pub fn human_by_alias(&self, alias: &str) -> Result<Option<HumanId>, Vec<HumanId>> {
        let lookup = |name: &str| match self.alias_humans.get(&name.to_ascii_lowercase()) {
            None => Ok(None),
            Some(hs) if hs.len() == 1 => Ok(Some(hs[0].clone())),
            Some(hs) => Err(hs.clone()),
        };
        match lookup(alias) {
            Ok(None) => VAULT_AUTH_PREFIXES
                .iter()
                .find_map(|p| alias.strip_prefix(p))
                .map_or(Ok(None), lookup),
            found => found,
        }
    }

    /// The inventory the graph was seeded from.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Every credential the graph knows, with what it knows of it (any order).
    pub fn credentials(&self) -> impl Iterator<Item = (&CredentialId, &CredentialMeta)> + '_ {
        self.credentials.iter()
    }

    /// Every edge as (from, to, edge), in no particular order: `IssuedFrom` goes child
    /// credential → parent, `BoundTo` credential → agent, `OwnedBy` agent → human.
    pub fn edges(&self) -> impl Iterator<Item = (&Node, &Node, &Edge)> + '_ {
        self.graph.edge_indices().filter_map(|e| {
            let (from, to) = self.graph.edge_endpoints(e)?;
            Some((&self.graph[from], &self.graph[to], &self.graph[e]))
        })
    }

    /// Number of credentials known.
    pub fn credential_count(&self) -> usize {
        self.credentials.len()
    }

    /// Number of facts applied so far.
    pub fn facts_applied(&self) -> u64 {
        self.facts_applied
    }

    /// Number of vertices and edges.
    pub fn size(&self) -> (usize, usize) {
        (self.graph.node_count(), self.graph.edge_count())
    }
}
