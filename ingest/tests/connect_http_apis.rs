//! The GitHub audit-log, Entra Graph and CloudTrail LookupEvents connectors against a
//! local HTTP server (tiny_http on 127.0.0.1) that serves recorded response shapes
//! from an in-memory data set, honouring the filters, page sizes and cursors the
//! connectors send, and injecting a 500, rate-limit responses and (for Entra) an
//! expired token. Each test stops a connector midway without acking, resumes from
//! the checkpoint file with a new connector, adds events at the boundary instant
//! and after it, and checks every event arrived exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lineage_ingest::connect::entra_graph::{EntraGraphConfig, EntraGraphConnector};
use lineage_ingest::connect::github_audit::{GitHubAuditConfig, GitHubAuditConnector, GitHubScope};
use lineage_ingest::connect::http::{query_param, RetryPolicy, Secret};
use lineage_ingest::connect::lookup_events::{LookupEventsConfig, LookupEventsConnector};
use lineage_ingest::connect::{CheckpointStore, Connector, RawBatch};
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    url: String,
    headers: HashMap<String, String>,
    body: String,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A local server calling `handler` for each request; stopped on drop.
struct Recorded {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorded {
    fn start(mut handler: impl FnMut(&Seen, usize) -> Reply + Send + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (srv, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let s = Seen {
                    method: req.method().to_string(),
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
                };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(s.clone());
                    l.len()
                };
                let reply = handler(&s, n);
                let mut resp =
                    tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                for (k, v) in reply.headers {
                    resp.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        Recorded {
            base,
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_rate_limit_wait: Duration::from_secs(3),
    }
}

/// Polls and acks until the connector is caught up; returns the ids of what arrived.
fn drain(c: &mut dyn Connector, id_of: impl Fn(&Value) -> String) -> Vec<String> {
    let mut ids = Vec::new();
    let mut batches = 0;
    while let Some(batch) = c.poll().unwrap() {
        batches += 1;
        assert!(batches < 100, "the connector never caught up: {batch:?}");
        ids.extend(ids_of(&batch, &id_of));
        c.ack(batch.id).unwrap();
    }
    ids
}

fn ids_of(batch: &RawBatch, id_of: impl Fn(&Value) -> String) -> Vec<String> {
    assert!(batch.dead_letters.is_empty(), "{:?}", batch.dead_letters);
    batch
        .records
        .iter()
        .map(|r| id_of(&serde_json::from_slice(&r.bytes).unwrap()))
        .collect()
}

fn assert_each_once(ids: &[String], expected: usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert_eq!(counts.len(), expected, "ids: {counts:?}");
}

// ---------------------------------------------------------------------------------
// GitHub

const GH_T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

fn gh_entry(i: usize, ts: i64) -> Value {
    json!({
        "@timestamp": ts,
        "_document_id": format!("doc-{i:02}"),
        "action": "git.clone",
        "actor": "ci-bot",
        "org": "acme",
        "programmatic_access_type": "Fine-grained personal access token",
        "token_id": 4242,
        "hashed_token": "abc="
    })
}

#[test]
fn github_audit_pages_rate_limits_and_resumes_without_duplicates() {
    let token = "ghp_recorded_test_token_never_persisted";
    let data: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(
        (0..7)
            .map(|i| gh_entry(i, GH_T0 + i as i64 * 1000))
            .collect(),
    ));
    let d = data.clone();
    let server = Recorded::start(move |req, n| {
        // Request 2 fails, request 4 hits the primary limit, request 6 the secondary one.
        match n {
            3 => return Reply::json(500, json!({"message": "Server Error"})),
            2 => {
                let reset = chrono::Utc::now().timestamp() + 1;
                return Reply::json(403, json!({"message": "API rate limit exceeded"}))
                    .header("x-ratelimit-remaining", "0")
                    .header("x-ratelimit-reset", reset.to_string());
            }
            6 => {
                return Reply::json(
                    403,
                    json!({"message": "You have exceeded a secondary rate limit"}),
                )
                .header("retry-after", "1")
            }
            _ => {}
        }
        if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}"))
        {
            return Reply::json(401, json!({"message": "Bad credentials"}));
        }
        assert!(req.url.starts_with("/orgs/acme/audit-log?"), "{}", req.url);
        assert_eq!(query_param(&req.url, "include").as_deref(), Some("all"));
        let per_page: usize = query_param(&req.url, "per_page").unwrap().parse().unwrap();
        let since = query_param(&req.url, "phrase").and_then(|p| {
            p.split_whitespace()
                .find_map(|w| w.strip_prefix("created:>=").map(str::to_owned))
        });
        let since_ms = since.map(|s| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .unwrap()
                .timestamp_millis()
        });
        let all: Vec<Value> = d
            .lock()
            .unwrap()
            .iter()
            .filter(|e| since_ms.is_none_or(|s| e["@timestamp"].as_i64().unwrap() >= s))
            .cloned()
            .collect();
        let start: usize = query_param(&req.url, "after")
            .map(|a| a.trim_start_matches("cursor-").parse().unwrap())
            .unwrap_or(0);
        let end = (start + per_page).min(all.len());
        let page: Vec<Value> = all[start..end].to_vec();
        let mut reply = Reply::json(200, Value::Array(page));
        if end < all.len() {
            let phrase = query_param(&req.url, "phrase").unwrap_or_default();
            reply = reply.header(
                "Link",
                format!(
                    "<http://example.invalid/orgs/acme/audit-log?per_page={per_page}&phrase={}&after=cursor-{end}&before=>; rel=\"next\"",
                    phrase.replace(' ', "+")
                ),
            );
        }
        reply.header("x-ratelimit-remaining", "4000")
    });
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("github.json");
    let config = || {
        let mut c = GitHubAuditConfig::new(
            GitHubScope::Org("acme".into()),
            Secret::new(token),
            CheckpointStore::new(&cp, "github-audit"),
        );
        c.api_base = server.base.clone();
        c.per_page = 3;
        c.retry = fast_retry();
        c
    };
    let id_of = |v: &Value| v["_document_id"].as_str().unwrap().to_owned();

