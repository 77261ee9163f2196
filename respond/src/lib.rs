//! `lineage-respond` turns revocation requests into real API calls, safely. It owns
//! the executors (AWS IAM, Vault/OpenBao, GitHub, Entra ID), the response policy and
//! the ledger; it never decides what deserves revocation (the detectors do) and
//! never writes alerts (the sinks do).
//!
//! Every request goes through the same gate, in this order: the idempotency
//! [`ledger`] (a key already done, executing or waiting for approval is a no-op), the
//! [`policy`] (denylist, allowlist, the mode, the evidence, dry-run, rate limit), the
//! executor's `check` (a revocation already in effect at the provider is recorded
//! done without a call), then the intent in the ledger and the executor for its
//! kind, with retries for transient failures. Dry-run is the default: nothing is called until the configuration turns
//! it off *and* an allowlist rule matches. Every step is recorded in the ledger.
#![warn(missing_docs, unreachable_pub)]

pub mod aws;
pub mod entra;
pub mod github;
pub mod ledger;
pub mod policy;
pub mod vault;

use std::time::Duration;

use lineage_core::{Action, ActionKind, ActionStatus};
use serde::{Deserialize, Serialize};

pub use ledger::{Ledger, LedgerEntry};
pub use policy::{Decision, Mode, Policy, PolicyConfig};

/// Why an executor call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// Worth retrying: a 5xx, a 429, a timeout, a connection error.
    #[error("transient failure: {0}")]
    Retryable(String),
    /// Not worth retrying: a 4xx other than 429, a missing target field.
    #[error("{0}")]
    Permanent(String),
}

/// A revocation executor for some action kinds.
pub trait Executor: Send + Sync {
    /// Short name (`aws`, `vault`, `github`, `entra`), used in ledger records.
    fn name(&self) -> &'static str;
    /// The action kinds it executes.
    fn kinds(&self) -> &'static [ActionKind];
    /// Performs the revocation; returns what was done, in words.
    fn execute(&self, action: &Action) -> Result<String, ExecError>;
    /// Whether what `action` asks for is already in effect at the provider:
    /// `Some(true)` yes, `Some(false)` no, `None` this executor cannot tell. Asked of
    /// an intent that a crash left without a result, before anything is retried.
    fn check(&self, action: &Action) -> Result<Option<bool>, ExecError> {
        let _ = action;
        Ok(None)
    }
}

/// Test hook: when `LINEAGE_PAUSEPOINT` names `point`, the process sleeps 300 ms
/// there (tests widen a race window to prove the ledger lock closes it). Points:
/// `approve-after-read` (a pending request read, not yet decided).
pub fn pausepoint(point: &str) {
    if std::env::var("LINEAGE_PAUSEPOINT").is_ok_and(|p| p == point) {
        tracing::warn!(point, "LINEAGE_PAUSEPOINT: pausing 300 ms");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Test hook: when `LINEAGE_FAILPOINT` names `point`, the process kills itself with
/// SIGKILL there (tests prove what a crash at that exact point leaves behind).
/// Points: `respond-after-execute` (the executor returned, its result not yet in
/// the ledger).
pub fn failpoint(point: &str) {
    if std::env::var("LINEAGE_FAILPOINT").is_ok_and(|p| p == point) {
        tracing::warn!(point, "LINEAGE_FAILPOINT: killing this process");
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Retry settings for transient executor failures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included (default 3).
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, doubled each time (default 200 ms).
    #[serde(default = "d_backoff")]
    pub backoff_ms: u64,
}

const fn d_attempts() -> u32 {
    3
}
const fn d_backoff() -> u64 {
    200
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: d_attempts(),
            backoff_ms: d_backoff(),
        }
    }
}

/// The `[response]` settings: policy, retries, where the ledger lives, and the
/// executors to build (an executor whose table is absent is not built, so its kinds
/// fail with "no executor is configured").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// Who may be revoked, by which detectors, how fast; dry-run by default.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Retries of transient executor failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The write-ahead ledger file (default: `ledger.jsonl` in `[run] state_dir`,
    /// so `lineage run`, `lineage actions` and `replay --respond` with one config
    /// share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<std::path::PathBuf>,
    /// AWS IAM executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<aws::AwsExecutorConfig>,
    /// Vault / OpenBao executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<vault::VaultExecutorConfig>,
    /// GitHub executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<github::GitHubExecutorConfig>,
    /// Entra ID (Microsoft Graph) executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<entra::EntraExecutorConfig>,
}

