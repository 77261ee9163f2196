//! Alert sinks end to end: rotated JSON lines, OCSF, signed webhooks with retries and
//! a spool, Slack, and a receiver that is down — against local tiny_http receivers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use lineage_core::{AgentId, Alert, AttributionMethod, HumanId, LineageStep, Severity};
use lineage_sinks::alerts::{
    AlertFanout, AlertSinkConfig, AlertSinksConfig, FileSinkConfig, SinkStats, SlackConfig,
    WebhookConfig,
};
use sha2::Sha256;

// ---------------------------------------------------------------------------------
// Fixtures

fn alert(i: usize) -> Alert {
    let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, i as u32).unwrap();
    Alert {
        id: format!("alert-{i:03}").into(),
        detector: "departed-owner".into(),
        severity: Severity::Critical,
        title: format!("Key of departed owner used #{i}"),
        summary: format!("AKIAEXAMPLE{i:03} was used after its owner left."),
        first_seen: t,
        last_seen: t,
        count: 2 + i as u64,
        dedup_key: format!("departed-owner|AKIAEXAMPLE{i:03}"),
        credential: None,
        root_credential: None,
        agent: Some(AgentId::new("deploy-bot")),
        owner: Some(HumanId::new("alice@example.com")),
        lineage_path: vec![
            LineageStep {
                node: "credential".into(),
                id: format!("AKIAEXAMPLE{i:03}").into(),
                via: AttributionMethod::Declared,
            },
            LineageStep {
                node: "agent".into(),
                id: "deploy-bot".into(),
                via: AttributionMethod::Declared,
            },
            LineageStep {
                node: "human".into(),
                id: "alice@example.com".into(),
                via: AttributionMethod::Declared,
            },
        ],
        mitre: vec!["T1078.004".into()],
        evidence: serde_json::json!({ "action": "s3:GetObject" }),
        event_ids: vec![format!("ev-{i}").into()],
        blast_radius: None,
    }
}

fn alerts(n: usize) -> Vec<Alert> {
    (0..n).map(alert).collect()
}

fn webhook(name: &str, url: String, secret_env: Option<&str>) -> WebhookConfig {
    WebhookConfig {
        name: Some(name.into()),
        secret_env: secret_env.map(str::to_owned),
        timeout_secs: 2,
        max_attempts: 2,
        backoff_ms: 10,
        ..WebhookConfig::new(url)
    }
}

fn stats_of(fanout: &AlertFanout, name: &str) -> SinkStats {
    fanout
        .stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sink named {name}"))
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

// ---------------------------------------------------------------------------------
// A local receiver

#[derive(Clone, Debug)]
struct Received {
    status: u16,
    body: Vec<u8>,
    headers: HashMap<String, String>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Answers 503 to the first `fail_first` requests, 200 afterwards, and records all.
struct Receiver {
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<Vec<Received>>>,
    handle: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        Self::start_with(fail_first, 503)
    }

    /// Answers `fail_status` to the first `fail_first` requests.
    fn start_with(fail_first: usize, fail_status: u16) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (srv, lg) = (server.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            for (n, mut req) in srv.incoming_requests().enumerate() {
                let mut body = Vec::new();
                std::io::Read::read_to_end(req.as_reader(), &mut body).unwrap();
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.as_str().to_owned(),
                        )
                    })
                    .collect();
                let status = if n < fail_first { fail_status } else { 200 };
                lg.lock().unwrap().push(Received {
                    status,
                    body,
                    headers,
                });
                let _ = req.respond(tiny_http::Response::empty(status));
            }
        });
        Self {
            server,
            log,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        let port = self.server.server_addr().to_ip().unwrap().port();
        format!("http://127.0.0.1:{port}/hook")
    }

    fn all(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.status == 200).collect()
    }

    /// Ids of the accepted alert bodies, in arrival order.
    fn accepted_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ids(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.id.to_string()).collect()
}

// ---------------------------------------------------------------------------------
// Webhook: retries, spool, flush, signature, idempotency key

