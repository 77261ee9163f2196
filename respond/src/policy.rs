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
//! `agent`, `kind` (action kind), `principal` (the credential's own principal: the
//! IAM user of a key, the role of a session, the app or login) and `account` (the
//! AWS account, GitHub org or tenant that issued it); an absent field matches
//! anything. Owner and agent are what attribution concluded; principal and account
//! are the credential's own, so a deny on them protects a break-glass credential
//! even when attribution ties it to the wrong person:
//!
//! ```toml
//! [[response.policy.deny]]
//! principal = "breakglass-*"      # IAM users / roles named breakglass-…, whoever attribution names
//! ```
//!
//! **Evidence.** A request carries what it rests on ([`lineage_core::Evidence`]): the
//! attribution method that tied the credential to its owner and where the owner's
//! departure is known from. `auto` executes only on `automatic_evidence` (default:
//! `declared`, `issuance-chain`, `principal-alias`); a request resting on a session
//! name or `sourceIdentity` (chosen by the caller), or on a user agent, is queued
//! with its evidence for a person to approve. A departure learned from the logs (an
//! account disabled, a member removed: reversible, and forgeable by whoever writes to
//! the source) is handled in `log_departures` mode (default `approve`); an inventory
//! departure follows the detector's mode. Revoking every session of an AWS role is
//! role-wide and handled in `role_sessions` mode (default `approve`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use lineage_core::event::AttributionMethod;
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
    /// The credential's own principal glob: IAM user of a key, role of a session,
    /// app id or login (not what attribution concluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Issuing account glob: AWS account, GitHub org, Entra tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
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
    /// Attribution methods strong enough to execute on automatically; a request
    /// resting on anything weaker is queued for approval with its evidence.
    #[serde(default = "d_evidence")]
    pub automatic_evidence: Vec<AttributionMethod>,
    /// Mode for requests whose owner's departure was learned from the logs (default
    /// `approve`); inventory departures follow the detector's mode.
    #[serde(default = "d_mode")]
    pub log_departures: Mode,
    /// Mode for role-wide actions (every session of an AWS role; default `approve`).
    #[serde(default = "d_mode")]
    pub role_sessions: Mode,
    /// Execute automatically on a CloudTrail record only when its file validated
    /// against CloudTrail's signed digests (`lineage replay --digest-public-keys`);
    /// anything else (not covered, tampered, unsigned, or read live) is queued for
    /// approval. Default false. Other sources are not affected: they have no
    /// digests.
    #[serde(default)]
    pub require_validated_cloudtrail: bool,
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
fn d_evidence() -> Vec<AttributionMethod> {
    vec![
        AttributionMethod::Declared,
        AttributionMethod::IssuanceChain,
        AttributionMethod::PrincipalAlias,
    ]
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
            automatic_evidence: d_evidence(),
            log_departures: d_mode(),
            role_sessions: d_mode(),
            require_validated_cloudtrail: false,
        }
    }
}

