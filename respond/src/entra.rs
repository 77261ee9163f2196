//! Entra ID executor: removes service-principal credentials through Microsoft Graph.
//!
//! ```toml
//! [response.entra]
//! tenant_id = "00000000-0000-0000-0000-000000000000"
//! client_id = "11111111-1111-1111-1111-111111111111"  # the app lineage signs in as
//! client_secret_env = "LINEAGE_ENTRA_CLIENT_SECRET"    # default; or:
//! # client_secret_file = "/run/secrets/lineage-entra-secret"
//! # graph_url = "https://graph.microsoft.com/v1.0"    # default
//! # login_url = "https://login.microsoftonline.com"   # default
//! timeout_secs = 10                                    # per request (default 10)
//! ```
//!
//! Lineage signs in with the client-credentials grant
//! (`POST {login_url}/{tenant}/oauth2/v2.0/token`, scope `https://graph.microsoft.com/.default`)
//! and keeps the access token until shortly before it expires. What a request does:
//!
//! - a client secret (`entra-client-secret`): `POST /applications(appId='{app_id}')/removePassword`
//!   with `{"keyId": <credential id>}` (application permission `Application.ReadWrite.All`,
//!   or `Application.ReadWrite.OwnedBy` when lineage's app owns the target);
//! - a certificate (`entra-certificate`): `removeKey` needs a proof-of-possession JWT
//!   signed with one of the application's own certificates, which lineage does not
//!   hold, so the request fails permanently unless `target.disable_service_principal`
//!   is `true`: then `PATCH /servicePrincipals(appId='{app_id}')` with
//!   `{"accountEnabled": false}` instead (the same for federated credentials and
//!   managed identities);
//! - `target.revoke_user_sessions` (a UPN or object id): also
//!   `POST /users/{id}/revokeSignInSessions` (`User.RevokeSessions.All`).
//!
//! Everything is checked before the first call, so a request that cannot be carried out
//! makes none. The idempotent steps run first and `removePassword` (which fails once the
//! secret is gone) last, so retrying after a transient failure repeats only harmless calls.
//!
//! The application is `target.app_id` (its client id, as detectors fill it), else
//! `target.app_object_id` for the application and `target.service_principal_id` for the
//! service principal (object ids). 429 (after waiting out `Retry-After`, capped), 5xx,
//! timeouts and connection errors are retried; other 4xx fail with Graph's
//! `error.message`. A 401 is retried once at once with a fresh access token.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lineage_core::{Action, ActionKind, CredentialKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::vault::{agent, d_timeout, encode_segment, read_secret, short_body, Reply};
use super::{ExecError, Executor};

/// `[response.entra]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraExecutorConfig {
    /// Microsoft Graph root, version included (default `https://graph.microsoft.com/v1.0`).
    #[serde(default = "d_graph_url")]
    pub graph_url: String,
    /// Microsoft identity platform root (default `https://login.microsoftonline.com`).
    #[serde(default = "d_login_url")]
    pub login_url: String,
    /// Tenant (directory) id or domain lineage signs in to (required).
    pub tenant_id: String,
    /// Client (application) id lineage signs in as (required).
    pub client_id: String,
    /// Environment variable holding that application's client secret (default
    /// `LINEAGE_ENTRA_CLIENT_SECRET`). Read when an access token is needed.
    #[serde(default = "d_secret_env")]
    pub client_secret_env: String,
    /// File holding the client secret (surrounding whitespace ignored); when set it
    /// wins over `client_secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Timeout of each HTTP request, connection included, in seconds (default 10,
    /// at least 1).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// Longest wait for a throttled (429/503) answer's `Retry-After` before the
    /// failure is handed back for retry, in seconds (default 30).
    #[serde(default = "d_retry_after_cap")]
    pub max_retry_after_secs: u64,
}

fn d_graph_url() -> String {
    "https://graph.microsoft.com/v1.0".into()
}
fn d_login_url() -> String {
    "https://login.microsoftonline.com".into()
}
fn d_secret_env() -> String {
    "LINEAGE_ENTRA_CLIENT_SECRET".into()
}
const fn d_retry_after_cap() -> u64 {
    30
}

impl EntraExecutorConfig {
    /// Settings for signing in to `tenant_id` as `client_id`, everything else at its default.
    pub fn new(tenant_id: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            graph_url: d_graph_url(),
            login_url: d_login_url(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret_env: d_secret_env(),
            client_secret_file: None,
            timeout_secs: d_timeout(),
            max_retry_after_secs: d_retry_after_cap(),
        }
    }
}