#[test]
fn webhook_spools_failed_alerts_and_flush_delivers_each_exactly_once() {
    const SECRET_ENV: &str = "LINEAGE_TEST_WEBHOOK_SECRET_A";
    const SECRET: &str = "s3cr3t-for-the-test";
    std::env::set_var(SECRET_ENV, SECRET);
    // 2 attempts for the first alert + 1 more on the flush: the first 3 requests fail.
    let rx = Receiver::start(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Webhook(webhook(
            "soc",
            rx.url(),
            Some(SECRET_ENV),
        ))],
        ..AlertSinksConfig::default()
    };
    let spool_dir = dir.path().join("spool");
    let mut fanout = AlertFanout::build(&cfg, &spool_dir).unwrap();
    let sent = alerts(5);
    for a in &sent {
        fanout.send(a).expect("a spooled alert is not an error");
    }

    // The first alert failed both attempts; within the cooldown the others queued
    // behind it untried, so the receiver saw exactly the first alert's two attempts.
    let s = stats_of(&fanout, "soc");
    assert_eq!((s.delivered, s.failed, s.retries), (0, 1, 1), "{s:?}");
    assert_eq!((s.spooled, s.pending), (5, 5), "{s:?}");
    assert_eq!(rx.all().len(), 2);
    assert!(rx.accepted().is_empty());
    let spool_file = spool_dir.join("soc.jsonl");
    let spooled: Vec<String> = read_lines(&spool_file)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(spooled, ids(&sent), "spool holds the alerts in order");

    let resent = fanout.flush_spool().unwrap();
    assert_eq!(resent, 5);

    // Exactly once each, in order — the receiver dedupes nothing.
    assert_eq!(rx.accepted_ids(), ids(&sent));
    let all = rx.all();
    assert_eq!(all.len(), 3 + 5, "3 failed requests, then one per alert");
    for r in &all {
        let body = r.json();
        let key = format!("{}:{}", body["id"].as_str().unwrap(), body["count"]);
        assert_eq!(r.header("Idempotency-Key"), Some(key.as_str()));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let sig = r.header("X-Lineage-Signature").expect("signed");
        assert!(verify(SECRET.as_bytes(), &r.body, sig), "signature {sig}");
        assert!(!verify(b"another key", &r.body, sig));
        assert_eq!(
            serde_json::from_slice::<Alert>(&r.body).unwrap(),
            sent[sent
                .iter()
                .position(|a| body["id"] == a.id.as_str())
                .unwrap()]
        );
    }

    let s = stats_of(&fanout, "soc");
    assert_eq!((s.delivered, s.resent, s.pending), (5, 5, 0), "{s:?}");
    assert_eq!(fanout.pending(), 0);
    assert!(!spool_file.exists(), "an emptied spool is removed");
    assert_eq!(fanout.flush_spool().unwrap(), 0);
    assert_eq!(rx.all().len(), 8, "nothing sent twice");
}

#[test]
fn webhook_resends_the_spool_first_on_the_next_send() {
    // No cooldown: each send first tries the spool. 5 failures: the first alert
    // fails twice on its own send and twice on the second send, then goes through.
    let rx = Receiver::start(5);
    let dir = tempfile::tempdir().unwrap();
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Webhook(WebhookConfig {
            cooldown_secs: 0,
            ..webhook("soc", rx.url(), None)
        })],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &dir.path().join("spool")).unwrap();
    let sent = alerts(5);
    fanout.send(&sent[0]).unwrap();
    fanout.send(&sent[1]).unwrap();
    assert_eq!(
        fanout.pending(),
        2,
        "the second alert queued behind the first"
    );
    assert!(rx.accepted().is_empty());
    for a in &sent[2..] {
        fanout.send(a).unwrap();
    }
    assert_eq!(fanout.pending(), 0);
    assert_eq!(rx.accepted_ids(), ids(&sent), "in order, each exactly once");
    let s = stats_of(&fanout, "soc");
    assert_eq!(
        (s.delivered, s.resent, s.spooled, s.failed),
        (5, 2, 2, 2),
        "{s:?}"
    );
    assert!(rx
        .all()
        .iter()
        .all(|r| r.header("X-Lineage-Signature").is_none()));
    assert_eq!(fanout.flush_spool().unwrap(), 0);
    assert!(!dir.path().join("spool/soc.jsonl").exists());
}

#[test]
fn a_rejected_payload_is_set_aside_not_retried_and_does_not_block() {
    let rx = Receiver::start_with(1, 422);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Webhook(webhook("soc", rx.url(), None))],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &spool_dir).unwrap();
    let sent = alerts(2);
    fanout.send(&sent[0]).unwrap();
    fanout.send(&sent[1]).unwrap();
    assert_eq!(rx.all().len(), 2, "no retry of a rejected payload");
    assert_eq!(rx.accepted_ids(), ["alert-001"]);
    let s = stats_of(&fanout, "soc");
    assert_eq!(
        (s.delivered, s.rejected, s.retries, s.pending),
        (1, 1, 0, 0),
        "{s:?}"
    );
    let set_aside = read_lines(&spool_dir.join("soc.rejected.jsonl"));
    assert_eq!(set_aside.len(), 1);
    assert_eq!(set_aside[0]["id"], "alert-000");
}

