//! GitHub executor: cuts a token's access through the REST API.
//!
//! ```toml
//! [response.github]
//! api_url = "https://api.github.com"        # default; GHES: https://HOST/api/v3
//! token_env = "GITHUB_TOKEN"                # default; or:
//! # token_file = "/run/secrets/lineage-github-token"
//! timeout_secs = 10                         # per request (default 10)
//! ```
//!
//! What is done depends on the credential and on the request's `target`, first match wins:
//!
//! 1. A fine-grained PAT (`github-fine-grained-pat`) with `target.org`: its access to
//!    that organization is revoked with `POST /orgs/{org}/personal-access-tokens`
//!    (`{"action":"revoke","pat_ids":[grant id]}`). That endpoint takes the id of the
//!    organization's *grant*, not the token id the audit log records (the credential
//!    id), so the grant is looked up first (`GET /orgs/{org}/personal-access-tokens`,
//!    matching `token_id`) unless `target.pat_id` gives it. Only GitHub App
//!    installation tokens may call these endpoints (permission "Personal access
//!    tokens": write). The token itself stays valid elsewhere.
//! 2. `target.installation_id`: the app installation is suspended with
//!    `PUT /app/installations/{id}/suspended` (needs a GitHub App JWT as the token).
//! 3. `target.credential_authorization_id` with `target.org`: the token's SAML SSO
//!    authorization for that organization is removed with
//!    `DELETE /orgs/{org}/credential-authorizations/{id}` (an organization owner's token).
//! 4. A classic PAT or OAuth token with `target.org` and GitHub's numeric token id (what
//!    API calls in the audit log carry): its SAML SSO authorization for that
//!    organization is looked up (`GET /orgs/{org}/credential-authorizations`, the entry
//!    whose `authorized_credential_id` is the token id) and removed as in 3. The token
//!    then no longer reaches that organization's resources until its owner authorizes it
//!    again (which an SSO session of a departed owner cannot). Organizations without
//!    SAML SSO have no such entry: the request fails and says so.
//! 5. Otherwise (classic PATs and OAuth tokens known only by hash, unknown kinds) the
//!    request fails permanently: GitHub revokes those only by their value, which
//!    lineage never holds.
//!
//! 429, 5xx, a 403 with `x-ratelimit-remaining: 0` or `retry-after`, timeouts and
//! connection errors are retried; any other 4xx fails with GitHub's `message`.

use std::path::PathBuf;

use lineage_core::{Action, ActionKind, CredentialKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::vault::{agent, d_timeout, encode_segment, read_secret, short_body, Reply};
use super::{ExecError, Executor};

/// Grants read per page while looking up a fine-grained PAT's grant id.
const PAGE_SIZE: usize = 100;
/// Pages read at most while looking it up (10,000 grants).
const MAX_PAGES: usize = 100;

/// `[response.github]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubExecutorConfig {
    /// REST API root (default `https://api.github.com`; GitHub Enterprise Server:
    /// `https://HOST/api/v3`). A trailing `/` is ignored.
    #[serde(default = "d_api_url")]
    pub api_url: String,
    /// Environment variable holding the token the executor authenticates with
    /// (default `GITHUB_TOKEN`). Read at each execution.
    #[serde(default = "d_token_env")]
    pub token_env: String,
    /// File holding the token (surrounding whitespace ignored); when set it wins over
    /// `token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Timeout of each HTTP request, connection included, in seconds (default 10,
    /// at least 1).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
}

fn d_api_url() -> String {
    "https://api.github.com".into()
}

fn d_token_env() -> String {
    "GITHUB_TOKEN".into()
}

impl Default for GitHubExecutorConfig {
    fn default() -> Self {
        Self {
            api_url: d_api_url(),
            token_env: d_token_env(),
            token_file: None,
            timeout_secs: d_timeout(),
        }
    }
}

/// The answer for tokens GitHub revokes only by value.
const CLASSIC: &str =
    "classic tokens can only be revoked by their value; lineage never stores it — \
revoke it in the owner's settings or via the org's credential authorization page";

/// Revokes GitHub credentials' access.
#[derive(Debug)]
pub struct GitHubExecutor {
    config: GitHubExecutorConfig,
    agent: ureq::Agent,
}

impl GitHubExecutor {
    /// An executor with these settings.
    pub fn new(config: GitHubExecutorConfig) -> Self {
        let agent = agent(config.timeout_secs);
        Self { config, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_url.trim_end_matches('/'))
    }

    fn request(&self, method: &str, path: &str, token: &str) -> ureq::Request {
        self.agent
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Accept", "application/vnd.github+json")
            .set("X-GitHub-Api-Version", "2022-11-28")
    }

