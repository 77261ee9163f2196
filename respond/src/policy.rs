//! The response policy: who may be revoked, by which detectors, how fast.
//!
//! ```toml
//! [response]
//! dry_run = false                 # default true: nothing is ever called
//! rate_limit_per_minute = 10      # executions per minute; more are queued for approval
//! default_mode = "approve"        # auto | approve | never, for detectors not listed
//! modes = { departed-owner = "auto", operator = "auto" }
//!
//! [[response.allow]]              # a request must match one allow rule…
//! owner = "*"
//! kind = "deactivate-aws-access-key"
//!
//! [[response.deny]]               # …and no deny rule (break-glass identities)
//! owner = "breakglass-*"
//! ```
//!
//! Rule fields are globs over the request: `credential` (id), `owner` (human),
//! `agent`, `kind` (action kind); an absent field matches anything. Owner and agent
//! come from the request's `target` (`owner`, `agent`) as detectors fill it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use lineage_core::{Action, ActionKind};
use serde::{Deserialize, Serialize};

/// How requests from a detector are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Execute (subject to dry-run, allow/deny and the rate limit).
    Auto,
    /// Queue for `lineage actions approve ID`.
    Approve,
    /// Record and refuse.
    Never,
}

/// One allow or deny rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Credential id glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Owner (human id) glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Agent id glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Action kind glob (`deactivate-aws-access-key`, `revoke-vault-accessor`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The `[response]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Record what would be done without calling anything (default true).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Executions per minute at most; further requests are queued (default 10).
    #[serde(default = "d_rate")]
    pub rate_limit_per_minute: u32,
    /// Mode for detectors not in `modes` (default `approve`).
    #[serde(default = "d_mode")]
    pub default_mode: Mode,
    /// Mode per detector name (`operator` is the manual `lineage revoke` sweep).
    /// Default: `departed-owner` and `operator` are `auto`.
    #[serde(default = "d_modes")]
    pub modes: BTreeMap<String, Mode>,
    /// A request must match at least one of these (default: none, so nothing runs).
    #[serde(default)]
    pub allow: Vec<Rule>,
    /// …and none of these.
    #[serde(default)]
    pub deny: Vec<Rule>,
}

const fn yes() -> bool {
    true
}
const fn d_rate() -> u32 {
    10
}
const fn d_mode() -> Mode {
    Mode::Approve
}
fn d_modes() -> BTreeMap<String, Mode> {
    [
        ("departed-owner".to_owned(), Mode::Auto),
        ("operator".to_owned(), Mode::Auto),
    ]
    .into()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dry_run: true,
            rate_limit_per_minute: d_rate(),
            default_mode: d_mode(),
            modes: d_modes(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// What the policy says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call the executor.
    Execute,
    /// Record what would be done.
    DryRun(String),
    /// Queue for approval.
    Queue(String),
    /// Do not do it.
    Refuse(String),
}

/// The policy with its rate-limit window.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    executed: VecDeque<Instant>,
}