#[test]
fn the_fanout_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<AlertFanout>();
}

// ---------------------------------------------------------------------------------
// Files

#[test]
fn jsonl_sink_rotates_and_holds_every_alert_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/alerts.jsonl");
    let sent = alerts(5);
    let line_len = serde_json::to_vec(&sent[0]).unwrap().len() as u64 + 1;
    assert!(sent
        .iter()
        .all(|a| serde_json::to_vec(a).unwrap().len() as u64 + 1 == line_len));
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Jsonl(FileSinkConfig {
            // Three lines fit, a fourth does not.
            max_bytes: 3 * line_len + line_len / 2,
            ..FileSinkConfig::new(&path)
        })],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &dir.path().join("spool")).unwrap();
    for a in &sent {
        fanout.send(a).unwrap();
    }
    assert!(path.exists() && numbered(&path, 1).exists());
    assert!(!numbered(&path, 2).exists());
    let older = read_lines(&numbered(&path, 1));
    let newer = read_lines(&path);
    assert_eq!((older.len(), newer.len()), (3, 2));
    let got: Vec<Alert> = older
        .into_iter()
        .chain(newer)
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(got, sent, "every alert once, oldest in path.1");
    assert!(
        !dir.path().join("spool").exists(),
        "no HTTP sink, no spool dir"
    );
    let s = stats_of(&fanout, "jsonl");
    assert_eq!((s.delivered, s.failed), (5, 0));
}

#[test]
fn jsonl_sink_keeps_only_keep_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Jsonl(FileSinkConfig {
            max_bytes: 1, // one alert per file
            keep: 2,
            ..FileSinkConfig::new(&path)
        })],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, dir.path()).unwrap();
    let sent = alerts(5);
    for a in &sent {
        fanout.send(a).unwrap();
    }
    let id_in = |p: &Path| read_lines(p)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id_in(&path), "alert-004");
    assert_eq!(id_in(&numbered(&path, 1)), "alert-003");
    assert_eq!(id_in(&numbered(&path, 2)), "alert-002");
    assert!(!numbered(&path, 3).exists());
}

#[test]
fn ocsf_sink_writes_detection_findings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("findings.ocsf.jsonl");
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Ocsf(FileSinkConfig::new(&path))],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, dir.path()).unwrap();
    let sent = alerts(3);
    for a in &sent {
        fanout.send(a).unwrap();
    }
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 3);
    for (line, a) in lines.iter().zip(&sent) {
        assert_eq!(line["class_uid"], 2004);
        assert_eq!(line["type_uid"], 200401);
        assert_eq!(line["finding_info"]["uid"], a.id.as_str());
        assert_eq!(line["finding_info"]["title"], a.title.as_str());
        assert_eq!(line["severity_id"], 5);
    }
}

// ---------------------------------------------------------------------------------
// Slack

#[test]
fn slack_sink_posts_a_text_message() {
    let rx = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Slack(SlackConfig {
            timeout_secs: 2,
            max_attempts: 2,
            backoff_ms: 10,
            ..SlackConfig::new(rx.url())
        })],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &dir.path().join("spool")).unwrap();
    let a = alert(7);
    let mut hostile = alert(8);
    hostile.title = "role <!channel> & <https://evil.example|click>".into();
    fanout.send(&a).unwrap();
    fanout.send(&hostile).unwrap();

    let got = rx.accepted();
    assert_eq!(got.len(), 2);
    let body = got[0].json();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only `text`: {body}");
    let text = body["text"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("CRITICAL {}", a.title));
    assert!(lines[1].contains("AKIAEXAMPLE007"), "{text}");
    assert!(lines[1].contains("deploy-bot") && lines[1].contains("alice@example.com"));
    assert_eq!(lines[2], a.summary);
    assert_eq!(got[0].header("Idempotency-Key"), Some("alert-007:9"));

    let text = got[1].json()["text"].as_str().unwrap().to_owned();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
    let s = stats_of(&fanout, "slack");
    assert_eq!((s.kind.as_str(), s.delivered, s.pending), ("slack", 2, 0));
}

// ---------------------------------------------------------------------------------
// A receiver that is down

