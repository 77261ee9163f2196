//! The GitHub, Entra and Vault executors against a scripted HTTP server on 127.0.0.1:
//! the exact requests they make (method, path, body, auth headers), how answers map to
//! outcomes through the [`Responder`] (retries, permanent failures, timeouts), and that
//! dry runs and denied requests make no request at all.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use lineage_core::{Action, ActionKind, ActionStatus, CredentialId, CredentialKind, CredentialRef};
use lineage_respond::entra::{EntraExecutor, EntraExecutorConfig};
use lineage_respond::github::{GitHubExecutor, GitHubExecutorConfig};
use lineage_respond::policy::Rule;
use lineage_respond::vault::{VaultExecutor, VaultExecutorConfig};
use lineage_respond::{Executor, Ledger, Policy, PolicyConfig, Responder, RetryConfig};
use serde_json::{json, Value};

// --- the scripted server ---------------------------------------------------------------

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: if body.is_null() {
            String::new()
        } else {
            body.to_string()
        },
        delay: Duration::ZERO,
    }
}

impl Answer {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    url: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// A server on a free loopback port answering from a script, in order, and recording
/// every request; an unscripted request gets a 599. Stopped on drop.
struct Mock {
    server: Arc<tiny_http::Server>,
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Mock {
    fn start(script: Vec<Answer>) -> Mock {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let thread = {
            let (server, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                for mut req in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    seen.lock().unwrap().push(Seen {
                        method: req.method().as_str().to_owned(),
                        url: req.url().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|h| {
                                (
                                    h.field.as_str().as_str().to_ascii_lowercase(),
                                    h.value.as_str().to_owned(),
                                )
                            })
                            .collect(),
                        body,
                    });
                    let next = script.lock().unwrap().pop_front();
                    let a = next
                        .unwrap_or_else(|| answer(599, json!({ "message": "unscripted request" })));
                    // Answer from another thread so that a slow answer does not hold up
                    // the recording of the next request.
                    std::thread::spawn(move || {
                        std::thread::sleep(a.delay);
                        let mut resp =
                            tiny_http::Response::from_string(a.body).with_status_code(a.status);
                        for (name, value) in &a.headers {
                            resp = resp.with_header(
                                tiny_http::Header::from_bytes(*name, value.as_bytes()).unwrap(),
                            );
                        }
                        let _ = req.respond(resp);
                    });
                }
            })
        };
        Mock {
            server,
            url: format!("http://127.0.0.1:{port}"),
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// --- requests and the responder -----------------------------------------------------

fn action(kind: ActionKind, cred_kind: CredentialKind, id: &str, target: Value) -> Action {
    Action {
        idempotency_key: format!("test:{kind:?}:{id}:{}", target),
        kind,
        credential: CredentialRef {
            kind: cred_kind,
            id: CredentialId::new(id),
            issuer: None,
        },
        reason: "departed owner".into(),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target,
    }
}

/// A responder that executes (dry run off, everything allowed but `breakglass-*`
/// owners), two attempts 10 ms apart.
fn responder(executor: Box<dyn Executor>, dry_run: bool) -> Responder {
    let policy = Policy::new(PolicyConfig {
        dry_run,
        allow: vec![Rule {
            owner: Some("*".into()),
            ..Rule::default()
        }],
        deny: vec![Rule {
            owner: Some("breakglass-*".into()),
            ..Rule::default()
        }],
        ..PolicyConfig::default()
    });
    Responder::new(
        policy,
        Ledger::in_memory(),
        vec![executor],
        RetryConfig {
            max_attempts: 2,
            backoff_ms: 10,
        },
    )
}

fn submit(responder: &mut Responder, mut action: Action) -> Action {
    action.detector = "operator".into();
    responder
        .submit(action)
        .expect("the in-memory ledger records")
}

fn result(a: &Action) -> &str {
    a.result.as_deref().unwrap_or("")
}

/// A secret in a file of a temporary directory (kept alive by the caller).
fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

// --- GitHub --------------------------------------------------------------------------

const GH_TOKEN: &str = "ghs_lineage_test_token";

fn github(mock: &Mock, dir: &tempfile::TempDir) -> Box<dyn Executor> {
    Box::new(GitHubExecutor::new(GitHubExecutorConfig {
        api_url: format!("{}/", mock.url),
        token_file: Some(secret_file(dir, "gh-token", GH_TOKEN)),
        timeout_secs: 1,
        ..GitHubExecutorConfig::default()
    }))
}

fn assert_github_headers(s: &Seen) {
    assert_eq!(
        s.header("authorization"),
        Some(format!("Bearer {GH_TOKEN}").as_str()),
        "{s:?}"
    );
    assert_eq!(
        s.header("accept"),
        Some("application/vnd.github+json"),
        "{s:?}"
    );
    assert_eq!(
        s.header("x-github-api-version"),
        Some("2022-11-28"),
        "{s:?}"
    );
}

fn gh_pat(id: &str, target: Value) -> Action {
    action(
        ActionKind::RevokeGithubToken,
        CredentialKind::GithubFineGrainedPat,
        id,
        target,
    )
}

#[test]
fn github_fine_grained_pat_is_revoked_through_its_org_grant() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        answer(
            200,
            json!([
                { "id": 900, "token_id": 111, "owner": { "login": "bob" } },
                { "id": 901, "token_id": 12345, "owner": { "login": "alice" } },
            ]),
        ),
        answer(202, json!({ "message": "Accepted" })),
    ]);
    let mut r = responder(github(&mock, &dir), false);
    let done = submit(
        &mut r,
        gh_pat(
            "12345",
            json!({ "org": "acme", "owner_login": "alice", "owner": "alice" }),
        ),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(result(&done).contains("grant 901"), "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].url,
        "/orgs/acme/personal-access-tokens?per_page=100&page=1"
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].url, "/orgs/acme/personal-access-tokens");
    assert_eq!(
        seen[1].json(),
        json!({ "action": "revoke", "pat_ids": [901] })
    );
    seen.iter().for_each(assert_github_headers);
}

