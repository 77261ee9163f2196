//! Vault / OpenBao executor: revokes a token by its accessor, or leases by prefix.
//!
//! ```toml
//! [response.vault]
//! address = "https://vault.example.com:8200"
//! token_env = "VAULT_TOKEN"                 # default; or:
//! # token_file = "/run/secrets/lineage-vault-token"
//! # namespace = "admin/team-a"             # Vault Enterprise / OpenBao namespaces
//! timeout_secs = 10                         # per request (default 10)
//! # audit_devices = ["file/"]              # whose HMAC key hashed the log (default: all)
//! # resolve_hmac_accessors = true          # default
//! ```
//!
//! - A token: `POST /v1/auth/token/revoke-accessor` with the credential id as the
//!   accessor (lineage names Vault tokens by accessor). The token and its children are
//!   revoked. The executor's token needs `update` on `auth/token/revoke-accessor`.
//!   When the server answers that no token has the accessor (OpenBao answers 200 with
//!   a warning), nothing was revoked: that is a permanent failure, never "done", since
//!   the token may live in another namespace or cluster.
//! - Leases: when the request's `target.lease_prefix` is a string,
//!   `PUT /v1/sys/leases/revoke-prefix/<prefix>` instead (needs `sudo` on that path).
//!   Everything under the prefix goes, tokens included (`auth/token/create` would take
//!   every token issued there, the executor's own too); an empty prefix (every lease)
//!   is refused.
//!
//! - An HMAC'd accessor (`hmac-sha256:…`, what audit devices log by default): the
//!   executor finds the token it stands for the way Vault documents for searching
//!   audit logs: it lists the live tokens' accessors (`LIST auth/token/accessors`),
//!   hashes each with the audit device's own key (`POST sys/audit-hash/<device>`, the
//!   devices from `audit_devices`, else every device `GET sys/audit` lists) and revokes
//!   the accessor whose hash matches. Hashes are cached per device for the process's
//!   life, so a second resolution costs one `LIST`. No match (the token expired or was
//!   revoked, or lives in another namespace or cluster) is a permanent failure that
//!   says so; nothing is revoked. The executor's token then also needs `list` + `sudo`
//!   on `auth/token/accessors`, `update` on `sys/audit-hash/*` and, without
//!   `audit_devices`, `read` + `sudo` on `sys/audit`. `resolve_hmac_accessors = false`
//!   turns this off (an HMAC'd accessor then fails at once, without calling the
//!   server); at most `max_accessors_hashed` (default 20,000) accessors are hashed per
//!   resolution.
//!
//! This file also holds the small HTTP helpers the GitHub and Entra executors share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lineage_core::{Action, ActionKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ExecError, Executor};

/// `[response.vault]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultExecutorConfig {
    /// Server address, e.g. `https://vault.example.com:8200` (required; a trailing
    /// `/` is ignored).
    pub address: String,
    /// Environment variable holding the token the executor authenticates with
    /// (default `VAULT_TOKEN`). Read at each execution, so a rotated token is picked up.
    #[serde(default = "d_token_env")]
    pub token_env: String,
    /// File holding the token (surrounding whitespace ignored); when set it wins over
    /// `token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Namespace sent as `X-Vault-Namespace` (Vault Enterprise, OpenBao); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Timeout of each HTTP request, connection included, in seconds (default 10,
    /// at least 1).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// Resolve HMAC'd accessors through the audit device's hash (default true; see
    /// the module doc).
    #[serde(default = "yes")]
    pub resolve_hmac_accessors: bool,
    /// The audit devices (paths, e.g. `file/`) whose key hashed the logs lineage
    /// reads; empty (default) = every device `sys/audit` lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_devices: Vec<String>,
    /// At most this many live accessors are hashed to resolve one HMAC'd accessor
    /// (default 20,000); over it, the resolution fails and says so.
    #[serde(default = "d_max_accessors")]
    pub max_accessors_hashed: usize,
}

const fn yes() -> bool {
    true
}

const fn d_max_accessors() -> usize {
    20_000
}

fn d_token_env() -> String {
    "VAULT_TOKEN".into()
}

pub(super) const fn d_timeout() -> u64 {
    10
}