/// The Graph scope of the client-credentials grant.
const SCOPE: &str = "https://graph.microsoft.com/.default";

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Removes Entra service-principal credentials.
pub struct EntraExecutor {
    config: EntraExecutorConfig,
    agent: ureq::Agent,
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for EntraExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraExecutor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One Graph call of a plan.
enum Step {
    RevokeSessions(String),
    DisableServicePrincipal(String),
    RemovePassword { app: String, key_id: String },
}

impl EntraExecutor {
    /// An executor with these settings.
    pub fn new(config: EntraExecutorConfig) -> Self {
        let agent = agent(config.timeout_secs);
        Self {
            config,
            agent,
            token: Mutex::new(None),
        }
    }

    /// A Graph access token: the cached one, else a new one from the token endpoint.
    fn access_token(&self) -> Result<String, ExecError> {
        let mut cache = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let secret = read_secret(
            "Entra client secret",
            &self.config.client_secret_env,
            self.config.client_secret_file.as_deref(),
        )?;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.config.login_url.trim_end_matches('/'),
            encode_segment(&self.config.tenant_id)
        );
        let reply = Reply::read(self.agent.post(&url).send_form(&[
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", SCOPE),
            ("grant_type", "client_credentials"),
        ]))?;
        if !(200..300).contains(&reply.status) {
            let why = token_error(&reply.body);
            return Err(match reply.status {
                429 | 500..=599 => {
                    self.wait_retry_after(&reply);
                    ExecError::Retryable(format!(
                        "the Entra token endpoint answered {}: {why}",
                        reply.status
                    ))
                }
                status => {
                    ExecError::Permanent(format!("signing in to Entra failed ({status}): {why}"))
                }
            });
        }
        let body: Value = serde_json::from_str(&reply.body).map_err(|e| {
            ExecError::Permanent(format!(
                "the Entra token endpoint's answer is not JSON: {e}"
            ))
        })?;
        let value = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ExecError::Permanent("the Entra token endpoint's answer has no access_token".into())
            })?
            .to_owned();
        // `expires_in` is a number, or a string in some older endpoints.
        let expires_in = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(300);
        // Renew a minute early (half-way through for very short lifetimes).
        let lifetime = expires_in.saturating_sub(60).max(expires_in / 2);
        *cache = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + Duration::from_secs(lifetime),
        });
        Ok(value)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Sleeps for the answer's `Retry-After` (in seconds), at most the configured cap.
    fn wait_retry_after(&self, reply: &Reply) {
        let secs = reply
            .header("retry-after")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(self.config.max_retry_after_secs);
        if secs > 0 {
            std::thread::sleep(Duration::from_secs(secs));
        }
    }

    /// One Graph call; a 401 is retried once with a fresh access token.
    fn graph(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(), ExecError> {
        let url = format!("{}{path}", self.config.graph_url.trim_end_matches('/'));
        for attempt in 0..2 {
            let token = self.access_token()?;
            let req = self
                .agent
                .request(method, &url)
                .set("Authorization", &format!("Bearer {token}"));
            let reply = Reply::read(match body {
                Some(b) => req.send_json(b),
                None => req.send_bytes(&[]),
            })?;
            match reply.status {
                200..=299 => return Ok(()),
                300..=399 => return Err(reply.redirect_error("Microsoft Graph")),
                401 if attempt == 0 => self.forget_token(),
                429 | 500..=599 => {
                    self.wait_retry_after(&reply);
                    return Err(ExecError::Retryable(format!(
                        "Microsoft Graph answered {}: {}",
                        reply.status,
                        graph_error(&reply.body)
                    )));
                }
                status => {
                    return Err(ExecError::Permanent(format!(
                        "Microsoft Graph answered {status}: {}",
                        graph_error(&reply.body)
                    )))
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    fn run(&self, step: &Step) -> Result<String, ExecError> {
        match step {
            Step::RevokeSessions(user) => {
                self.graph(
                    "POST",
                    &format!("/users/{}/revokeSignInSessions", encode_segment(user)),
                    None,
                )?;
                Ok(format!("revoked the sign-in sessions of user {user}"))
            }
            Step::DisableServicePrincipal(sp) => {
                self.graph("PATCH", sp, Some(&json!({ "accountEnabled": false })))?;
                Ok(format!("disabled service principal {sp}"))
            }
            Step::RemovePassword { app, key_id } => {
                self.graph(
                    "POST",
                    &format!("{app}/removePassword"),
                    Some(&json!({ "keyId": key_id })),
                )?;
                Ok(format!(
                    "removed client secret {key_id} from application {app}"
                ))
            }
        }
    }
}

impl Executor for EntraExecutor {
    fn name(&self) -> &'static str {
        "entra"
    }
    fn kinds(&self) -> &'static [ActionKind] {
        &[ActionKind::RemoveEntraCredential]
    }
    fn execute(&self, action: &Action) -> Result<String, ExecError> {
        let plan = plan(action)?;
        let mut done = Vec::with_capacity(plan.len());
        for step in &plan {
            done.push(self.run(step)?);
        }
        Ok(done.join("; "))
    }
}

/// The calls a request needs, in the order they run; an error when it cannot be done.
fn plan(action: &Action) -> Result<Vec<Step>, ExecError> {
    let t = &action.target;
    let app_id = guid_field(t, "app_id")?;
    let application = || {
        if let Some(id) = &app_id {
            return Ok(format!("/applications(appId='{id}')"));
        }
        match guid_field(t, "app_object_id")? {
            Some(id) => Ok(format!("/applications/{id}")),
            None => Err(ExecError::Permanent(
                "target.app_id (the application's client id) is missing".into(),
            )),
        }
    };
    let service_principal = || {
        if let Some(id) = &app_id {
            return Ok(format!("/servicePrincipals(appId='{id}')"));
        }
        match guid_field(t, "service_principal_id")? {
            Some(id) => Ok(format!("/servicePrincipals/{id}")),
            None => Err(ExecError::Permanent(
                "target.app_id (the application's client id) is missing".into(),
            )),
        }
    };
    let disable = match t.get("disable_service_principal") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ExecError::Permanent(format!(
                "target.disable_service_principal must be true or false, not {other}"
            )))
        }
    };
    let sessions = match t.get("revoke_user_sessions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(other) => {
            return Err(ExecError::Permanent(format!(
            "target.revoke_user_sessions must be a user principal name or object id, not {other}"
        )))
        }
    };

    let mut steps = Vec::new();
    if let Some(user) = sessions {
        steps.push(Step::RevokeSessions(user));
    }
    if disable {
        steps.push(Step::DisableServicePrincipal(service_principal()?));
    }
    let kind = action.credential.kind;
    match kind {
        CredentialKind::EntraClientSecret => {
            let key_id = action.credential.id.as_str();
            if !is_guid(key_id) {
                return Err(ExecError::Permanent(format!(
                    "the client secret's id `{key_id}` is not a key id (a GUID)"
                )));
            }
            steps.push(Step::RemovePassword {
                app: application()?,
                key_id: key_id.to_owned(),
            });
        }
        _ if disable => {}
        CredentialKind::EntraCertificate => {
            return Err(ExecError::Permanent(
                "a certificate credential cannot be removed by lineage: Graph's removeKey needs a \
                 proof-of-possession JWT signed with one of the application's existing certificates, \
                 which lineage never holds; remove it in the Entra admin center (App registrations → \
                 Certificates & secrets), or set target.disable_service_principal = true to disable \
                 the service principal instead"
                    .into(),
            ))
        }
        other => {
            return Err(ExecError::Permanent(format!(
                "no Entra credential to remove for a {other:?} credential; set \
                 target.disable_service_principal = true to disable the service principal instead"
            )))
        }
    }
    Ok(steps)
}