#[test]
fn github_fine_grained_pat_with_a_known_grant_id_skips_the_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(202, json!({}))]);
    let mut r = responder(github(&mock, &dir), false);
    let done = submit(
        &mut r,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "alice" }),
        ),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        ("POST", "/orgs/acme/personal-access-tokens")
    );
    assert_eq!(
        seen[0].json(),
        json!({ "action": "revoke", "pat_ids": [77] })
    );
}

#[test]
fn github_fine_grained_pat_without_a_grant_fails_permanently() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(200, json!([{ "id": 900, "token_id": 111 }]))]);
    let mut r = responder(github(&mock, &dir), false);
    let failed = submit(
        &mut r,
        gh_pat("12345", json!({ "org": "acme", "owner": "alice" })),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed).contains("no active grant for fine-grained token 12345"),
        "{failed:?}"
    );
    assert!(result(&failed).contains("after 1 attempt(s)"), "{failed:?}");
    assert_eq!(mock.seen().len(), 1);
}

#[test]
fn github_app_installation_is_suspended() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(204, Value::Null)]);
    let mut r = responder(github(&mock, &dir), false);
    let done = submit(
        &mut r,
        action(
            ActionKind::RevokeGithubToken,
            CredentialKind::GithubAppToken,
            "42",
            json!({ "org": "acme", "installation_id": 42, "owner": "alice" }),
        ),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        ("PUT", "/app/installations/42/suspended")
    );
    assert_eq!(seen[0].body, "");
    assert_github_headers(&seen[0]);
}

