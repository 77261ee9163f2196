//! The live pipeline end to end on real local services, with revocation on:
//!
//! - embedded bus: `lineage run` follows CloudTrail through S3 event notifications
//!   on SQS (moto), an OpenBao `socket` audit device and a directory CloudTrail is
//!   delivered into, while records arrive. A departed owner's agent keeps using its
//!   AWS key: the alert reaches a webhook, and with `departed-owner` on `auto` and
//!   the key allowlisted, moto's IAM shows the key `Inactive`. The run is SIGKILLed
//!   and restarted with more records waiting: every record is accounted for
//!   (read = normalized + dead-lettered, and read = what was written), no alert
//!   reaches the webhook twice, no revocation is executed twice, and an active
//!   owner's key stays `Active`.
//! - Kafka bus (tansu): the same revocation with the process killed (SIGKILL, at the
//!   `respond-after-execute` failpoint) between the executor's call and the ledger's
//!   result record: after a restart the intent is reconciled with IAM (the key is
//!   already `Inactive`), recorded done, and the executor is not called again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Runner;
use lineage_test_support::{file_device, free_port, socket_device, Moto, OpenBao, Tansu};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";

/// One CloudTrail record of `user`'s key `key` calling `event` at `time`.
fn ct_record(user: &str, key: &str, event: &str, time: &str, id: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": format!("AIDA{}", user.to_uppercase().replace('-', "")),
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            "accountId": ACCOUNT,
            "accessKeyId": key,
            "userName": user
        },
        "eventTime": time,
        "eventSource": "s3.amazonaws.com",
        "eventName": event,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": id,
        "eventID": id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT
    })
}