impl VaultExecutorConfig {
    /// Settings for the server at `address`, everything else at its default.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token_env: d_token_env(),
            token_file: None,
            namespace: None,
            timeout_secs: d_timeout(),
            resolve_hmac_accessors: true,
            audit_devices: Vec::new(),
            max_accessors_hashed: d_max_accessors(),
        }
    }
}

/// Revokes Vault / OpenBao tokens by accessor, and leases by prefix.
#[derive(Debug)]
pub struct VaultExecutor {
    config: VaultExecutorConfig,
    agent: ureq::Agent,
    /// (audit device, accessor) → the device's HMAC of the accessor.
    hashes: Mutex<HashMap<(String, String), String>>,
}

impl VaultExecutor {
    /// An executor with these settings.
    pub fn new(config: VaultExecutorConfig) -> Self {
        let agent = agent(config.timeout_secs);
        Self {
            config,
            agent,
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// `GET`/`LIST`/`POST` `path` (under `/v1/`) and the reply's JSON, or the error.
    fn call_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, ExecError> {
        let url = format!("{}/v1/{path}", self.base());
        let req = self.request(method, &url, token);
        let reply = Reply::read(match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        })?;
        classify(&reply)?;
        serde_json::from_str(&reply.body).map_err(|e| {
            ExecError::Permanent(format!(
                "Vault's answer to {method} {path} is not JSON: {e}"
            ))
        })
    }

    /// The live accessor whose HMAC under one of the audit devices is `hmac`, and that
    /// device (see the module doc).
    fn resolve_hmac(&self, hmac: &str, token: &str) -> Result<(String, String), ExecError> {
        let devices: Vec<String> = if self.config.audit_devices.is_empty() {
            let listed = self.call_json("GET", "sys/audit", token, None)?;
            let map = listed.get("data").unwrap_or(&listed);
            map.as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.get("type").is_some())
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            self.config.audit_devices.clone()
        };
        if devices.is_empty() {
            return Err(ExecError::Permanent(format!(
                "`{hmac}` is an HMAC'd accessor and the server lists no audit device to hash \
                 with; set [response.vault] audit_devices"
            )));
        }
        let listed = self.call_json("GET", "auth/token/accessors?list=true", token, None)?;
        let accessors: Vec<&str> = listed
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if accessors.len() > self.config.max_accessors_hashed {
            return Err(ExecError::Permanent(format!(
                "`{hmac}` is an HMAC'd accessor; resolving it would hash {} live accessors, \
                 over max_accessors_hashed ({}): raise it, or log accessors in clear \
                 (`hmac_accessor=false` on the audit device)",
                accessors.len(),
                self.config.max_accessors_hashed
            )));
        }
        for device in &devices {
            let path = device.trim_matches('/');
            for accessor in &accessors {
                let key = (path.to_owned(), (*accessor).to_owned());
                let cached = self.hashes.lock().expect("hash cache").get(&key).cloned();
                let hash = match cached {
                    Some(h) => h,
                    None => {
                        let v = self.call_json(
                            "POST",
                            &format!("sys/audit-hash/{}", encode_segment(path)),
                            token,
                            Some(json!({ "input": accessor })),
                        )?;
                        let h = v
                            .pointer("/data/hash")
                            .or_else(|| v.get("hash"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        self.hashes
                            .lock()
                            .expect("hash cache")
                            .insert(key, h.clone());
                        h
                    }
                };
                if hash == hmac {
                    return Ok(((*accessor).to_owned(), path.to_owned()));
                }
            }
        }
        Err(ExecError::Permanent(format!(
            "no live token's accessor hashes to `{hmac}` under audit device(s) {}: the token \
             has already expired or been revoked, or it lives in another namespace or \
             cluster; nothing was revoked",
            devices.join(", ")
        )))
    }

    fn base(&self) -> &str {
        self.config.address.trim_end_matches('/')
    }

    fn token(&self) -> Result<String, ExecError> {
        read_secret(
            "Vault token",
            &self.config.token_env,
            self.config.token_file.as_deref(),
        )
    }

    fn request(&self, method: &str, url: &str, token: &str) -> ureq::Request {
        let mut req = self.agent.request(method, url).set("X-Vault-Token", token);
        if let Some(ns) = self.config.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            req = req.set("X-Vault-Namespace", ns);
        }
        req
    }

    fn revoke_accessor(&self, accessor: &str) -> Result<String, ExecError> {
        if accessor.starts_with("hmac-sha256:") {
            if !self.config.resolve_hmac_accessors {
                return Err(ExecError::Permanent(format!(
                    "the accessor `{accessor}` is HMAC'd as the audit log records it, and \
                     resolve_hmac_accessors is off; turn it on, or enable the audit device \
                     with `hmac_accessor=false` (a Vault/OpenBao audit option) so that it logs \
                     accessors in clear, or revoke the token by hand"
                )));
            }
            let token = self.token()?;
            let (clear, device) = self.resolve_hmac(accessor, &token)?;
            let done = self.revoke_accessor(&clear)?;
            return Ok(format!(
                "{done}; `{accessor}` resolved through audit device `{device}/`"
            ));
        }
        if accessor.starts_with("sha256:") {
            return Err(ExecError::Permanent(format!(
                "`{accessor}` is lineage's fingerprint of a token, not an accessor: the audit log named \
                 no accessor for it; enable the audit device with `hmac_accessor=false` to revoke by accessor"
            )));
        }
        if accessor.trim().is_empty() {
            return Err(ExecError::Permanent(
                "the credential id (the accessor) is empty".into(),
            ));
        }
        let token = self.token()?;
        let url = format!("{}/v1/auth/token/revoke-accessor", self.base());
        let reply = Reply::read(
            self.request("POST", &url, &token)
                .send_json(json!({ "accessor": accessor })),
        )?;
        classify(&reply)?;
        // OpenBao (and some Vault versions) answer success with a warning when no token
        // has the accessor: that is not a revocation, and it may mean the token lives in
        // another namespace or cluster, so say so rather than report it done.
        let warnings = warnings(&reply.body);
        if let Some(w) = warnings
            .iter()
            .find(|w| w.to_ascii_lowercase().contains("no token found"))
        {
            return Err(ExecError::Permanent(format!(
                "Vault revoked nothing: \"{w}\" — the token with accessor {accessor} has already \
                 expired or been revoked, or it lives in another namespace or cluster"
            )));
        }
        let mut done = format!("revoked the token with accessor {accessor} (and its children)");
        if !warnings.is_empty() {
            done.push_str(&format!(" (Vault warned: {})", warnings.join("; ")));
        }
        Ok(done)
    }

    fn revoke_prefix(&self, prefix: &str) -> Result<String, ExecError> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Err(ExecError::Permanent(
                "target.lease_prefix is empty: that would revoke every lease; name a mount or path"
                    .into(),
            ));
        }
        let mut path = String::new();
        for segment in trimmed.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(ExecError::Permanent(format!(
                    "target.lease_prefix `{prefix}` has an empty, `.` or `..` segment"
                )));
            }
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(&encode_segment(segment));
        }
        let token = self.token()?;
        let url = format!("{}/v1/sys/leases/revoke-prefix/{path}", self.base());
        let reply = Reply::read(self.request("PUT", &url, &token).send_bytes(&[]))?;
        classify(&reply)?;
        Ok(format!("revoked the leases under `{trimmed}/`"))
    }
}