#[test]
fn github_classic_pat_needs_a_credential_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(204, Value::Null)]);
    let mut r = responder(github(&mock, &dir), false);
    let classic = |target| {
        action(
            ActionKind::RevokeGithubToken,
            CredentialKind::GithubClassicPat,
            "sha256:abc",
            target,
        )
    };

    // Without one: a permanent failure and no request.
    let failed = submit(&mut r, classic(json!({ "org": "acme", "owner": "alice" })));
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed)
            .contains("classic tokens can only be revoked by their value; lineage never stores it"),
        "{failed:?}"
    );
    assert!(result(&failed).contains("after 1 attempt(s)"), "{failed:?}");
    assert!(mock.seen().is_empty());

    // With one: the SSO authorization is removed.
    let done = submit(
        &mut r,
        classic(json!({ "org": "acme", "credential_authorization_id": "777", "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        ("DELETE", "/orgs/acme/credential-authorizations/777")
    );
    assert_github_headers(&seen[0]);
}

#[test]
fn github_classic_pat_with_a_token_id_loses_its_sso_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        answer(
            200,
            json!([
                { "login": "bob", "credential_id": 10, "authorized_credential_id": 111,
                  "credential_type": "personal access token" },
                { "login": "alice", "credential_id": 778, "authorized_credential_id": 4242,
                  "credential_type": "personal access token" },
            ]),
        ),
        answer(204, Value::Null),
        // The second request's lookup: no entry for the token.
        answer(200, json!([])),
    ]);
    let mut r = responder(github(&mock, &dir), false);
    let classic = |id: &str, key: &str| {
        let mut a = action(
            ActionKind::RevokeGithubToken,
            CredentialKind::GithubClassicPat,
            id,
            json!({ "org": "acme", "owner": "alice" }),
        );
        a.idempotency_key = format!("{}-{key}", a.idempotency_key);
        a
    };
    let done = submit(&mut r, classic("4242", "a"));
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        result(&done).contains("removed credential authorization 778"),
        "{done:?}"
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        (
            "GET",
            "/orgs/acme/credential-authorizations?per_page=100&page=1"
        )
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].url.as_str()),
        ("DELETE", "/orgs/acme/credential-authorizations/778")
    );
    seen.iter().for_each(assert_github_headers);

    // Not authorized for the organization (or no SAML SSO): a permanent failure that
    // says so, and nothing deleted.
    let failed = submit(&mut r, classic("5151", "b"));
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed).contains("has no SAML SSO authorization of token 5151"),
        "{failed:?}"
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2].method, "GET");
}

#[test]
fn github_server_error_is_retried_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        answer(500, json!({ "message": "Server Error" })),
        answer(202, json!({})),
    ]);
    let mut r = responder(github(&mock, &dir), false);
    let done = submit(
        &mut r,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "alice" }),
        ),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "two attempts: {seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.method == "POST" && s.json() == json!({ "action": "revoke", "pat_ids": [77] })));
}

#[test]
fn github_rate_limit_403_is_retried_but_a_plain_403_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        answer(403, json!({ "message": "API rate limit exceeded" }))
            .header("x-ratelimit-remaining", "0"),
        answer(202, json!({})),
        answer(
            403,
            json!({ "message": "Resource not accessible by integration" }),
        )
        .header("x-ratelimit-remaining", "4999"),
    ]);
    let mut r = responder(github(&mock, &dir), false);
    let done = submit(
        &mut r,
        gh_pat("1", json!({ "org": "acme", "pat_id": 1, "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert_eq!(mock.seen().len(), 2);
    let failed = submit(
        &mut r,
        gh_pat("2", json!({ "org": "acme", "pat_id": 2, "owner": "alice" })),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed).contains("GitHub answered 403: Resource not accessible by integration"),
        "{failed:?}"
    );
    assert!(result(&failed).contains("after 1 attempt(s)"), "{failed:?}");
    assert_eq!(mock.seen().len(), 3);
}

#[test]
fn github_not_found_fails_at_once_with_githubs_message() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(
        404,
        json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" }),
    )]);
    let mut r = responder(github(&mock, &dir), false);
    let failed = submit(
        &mut r,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "alice" }),
        ),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert_eq!(
        result(&failed),
        "github: GitHub answered 404: Not Found (after 1 attempt(s))"
    );
    assert_eq!(mock.seen().len(), 1);
}

#[test]
fn github_timeout_is_retried_then_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let slow = answer(202, json!({})).delayed(Duration::from_millis(2500));
    let mock = Mock::start(vec![slow.clone(), slow]);
    let mut r = responder(github(&mock, &dir), false);
    let start = Instant::now();
    let failed = submit(
        &mut r,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "alice" }),
        ),
    );
    let took = start.elapsed();
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(result(&failed).contains("transient failure"), "{failed:?}");
    assert!(result(&failed).contains("after 2 attempt(s)"), "{failed:?}");
    assert_eq!(mock.seen().len(), 2);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(4500),
        "took {took:?}"
    );
}

#[test]
fn github_dry_run_and_denylist_make_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![]);
    let mut dry = responder(github(&mock, &dir), true);
    let a = submit(
        &mut dry,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "alice" }),
        ),
    );
    assert_eq!(a.status, ActionStatus::DryRun, "{a:?}");
    let mut live = responder(github(&mock, &dir), false);
    let a = submit(
        &mut live,
        gh_pat(
            "12345",
            json!({ "org": "acme", "pat_id": 77, "owner": "breakglass-ops" }),
        ),
    );
    assert_eq!(a.status, ActionStatus::Refused, "{a:?}");
    assert!(mock.seen().is_empty(), "{:?}", mock.seen());
}