#[test]
fn dead_receiver_spools_everything_and_other_sinks_still_get_every_alert() {
    let live = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("state/spool");
    let jsonl = dir.path().join("alerts.jsonl");
    let ocsf = dir.path().join("alerts.ocsf.jsonl");
    let dead_url = format!("http://127.0.0.1:{}/hook", closed_port());
    let cfg = AlertSinksConfig {
        sinks: vec![
            AlertSinkConfig::Webhook(webhook("dead", dead_url, None)),
            AlertSinkConfig::Jsonl(FileSinkConfig::new(&jsonl)),
            AlertSinkConfig::Webhook(webhook("live", live.url(), None)),
            AlertSinkConfig::Ocsf(FileSinkConfig::new(&ocsf)),
        ],
        ..AlertSinksConfig::default()
    };
    let sent = alerts(4);
    let started = std::time::Instant::now();
    {
        let mut fanout = AlertFanout::build(&cfg, &spool_dir).unwrap();
        for a in &sent {
            fanout.send(a).expect("spooled, not lost");
        }
        let stats = fanout.stats();
        let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["dead", "jsonl", "live", "ocsf"], "config order");
        let dead = stats_of(&fanout, "dead");
        assert_eq!((dead.delivered, dead.spooled, dead.pending), (0, 4, 4));
        assert_eq!(dead.spool_refused, 0);
        assert_eq!(stats_of(&fanout, "live").delivered, 4);
        assert_eq!(stats_of(&fanout, "jsonl").delivered, 4);
        assert_eq!(stats_of(&fanout, "ocsf").delivered, 4);
        // A flush while the receiver is still down keeps everything.
        assert_eq!(fanout.flush_spool().unwrap(), 0);
        assert_eq!(fanout.pending(), 4);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(live.accepted_ids(), ids(&sent));
    assert_eq!(read_lines(&jsonl).len(), 4);
    assert_eq!(read_lines(&ocsf).len(), 4);
    let spooled: Vec<String> = read_lines(&spool_dir.join("dead.jsonl"))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(spooled, ids(&sent));

    // Nothing lost: a later run with the receiver back delivers the spool, in order.
    let back = Receiver::start(0);
    let cfg = AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Webhook(webhook("dead", back.url(), None))],
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &spool_dir).unwrap();
    assert_eq!(fanout.pending(), 4, "the spool survives a restart");
    let next = alert(9);
    fanout.send(&next).unwrap();
    let mut expected = ids(&sent);
    expected.push(next.id.to_string());
    assert_eq!(
        back.accepted_ids(),
        expected,
        "spool first, then the new alert"
    );
    assert_eq!(fanout.pending(), 0);
    assert!(!spool_dir.join("dead.jsonl").exists());
}

#[test]
fn a_full_spool_refuses_with_an_error_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("alerts.jsonl");
    let sent = alerts(3);
    let line_len = serde_json::to_vec(&sent[0]).unwrap().len() as u64 + 1;
    let cfg = AlertSinksConfig {
        sinks: vec![
            AlertSinkConfig::Webhook(webhook(
                "dead",
                format!("http://127.0.0.1:{}/", closed_port()),
                None,
            )),
            AlertSinkConfig::Jsonl(FileSinkConfig::new(&jsonl)),
        ],
        spool_max_bytes: line_len + line_len / 2, // room for one alert
        ..AlertSinksConfig::default()
    };
    let mut fanout = AlertFanout::build(&cfg, &dir.path().join("spool")).unwrap();
    fanout.send(&sent[0]).unwrap();
    let err = fanout.send(&sent[1]).unwrap_err().to_string();
    assert!(err.contains("spool is full"), "{err}");
    assert!(err.contains("alert-001"), "{err}");
    assert!(err.contains("dead.jsonl"), "{err}");
    let dead = stats_of(&fanout, "dead");
    assert_eq!(
        (dead.spooled, dead.spool_refused, dead.pending),
        (1, 1, 1),
        "{dead:?}"
    );
    // The refusal does not stop the other sinks.
    assert!(fanout.send(&sent[2]).is_err());
    assert_eq!(read_lines(&jsonl).len(), 3);
    assert_eq!(stats_of(&fanout, "dead").spool_refused, 2);
}

// ---------------------------------------------------------------------------------
// Configuration

