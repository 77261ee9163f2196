//! Live connector → Kafka raw topic, resumed from its checkpoint after a crash, on a
//! real tansu broker (in-memory storage, started here on a free port):
//!
//! `lineage ingest vault --from-checkpoint CP vault-file AUDIT.log` runs the file
//! tailer over a Vault/OpenBao audit log (the real OpenBao session in
//! `testdata/vault/`, copied with fresh request ids until it spans ~200 batches)
//! three times: a clean stop after `--max-batches`, a run SIGKILLed mid-stream,
//! and a run that resumes from the same checkpoint and finishes. Then
//! `lineage.raw.vault` holds every audit line, in file order, keyed as
//! `lineage ingest --from FILE` keys it; the only duplicates are one batch's worth
//! (the batch produced but not acked when the process died); the checkpoint is at
//! the end of the file and holds positions, not audit content.
//!
//! Needs `tansu`: `LINEAGE_TANSU_BIN` (scripts/test.sh exports it) or on PATH.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lineage_test_support::{read_topic, Tansu};
use serde_json::Value;

/// Copies of the 49-line OpenBao session: ~2,000 lines, ~3 MB.
const COPIES: usize = 40;
/// Batch size given to the tailer.
const BATCH_BYTES: usize = 16 * 1024;

fn lineage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lineage"));
    c.env_remove("LINEAGE_LOG");
    c
}

/// The audit log: the session `COPIES` times, each copy on its own day and hour with
/// its own request ids (two lines of the session have no request id).
fn audit_lines() -> Vec<String> {
    let session =
        std::fs::read_to_string(common::root().join("testdata/vault/openbao_session.log"))
            .expect("the OpenBao session");
    let mut out = Vec::new();
    for k in 0..COPIES {
        for line in session.lines().filter(|l| !l.trim().is_empty()) {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let time = v["time"].as_str().unwrap();
            let (_, clock) = time.split_once("T13").expect("the session is at 13h");
            v["time"] = format!("2026-11-{:02}T{:02}{clock}", 1 + k / 24, k % 24).into();
            if let Some(id) = v["request"]["id"].as_str().map(str::to_owned) {
                v["request"]["id"] = format!("{id}-c{k}").into();
            }
            out.push(serde_json::to_string(&v).unwrap());
        }
    }
    out
}

/// The tailer's checkpoint state (`offset` …), or `None` before the first ack.
fn checkpoint(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("the checkpoint is JSON"))
}

fn offset(cp: &Path) -> u64 {
    checkpoint(cp).map_or(0, |c| c["state"]["offset"].as_u64().unwrap())
}