    // First run: one page acked, the next handed out and never acked (a crash).
    let mut first = GitHubAuditConnector::new(config()).unwrap();
    let b1 = first.poll().unwrap().unwrap();
    let mut delivered = ids_of(&b1, id_of);
    first.ack(b1.id).unwrap();
    let lost = first.poll().unwrap().unwrap();
    assert_eq!(lost.records.len(), 3);
    let stats = first.stats().clone();
    assert!(stats.retried >= 1 && stats.throttled >= 1, "{stats:?}");
    drop(first);
    let saved = std::fs::read_to_string(&cp).unwrap();
    assert!(saved.contains("\"after\": \"cursor-3\""), "{saved}");
    assert!(!saved.contains(token), "the token must never be persisted");

    // Resume: the un-acked page comes again, then the rest.
    let mut second = GitHubAuditConnector::new(config()).unwrap();
    delivered.extend(drain(&mut second, id_of));
    assert_each_once(&delivered, 7);
    assert!(second.stats().throttled >= 1, "{:?}", second.stats());

    // New events: one at the instant of the newest delivered (the boundary), two later.
    {
        let mut d = data.lock().unwrap();
        d.push(gh_entry(7, GH_T0 + 6000));
        d.push(gh_entry(8, GH_T0 + 9000));
        d.push(gh_entry(9, GH_T0 + 9500));
    }
    delivered.extend(drain(&mut second, id_of));
    assert_each_once(&delivered, 10);
    assert!(
        second.stats().duplicates_skipped >= 1,
        "the boundary event was re-served and dropped"
    );
    // Caught up: nothing more, and a restarted connector agrees.
    assert!(second.poll().unwrap().is_none());
    drop(second);
    let mut third = GitHubAuditConnector::new(config()).unwrap();
    assert!(drain(&mut third, id_of).is_empty());
    let phrases: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|s| query_param(&s.url, "phrase"))
        .collect();
    assert!(
        phrases
            .iter()
            .any(|p| p == "created:>=2024-05-01T12:00:09Z"),
        "the resumed query starts at the checkpoint: {phrases:?}"
    );
}

