//! AWS executor: deactivates IAM access keys and revokes IAM role sessions.
//!
//! - [`ActionKind::DeactivateAwsAccessKey`]: `UpdateAccessKey` to `Inactive` for the
//!   key (`credential.id`) of the IAM user `target.user_name`; with `delete_keys`, then
//!   `DeleteAccessKey`.
//! - [`ActionKind::RevokeAwsRoleSessions`]: puts the inline policy
//!   `AWSRevokeOlderSessions` on the role `target.role_name`, denying everything to
//!   sessions issued before now (what the console's "Revoke active sessions" does;
//!   a later revocation replaces it with a later time). Only in the account the
//!   executor's own credentials belong to (STS `GetCallerIdentity`): a request whose
//!   `target.account` is another account, or unknown, is refused, never applied to a
//!   same-named role here.
//!
//! The calls go through `aws-sdk-iam` on a current-thread tokio runtime owned by the
//! executor ([`Executor::execute`] is synchronous), so `execute` must not be called from
//! inside another tokio runtime. The SDK's own retries are off: the [`Responder`]
//! retries what is [`ExecError::Retryable`] (throttling, 5xx, timeouts, connection
//! errors); everything else (`NoSuchEntity`, `AccessDenied`, validation, missing
//! target fields) is [`ExecError::Permanent`], with the AWS error code and message.
//!
//! [`Responder`]: super::Responder

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;
use lineage_core::{Action, ActionKind};
use serde::{Deserialize, Serialize};

use super::{ExecError, Executor};

/// Name of the inline role policy that revokes older sessions (as the AWS console names it).
pub const REVOKE_SESSIONS_POLICY: &str = "AWSRevokeOlderSessions";

/// `[response.aws]` settings. Credentials come from the standard AWS chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsExecutorConfig {
    /// Region for the IAM/STS clients (default `us-east-1`).
    #[serde(default = "d_region")]
    pub region: String,
    /// Endpoint override (tests: a moto server on 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Delete the access key after deactivating it (default false).
    #[serde(default)]
    pub delete_keys: bool,
    /// Time limit for one API call, retries by the responder not included (default 30 s).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
}

fn d_region() -> String {
    "us-east-1".into()
}

const fn d_timeout() -> u64 {
    30
}

impl Default for AwsExecutorConfig {
    fn default() -> Self {
        Self {
            region: d_region(),
            endpoint_url: None,
            delete_keys: false,
            timeout_secs: d_timeout(),
        }
    }
}

/// The runtime and the clients, built once.
struct Inner {
    runtime: tokio::runtime::Runtime,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    /// The executor's own account, asked of STS once.
    account: std::sync::OnceLock<String>,
}

/// Revokes AWS credentials.
pub struct AwsExecutor {
    config: AwsExecutorConfig,
    /// Why the client could not be built, if it could not (reported by `execute`).
    inner: Result<Inner, String>,
}

impl std::fmt::Debug for AwsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsExecutor")
            .field("config", &self.config)
            .field("ready", &self.inner.as_ref().map(|_| ()))
            .finish()
    }
}

impl AwsExecutor {
    /// An executor with these settings; credentials from the standard AWS chain
    /// (environment, profile, SSO, web identity, ECS/EC2 metadata), resolved at the first call.
    pub fn new(config: AwsExecutorConfig) -> Self {
        Self::build(config, None)
    }