/// A CloudTrail delivery file (`{"Records":[…]}`) of `n` calls by each `(user, key)`,
/// starting at `start` (seconds apart), with ids prefixed `tag`.
fn delivery_file(
    users: &[(&str, &str)],
    n: usize,
    start: chrono::DateTime<chrono::Utc>,
    tag: &str,
) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..n {
        for (user, key) in users {
            let t = (start + chrono::Duration::seconds(i as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            records.push(ct_record(
                user,
                key,
                "ListBuckets",
                &t,
                &format!("{tag}-{user}-{i}"),
            ));
        }
    }
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

fn inventory(path: &Path, departed_key: &str, active_key: &str) {
    std::fs::write(
        path,
        format!(
            r#"[[human]]
id = "dana"
email = "dana@example.com"
status = "departed"
departed_at = "2026-11-01T00:00:00Z"

[[human]]
id = "erin"
email = "erin@example.com"

[[agent]]
id = "dana-bot"
kind = "ai-agent"
owner = "dana"
credentials = ["{departed_key}"]

[[agent]]
id = "erin-bot"
kind = "service"
owner = "erin"
credentials = ["{active_key}"]
"#
        ),
    )
    .unwrap();
}

/// `[response]` with the AWS executor on moto, departed-owner on `auto` (its
/// default), dry-run off and only `allow_key` allowlisted.
fn response_toml(ledger: &Path, moto: &Moto, allow_key: &str) -> String {
    format!(
        r#"
[response]
ledger = {ledger:?}

[response.policy]
dry_run = false

[[response.policy.allow]]
credential = "{allow_key}"

[response.aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
timeout_secs = 10
"#,
        ledger = ledger.display().to_string(),
        endpoint = moto.endpoint
    )
}

/// The environment of a `lineage run` talking to moto.
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A webhook receiver on 127.0.0.1 that records every body it is sent.
struct Webhook {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", server.server_addr().to_ip().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    r.lock().unwrap().push(v);
                }
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Webhook {
            url,
            received,
            stop,
            handle: Some(handle),
        }
    }

    fn alerts(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ledger_records(path: &Path, key_id: &str) -> Vec<Value> {
    common::jsonl(path)
        .into_iter()
        .filter(|e| e["action"]["credential"]["id"] == key_id)
        .collect()
}

fn wait_until(
    what: &str,
    limit: Duration,
    log: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn summary_read(out: &Path) -> u64 {
    std::fs::read(out.join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|s| s["read"].as_u64())
        .unwrap_or(0)
}

#[test]
fn embedded_run_follows_sqs_a_vault_socket_and_a_directory_alerts_and_revokes_across_a_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start();
    let aws = moto.clients();
    let departed_key = aws.create_user_with_key("svc-dana");
    let active_key = aws.create_user_with_key("svc-erin");
    let (queue_url, queue_arn) = aws.create_queue("trail");
    aws.bucket_notifying("trail-bucket", &queue_arn);
    let webhook = Webhook::start();
    let inv = dir.join("inventory.toml");
    inventory(&inv, &departed_key, &active_key);
    let ct_dir = dir.join("cloudtrail-delivered");
    std::fs::create_dir_all(&ct_dir).unwrap();
    let out = dir.join("out");
    let ledger = dir.join("state/ledger.jsonl");
    let (metrics_port, socket_port) = (free_port(), free_port());
    let cfg = dir.join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[run]
inventory = {inv:?}
out_dir = {out:?}
metrics_addr = "127.0.0.1:{metrics_port}"
checkpoint_secs = 1
poll_interval_ms = 200

[[source]]
name = "trail-sqs"
kind = "s3-sqs"
queue_url = "{queue_url}"
buckets = ["trail-bucket"]
endpoint_url = "{endpoint}"
path_style = true
wait_seconds = 1
visibility_timeout = 5

[[source]]
name = "bao"
kind = "vault-socket"
listen = "127.0.0.1:{socket_port}"

[[source]]
name = "cloudtrail-dir"
kind = "directory"
path = {ct_dir:?}
settle_ms = 200

[[alerts.sinks]]
type = "webhook"
url = "{hook}"
{response}"#,
            inv = inv.display().to_string(),
            out = out.display().to_string(),
            ct_dir = ct_dir.display().to_string(),
            endpoint = moto.endpoint,
            hook = webhook.url,
            response = response_toml(&ledger, &moto, &departed_key),
        ),
    )
    .unwrap();
    let log = dir.join("run.log");
    let mut run = Runner::start_with(&cfg, metrics_port, log.clone(), &AWS_ENV);
    run.wait_healthy();

    // OpenBao with the socket device pointed at the run, and a file device beside it
    // (the same entries), so the test knows how many records the socket delivered.
    let bao_dir = dir.join("bao");
    std::fs::create_dir_all(&bao_dir).unwrap();
    let audit_file = bao_dir.join("audit.log");
    let bao = OpenBao::start(
        &bao_dir,
        &(file_device("file", &audit_file)
            + &socket_device("sock", &format!("127.0.0.1:{socket_port}"))),
        || audit_file.exists(),
    );
    for i in 0..5 {
        bao.request("POST", &format!("/v1/secret/data/app-{i}"))
            .send_json(json!({"data": {"v": i}}))
            .unwrap();
        bao.request("GET", &format!("/v1/secret/data/app-{i}"))
            .call()
            .unwrap();
    }

    let now = chrono::Utc::now() - chrono::Duration::minutes(30);
    let mut written = 0u64;
    // S3 → SQS: the active owner's service.
    let first = delivery_file(&[("svc-erin", &active_key)], 20, now, "s3a");
    aws.put(
        "trail-bucket",
        &format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/12/06/{ACCOUNT}_CloudTrail_us-east-1_20261206T1200Z_a.json"),
        first,
    );
    written += 20;
    // The delivery directory: the departed owner's agent keeps using its key.
    let used = delivery_file(
        &[("svc-dana", &departed_key)],
        10,
        now + chrono::Duration::seconds(60),
        "dira",
    );
    std::fs::write(ct_dir.join("a.json"), used).unwrap();
    written += 10;

    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "the departed-owner alert at the webhook",
        Duration::from_secs(90),
        log_text,
        || {
            webhook
                .alerts()
                .iter()
                .any(|a| a["detector"] == "departed-owner")
        },
    );
    wait_until(
        "the departed agent's key revoked in IAM",
        Duration::from_secs(60),
        log_text,
        || aws.key_status("svc-dana", &departed_key) == "Inactive",
    );
    // Every Vault entry the file device holds has come through the socket and a
    // checkpoint covers it, before the kill.
    let vault_entries = || {
        std::fs::read_to_string(&audit_file)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
            .unwrap_or(0)
    };
    wait_until(
        "the Vault entries checkpointed",
        Duration::from_secs(60),
        log_text,
        || {
            let vault = vault_entries();
            vault > 0 && summary_read(&out) >= written + vault
        },
    );
    let vault_total = vault_entries();
    drop(bao);
    run.sigkill();

    // While it is down, more arrives on both file paths: the departed agent again
    // (the same finding: no new alert, no new revocation) and the active one.
    let second = delivery_file(
        &[("svc-erin", &active_key), ("svc-dana", &departed_key)],
        15,
        now + chrono::Duration::seconds(120),
        "s3b",
    );
    aws.put(
        "trail-bucket",
        &format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/12/06/{ACCOUNT}_CloudTrail_us-east-1_20261206T1205Z_b.json"),
        second,
    );
    written += 30;
    let more = delivery_file(
        &[("svc-erin", &active_key)],
        12,
        now + chrono::Duration::seconds(180),
        "dirb",
    );
    std::fs::write(ct_dir.join("b.json"), more).unwrap();
    written += 12;

    let mut run = Runner::start_with(&cfg, metrics_port, log.clone(), &AWS_ENV);
    run.wait_healthy();
    let expected = written + vault_total;
    wait_until(
        "every record read after the restart",
        Duration::from_secs(90),
        log_text,
        || summary_read(&out) >= expected,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(run.sigterm().success(), "SIGTERM exits 0:\n{}", log_text());

    let summary = common::summary(&out);
    common::assert_counts_add_up(&summary);
    assert_eq!(
        summary["read"].as_u64().unwrap(),
        expected,
        "every record written was read once: {summary:#}\n{}",
        log_text()
    );
    assert_eq!(
        summary["by_source"]["vault"]["read"].as_u64().unwrap(),
        vault_total
    );

    let received = webhook.alerts();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for a in &received {
        *by_id
            .entry(a["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        by_id.values().all(|n| *n == 1),
        "an alert reached the webhook twice: {by_id:?}"
    );
    assert!(received.iter().any(
        |a| a["detector"] == "departed-owner" && a["credential"]["id"] == departed_key.as_str()
    ));
    let alerts = common::jsonl(&out.join("alerts.jsonl"));
    assert_eq!(
        alerts.len(),
        by_id.len(),
        "alerts.jsonl holds what the webhook got"
    );

    // One revocation: an intent, then its result; never a second call.
    let records = ledger_records(&ledger, &departed_key);
    let statuses: Vec<&str> = records
        .iter()
        .map(|e| e["action"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["executing", "done"], "{records:#?}");
    assert_eq!(aws.key_status("svc-dana", &departed_key), "Inactive");
    assert_eq!(aws.key_status("svc-erin", &active_key), "Active");
    assert!(ledger_records(&ledger, &active_key).is_empty());
    let log_all = log_text();
    assert!(!log_all.contains("panicked"), "{log_all}");
    let _ = queue_url;
}

#[test]
fn kafka_revocation_killed_between_the_call_and_the_ledger_is_executed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start();
    let aws = moto.clients();
    let departed_key = aws.create_user_with_key("svc-dana");
    let active_key = aws.create_user_with_key("svc-erin");
    let inv = dir.join("inventory.toml");
    inventory(&inv, &departed_key, &active_key);
    let now = chrono::Utc::now() - chrono::Duration::minutes(10);
    let file = dir.join("trail.json");
    std::fs::write(
        &file,
        delivery_file(
            &[("svc-dana", &departed_key), ("svc-erin", &active_key)],
            5,
            now,
            "k",
        ),
    )
    .unwrap();
    let tansu = Tansu::start();
    let report = common::ingest(&tansu.brokers(), &[file.display().to_string()]);
    assert_eq!(report["read"], 10);

    let out = dir.join("out");
    let ledger = dir.join("state/ledger.jsonl");
    let port = free_port();
    let cfg = dir.join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[bus]
kind = "kafka"
brokers = "{brokers}"
group_id = "respond"

[run]
inventory = {inv:?}
out_dir = {out:?}
metrics_addr = "127.0.0.1:{port}"
poll_ms = 100
{response}"#,
            brokers = tansu.brokers(),
            inv = inv.display().to_string(),
            out = out.display().to_string(),
            response = response_toml(&ledger, &moto, &departed_key),
        ),
    )
    .unwrap();
    let log = dir.join("run.log");
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("LINEAGE_FAILPOINT", "respond-after-execute"));
    let mut run = Runner::start_with(&cfg, port, log.clone(), &env);
    let status = run.wait_exit();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed at the failpoint: {status}\n{}",
        log_text()
    );
    // The call went through; the ledger holds only the intent.
    assert_eq!(aws.key_status("svc-dana", &departed_key), "Inactive");
    let records = ledger_records(&ledger, &departed_key);
    let statuses: Vec<&str> = records
        .iter()
        .map(|e| e["action"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["executing"], "{records:#?}");

    // Restarted: the intent is reconciled with IAM, the action re-read from the topic
    // is a no-op, and nothing is called again.
    let mut run = Runner::start_with(&cfg, port, log.clone(), &AWS_ENV);
    run.wait_healthy();
    wait_until(
        "the action handled after the restart",
        Duration::from_secs(60),
        log_text,
        || {
            out.join("actions.jsonl").exists()
                && !common::jsonl(&out.join("actions.jsonl")).is_empty()
        },
    );
    assert!(run.sigterm().success());
    let records = ledger_records(&ledger, &departed_key);
    let statuses: Vec<&str> = records
        .iter()
        .map(|e| e["action"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["executing", "done"], "{records:#?}");
    let result = records[1]["action"]["result"].as_str().unwrap();
    assert!(result.contains("reconciled"), "{result}");
    let actions = common::jsonl(&out.join("actions.jsonl"));
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["status"], "done");
    assert_eq!(aws.key_status("svc-dana", &departed_key), "Inactive");
    assert_eq!(aws.key_status("svc-erin", &active_key), "Active");
}