// ---------------------------------------------------------------------------------
// Entra

fn sign_in(i: usize, sec: u32) -> Value {
    json!({
        "id": format!("si-{i:02}"),
        "createdDateTime": format!("2024-05-01T12:00:{sec:02}.000Z"),
        "appId": "3f1c0000-0000-0000-0000-000000000001",
        "servicePrincipalId": "sp-1",
        "signInEventTypes": ["servicePrincipal"],
        "servicePrincipalCredentialKeyId": "key-1",
        "ipAddress": "203.0.113.5",
        "status": {"errorCode": 0}
    })
}

fn dir_audit(i: usize, sec: u32) -> Value {
    json!({
        "id": format!("da-{i:02}"),
        "activityDateTime": format!("2024-05-01T12:00:{sec:02}.000Z"),
        "activityDisplayName": "Add owner to application",
        "category": "ApplicationManagement",
        "result": "success",
        "initiatedBy": {"user": {"userPrincipalName": "alice@corp.onmicrosoft.com"}},
        "targetResources": [{"id": "app-1", "type": "Application"}]
    })
}

#[test]
fn entra_graph_pages_throttles_refreshes_token_and_resumes() {
    let sign_ins: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(
        (0..5).map(|i| sign_in(i, i as u32 * 2)).collect(),
    ));
    let audits: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(
        (0..3).map(|i| dir_audit(i, i as u32 * 3)).collect(),
    ));
    let (si, da) = (sign_ins.clone(), audits.clone());
    let tokens_issued = Arc::new(Mutex::new(0u32));
    let issued = tokens_issued.clone();
    let served_pages = Arc::new(Mutex::new(0u32));
    let base_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let base_for_server = base_cell.clone();
    let server = Recorded::start(move |req, _n| {
        if req.url == "/tenant-1/oauth2/v2.0/token" {
            assert_eq!(req.method, "POST");
            assert!(
                req.body.contains("grant_type=client_credentials"),
                "{}",
                req.body
            );
            assert!(
                req.body.contains("client_secret=s3cr3t-value"),
                "{}",
                req.body
            );
            let mut n = issued.lock().unwrap();
            *n += 1;
            return Reply::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": format!("tok-{n}")}),
            );
        }
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let mut pages = served_pages.lock().unwrap();
        *pages += 1;
        match *pages {
            1 => {
                return Reply::json(429, json!({"error": {"code": "TooManyRequests"}}))
                    .header("Retry-After", "1")
            }
            3 => return Reply::json(500, json!({"error": {"code": "InternalServerError"}})),
            // The first token "expires" after a few pages.
            _ if auth == "Bearer tok-1" && *pages >= 5 => {
                return Reply::json(
                    401,
                    json!({"error": {"code": "InvalidAuthenticationToken"}}),
                )
            }
            _ => {}
        }
        drop(pages);
        assert!(auth.starts_with("Bearer tok-"), "{auth}");
        let (path, query) = req.url.split_once('?').unwrap_or((&req.url, ""));
        let url = format!("/x?{query}");
        let (data, field) = match path {
            "/beta/auditLogs/signIns" => (si.lock().unwrap().clone(), "createdDateTime"),
            "/beta/auditLogs/directoryAudits" => (da.lock().unwrap().clone(), "activityDateTime"),
            other => panic!("unexpected path {other}"),
        };
        let filter = query_param(&url, "$filter").or_else(|| query_param(&url, "f"));
        if path.ends_with("signIns") && query_param(&url, "$filter").is_some() {
            let f = query_param(&url, "$filter").unwrap();
            assert!(
                f.contains("signInEventTypes/any(t: t eq 'servicePrincipal')"),
                "{f}"
            );
            assert!(
                f.contains("signInEventTypes/any(t: t eq 'managedIdentity')"),
                "{f}"
            );
        }
        let since = filter.as_deref().and_then(|f| {
            f.split(&format!("{field} ge "))
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        });
        let top: usize = query_param(&url, "$top")
            .or_else(|| query_param(&url, "top"))
            .map(|t| t.parse().unwrap())
            .unwrap_or(2);
        let skip: usize = query_param(&url, "skip")
            .map(|s| s.parse().unwrap())
            .unwrap_or(0);
        let matching: Vec<Value> = data
            .into_iter()
            .filter(|v| {
                since
                    .as_deref()
                    .is_none_or(|s| v[field].as_str().unwrap() >= s)
            })
            .collect();
        let end = (skip + top).min(matching.len());
        let mut body = json!({"@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs", "value": matching[skip..end]});
        if end < matching.len() {
            let base = base_for_server.lock().unwrap().clone();
            body["@odata.nextLink"] = Value::String(format!(
                "{base}{path}?f={}&top={top}&skip={end}",
                filter.as_deref().map(percent_encode).unwrap_or_default()
            ));
        }
        Reply::json(200, body)
    });
    *base_cell.lock().unwrap() = server.base.clone();

    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("entra.json");
    let config = || {
        let mut c = EntraGraphConfig::new(
            "tenant-1",
            "client-1",
            Secret::new("s3cr3t-value"),
            CheckpointStore::new(&cp, "entra-graph"),
        );
        c.graph_base = format!("{}/beta", server.base);
        c.token_url = format!("{}/tenant-1/oauth2/v2.0/token", server.base);
        c.page_size = 2;
        c.retry = fast_retry();
        c
    };
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_owned();

    let mut first = EntraGraphConnector::new(config()).unwrap();
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let b = first.poll().unwrap().unwrap();
        delivered.extend(ids_of(&b, id_of));
        first.ack(b.id).unwrap();
    }
    let lost = first.poll().unwrap().unwrap();
    assert!(!lost.records.is_empty());
    let s = first.stats().clone();
    assert!(s.throttled >= 1 && s.retried >= 1, "{s:?}");
    drop(first);
    let saved = std::fs::read_to_string(&cp).unwrap();
    assert!(saved.contains("next_link"), "{saved}");
    assert!(
        !saved.contains("s3cr3t") && !saved.contains("tok-"),
        "no secret in {saved}"
    );

    let mut second = EntraGraphConnector::new(config()).unwrap();
    delivered.extend(drain(&mut second, id_of));
    assert_each_once(&delivered, 8);
    assert!(
        *tokens_issued.lock().unwrap() >= 2,
        "a 401 refreshed the token"
    );

    // Boundary + later events in both streams.
    sign_ins.lock().unwrap().push(sign_in(5, 8)); // same instant as si-04
    sign_ins.lock().unwrap().push(sign_in(6, 30));
    audits.lock().unwrap().push(dir_audit(3, 40));
    delivered.extend(drain(&mut second, id_of));
    assert_each_once(&delivered, 11);
    assert!(
        second.stats().duplicates_skipped >= 2,
        "{:?}",
        second.stats()
    );
    drop(second);
    let mut third = EntraGraphConnector::new(config()).unwrap();
    assert!(drain(&mut third, id_of).is_empty());
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// CloudTrail LookupEvents (AWS JSON 1.1)