/// The stricter of two modes (`never` over `approve` over `auto`).
fn stricter(a: Mode, b: Mode) -> Mode {
    let rank = |m: Mode| match m {
        Mode::Never => 0,
        Mode::Approve => 1,
        Mode::Auto => 2,
    };
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

fn method_name(m: AttributionMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Approve => "approve",
        Mode::Never => "never",
    }
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
        let principal = ["user_name", "role_name", "app_id", "owner_login"]
            .iter()
            .map(|k| field(k))
            .find(|v| !v.is_empty())
            .unwrap_or("");
        let account = ["account", "org", "tenant"]
            .iter()
            .map(|k| field(k))
            .find(|v| !v.is_empty())
            .or(action.credential.issuer.as_deref())
            .unwrap_or("");
        ok(&self.credential, action.credential.id.as_str())
            && ok(&self.owner, field("owner"))
            && ok(&self.agent, field("agent"))
            && ok(&self.kind, &kind_name(action.kind))
            && ok(&self.principal, principal)
            && ok(&self.account, account)
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
        self.decide_with(action, mode, detector, false)
    }

    /// Decides a request an operator approved (its evidence was shown to them).
    pub fn decide_approved(&mut self, action: &Action) -> Decision {
        self.decide_with(action, Mode::Auto, "approved", true)
    }

    fn decide_with(
        &mut self,
        action: &Action,
        mut mode: Mode,
        detector: &str,
        approved: bool,
    ) -> Decision {
        if let Some(i) = self.config.deny.iter().position(|r| r.matches(action)) {
            return Decision::Refuse(format!("denylist rule #{} matches", i + 1));
        }
        if !self.config.allow.iter().any(|r| r.matches(action)) {
            return Decision::Refuse(
                "no allowlist rule matches (response.allow is empty or excludes it)".into(),
            );
        }
        let mut why_mode = format!("mode `{}` for detector `{detector}`", mode_name(mode));
        if !approved {
            if action.kind == ActionKind::RevokeAwsRoleSessions
                && stricter(mode, self.config.role_sessions) != mode
            {
                mode = self.config.role_sessions;
                why_mode = format!(
                    "mode `{}` for role-wide actions (every session of the role; `role_sessions`)",
                    mode_name(mode)
                );
            }
            if let Some(e) = &action.evidence {
                if e.departure.as_deref() == Some("logs")
                    && stricter(mode, self.config.log_departures) != mode
                {
                    mode = self.config.log_departures;
                    why_mode = format!(
                        "mode `{}` for departures learned from the logs (reversible, and written by whoever can write to the source; `log_departures`)",
                        mode_name(mode)
                    );
                }
                if mode == Mode::Auto
                    && self.config.require_validated_cloudtrail
                    && e.record_integrity == Some(lineage_core::RecordIntegrity::NotValidated)
                {
                    return Decision::Queue(
                        "the CloudTrail record it rests on is from a file not validated against \
                         CloudTrail's signed digest files (`require_validated_cloudtrail`): check \
                         it with `lineage verify`, then run `lineage actions approve`"
                            .into(),
                    );
                }
                if mode == Mode::Auto && !self.config.automatic_evidence.contains(&e.method) {
                    return Decision::Queue(format!(
                        "evidence too weak to execute automatically: the credential is tied to its owner by `{}` (confidence {:.2}), not by {}; review and run `lineage actions approve`",
                        method_name(e.method),
                        e.confidence,
                        self.config
                            .automatic_evidence
                            .iter()
                            .map(|m| format!("`{}`", method_name(*m)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        match mode {
            Mode::Never => return Decision::Refuse(why_mode),
            Mode::Approve => {
                return Decision::Queue(format!("{why_mode}: run `lineage actions approve`"))
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
            evidence: None,
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

    fn live() -> PolicyConfig {
        PolicyConfig {
            dry_run: false,
            allow: vec![Rule {
                owner: Some("*".into()),
                ..Rule::default()
            }],
            ..PolicyConfig::default()
        }
    }

    fn with_evidence(method: AttributionMethod, departure: &str) -> Action {
        let mut a = action("AKIA1", "alice");
        a.evidence = Some(lineage_core::Evidence {
            method,
            confidence: 0.5,
            departure: Some(departure.into()),
            record_integrity: None,
        });
        a
    }

    #[test]
    fn an_unvalidated_cloudtrail_record_waits_for_a_person_when_validation_is_required() {
        use lineage_core::RecordIntegrity;
        let mut p = Policy::new(PolicyConfig {
            require_validated_cloudtrail: true,
            ..live()
        });
        let mut a = with_evidence(AttributionMethod::Declared, "inventory");
        a.evidence.as_mut().unwrap().record_integrity = Some(RecordIntegrity::NotValidated);
        match p.decide(&a, "departed-owner") {
            Decision::Queue(why) => assert!(why.contains("require_validated_cloudtrail"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.decide_approved(&a), Decision::Execute);
        a.evidence.as_mut().unwrap().record_integrity = Some(RecordIntegrity::DigestValidated);
        assert_eq!(p.decide(&a, "departed-owner"), Decision::Execute);
        // Other sources carry no integrity mark and are not held back.
        a.evidence.as_mut().unwrap().record_integrity = None;
        assert_eq!(p.decide(&a, "departed-owner"), Decision::Execute);
        // Without the setting, an unvalidated record executes as before.
        let mut p = Policy::new(live());
        a.evidence.as_mut().unwrap().record_integrity = Some(RecordIntegrity::NotValidated);
        assert_eq!(p.decide(&a, "departed-owner"), Decision::Execute);
    }

    #[test]
    fn weak_evidence_is_queued_with_its_reason_and_runs_once_approved() {
        let mut p = Policy::new(live());
        for weak in [
            AttributionMethod::Fingerprint,
            AttributionMethod::SessionChain,
        ] {
            let a = with_evidence(weak, "inventory");
            match p.decide(&a, "departed-owner") {
                Decision::Queue(why) => {
                    assert!(why.contains("evidence too weak"), "{why}");
                    assert!(why.contains(&method_name(weak)), "{why}");
                }
                other => panic!("{weak:?}: {other:?}"),
            }
            assert_eq!(p.decide_approved(&a), Decision::Execute);
        }
        for strong in [
            AttributionMethod::Declared,
            AttributionMethod::IssuanceChain,
            AttributionMethod::PrincipalAlias,
        ] {
            let a = with_evidence(strong, "inventory");
            assert_eq!(
                p.decide(&a, "departed-owner"),
                Decision::Execute,
                "{strong:?}"
            );
        }
    }

    #[test]
    fn a_departure_from_the_logs_waits_for_a_person_unless_configured() {
        let a = with_evidence(AttributionMethod::Declared, "logs");
        let mut p = Policy::new(live());
        match p.decide(&a, "departed-owner") {
            Decision::Queue(why) => assert!(why.contains("log_departures"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut p = Policy::new(PolicyConfig {
            log_departures: Mode::Auto,
            ..live()
        });
        assert_eq!(p.decide(&a, "departed-owner"), Decision::Execute);
    }

    #[test]
    fn a_break_glass_principal_is_protected_whoever_attribution_names() {
        let mut cfg = live();
        cfg.deny.push(Rule {
            principal: Some("breakglass-*".into()),
            ..Rule::default()
        });
        let mut p = Policy::new(cfg);
        // Attribution (a user agent) says the key is alice's; the key is the
        // break-glass user's own.
        let mut a = with_evidence(AttributionMethod::Declared, "inventory");
        a.target =
            json!({ "owner": "alice", "user_name": "breakglass-admin", "account": "111122223333" });
        assert!(matches!(
            p.decide(&a, "departed-owner"),
            Decision::Refuse(_)
        ));
        assert!(matches!(p.decide_approved(&a), Decision::Refuse(_)));
        a.target["user_name"] = json!("svc-alice");
        assert_eq!(p.decide(&a, "departed-owner"), Decision::Execute);
        // Accounts are matched on the credential's own account.
        let mut p = Policy::new(PolicyConfig {
            deny: vec![Rule {
                account: Some("1111*".into()),
                ..Rule::default()
            }],
            ..live()
        });
        assert!(matches!(
            p.decide(&a, "departed-owner"),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn role_wide_revocation_waits_for_a_person_by_default() {
        let mut a = with_evidence(AttributionMethod::Declared, "inventory");
        a.kind = ActionKind::RevokeAwsRoleSessions;
        let mut p = Policy::new(live());
        match p.decide(&a, "departed-owner") {
            Decision::Queue(why) => assert!(why.contains("role_sessions"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