    /// An executor with fixed credentials instead of the standard chain (tests against
    /// moto; deployments that hand the key over explicitly).
    pub fn with_credentials(
        config: AwsExecutorConfig,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        let creds = Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "lineage-config",
        );
        Self::build(config, Some(SharedCredentialsProvider::new(creds)))
    }

    fn build(config: AwsExecutorConfig, creds: Option<SharedCredentialsProvider>) -> Self {
        let inner = Self::client(&config, creds);
        if let Err(e) = &inner {
            tracing::error!(error = %e, "the AWS executor could not be set up");
        }
        Self { config, inner }
    }

    fn client(
        config: &AwsExecutorConfig,
        creds: Option<SharedCredentialsProvider>,
    ) -> Result<Inner, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a tokio runtime for the AWS executor: {e}"))?;
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(creds) = creds {
            loader = loader.credentials_provider(creds);
        }
        let sdk_config = runtime.block_on(loader.load());
        let iam = aws_sdk_iam::Client::new(&sdk_config);
        let sts = aws_sdk_sts::Client::new(&sdk_config);
        Ok(Inner {
            runtime,
            iam,
            sts,
            account: std::sync::OnceLock::new(),
        })
    }

    fn inner(&self) -> Result<&Inner, ExecError> {
        self.inner
            .as_ref()
            .map_err(|e| ExecError::Permanent(e.clone()))
    }

    fn deactivate_key(&self, action: &Action) -> Result<String, ExecError> {
        let user = target_field(action, "user_name", "the IAM user that owns the access key")?;
        let key = action.credential.id.as_str();
        let inner = self.inner()?;
        inner
            .runtime
            .block_on(
                inner
                    .iam
                    .update_access_key()
                    .user_name(user)
                    .access_key_id(key)
                    .status(StatusType::Inactive)
                    .send(),
            )
            .map_err(|e| classify("UpdateAccessKey", e))?;
        if !self.config.delete_keys {
            return Ok(format!("access key {key} of user {user} set Inactive"));
        }
        inner
            .runtime
            .block_on(
                inner
                    .iam
                    .delete_access_key()
                    .user_name(user)
                    .access_key_id(key)
                    .send(),
            )
            .map_err(|e| classify("DeleteAccessKey", e))?;
        Ok(format!(
            "access key {key} of user {user} set Inactive and deleted"
        ))
    }

    /// Whether the key is already `Inactive` (or gone) at IAM.
    fn key_revoked(&self, action: &Action) -> Result<Option<bool>, ExecError> {
        let user = target_field(action, "user_name", "the IAM user that owns the access key")?;
        let key = action.credential.id.as_str();
        let inner = self.inner()?;
        let listed = inner
            .runtime
            .block_on(inner.iam.list_access_keys().user_name(user).send())
            .map_err(|e| classify("ListAccessKeys", e))?;
        let status = listed
            .access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(key))
            .map(|k| k.status().cloned());
        Ok(Some(match status {
            // Deleted: it authenticates nothing any more.
            None => true,
            Some(s) => s != Some(StatusType::Active),
        }))
    }

    /// The account of the executor's own credentials.
    fn own_account(&self) -> Result<String, ExecError> {
        let inner = self.inner()?;
        if let Some(a) = inner.account.get() {
            return Ok(a.clone());
        }
        let who = inner
            .runtime
            .block_on(inner.sts.get_caller_identity().send())
            .map_err(|e| classify("GetCallerIdentity", e))?;
        let account = who
            .account()
            .ok_or_else(|| ExecError::Permanent("STS GetCallerIdentity named no account".into()))?
            .to_owned();
        Ok(inner.account.get_or_init(|| account).clone())
    }

    fn revoke_sessions(&self, action: &Action) -> Result<String, ExecError> {
        let role = target_field(action, "role_name", "the IAM role whose sessions to revoke")?;
        let account = target_field(
            action,
            "account",
            "the account of the role (a session whose account the logs did not name is not revoked)",
        )?;
        let own = self.own_account()?;
        if account != own {
            return Err(ExecError::Permanent(format!(
                "refused: role {role} is in account {account}, and this executor's credentials are in account {own}; \
                 a same-named role here is not touched (run an executor with credentials for {account})"
            )));
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let document = revoke_sessions_policy(&now);
        let inner = self.inner()?;
        inner
            .runtime
            .block_on(
                inner
                    .iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(REVOKE_SESSIONS_POLICY)
                    .policy_document(document)
                    .send(),
            )
            .map_err(|e| classify("PutRolePolicy", e))?;
        Ok(format!(
            "sessions of role {role} issued before {now} revoked (inline policy {REVOKE_SESSIONS_POLICY})"
        ))
    }
}

/// The console's "Revoke active sessions" policy: deny everything to tokens issued before `now`.
fn revoke_sessions_policy(now: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": ["*"],
            "Resource": ["*"],
            "Condition": { "DateLessThan": { "aws:TokenIssueTime": now } }
        }]
    })
    .to_string()
}

fn target_field<'a>(action: &'a Action, name: &str, what: &str) -> Result<&'a str, ExecError> {
    action
        .target
        .get(name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ExecError::Permanent(format!(
                "target.{name} is missing from the request: the AWS executor needs {what}"
            ))
        })
}

/// Error codes worth retrying even when the HTTP status does not say so.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "ServiceFailure",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionInProgressException",
];

/// Maps an SDK error to retryable or permanent, keeping the AWS code and message.
fn classify<E>(op: &str, err: SdkError<E, HttpResponse>) -> ExecError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("Unknown");
            let message = se.err().message().unwrap_or("");
            let text = format!("IAM {op}: {code} (HTTP {status}): {message}");
            if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code) {
                ExecError::Retryable(text)
            } else {
                ExecError::Permanent(text)
            }
        }
        SdkError::TimeoutError(_) => ExecError::Retryable(format!(
            "IAM {op}: timed out: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::DispatchFailure(df) if df.is_user() => ExecError::Permanent(format!(
            "IAM {op}: request not sent: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::DispatchFailure(_) => ExecError::Retryable(format!(
            "IAM {op}: request not sent or no response: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::ResponseError(re) => {
            let status = re.raw().status().as_u16();
            let text = format!(
                "IAM {op}: unreadable response (HTTP {status}): {}",
                DisplayErrorContext(&err)
            );
            if (400..500).contains(&status) && status != 429 {
                ExecError::Permanent(text)
            } else {
                ExecError::Retryable(text)
            }
        }
        // Construction failures (a missing region, no credentials in the chain) do not
        // get better by retrying.
        _ => ExecError::Permanent(format!("IAM {op}: {}", DisplayErrorContext(&err))),
    }
}