// --- Entra ---------------------------------------------------------------------------

const TENANT: &str = "8f0a5c1e-0000-4000-8000-00000000aaaa";
const CLIENT: &str = "1b2c3d4e-0000-4000-8000-00000000bbbb";
const SECRET: &str = "lineage-client-secret+/=";
const APP: &str = "0f6c1c5e-3a0b-4e2f-9a37-5b2f1d6c7e80";
const KEY: &str = "5d7e2f10-1111-4a2b-8c3d-4e5f60718293";

fn entra(mock: &Mock, dir: &tempfile::TempDir) -> Box<dyn Executor> {
    Box::new(EntraExecutor::new(EntraExecutorConfig {
        graph_url: format!("{}/v1.0", mock.url),
        login_url: mock.url.clone(),
        client_secret_file: Some(secret_file(dir, "entra-secret", SECRET)),
        timeout_secs: 1,
        max_retry_after_secs: 5,
        ..EntraExecutorConfig::new(TENANT, CLIENT)
    }))
}

fn token_answer(token: &str) -> Answer {
    answer(
        200,
        json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": token }),
    )
}

fn secret_action(key: &str, target: Value) -> Action {
    action(
        ActionKind::RemoveEntraCredential,
        CredentialKind::EntraClientSecret,
        key,
        target,
    )
}

fn assert_token_request(s: &Seen) {
    assert_eq!(s.method, "POST");
    assert_eq!(s.url, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        s.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut f = form(&s.body);
    f.sort();
    assert_eq!(
        f,
        vec![
            ("client_id".to_owned(), CLIENT.to_owned()),
            ("client_secret".to_owned(), SECRET.to_owned()),
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "scope".to_owned(),
                "https://graph.microsoft.com/.default".to_owned()
            ),
        ]
    );
}

/// The path as Graph receives it, with `'` possibly percent-encoded by the client.
fn path(s: &Seen) -> String {
    s.url.replace("%27", "'")
}

#[test]
fn entra_client_secret_is_removed_with_a_cached_graph_token() {
    let dir = tempfile::tempdir().unwrap();
    let key2 = "6e8f3021-2222-4b3c-9d4e-5f6071829304";
    let mock = Mock::start(vec![
        token_answer("graph-token-1"),
        answer(200, json!({ "@odata.context": "x", "value": true })),
        answer(204, Value::Null),
        answer(204, Value::Null),
    ]);
    let mut r = responder(entra(&mock, &dir), false);
    let done = submit(
        &mut r,
        secret_action(
            KEY,
            json!({ "app_id": APP, "tenant": TENANT, "owner": "alice", "revoke_user_sessions": "alice@example.com" }),
        ),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        result(&done).contains(&format!("removed client secret {KEY}")),
        "{done:?}"
    );
    let done = submit(
        &mut r,
        secret_action(key2, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");

    let seen = mock.seen();
    assert_eq!(seen.len(), 4, "one token request for both: {seen:?}");
    assert_token_request(&seen[0]);
    // Sessions first (harmless to repeat), the secret last.
    assert_eq!(seen[1].method, "POST");
    assert_eq!(
        seen[1].url,
        "/v1.0/users/alice%40example.com/revokeSignInSessions"
    );
    assert_eq!(seen[2].method, "POST");
    assert_eq!(
        path(&seen[2]),
        format!("/v1.0/applications(appId='{APP}')/removePassword")
    );
    assert_eq!(seen[2].json(), json!({ "keyId": KEY }));
    assert_eq!(
        path(&seen[3]),
        format!("/v1.0/applications(appId='{APP}')/removePassword")
    );
    assert_eq!(seen[3].json(), json!({ "keyId": key2 }));
    for s in &seen[1..] {
        assert_eq!(
            s.header("authorization"),
            Some("Bearer graph-token-1"),
            "{s:?}"
        );
    }
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "no bearer token on the token request"
    );
}

#[test]
fn entra_certificate_is_refused_unless_the_service_principal_may_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        token_answer("graph-token-1"),
        answer(204, Value::Null),
    ]);
    let mut r = responder(entra(&mock, &dir), false);
    let cert = |target| {
        action(
            ActionKind::RemoveEntraCredential,
            CredentialKind::EntraCertificate,
            "A1B2C3D4E5F6",
            target,
        )
    };

    let failed = submit(
        &mut r,
        cert(
            json!({ "app_id": APP, "owner": "alice", "revoke_user_sessions": "alice@example.com" }),
        ),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed).contains("proof-of-possession"),
        "{failed:?}"
    );
    assert!(
        result(&failed).contains("disable_service_principal"),
        "{failed:?}"
    );
    assert!(
        mock.seen().is_empty(),
        "nothing is called, not even sign-in: {:?}",
        mock.seen()
    );

    let done = submit(
        &mut r,
        cert(json!({ "app_id": APP, "owner": "alice", "disable_service_principal": true })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_token_request(&seen[0]);
    assert_eq!(seen[1].method, "PATCH");
    assert_eq!(
        path(&seen[1]),
        format!("/v1.0/servicePrincipals(appId='{APP}')")
    );
    assert_eq!(seen[1].json(), json!({ "accountEnabled": false }));
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer graph-token-1")
    );
}

