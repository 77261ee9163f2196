//! Response: turning revocation requests into real API calls, safely.
//!
//! Every request goes through the same gate, in this order: the idempotency
//! [`ledger`] (a key already done or waiting for approval is a no-op), the
//! [`policy`] (denylist, allowlist, the detector's mode `auto` / `approve` / `never`,
//! dry-run, rate limit), then the executor for its kind, with retries for transient
//! failures. Dry-run is the default: nothing is called until the configuration turns
//! it off *and* an allowlist rule matches. Every step is recorded in the ledger.

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// Who may be revoked, by which detectors, how fast; dry-run by default.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Retries of transient executor failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The idempotency ledger file (default `lineage-state/ledger.jsonl`).
    #[serde(default = "d_ledger")]
    pub ledger: std::path::PathBuf,
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

fn d_ledger() -> std::path::PathBuf {
    "lineage-state/ledger.jsonl".into()
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            policy: PolicyConfig::default(),
            retry: RetryConfig::default(),
            ledger: d_ledger(),
            aws: None,
            vault: None,
            github: None,
            entra: None,
        }
    }
}

/// Builds the responder the settings describe, opening the ledger.
pub fn build_responder(config: &ResponseConfig) -> Result<Responder, ledger::LedgerError> {
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
        Ledger::open(&config.ledger)?,
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

    /// Submits a request raised by `detector` (or `operator` for manual sweeps);
    /// returns the action with its final status and result.
    pub fn submit(
        &mut self,
        mut action: Action,
        detector: &str,
    ) -> Result<Action, ledger::LedgerError> {
        if let Some(prev) = self.ledger.get(&action.idempotency_key) {
            if matches!(
                prev.action.status,
                ActionStatus::Done | ActionStatus::PendingApproval
            ) {
                return Ok(prev.action.clone());
            }
        }
        let decision = self.policy.decide(&action, detector);
        self.apply(decision, &mut action);
        self.ledger.record(&action, detector)?;
        Ok(action)
    }

    /// Approves a queued request (by idempotency key or short id) and runs it through
    /// the policy again as `auto`; denylist, allowlist, dry-run and the rate limit still apply.
    pub fn approve(&mut self, id: &str) -> Result<Action, ledger::LedgerError> {
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
        let detector = entry.detector.clone();
        let decision = self.policy.decide_approved(&action);
        self.apply(decision, &mut action);
        self.ledger.record(&action, &detector)?;
        Ok(action)
    }

    /// Rejects a queued request: it is recorded as refused and never executed.
    pub fn reject(&mut self, id: &str, reason: &str) -> Result<Action, ledger::LedgerError> {
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
        let detector = entry.detector.clone();
        action.status = ActionStatus::Refused;
        action.result = Some(format!("rejected by operator: {reason}"));
        self.ledger.record(&action, &detector)?;
        Ok(action)
    }

    /// Carries out a policy decision on `action`.
    fn apply(&mut self, decision: Decision, action: &mut Action) {
        let (status, why) = match decision {
            Decision::Execute => return self.execute(action),
            Decision::Refuse(why) => (ActionStatus::Refused, why),
            Decision::Queue(why) => (ActionStatus::PendingApproval, why),
            Decision::DryRun(why) => (ActionStatus::DryRun, why),
        };
        action.status = status;
        action.result = Some(why);
    }

    fn execute(&mut self, action: &mut Action) {
        let Some(executor) = self
            .executors
            .iter()
            .find(|e| e.kinds().contains(&action.kind))
        else {
            action.status = ActionStatus::Failed;
            action.result = Some(format!("no executor is configured for {:?}", action.kind));
            return;
        };
        let mut delay = Duration::from_millis(self.retry.backoff_ms);
        let attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=attempts {
            match executor.execute(action) {
                Ok(done) => {
                    action.status = ActionStatus::Done;
                    action.result = Some(format!("{}: {done}", executor.name()));
                    return;
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
                    return;
                }
            }
        }
    }
}