impl Executor for AwsExecutor {
    fn name(&self) -> &'static str {
        "aws"
    }
    fn kinds(&self) -> &'static [ActionKind] {
        &[
            ActionKind::DeactivateAwsAccessKey,
            ActionKind::RevokeAwsRoleSessions,
        ]
    }
    fn execute(&self, action: &Action) -> Result<String, ExecError> {
        match action.kind {
            ActionKind::DeactivateAwsAccessKey => self.deactivate_key(action),
            ActionKind::RevokeAwsRoleSessions => self.revoke_sessions(action),
            other => Err(ExecError::Permanent(format!(
                "the AWS executor does not handle {other:?}"
            ))),
        }
    }
    fn check(&self, action: &Action) -> Result<Option<bool>, ExecError> {
        match action.kind {
            ActionKind::DeactivateAwsAccessKey => self.key_revoked(action),
            // A later revocation of the same role's sessions is harmless, but whether
            // this one was applied cannot be told from the policy alone.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_policy_is_the_console_one() {
        let doc: serde_json::Value =
            serde_json::from_str(&revoke_sessions_policy("2024-05-01T12:00:00Z")).unwrap();
        assert_eq!(doc["Version"], "2012-10-17");
        let st = &doc["Statement"][0];
        assert_eq!(st["Effect"], "Deny");
        assert_eq!(st["Action"], serde_json::json!(["*"]));
        assert_eq!(st["Resource"], serde_json::json!(["*"]));
        assert_eq!(
            st["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2024-05-01T12:00:00Z"
        );
    }

    /// An executor pointed at a local server that answers one request with `status` and
    /// an IAM (awsQuery) error body with `code`, after `delay`.
    fn against_canned(status: u16, code: &str, delay: Duration) -> Result<String, ExecError> {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let body = format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>canned {code}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
        );
        std::thread::spawn(move || {
            if let Ok(req) = server.recv() {
                std::thread::sleep(delay);
                let header = tiny_http::Header::from_bytes("Content-Type", "text/xml").unwrap();
                let _ = req.respond(
                    tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header),
                );
            }
        });
        let config = AwsExecutorConfig {
            endpoint_url: Some(format!("http://127.0.0.1:{port}")),
            timeout_secs: 1,
            ..AwsExecutorConfig::default()
        };
        let exec = AwsExecutor::with_credentials(config, "testing", "testing");
        let action = Action {
            idempotency_key: "k".into(),
            kind: ActionKind::DeactivateAwsAccessKey,
            credential: lineage_core::CredentialRef {
                kind: lineage_core::CredentialKind::AwsAccessKey,
                id: lineage_core::CredentialId::new("AKIAIOSFODNN7EXAMPLE"),
                issuer: None,
            },
            reason: "r".into(),
            detector: "departed-owner".into(),
            evidence: None,
            requested_at: chrono::Utc::now(),
            status: lineage_core::ActionStatus::Requested,
            result: None,
            target: serde_json::json!({ "user_name": "u" }),
        };
        exec.execute(&action)
    }

    #[test]
    fn sdk_errors_map_to_retryable_or_permanent() {
        let now = Duration::ZERO;
        for (status, code) in [
            (400, "Throttling"),
            (429, "TooManyRequests"),
            (500, "ServiceFailure"),
            (503, "ServiceUnavailable"),
        ] {
            match against_canned(status, code, now) {
                Err(ExecError::Retryable(m)) => {
                    assert!(m.contains(code) && m.contains("UpdateAccessKey"), "{m}")
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
        for (status, code) in [
            (403, "AccessDenied"),
            (400, "ValidationError"),
            (404, "NoSuchEntity"),
        ] {
            match against_canned(status, code, now) {
                Err(ExecError::Permanent(m)) => assert!(
                    m.contains(code) && m.contains(&format!("canned {code}")),
                    "{m}"
                ),
                other => panic!("{status} {code}: {other:?}"),
            }
        }
        // No answer within the time limit (1 s).
        match against_canned(200, "Late", Duration::from_secs(3)) {
            Err(ExecError::Retryable(m)) => assert!(m.contains("timed out"), "{m}"),
            other => panic!("timeout: {other:?}"),
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: AwsExecutorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, AwsExecutorConfig::default());
        assert_eq!(cfg.timeout_secs, 30);
        assert!(serde_json::from_str::<AwsExecutorConfig>(r#"{"regio":"x"}"#).is_err());
    }
}