#[test]
fn entra_sign_in_failure_is_permanent_with_the_aadsts_message() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![answer(
        401,
        json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2" }),
    )]);
    let mut r = responder(entra(&mock, &dir), false);
    let failed = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(
        result(&failed).contains("AADSTS7000215: Invalid client secret provided."),
        "{failed:?}"
    );
    assert!(!result(&failed).contains("Trace ID"), "{failed:?}");
    assert!(!result(&failed).contains(SECRET), "{failed:?}");
    assert_eq!(mock.seen().len(), 1);
}

#[test]
fn entra_expired_graph_token_is_renewed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        token_answer("graph-token-1"),
        answer(
            401,
            json!({ "error": { "code": "InvalidAuthenticationToken", "message": "Lifetime validation failed" } }),
        ),
        token_answer("graph-token-2"),
        answer(204, Value::Null),
    ]);
    let mut r = responder(entra(&mock, &dir), false);
    let done = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_token_request(&seen[2]);
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer graph-token-1")
    );
    assert_eq!(
        seen[3].header("authorization"),
        Some("Bearer graph-token-2")
    );
}

#[test]
fn entra_server_error_and_throttling_are_retried_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        token_answer("graph-token-1"),
        answer(
            500,
            json!({ "error": { "code": "generalException", "message": "boom" } }),
        ),
        answer(204, Value::Null),
        answer(
            429,
            json!({ "error": { "code": "TooManyRequests", "message": "slow down" } }),
        )
        .header("Retry-After", "1"),
        answer(204, Value::Null),
    ]);
    let mut r = responder(entra(&mock, &dir), false);
    let done = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert_eq!(mock.seen().len(), 3);

    let start = Instant::now();
    let key2 = "6e8f3021-2222-4b3c-9d4e-5f6071829304";
    let done = submit(
        &mut r,
        secret_action(key2, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After is honoured: {:?}",
        start.elapsed()
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen[1..]
        .iter()
        .all(|s| s.method == "POST" && s.url.ends_with("/removePassword")));
}

#[test]
fn entra_not_found_fails_at_once_with_graphs_message() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        token_answer("graph-token-1"),
        answer(
            404,
            json!({ "error": { "code": "Request_ResourceNotFound", "message": "Resource '0f6c' does not exist." } }),
        ),
    ]);
    let mut r = responder(entra(&mock, &dir), false);
    let failed = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert_eq!(
        result(&failed),
        "entra: Microsoft Graph answered 404: Request_ResourceNotFound: Resource '0f6c' does not exist. (after 1 attempt(s))"
    );
    assert_eq!(mock.seen().len(), 2);
}

#[test]
fn entra_timeout_is_retried_then_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let slow = answer(204, Value::Null).delayed(Duration::from_millis(2500));
    let mock = Mock::start(vec![token_answer("graph-token-1"), slow.clone(), slow]);
    let mut r = responder(entra(&mock, &dir), false);
    let failed = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(failed.status, ActionStatus::Failed, "{failed:?}");
    assert!(result(&failed).contains("transient failure"), "{failed:?}");
    assert!(result(&failed).contains("after 2 attempt(s)"), "{failed:?}");
    assert_eq!(mock.seen().len(), 3, "one sign-in, two attempts");
}