#[test]
fn config_parses_kebab_tagged_sinks_with_defaults() {
    // The same shape as the TOML `[[alerts.sinks]]` tables.
    let cfg: AlertSinksConfig = serde_json::from_value(serde_json::json!({
        "spool_dir": "/var/lib/lineage/spool",
        "sinks": [
            { "type": "jsonl", "path": "out/alerts.jsonl" },
            { "type": "ocsf", "path": "out/ocsf.jsonl", "max_bytes": 1024, "keep": 2 },
            { "type": "webhook", "url": "https://soc.example/h", "secret_env": "X" },
            { "type": "slack", "url": "https://hooks.slack.example/T/B/x", "max_attempts": 3 },
        ],
    }))
    .unwrap();
    assert_eq!(cfg.spool_max_bytes, 100 * 1024 * 1024);
    assert_eq!(
        cfg.spool_dir.as_deref(),
        Some(Path::new("/var/lib/lineage/spool"))
    );
    let AlertSinkConfig::Jsonl(j) = &cfg.sinks[0] else {
        panic!("{:?}", cfg.sinks[0])
    };
    assert_eq!((j.max_bytes, j.keep), (10 * 1024 * 1024, 5));
    let AlertSinkConfig::Ocsf(o) = &cfg.sinks[1] else {
        panic!()
    };
    assert_eq!((o.max_bytes, o.keep), (1024, 2));
    let AlertSinkConfig::Webhook(w) = &cfg.sinks[2] else {
        panic!()
    };
    assert_eq!(
        (
            w.timeout_secs,
            w.max_attempts,
            w.backoff_ms,
            w.secret_env.as_deref()
        ),
        (10, 5, 500, Some("X"))
    );
    let AlertSinkConfig::Slack(s) = &cfg.sinks[3] else {
        panic!()
    };
    assert_eq!((s.timeout_secs, s.max_attempts, s.backoff_ms), (10, 3, 500));
    // Round trip.
    let back: AlertSinksConfig =
        serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);

    for bad in [
        serde_json::json!({ "sinks": [{ "type": "jsonl", "path": "a", "max_byte": 1 }] }),
        serde_json::json!({ "sinks": [{ "type": "slack", "url": "http://x", "secret_env": "S" }] }),
        serde_json::json!({ "sinks": [{ "type": "syslog", "path": "a" }] }),
        serde_json::json!({ "sinks": [], "spool_max": 1 }),
    ] {
        assert!(
            serde_json::from_value::<AlertSinksConfig>(bad.clone()).is_err(),
            "accepted {bad}"
        );
    }
}

#[test]
fn build_rejects_bad_configuration_without_quoting_urls() {
    let dir = tempfile::tempdir().unwrap();
    let build = |sinks: Vec<AlertSinkConfig>| {
        let cfg = AlertSinksConfig {
            sinks,
            ..AlertSinksConfig::default()
        };
        AlertFanout::build(&cfg, dir.path()).map(|_| ())
    };
    let err = build(vec![AlertSinkConfig::Webhook(webhook(
        "w",
        "http://127.0.0.1:9/".into(),
        Some("LINEAGE_TEST_SURELY_UNSET_VAR"),
    ))])
    .unwrap_err()
    .to_string();
    assert!(err.contains("LINEAGE_TEST_SURELY_UNSET_VAR"), "{err}");

    let err = build(vec![AlertSinkConfig::Slack(SlackConfig::new(
        "ftp://hooks.example/T000/B000/sekrit",
    ))])
    .unwrap_err()
    .to_string();
    assert!(err.contains("http://") && !err.contains("sekrit"), "{err}");

    let j = |p: &str| AlertSinkConfig::Jsonl(FileSinkConfig::new(dir.path().join(p)));
    let err = build(vec![j("a"), {
        let AlertSinkConfig::Jsonl(mut c) = j("b") else {
            unreachable!()
        };
        c.name = Some("jsonl".into());
        AlertSinkConfig::Jsonl(c)
    }])
    .unwrap_err()
    .to_string();
    assert!(err.contains("named \"jsonl\""), "{err}");

    // Unnamed sinks of one type get distinct default names.
    let cfg = AlertSinksConfig {
        sinks: vec![j("a"), j("b"), j("c")],
        ..AlertSinksConfig::default()
    };
    let fanout = AlertFanout::build(&cfg, dir.path()).unwrap();
    let names: Vec<String> = fanout.stats().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["jsonl", "jsonl-2", "jsonl-3"]);

    let mut bad_name = webhook("../escape", "http://127.0.0.1:9/".into(), None);
    bad_name.timeout_secs = 1;
    assert!(build(vec![AlertSinkConfig::Webhook(bad_name)]).is_err());
}