    fn token(&self) -> Result<String, ExecError> {
        read_secret(
            "GitHub token",
            &self.config.token_env,
            self.config.token_file.as_deref(),
        )
    }

    fn revoke_fine_grained(&self, action: &Action, org: &str) -> Result<String, ExecError> {
        let token_id = action.credential.id.as_str();
        let org_path = encode_segment(org);
        let explicit = number(&action.target, "pat_id")?;
        let token = self.token()?;
        let grant = match explicit {
            Some(id) => id,
            None => {
                let token_id: u64 = token_id.parse().map_err(|_| {
                    ExecError::Permanent(format!(
                        "the fine-grained token's id `{token_id}` is not GitHub's numeric token id (the \
                         audit log named it only by hash); revoke it in the organization's settings \
                         (Personal access tokens → Active tokens) or give target.pat_id"
                    ))
                })?;
                self.find_grant(&org_path, org, token_id, &token)?
            }
        };
        let reply = Reply::read(
            self.request(
                "POST",
                &format!("/orgs/{org_path}/personal-access-tokens"),
                &token,
            )
            .send_json(json!({ "action": "revoke", "pat_ids": [grant] })),
        )?;
        classify(&reply)?;
        Ok(format!(
            "revoked the access of fine-grained token {token_id} (grant {grant}) to organization {org}"
        ))
    }

    /// The first entry of the paginated list at `path` (a JSON array per page) that
    /// `wanted` accepts; `Ok(None)` when the list ends without one, an error when
    /// [`MAX_PAGES`] pages hold none. `what` names the list in errors.
    fn find_in_pages(
        &self,
        path: &str,
        token: &str,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Option<Value>, ExecError> {
        for page in 1..=MAX_PAGES {
            let reply = Reply::read(
                self.request("GET", path, token)
                    .query("per_page", &PAGE_SIZE.to_string())
                    .query("page", &page.to_string())
                    .call(),
            )?;
            classify(&reply)?;
            let entries: Vec<Value> = serde_json::from_str(&reply.body).map_err(|e| {
                ExecError::Permanent(format!(
                    "GitHub's list of {what} is not a JSON array ({e}): {}",
                    short_body(&reply.body)
                ))
            })?;
            if let Some(found) = entries.iter().find(|e| wanted(e)) {
                return Ok(Some(found.clone()));
            }
            if entries.len() < PAGE_SIZE {
                return Ok(None);
            }
        }
        Err(ExecError::Permanent(format!(
            "none of the first {} {what} matched",
            PAGE_SIZE * MAX_PAGES
        )))
    }

    /// The id of the organization's grant for the fine-grained token `token_id`.
    fn find_grant(
        &self,
        org_path: &str,
        org: &str,
        token_id: u64,
        token: &str,
    ) -> Result<u64, ExecError> {
        let grant = self
            .find_in_pages(
                &format!("/orgs/{org_path}/personal-access-tokens"),
                token,
                "fine-grained token grants",
                |g| g.get("token_id").and_then(Value::as_u64) == Some(token_id),
            )
            .map_err(|e| match e {
                ExecError::Permanent(why) => {
                    ExecError::Permanent(format!("{why} in organization {org}; give target.pat_id"))
                }
                other => other,
            })?
            .ok_or_else(|| {
                ExecError::Permanent(format!(
                    "organization {org} has no active grant for fine-grained token {token_id}: already \
                     revoked, expired, or not granted to this organization"
                ))
            })?;
        grant.get("id").and_then(Value::as_u64).ok_or_else(|| {
            ExecError::Permanent(format!(
                "the grant of fine-grained token {token_id} has no numeric `id`"
            ))
        })
    }

    /// The id of the organization's SAML SSO authorization of token `token_id`.
    fn find_authorization(&self, org: &str, token_id: u64) -> Result<u64, ExecError> {
        let token = self.token()?;
        let path = format!("/orgs/{}/credential-authorizations", encode_segment(org));
        let entry = self
            .find_in_pages(&path, &token, "credential authorizations", |e| {
                e.get("authorized_credential_id").and_then(Value::as_u64) == Some(token_id)
            })?
            .ok_or_else(|| {
                ExecError::Permanent(format!(
                    "organization {org} has no SAML SSO authorization of token {token_id} (the \
                     organization does not use SAML SSO, or the token was never authorized for \
                     it, or already removed): {CLASSIC}"
                ))
            })?;
        entry
            .get("credential_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                ExecError::Permanent(format!(
                    "the SSO authorization of token {token_id} has no numeric `credential_id`"
                ))
            })
    }

    fn suspend_installation(&self, installation: u64) -> Result<String, ExecError> {
        let token = self.token()?;
        let reply = Reply::read(
            self.request(
                "PUT",
                &format!("/app/installations/{installation}/suspended"),
                &token,
            )
            .send_bytes(&[]),
        )?;
        classify(&reply)?;
        Ok(format!("suspended app installation {installation}"))
    }

    fn delete_authorization(&self, org: &str, id: u64) -> Result<String, ExecError> {
        let token = self.token()?;
        let path = format!(
            "/orgs/{}/credential-authorizations/{id}",
            encode_segment(org)
        );
        let reply = Reply::read(self.request("DELETE", &path, &token).call())?;
        classify(&reply)?;
        Ok(format!(
            "removed credential authorization {id} from organization {org}"
        ))
    }
}