const CT_T0: i64 = 1_714_564_800; // seconds

fn ct_event(i: usize, secs: i64) -> (i64, Value) {
    let id = format!("00000000-0000-0000-0000-{i:012}");
    let raw = json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "svc"},
        "eventTime": chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "iam.amazonaws.com",
        "eventName": "ListUsers",
        "awsRegion": "us-east-1",
        "eventID": id,
        "readOnly": true
    });
    (
        secs,
        json!({
            "EventId": id,
            "EventName": "ListUsers",
            "EventTime": secs as f64,
            "EventSource": "iam.amazonaws.com",
            "CloudTrailEvent": raw.to_string()
        }),
    )
}

#[test]
fn lookup_events_windows_pages_throttling_and_resume() {
    // Events through the first hour, one exactly on the window boundary, and later ones.
    let events: Vec<(i64, Value)> = vec![
        ct_event(1, CT_T0 + 10),
        ct_event(2, CT_T0 + 20),
        ct_event(3, CT_T0 + 600),
        ct_event(4, CT_T0 + 1800),
        ct_event(5, CT_T0 + 3600), // boundary of window 1 and window 2
        ct_event(6, CT_T0 + 3700),
        ct_event(7, CT_T0 + 5000),
        ct_event(8, CT_T0 + 7000),
    ];
    let server = Recorded::start(move |req, n| {
        let target = req.headers.get("x-amz-target").cloned().unwrap_or_default();
        assert!(
            target.ends_with("CloudTrail_20131101.LookupEvents"),
            "{target}"
        );
        if n == 1 {
            return Reply::json(
                400,
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
            );
        }
        if n == 3 {
            return Reply::json(500, json!({"__type": "InternalFailure", "message": "oops"}));
        }
        let q: Value = serde_json::from_str(&req.body).unwrap();
        let start = q["StartTime"].as_f64().unwrap() as i64;
        let end = q["EndTime"].as_f64().unwrap() as i64;
        let max = q["MaxResults"].as_u64().unwrap() as usize;
        let skip: usize = q["NextToken"]
            .as_str()
            .map(|t| t.parse().unwrap())
            .unwrap_or(0);
        // Newest first, like the real API; both bounds inclusive.
        let mut hits: Vec<&Value> = events
            .iter()
            .filter(|(t, _)| *t >= start && *t <= end)
            .map(|(_, e)| e)
            .collect();
        hits.reverse();
        let stop = (skip + max).min(hits.len());
        let mut body = json!({"Events": hits[skip..stop]});
        if stop < hits.len() {
            body["NextToken"] = Value::String(stop.to_string());
        }
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
            body: body.to_string(),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("lookup.json");
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudtrail::config::SharedCredentialsProvider::new(
            aws_sdk_cloudtrail::config::Credentials::new(
                "AKIDTEST",
                "test-secret",
                None,
                None,
                "test",
            ),
        ))
        .endpoint_url(server.base.clone())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let connector = || {
        let mut c =
            LookupEventsConfig::new(CT_T0 * 1000, CheckpointStore::new(&cp, "lookup-events"));
        c.until_ms = Some((CT_T0 + 3 * 3600) * 1000);
        c.max_window = Duration::from_secs(3600);
        c.min_window = Duration::ZERO;
        c.end_lag = Duration::ZERO;
        c.page_size = 2;
        c.retry = fast_retry();
        LookupEventsConnector::with_sdk_config(
            c,
            lineage_ingest::connect::aws::runtime().unwrap(),
            &sdk,
        )
        .unwrap()
    };
    let id_of = |v: &Value| v["eventID"].as_str().unwrap().to_owned();

    let mut first = connector();
    let w1 = first.poll().unwrap().unwrap();
    let mut delivered = ids_of(&w1, id_of);
    assert_eq!(
        delivered.len(),
        5,
        "window 1 holds events 1–5, over three pages"
    );
    let times: Vec<String> = w1
        .records
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.bytes).unwrap()["eventTime"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "handed out oldest first: {times:?}"
    );
    first.ack(w1.id).unwrap();
    let s = first.stats().clone();
    assert!(s.throttled >= 1 && s.retried >= 1, "{s:?}");
    let lost = first.poll().unwrap().unwrap();
    assert_eq!(
        lost.records.len(),
        3,
        "window 2 holds events 6–8, not the boundary event 5"
    );
    drop(first);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(
        saved["state"]["cursor"]["since_ms"],
        json!((CT_T0 + 3600) * 1000)
    );
    assert_eq!(
        saved["state"]["cursor"]["ids_at_since"],
        json!(["00000000-0000-0000-0000-000000000005"])
    );

    let mut second = connector();
    delivered.extend(drain(&mut second, id_of));
    assert_each_once(&delivered, 8);
    assert!(second.stats().duplicates_skipped >= 1);
    assert!(second.poll().unwrap().is_none(), "caught up at --until");
}