/// A GUID field of the target (kept as given; it is checked, then spliced into a URL).
fn guid_field(target: &Value, name: &str) -> Result<Option<String>, ExecError> {
    match target.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_guid(s.trim()) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(ExecError::Permanent(format!(
            "target.{name} must be a GUID, not {other}"
        ))),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hexadecimal.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Graph's `error.code` and `error.message`, else the body (shortened).
fn graph_error(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let message = e.get("message")?.as_str()?;
            Some(match e.get("code").and_then(Value::as_str) {
                Some(code) => format!("{code}: {message}"),
                None => message.to_owned(),
            })
        })
        .unwrap_or_else(|| short_body(body))
}

/// The token endpoint's `error_description` (its first line; the rest is trace ids),
/// else `error`, else the body (shortened).
fn token_error(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let d = v.get("error_description").and_then(Value::as_str);
            let first = d.and_then(|d| d.lines().next()).map(str::to_owned);
            first.or_else(|| v.get("error").and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_else(|| short_body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        assert!(is_guid("0f6c1c5e-3a0b-4e2f-9a37-5b2f1d6c7e80"));
        assert!(!is_guid("0f6c1c5e-3a0b-4e2f-9a37-5b2f1d6c7e8"));
        assert!(!is_guid(
            "0f6c1c5e-3a0b-4e2f-9a37-5b2f1d6c7e80') or x eq ('"
        ));
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            graph_error(r#"{"error":{"code":"Request_ResourceNotFound","message":"gone"}}"#),
            "Request_ResourceNotFound: gone"
        );
        assert_eq!(
            token_error(
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: bad\r\nTrace ID: 1"}"#
            ),
            "AADSTS7000215: bad"
        );
    }

    #[test]
    fn config_defaults() {
        let c: EntraExecutorConfig =
            serde_json::from_value(json!({ "tenant_id": "t", "client_id": "c" })).unwrap();
        assert_eq!(c, EntraExecutorConfig::new("t", "c"));
        assert!(
            serde_json::from_value::<EntraExecutorConfig>(json!({ "tenant_id": "t" })).is_err()
        );
    }
}
