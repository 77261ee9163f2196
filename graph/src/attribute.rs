//! Attribution: from a used credential to its agent and accountable human.

use lineage_core::event::{
    Attribution, AttributionMethod, CredentialKind, CredentialUse, PrincipalKind,
};
use lineage_core::{AgentId, CredentialId, HumanId, LineageStep};
use smol_str::SmolStr;

use crate::model::{Edge, LineageGraph};

/// Longest issuance chain followed; deeper chains are cut and reported.
const MAX_CHAIN: usize = 64;

fn confidence(method: AttributionMethod) -> f32 {
    match method {
        AttributionMethod::Declared => 1.0,
        AttributionMethod::IssuanceChain => 0.95,
        AttributionMethod::PrincipalAlias => 0.9,
        AttributionMethod::SessionChain => 0.8,
        AttributionMethod::Fingerprint => 0.5,
        AttributionMethod::None => 0.0,
    }
}

enum Found {
    Agent(AgentId),
    Human(HumanId),
    Ambiguous(String, Vec<HumanId>),
}

impl LineageGraph {
    fn found(
        &self,
        chain: Vec<CredentialId>,
        found: Found,
        method: AttributionMethod,
    ) -> Attribution {
        match found {
            Found::Agent(agent) => Attribution {
                root_credential: chain.last().cloned(),
                owner: self.owner_of(&agent).cloned(),
                agent: Some(agent),
                chain,
                method,
                confidence: confidence(method),
                unattributed_reason: None,
            },
            Found::Human(owner) => Attribution {
                root_credential: chain.last().cloned(),
                owner: Some(owner),
                agent: None,
                chain,
                method,
                confidence: confidence(method),
                unattributed_reason: None,
            },
            Found::Ambiguous(alias, humans) => {
                Attribution::unattributed(
                    chain,
                    format!(
                    "alias `{alias}` is claimed by several humans ({}); fix the inventory aliases",
                    humans.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                ),
                )
            }
        }
    }

    fn by_alias(&self, alias: &str) -> Option<Found> {
        match self.human_by_alias(alias) {
            Ok(Some(h)) => Some(Found::Human(h)),
            Ok(None) => None,
            Err(hs) => Some(Found::Ambiguous(alias.to_owned(), hs)),
        }
    }

    /// The agent or human a principal (the IAM user owning an access key, a GitHub
    /// login, an Entra app, a Vault display name) maps to: a binding to an agent,
    /// an owner learned from the logs, or a human alias.
    fn by_iam_user(&self, user: &str) -> Option<Found> {
        let name = user.rsplit('/').next().unwrap_or(user);
        if let Some(a) = self.principal_agent.get(name) {
            return Some(Found::Agent(a.clone()));
        }
        if let Some(h) = self.learned_owner.get(name) {
            return Some(Found::Human(h.clone()));
        }
        self.by_alias(name)
    }

    /// The agent or human a role session maps to: role binding, then the session
    /// name or `sourceIdentity` as a human alias (SSO sessions carry the user's name).
    fn by_session(
        &self,
        role: Option<&str>,
        session_name: Option<&str>,
        source_identity: Option<&str>,
    ) -> Option<Found> {
        if let Some(si) = source_identity {
            if let Some(f) = self.by_alias(si) {
                return Some(f);
            }
        }
        if let Some(role) = role {
            let name = role.rsplit('/').next().unwrap_or(role);
            if let Some(a) = self
                .role_agent
                .get(role)
                .or_else(|| self.role_agent.get(name))
            {
                return Some(Found::Agent(a.clone()));
            }
        }
        session_name.and_then(|s| self.by_alias(s))
    }

    /// Attributes one use to an agent and a human, as of the graph's current state.
    pub fn attribute(&self, use_: &CredentialUse) -> Attribution {
        let Some(cred) = &use_.credential else {
            return self.attribute_without_credential(use_);
        };
        let mut chain = vec![cred.id.clone()];
        let mut current = cred.id.clone();
        let mut hops = 0usize;
        loop {
            if let Some(agent) = self.declared_agent(&current) {
                let method = if hops == 0 {
                    AttributionMethod::Declared
                } else {
                    AttributionMethod::IssuanceChain
                };
                return self.found(chain, Found::Agent(agent.clone()), method);
            }
            let meta = self.credential(&current);
            // A key (or a user's own session) belongs to its IAM user before it belongs
            // to whoever created it.
            if let Some(user) = meta.and_then(|m| iam_user_of(m.principal.as_deref()?)) {
                if let Some(found) = self.by_iam_user(user) {
                    let method = if hops == 0 {
                        AttributionMethod::PrincipalAlias
                    } else {
                        AttributionMethod::IssuanceChain
                    };
                    return self.found(chain, found, method);
                }
            }
            match self.parent_of(&current) {
                // The chain is the set of credentials visited so far.
                Some((parent, _)) if chain.contains(parent) => {
                    return Attribution::unattributed(
                        chain,
                        format!("issuance cycle: {current} was issued from {parent}, which is already in its chain"),
                    )
                }
                Some((parent, Edge::IssuedFrom { .. })) if chain.len() < MAX_CHAIN => {
                    current = parent.clone();
                    chain.push(current.clone());
                    hops += 1;
                }
                Some(_) => {
                    return Attribution::unattributed(
                        chain,
                        format!("issuance chain longer than {MAX_CHAIN} credentials"),
                    )
                }
                None => break,
            }
        }
        // `current` is the root and nothing bound it: fall back to what the session says.
        let root = self.credential(&current);
        let from_root = root.and_then(|m| {
            self.by_session(
                m.principal.as_deref().filter(|p| p.contains(":role/")),
                m.session_name.as_deref(),
                m.source_identity.as_deref(),
            )
        });
        if let Some(found) = from_root {
            let method = if hops == 0 {
                AttributionMethod::SessionChain
            } else {
                AttributionMethod::IssuanceChain
            };
            return self.found(chain, found, method);
        }
        if hops == 0 {
            if let Some(found) = self.by_session(
                use_.session.issuer_arn.as_deref(),
                use_.session.role_session_name.as_deref(),
                use_.session.source_identity.as_deref(),
            ) {
                return self.found(chain, found, AttributionMethod::SessionChain);
            }
        }
        if let Some(agent) = use_
            .client
            .user_agent
            .as_deref()
            .and_then(|ua| self.inventory.agent_by_user_agent(ua))
        {
            return self.found(
                chain,
                Found::Agent(agent.id.clone()),
                AttributionMethod::Fingerprint,
            );
        }
        let reason = unbound_reason(&current, root.map(|m| (m.kind, m.principal.clone())), hops);
        Attribution::unattributed(chain, reason)
    }