impl Executor for VaultExecutor {
    fn name(&self) -> &'static str {
        "vault"
    }
    fn kinds(&self) -> &'static [ActionKind] {
        &[ActionKind::RevokeVaultAccessor]
    }
    fn execute(&self, action: &Action) -> Result<String, ExecError> {
        match action.target.get("lease_prefix") {
            None | Some(Value::Null) => self.revoke_accessor(action.credential.id.as_str()),
            Some(Value::String(prefix)) => self.revoke_prefix(prefix),
            Some(other) => Err(ExecError::Permanent(format!(
                "target.lease_prefix must be a string, not {other}"
            ))),
        }
    }
}

/// Vault's status → outcome: 2xx is success; 429 and 5xx (sealed, standby, overloaded)
/// are worth retrying; anything else fails with Vault's `errors`.
fn classify(reply: &Reply) -> Result<(), ExecError> {
    match reply.status {
        200..=299 => Ok(()),
        300..=399 => Err(reply.redirect_error("Vault")),
        429 | 500..=599 => Err(ExecError::Retryable(format!(
            "Vault answered {}: {}",
            reply.status,
            vault_errors(&reply.body)
        ))),
        status => Err(ExecError::Permanent(format!(
            "Vault answered {status}: {}",
            vault_errors(&reply.body)
        ))),
    }
}