/// Builds the responder the settings describe, opening the ledger at `ledger` (the
/// settings' `ledger`, or the caller's default). Modes that execute call
/// [`Responder::reconcile`] next, to settle what a crash left.
pub fn build_responder(
    config: &ResponseConfig,
    ledger: &std::path::Path,
) -> Result<Responder, ledger::LedgerError> {
    let mut executors: Vec<Box<dyn Executor>> = Vec::new();
    if let Some(c) = &config.aws {
        executors.push(Box::new(aws::AwsExecutor::new(c.clone())));
    }
    if let Some(c) = &config.vault {
        executors.push(Box::new(vault::VaultExecutor::new(c.clone())));
    }
    if let Some(c) = &config.github {
        executors.push(Box::new(github::GitHubExecutor::new(c.clone())));
    }
    if let Some(c) = &config.entra {
        executors.push(Box::new(entra::EntraExecutor::new(c.clone())));
    }
    Ok(Responder::new(
        Policy::new(config.policy.clone()),
        Ledger::open(config.ledger.as_deref().unwrap_or(ledger))?,
        executors,
        config.retry.clone(),
    ))
}

/// The gate every revocation request goes through.
pub struct Responder {
    policy: Policy,
    ledger: Ledger,
    executors: Vec<Box<dyn Executor>>,
    retry: RetryConfig,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field(
                "executors",
                &self.executors.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Responder {
    /// A responder with a policy, a ledger and executors.
    pub fn new(
        policy: Policy,
        ledger: Ledger,
        executors: Vec<Box<dyn Executor>>,
        retry: RetryConfig,
    ) -> Self {
        Self {
            policy,
            ledger,
            executors,
            retry,
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Submits a request (raised by `action.detector`, or `operator` for a manual
    /// sweep); returns the action with its final status and result. A key already
    /// done, executing or waiting for approval is a no-op that returns its record.
    pub fn submit(&mut self, mut action: Action) -> Result<Action, ledger::LedgerError> {
        let _lock = self.ledger.lock()?;
        if let Some(prev) = self.ledger.get(&action.idempotency_key) {
            if matches!(
                prev.action.status,
                ActionStatus::Done | ActionStatus::PendingApproval | ActionStatus::Executing
            ) {
                return Ok(prev.action.clone());
            }
        }
        let detector = action.detector.clone();
        let decision = self.policy.decide(&action, &detector);
        self.apply(decision, &mut action, &detector, None)?;
        Ok(action)
    }

    /// Approves a queued request (by idempotency key or short id) on behalf of `by`
    /// and runs it through the policy again as `auto`; denylist, allowlist, dry-run
    /// and the rate limit still apply. The approver is recorded in the ledger.
    pub fn approve(&mut self, id: &str, by: &str) -> Result<Action, ledger::LedgerError> {
        let _lock = self.ledger.lock()?;
        let mut action = self.pending(id)?;
        pausepoint("approve-after-read");
        let detector = action.detector.clone();
        let decision = self.policy.decide_approved(&action);
        self.apply(decision, &mut action, &detector, Some(by))?;
        Ok(action)
    }

    /// Rejects a queued request on behalf of `by`: it is recorded as refused and
    /// never executed.
    pub fn reject(
        &mut self,
        id: &str,
        reason: &str,
        by: &str,
    ) -> Result<Action, ledger::LedgerError> {
        let _lock = self.ledger.lock()?;
        let mut action = self.pending(id)?;
        let detector = action.detector.clone();
        action.status = ActionStatus::Refused;
        action.result = Some(format!("rejected by {by}: {reason}"));
        self.ledger.record(&action, &detector, Some(by))?;
        Ok(action)
    }

    /// The queued request `id` (lock held).
    fn pending(&self, id: &str) -> Result<Action, ledger::LedgerError> {
        let entry = self
            .ledger
            .find(id)
            .ok_or_else(|| ledger::LedgerError::NotFound(id.to_owned()))?;
        if entry.action.status != ActionStatus::PendingApproval {
            return Err(ledger::LedgerError::NotPending(
                id.to_owned(),
                entry.action.status,
            ));
        }
        let mut action = entry.action.clone();
        if action.detector.is_empty() {
            // Written before actions carried their detector.
            action.detector = entry.detector.clone();
        }
        Ok(action)
    }

    /// Settles every intent a crash left without a result: the executor is asked
    /// whether the revocation is in effect. Done → recorded done, nothing called;
    /// not done → executed now (the policy decided it before the crash); unknown →
    /// recorded failed with the reason, never executed a second time blindly.
    pub fn reconcile(&mut self) -> Result<Vec<Action>, ledger::LedgerError> {
        let _lock = self.ledger.lock()?;
        let mut settled = Vec::new();
        for entry in self.ledger.unresolved() {
            let mut action = entry.action.clone();
            let detector = entry.detector.clone();
            let executor = self
                .executors
                .iter()
                .find(|e| e.kinds().contains(&action.kind));
            let verdict = match executor {
                None => Err(format!("no executor is configured for {:?}", action.kind)),
                Some(e) => e.check(&action).map_err(|e| e.to_string()),
            };
            let name = executor.map_or("none", |e| e.name());
            match verdict {
                Ok(Some(true)) => {
                    action.status = ActionStatus::Done;
                    action.result = Some(format!(
                        "{name}: reconciled after a restart: already in effect at the provider (the executor was not called again)"
                    ));
                    self.ledger
                        .record(&action, &detector, entry.actor.as_deref())?;
                }
                Ok(Some(false)) => {
                    tracing::warn!(key = %action.idempotency_key, "an interrupted revocation did not take effect; executing it now");
                    self.execute(&mut action, &detector, entry.actor.as_deref())?;
                }
                Ok(None) | Err(_) => {
                    let why = match verdict {
                        Err(e) => e,
                        _ => format!("{name} cannot tell whether it took effect"),
                    };
                    action.status = ActionStatus::Failed;
                    action.result = Some(format!(
                        "{name}: outcome unknown: the process stopped during the call and {why}; check the credential and submit again if it is still active"
                    ));
                    self.ledger
                        .record(&action, &detector, entry.actor.as_deref())?;
                }
            }
            tracing::info!(key = %action.idempotency_key, status = ?action.status, "reconciled an interrupted revocation");
            settled.push(action);
        }
        Ok(settled)
    }

    /// Carries out a policy decision on `action` and records it (lock held).
    fn apply(
        &mut self,
        decision: Decision,
        action: &mut Action,
        detector: &str,
        actor: Option<&str>,
    ) -> Result<(), ledger::LedgerError> {
        let (status, why) = match decision {
            Decision::Execute => return self.execute(action, detector, actor),
            Decision::Refuse(why) => (ActionStatus::Refused, why),
            Decision::Queue(why) => (ActionStatus::PendingApproval, why),
            Decision::DryRun(why) => (ActionStatus::DryRun, why),
        };
        action.status = status;
        action.result = Some(why);
        self.ledger.record(action, detector, actor)
    }

    /// Records the intent, calls the executor (with retries), records the result.
    fn execute(
        &mut self,
        action: &mut Action,
        detector: &str,
        actor: Option<&str>,
    ) -> Result<(), ledger::LedgerError> {
        let Some(executor) = self
            .executors
            .iter()
            .find(|e| e.kinds().contains(&action.kind))
        else {
            action.status = ActionStatus::Failed;
            action.result = Some(format!("no executor is configured for {:?}", action.kind));
            return self.ledger.record(action, detector, actor);
        };
        // Already in effect (revoked by hand, or by another process with its own
        // ledger after a partition moved): recorded done, nothing called.
        if let Ok(Some(true)) = executor.check(action) {
            action.status = ActionStatus::Done;
            action.result = Some(format!(
                "{}: already in effect at the provider; nothing called",
                executor.name()
            ));
            return self.ledger.record(action, detector, actor);
        }
        action.status = ActionStatus::Executing;
        action.result = Some(format!("{}: calling", executor.name()));
        self.ledger.record(action, detector, actor)?;
        let mut delay = Duration::from_millis(self.retry.backoff_ms);
        let attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=attempts {
            match executor.execute(action) {
                Ok(done) => {
                    failpoint("respond-after-execute");
                    action.status = ActionStatus::Done;
                    action.result = Some(format!("{}: {done}", executor.name()));
                    break;
                }
                Err(ExecError::Retryable(why)) if attempt < attempts => {
                    tracing::warn!(key = %action.idempotency_key, attempt, %why, "revocation failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    action.status = ActionStatus::Failed;
                    action.result = Some(format!(
                        "{}: {e} (after {attempt} attempt(s))",
                        executor.name()
                    ));
                    break;
                }
            }
        }
        self.ledger.record(action, detector, actor)
    }
}