impl Executor for GitHubExecutor {
    fn name(&self) -> &'static str {
        "github"
    }
    fn kinds(&self) -> &'static [ActionKind] {
        &[ActionKind::RevokeGithubToken]
    }
    fn execute(&self, action: &Action) -> Result<String, ExecError> {
        let target = &action.target;
        let org = text(target, "org")?;
        let kind = action.credential.kind;
        if let (CredentialKind::GithubFineGrainedPat, Some(org)) = (kind, org) {
            return self.revoke_fine_grained(action, org);
        }
        if let Some(installation) = number(target, "installation_id")? {
            return self.suspend_installation(installation);
        }
        if let (Some(id), Some(org)) = (number(target, "credential_authorization_id")?, org) {
            return self.delete_authorization(org, id);
        }
        let classic = matches!(
            kind,
            CredentialKind::GithubClassicPat | CredentialKind::GithubOauthToken
        );
        if let (true, Some(org), Ok(token_id)) =
            (classic, org, action.credential.id.as_str().parse::<u64>())
        {
            let id = self.find_authorization(org, token_id)?;
            let done = self.delete_authorization(org, id)?;
            return Ok(format!(
                "{done} (the SAML SSO authorization of token {token_id})"
            ));
        }
        Err(ExecError::Permanent(match kind {
            CredentialKind::GithubFineGrainedPat => {
                "a fine-grained token's access is revoked per organization: target.org is missing".into()
            }
            CredentialKind::GithubAppToken => {
                "an app token is cut off by suspending its installation: target.installation_id is missing".into()
            }
            _ => CLASSIC.into(),
        }))
    }
}

/// A non-empty string field of the target.
fn text<'a>(target: &'a Value, name: &str) -> Result<Option<&'a str>, ExecError> {
    match target.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(other) => Err(ExecError::Permanent(format!(
            "target.{name} must be a string, not {other}"
        ))),
    }
}

/// A numeric field of the target (a JSON number or a string of digits).
fn number(target: &Value, name: &str) -> Result<Option<u64>, ExecError> {
    let bad = |v: &Value| {
        ExecError::Permanent(format!("target.{name} must be a positive integer, not {v}"))
    };
    match target.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// GitHub's status → outcome.
fn classify(reply: &Reply) -> Result<(), ExecError> {
    let status = reply.status;
    let rate_limited = status == 429
        || (status == 403
            && (reply.header("x-ratelimit-remaining").map(str::trim) == Some("0")
                || reply.header("retry-after").is_some()));
    match status {
        200..=299 => Ok(()),
        300..=399 => Err(reply.redirect_error("GitHub")),
        _ if rate_limited => Err(ExecError::Retryable(format!(
            "GitHub rate limit ({status}{}): {}",
            reply
                .header("retry-after")
                .map(|s| format!(", retry after {s} s"))
                .unwrap_or_default(),
            message(&reply.body)
        ))),
        500..=599 => Err(ExecError::Retryable(format!(
            "GitHub answered {status}: {}",
            message(&reply.body)
        ))),
        _ => Err(ExecError::Permanent(format!(
            "GitHub answered {status}: {}",
            message(&reply.body)
        ))),
    }
}

/// GitHub's error `message`, else the body (shortened).
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| short_body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_fields() {
        let t = json!({ "a": 5, "b": "7", "c": "x", "d": -1, "e": "  ", "f": 3 });
        assert_eq!(number(&t, "a"), Ok(Some(5)));
        assert_eq!(number(&t, "b"), Ok(Some(7)));
        assert!(number(&t, "c").is_err());
        assert!(number(&t, "d").is_err());
        assert_eq!(number(&t, "zz"), Ok(None));
        assert_eq!(text(&t, "c"), Ok(Some("x")));
        assert_eq!(text(&t, "e"), Ok(None));
        assert!(text(&t, "f").is_err());
    }

    #[test]
    fn config_defaults() {
        let c: GitHubExecutorConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, GitHubExecutorConfig::default());
        assert_eq!(c.api_url, "https://api.github.com");
        assert!(serde_json::from_value::<GitHubExecutorConfig>(json!({ "token": "x" })).is_err());
    }
}