/// The `warnings` of a Vault answer.
fn warnings(body: &str) -> Vec<String> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            Some(
                v.get("warnings")?
                    .as_array()?
                    .iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// The `errors` of a Vault error body, else the body itself (shortened).
fn vault_errors(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let errors: Vec<String> = v
                .get("errors")?
                .as_array()?
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect();
            (!errors.is_empty()).then(|| errors.join("; "))
        })
        .unwrap_or_else(|| short_body(body))
}

// --- HTTP helpers shared by the Vault, GitHub and Entra executors ---------------------

/// A blocking HTTP agent: the timeout covers each whole request (connection, sending,
/// reading); redirects are not followed, so credentials are never sent elsewhere.
pub(super) fn agent(timeout_secs: u64) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .redirects(0)
        .user_agent(concat!("lineage/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A secret from `file` when set, else from the environment variable `env`.
pub(super) fn read_secret(what: &str, env: &str, file: Option<&Path>) -> Result<String, ExecError> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ExecError::Permanent(format!("reading the {what} from {}: {e}", path.display()))
        })?,
        None => std::env::var(env).map_err(|_| {
            ExecError::Permanent(format!("no {what}: set the environment variable {env}"))
        })?,
    };
    let value = value.trim();
    if value.is_empty() {
        let from = file.map_or_else(|| format!("${env}"), |p| p.display().to_string());
        return Err(ExecError::Permanent(format!(
            "the {what} in {from} is empty"
        )));
    }
    Ok(value.to_owned())
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters).
pub(super) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A body, shortened for an error message.
pub(super) fn short_body(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".into();
    }
    match body.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

/// What came back from one request, whatever its status.
#[derive(Debug)]
pub(super) struct Reply {
    /// HTTP status.
    pub(super) status: u16,
    /// Headers, names lower-cased.
    pub(super) headers: Vec<(String, String)>,
    /// The body as text.
    pub(super) body: String,
}

impl Reply {
    /// Reads a response; transport failures become errors (see [`transport_error`]).
    pub(super) fn read(result: Result<ureq::Response, ureq::Error>) -> Result<Reply, ExecError> {
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                let v = response.header(&n)?.to_owned();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let body = response
            .into_string()
            .map_err(|e| ExecError::Retryable(format!("reading the response body: {e}")))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A header's value (name in lower case).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error for a redirect, which is never followed.
    pub(super) fn redirect_error(&self, service: &str) -> ExecError {
        ExecError::Permanent(format!(
            "{service} answered {} (a redirect to {}); redirects are not followed: configure the final address",
            self.status,
            self.header("location").unwrap_or("nowhere")
        ))
    }
}

/// Connection failures, timeouts and protocol errors are worth retrying; a malformed
/// address or an unsupported scheme is not.
pub(super) fn transport_error(t: &ureq::Transport) -> ExecError {
    use ureq::ErrorKind as K;
    match t.kind() {
        K::InvalidUrl
        | K::UnknownScheme
        | K::InsecureRequestHttpsOnly
        | K::InvalidProxyUrl
        | K::ProxyUnauthorized => ExecError::Permanent(format!("cannot make the request: {t}")),
        _ => ExecError::Retryable(t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("aws-creds_1.x~"), "aws-creds_1.x~");
        assert_eq!(encode_segment("a b/c?#'"), "a%20b%2Fc%3F%23%27");
    }

    #[test]
    fn vault_error_text() {
        assert_eq!(
            vault_errors(r#"{"errors":["permission denied","x"]}"#),
            "permission denied; x"
        );
        assert_eq!(vault_errors("oops"), "oops");
        assert_eq!(vault_errors(""), "(empty body)");
    }

    #[test]
    fn config_defaults() {
        let c: VaultExecutorConfig =
            serde_json::from_value(json!({ "address": "http://x" })).unwrap();
        assert_eq!(c, VaultExecutorConfig::new("http://x"));
        assert_eq!(c.token_env, "VAULT_TOKEN");
        assert_eq!(c.timeout_secs, 10);
        assert!(serde_json::from_value::<VaultExecutorConfig>(
            json!({ "address": "x", "nope": 1 })
        )
        .is_err());
    }
}