#[test]
fn entra_dry_run_and_denylist_make_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![]);
    let mut dry = responder(entra(&mock, &dir), true);
    let a = submit(
        &mut dry,
        secret_action(KEY, json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(a.status, ActionStatus::DryRun, "{a:?}");
    let mut live = responder(entra(&mock, &dir), false);
    let a = submit(
        &mut live,
        secret_action(KEY, json!({ "app_id": APP, "owner": "breakglass-admin" })),
    );
    assert_eq!(a.status, ActionStatus::Refused, "{a:?}");
    assert!(mock.seen().is_empty(), "{:?}", mock.seen());
}

#[test]
fn entra_malformed_ids_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![]);
    let mut r = responder(entra(&mock, &dir), false);
    let a = submit(
        &mut r,
        secret_action(KEY, json!({ "app_id": "x') or (1 eq 1", "owner": "alice" })),
    );
    assert_eq!(a.status, ActionStatus::Failed, "{a:?}");
    assert!(result(&a).contains("target.app_id must be a GUID"), "{a:?}");
    let a = submit(
        &mut r,
        secret_action("not-a-key-id", json!({ "app_id": APP, "owner": "alice" })),
    );
    assert_eq!(a.status, ActionStatus::Failed, "{a:?}");
    let a = submit(&mut r, secret_action(KEY, json!({ "owner": "alice" })));
    assert_eq!(a.status, ActionStatus::Failed, "{a:?}");
    assert!(result(&a).contains("target.app_id"), "{a:?}");
    assert!(mock.seen().is_empty(), "{:?}", mock.seen());
}

// --- Vault (headers and lease prefixes; the real server is in vault_executor.rs) -----

#[test]
fn vault_namespace_lease_prefix_and_error_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(vec![
        answer(204, Value::Null),
        answer(204, Value::Null),
        answer(503, json!({ "errors": ["Vault is sealed"] })),
        answer(400, json!({ "errors": ["invalid accessor"] })),
    ]);
    let exec = VaultExecutor::new(VaultExecutorConfig {
        token_file: Some(secret_file(&dir, "vault-token", "s.lineage")),
        namespace: Some("team-a".into()),
        timeout_secs: 1,
        ..VaultExecutorConfig::new(mock.url.clone())
    });
    let accessor = |id: &str, target| {
        action(
            ActionKind::RevokeVaultAccessor,
            CredentialKind::VaultServiceToken,
            id,
            target,
        )
    };

    exec.execute(&accessor("AbCdEf123", json!({}))).unwrap();
    exec.execute(&accessor(
        "AbCdEf123",
        json!({ "lease_prefix": "/aws/creds/deploy role/" }),
    ))
    .unwrap();
    let sealed = exec.execute(&accessor("x", json!({}))).unwrap_err();
    assert_eq!(
        sealed,
        lineage_respond::ExecError::Retryable("Vault answered 503: Vault is sealed".into())
    );
    let bad = exec.execute(&accessor("x", json!({}))).unwrap_err();
    assert_eq!(
        bad,
        lineage_respond::ExecError::Permanent("Vault answered 400: invalid accessor".into())
    );
    for refused in [
        json!({ "lease_prefix": "/" }),
        json!({ "lease_prefix": "a/../b" }),
        json!({ "lease_prefix": 3 }),
    ] {
        let e = exec.execute(&accessor("x", refused.clone())).unwrap_err();
        assert!(
            matches!(e, lineage_respond::ExecError::Permanent(_)),
            "{refused}: {e:?}"
        );
    }

    let seen = mock.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        ("POST", "/v1/auth/token/revoke-accessor")
    );
    assert_eq!(seen[0].json(), json!({ "accessor": "AbCdEf123" }));
    assert_eq!(
        (seen[1].method.as_str(), seen[1].url.as_str()),
        (
            "PUT",
            "/v1/sys/leases/revoke-prefix/aws/creds/deploy%20role"
        )
    );
    for s in &seen {
        assert_eq!(s.header("x-vault-token"), Some("s.lineage"), "{s:?}");
        assert_eq!(s.header("x-vault-namespace"), Some("team-a"), "{s:?}");
    }
}