#[test]
fn connector_to_kafka_resumes_from_checkpoint_after_sigkill_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let lines = audit_lines();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&audit, &body).unwrap();
    let file_len = body.len() as u64;
    let cp = dir.path().join("state/vault.json");

    let tansu = Tansu::start();
    let brokers = tansu.brokers();
    let connector_run = |extra: &[&str]| {
        let mut c = lineage();
        c.args(["ingest", "vault", "--to", "kafka", "--brokers", &brokers])
            .arg("--from-checkpoint")
            .arg(&cp)
            .arg("vault-file")
            .arg(&audit)
            .args(["--max-batch-bytes", &BATCH_BYTES.to_string()])
            .args(["--poll-interval", "1"])
            .args(extra);
        c
    };

    // 1. A clean stop after three batches: three batches acked.
    let out = connector_run(&["--max-batches", "3"]).output().unwrap();
    common::assert_exit(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["batches"], 3, "{report}");
    assert!(report["produced"].as_u64().unwrap() > 3, "{report}");
    let after_first = offset(&cp);
    assert!(after_first > 0 && after_first < file_len, "{after_first}");

    // 2. SIGKILL as soon as this run has acked one more batch (mid-stream).
    let mut child = connector_run(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while offset(&cp) <= after_first {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the connector exited early"
        );
        assert!(Instant::now() < deadline, "no progress:\n{}", tansu.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = offset(&cp);
    assert!(
        at_kill < file_len,
        "the run finished before it was killed ({at_kill} of {file_len} bytes); \
         the test needs more or smaller batches"
    );

    // 3. Resume from the same checkpoint and finish.
    let out = connector_run(&["--idle-exit", "2"]).output().unwrap();
    common::assert_exit(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["batches"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        offset(&cp),
        file_len,
        "the checkpoint is at the end of the file"
    );

    // The oracle for keys: the same file through `lineage ingest --from` into other
    // raw topics (`files.raw.vault`).
    let settings = dir.path().join("files.toml");
    std::fs::write(
        &settings,
        format!("[bus]\nbrokers = \"{brokers}\"\n\n[bus.topics]\nraw_prefix = \"files.raw.\"\n"),
    )
    .unwrap();
    let out = lineage()
        .args(["ingest", "vault", "--to", "kafka", "--config"])
        .arg(&settings)
        .arg("--from")
        .arg(&audit)
        .output()
        .unwrap();
    common::assert_exit(&out, 0);
    let file_msgs = read_topic(&brokers, "files.raw.vault");
    assert_eq!(file_msgs.len(), lines.len());
    let file_keys: HashMap<Vec<u8>, String> =
        file_msgs.into_iter().map(|m| (m.payload, m.key)).collect();
    assert_eq!(file_keys.len(), lines.len());

    let msgs = read_topic(&brokers, "lineage.raw.vault");
    // Every line is there, nothing else is, and (first occurrences) in file order.
    let mut seen = BTreeSet::new();
    let mut first_order = Vec::new();
    let mut duplicates = Vec::new();
    for m in &msgs {
        let line = String::from_utf8(m.payload.clone()).unwrap();
        assert!(
            m.headers.get("origin").is_some_and(|o| !o.is_empty()),
            "no origin header"
        );
        assert_eq!(
            file_keys.get(&m.payload),
            Some(&m.key),
            "the key differs from `lineage ingest --from`'s for {line}"
        );
        if seen.insert(line.clone()) {
            first_order.push(line);
        } else {
            duplicates.push(line);
        }
    }
    assert_eq!(
        first_order, lines,
        "a gap or reordering on lineage.raw.vault"
    );
    // Duplicates come from at most the one batch produced but not acked.
    let dup_bytes: usize = duplicates.iter().map(|l| l.len() + 1).sum();
    assert!(
        duplicates.len() <= 1 || dup_bytes <= BATCH_BYTES,
        "{} duplicates ({dup_bytes} bytes): more than one batch was sent twice",
        duplicates.len()
    );
    // Keys are the source event ids (Vault: request.id; a request and its response
    // share it), so distinct keys = distinct ids of the lines.
    let ids: BTreeSet<&str> = msgs.iter().map(|m| m.key.as_str()).collect();
    let mut with_request_id = 0;
    for m in &msgs {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if let Some(id) = v["request"]["id"].as_str() {
            assert_eq!(m.key, id);
            with_request_id += 1;
        }
    }
    assert!(with_request_id >= msgs.len() - 2 * COPIES - duplicates.len());
    let file_ids: BTreeSet<&str> = file_keys.values().map(String::as_str).collect();
    assert_eq!(ids, file_ids, "distinct ids differ from the file route's");
    eprintln!(
        "lines {}, messages {}, duplicates {}, distinct ids {}, killed at byte {at_kill} of {file_len}",
        lines.len(),
        msgs.len(),
        duplicates.len(),
        ids.len()
    );

    // The checkpoint holds the tailer's position and nothing from the log.
    let cp_text = std::fs::read_to_string(&cp).unwrap();
    let cp_json: Value = serde_json::from_str(&cp_text).unwrap();
    assert_eq!(cp_json["connector"], "vault-file");
    let keys: BTreeSet<&str> = cp_json["state"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["inode", "offset", "path", "size"]));
    for secret_like in ["hmac-sha256", "client_token", "token", "accessor"] {
        assert!(
            !cp_text.contains(secret_like),
            "the checkpoint holds `{secret_like}`:\n{cp_text}"
        );
    }
    assert!(!dir.path().join("state/vault.json.tmp").exists());
}