/// Embedded `lineage run` following two directories: the CloudTrail uses arrive and
/// are processed, then the Entra departure they come after. The owner's recent uses
/// are re-evaluated and the departed-owner alert replay raises is delivered, marked
/// late.
#[test]
fn embedded_run_raises_the_departed_alert_when_the_departure_arrives_after_the_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let late = common::LateDeparture::write(tmp.path());
    let want = late.replay_alert(&tmp.path().join("replay"));
    let (trail_dir, entra_dir) = (tmp.path().join("trail-in"), tmp.path().join("entra-in"));
    std::fs::create_dir_all(&trail_dir).unwrap();
    std::fs::create_dir_all(&entra_dir).unwrap();
    let out = tmp.path().join("out");
    let port = free_port();
    let cfg = tmp.path().join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[run]
inventory = {inv:?}
out_dir = {out:?}
metrics_addr = "127.0.0.1:{port}"
checkpoint_secs = 1
poll_interval_ms = 100
max_hold_ms = 300
source_idle_ms = 200

[[source]]
name = "trail"
kind = "directory"
path = {trail:?}
settle_ms = 100

[[source]]
name = "entra"
kind = "directory"
path = {entra:?}
settle_ms = 100
"#,
            inv = late.inventory.display().to_string(),
            out = out.display().to_string(),
            trail = trail_dir.display().to_string(),
            entra = entra_dir.display().to_string(),
        ),
    )
    .unwrap();
    let mut run = Runner::start(&cfg, port, tmp.path().join("run.log"));
    run.wait_healthy();
    std::fs::copy(&late.trail, trail_dir.join("trail.json")).unwrap();
    // The three uses processed.
    run.wait_metric(
        "lineage_events_total",
        &["stage=\"graph\"", "outcome=\"out\""],
        3.0,
        Duration::from_secs(60),
    );
    let departed = |out: &Path| -> Vec<Value> {
        std::fs::read_to_string(out.join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|a| a["detector"] == "departed-owner")
            .collect()
    };
    assert!(departed(&out).is_empty(), "no departure known yet");
    std::fs::copy(&late.disable, entra_dir.join("disable.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = departed(&out);
        if !got.is_empty() {
            break got;
        }
        assert!(run.running(), "{}", run.log());
        assert!(Instant::now() < deadline, "no late alert:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = run.sigterm();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert_eq!(got.len(), 1, "{got:#?}");
    common::LateDeparture::assert_late_alert(&got[0], &want);
}