fn glob_match(pattern: &str, text: &str) -> bool {
    // `*` matches any run of characters, `?` one; everything else literally.
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn kind_name(kind: ActionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Rule {
    fn matches(&self, action: &Action) -> bool {
        let field = |name: &str| {
            action
                .target
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or("")
        };
        let ok = |pattern: &Option<String>, value: &str| {
            pattern.as_deref().is_none_or(|p| glob_match(p, value))
        };
        ok(&self.credential, action.credential.id.as_str())
            && ok(&self.owner, field("owner"))
            && ok(&self.agent, field("agent"))
            && ok(&self.kind, &kind_name(action.kind))
    }
}

impl Policy {
    /// A policy from settings.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            config,
            executed: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Decides a request raised by `detector`.
    pub fn decide(&mut self, action: &Action, detector: &str) -> Decision {
        let mode = self
            .config
            .modes
            .get(detector)
            .copied()
            .unwrap_or(self.config.default_mode);
        self.decide_with(action, mode, detector)
    }

    /// Decides a request an operator approved.
    pub fn decide_approved(&mut self, action: &Action) -> Decision {
        self.decide_with(action, Mode::Auto, "approved")
    }

    fn decide_with(&mut self, action: &Action, mode: Mode, detector: &str) -> Decision {
        if let Some(i) = self.config.deny.iter().position(|r| r.matches(action)) {
            return Decision::Refuse(format!("denylist rule #{} matches", i + 1));
        }
        if !self.config.allow.iter().any(|r| r.matches(action)) {
            return Decision::Refuse(
                "no allowlist rule matches (response.allow is empty or excludes it)".into(),
            );
        }
        match mode {
            Mode::Never => {
                return Decision::Refuse(format!("mode `never` for detector `{detector}`"))
            }
            Mode::Approve => {
                return Decision::Queue(format!(
                    "mode `approve` for detector `{detector}`: run `lineage actions approve`"
                ))
            }
            Mode::Auto => {}
        }
        if self.config.dry_run {
            return Decision::DryRun(format!(
                "dry run: would {} {}",
                kind_name(action.kind),
                action.credential.id
            ));
        }
        let now = Instant::now();
        while self
            .executed
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs() >= 60)
        {
            self.executed.pop_front();
        }
        if self.executed.len() >= self.config.rate_limit_per_minute as usize {
            return Decision::Queue(format!(
                "rate limit of {} executions per minute reached",
                self.config.rate_limit_per_minute
            ));
        }
        self.executed.push_back(now);
        Decision::Execute
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use lineage_core::{ActionStatus, CredentialId, CredentialKind, CredentialRef};
    use serde_json::json;

    fn action(id: &str, owner: &str) -> Action {
        Action {
            idempotency_key: format!("k-{id}"),
            kind: ActionKind::DeactivateAwsAccessKey,
            credential: CredentialRef {
                kind: CredentialKind::AwsAccessKey,
                id: CredentialId::new(id),
                issuer: None,
            },
            reason: "r".into(),
            detector: "departed-owner".into(),
            requested_at: Utc::now(),
            status: ActionStatus::Requested,
            result: None,
            target: json!({ "owner": owner, "user_name": "u" }),
        }
    }

    #[test]
    fn defaults_never_execute() {
        let mut p = Policy::new(PolicyConfig::default());
        assert!(matches!(
            p.decide(&action("AKIA1", "alice"), "departed-owner"),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn allow_deny_modes_dry_run_and_rate_limit() {
        let mut cfg = PolicyConfig {
            allow: vec![Rule {
                owner: Some("*".into()),
                ..Rule::default()
            }],
            deny: vec![Rule {
                owner: Some("breakglass-*".into()),
                ..Rule::default()
            }],
            ..PolicyConfig::default()
        };
        let mut p = Policy::new(cfg.clone());
        assert!(matches!(
            p.decide(&action("AKIA1", "alice"), "departed-owner"),
            Decision::DryRun(_)
        ));
        assert!(matches!(
            p.decide(&action("AKIA1", "breakglass-ops"), "departed-owner"),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            p.decide(&action("AKIA1", "alice"), "anomaly"),
            Decision::Queue(_)
        ));
        cfg.modes.insert("anomaly".into(), Mode::Never);
        cfg.dry_run = false;
        cfg.rate_limit_per_minute = 2;
        let mut p = Policy::new(cfg);
        assert!(matches!(
            p.decide(&action("AKIA1", "alice"), "anomaly"),
            Decision::Refuse(_)
        ));
        assert_eq!(
            p.decide(&action("AKIA1", "alice"), "departed-owner"),
            Decision::Execute
        );
        assert_eq!(
            p.decide(&action("AKIA2", "alice"), "departed-owner"),
            Decision::Execute
        );
        assert!(matches!(
            p.decide(&action("AKIA3", "alice"), "departed-owner"),
            Decision::Queue(_)
        ));
    }

    #[test]
    fn globs() {
        assert!(glob_match("AKIA*", "AKIA123"));
        assert!(glob_match("*-svc-?", "billing-svc-1"));
        assert!(!glob_match("AKIA*", "ASIA123"));
    }
}