    fn attribute_without_credential(&self, use_: &CredentialUse) -> Attribution {
        let p = &use_.principal;
        let found = match p.kind {
            PrincipalKind::IamUser | PrincipalKind::User | PrincipalKind::ServicePrincipal => {
                p.name.as_deref().and_then(|n| self.by_iam_user(n))
            }
            PrincipalKind::AssumedRole => self.by_session(
                use_.session.issuer_arn.as_deref(),
                use_.session.role_session_name.as_deref(),
                use_.session.source_identity.as_deref(),
            ),
            // A federated sign-in (SAML, web identity) names the user, and the role it
            // asks for is the call's resource.
            PrincipalKind::SsoUser | PrincipalKind::FederatedUser => p
                .name
                .as_deref()
                .and_then(|n| self.by_alias(n))
                .or_else(|| {
                    let role = use_.resources.iter().find(|r| r.contains(":role/"));
                    self.by_session(role.map(|r| r.as_str()), None, None)
                }),
            _ => None,
        };
        match found {
            Some(f) => self.found(Vec::new(), f, AttributionMethod::PrincipalAlias),
            None => Attribution::unattributed(
                Vec::new(),
                match p.kind {
                    PrincipalKind::Service => format!(
                        "no credential: the provider's own service `{}` acted",
                        p.name.as_deref().unwrap_or("?")
                    ),
                    _ => format!(
                        "the record names no credential and principal `{}` matches no inventory alias",
                        p.name.as_deref().or(p.arn.as_deref()).unwrap_or("?")
                    ),
                },
            ),
        }
    }
}

/// The IAM user name a credential principal names: a bare user name or a user ARN,
/// never a role.
fn iam_user_of(principal: &str) -> Option<&str> {
    if principal.contains(":user/") {
        principal.rsplit('/').next()
    } else if principal.contains(':') || principal.contains('/') {
        None
    } else {
        Some(principal)
    }
}

fn unbound_reason(
    root: &CredentialId,
    meta: Option<(CredentialKind, Option<SmolStr>)>,
    hops: usize,
) -> String {
    let via = if hops > 0 {
        format!(" (reached through {hops} issuance hop(s))")
    } else {
        String::new()
    };
    match meta {
        Some((CredentialKind::AwsSessionKey, principal))
            if principal.as_deref().is_none_or(|p| p.contains(":role/")) =>
        {
            format!(
            "root credential {root} is a session whose issuance is not in the logs{via}, and its role `{}` is bound to no agent",
            principal.as_deref().unwrap_or("unknown")
        )
        }
        Some((_, Some(principal))) => format!(
            "root credential {root}{via} belongs to `{principal}`, which is bound to no agent and is no human's alias"
        ),
        _ => format!("root credential {root}{via} is not in the inventory and its principal is unknown"),
    }
}

/// The lineage path of an attribution: used credential → … → root → agent → human.
pub fn lineage_path(a: &Attribution) -> Vec<LineageStep> {
    let mut path: Vec<LineageStep> = a
        .chain
        .iter()
        .enumerate()
        .map(|(i, c)| LineageStep {
            node: SmolStr::new_static("credential"),
            id: c.0.clone(),
            via: if i == 0 {
                AttributionMethod::Declared
            } else {
                AttributionMethod::IssuanceChain
            },
        })
        .collect();
    if let Some(agent) = &a.agent {
        path.push(LineageStep {
            node: SmolStr::new_static("agent"),
            id: agent.0.clone(),
            via: a.method,
        });
    }
    if let Some(owner) = &a.owner {
        path.push(LineageStep {
            node: SmolStr::new_static("human"),
            id: owner.0.clone(),
            via: if a.agent.is_some() {
                AttributionMethod::Declared
            } else {
                a.method
            },
        });
    }
    path
}
