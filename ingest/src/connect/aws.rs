//! AWS plumbing shared by the CloudTrail connectors: the SDK configuration (the
//! standard credential chain and region resolution, with an optional endpoint
//! override for local emulators), the small tokio runtime each AWS connector owns,
//! and retries with backoff on throttling and transient errors (the SDK's own retry
//! is turned off so every wait is counted in [`ConnectorStats`]).

use std::future::Future;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::http::RetryPolicy;
use super::{ConnectError, ConnectorStats};

/// Where and as whom to call AWS. Unset fields come from the standard chain
/// (`AWS_REGION`, `AWS_PROFILE`, `~/.aws/config`, env credentials, SSO, IMDS, …).
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// Region override.
    pub region: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Endpoint override (`http://127.0.0.1:5000` for moto or a recorded server).
    pub endpoint_url: Option<String>,
}

/// A current-thread runtime for `block_on` (do not call from inside another runtime).
pub fn runtime() -> Result<tokio::runtime::Runtime, ConnectError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConnectError::Io("starting the tokio runtime".into(), e))
}

/// Resolves the SDK configuration: the standard chain plus the overrides in `settings`.
pub fn load_sdk_config(
    rt: &tokio::runtime::Runtime,
    settings: &AwsSettings,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &settings.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &settings.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    rt.block_on(loader.load())
}

/// Error codes AWS uses for throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
];

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    Throttled,
    Transient,
    Fatal,
}

pub(crate) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Retry {
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = se.raw().status().as_u16();
            if THROTTLING_CODES.contains(&code) || status == 429 {
                Retry::Throttled
            } else if status >= 500 || code == "InternalFailure" || code == "ServiceUnavailable" {
                Retry::Transient
            } else {
                Retry::Fatal
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Transient
        }
        _ => Retry::Fatal,
    }
}

/// Runs `call` until it succeeds, a non-retryable error occurs, or the policy's
/// attempts are used up. Throttling and transient errors back off exponentially.
pub(crate) async fn with_retries<T, E, F, Fut>(
    what: &str,
    policy: &RetryPolicy,
    stats: &mut ConnectorStats,
    mut call: F,
) -> Result<T, ConnectError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut last = String::new();
    for attempt in 1..=policy.max_attempts {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let kind = classify(&e);
                last = format!("{what}: {}", DisplayErrorContext(&e));
                match kind {
                    Retry::Fatal => return Err(ConnectError::Source(last)),
                    Retry::Throttled => stats.throttled += 1,
                    Retry::Transient => stats.retried += 1,
                }
                let wait = policy.backoff(attempt);
                tracing::warn!(what, ?kind, wait_ms = wait.as_millis() as u64, error = %last, "AWS call failed; retrying");
                if attempt < policy.max_attempts {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Err(ConnectError::RetriesExhausted {
        attempts: policy.max_attempts,
        last,
    })
}
