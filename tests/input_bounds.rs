//! Inputs built to exhaust memory are cut at their limits, dead-lettered with the
//! reason, and the process stays under a stated bound of resident memory (the
//! figures the README's "Bounds on input" states):
//!
//! - replay of a gzip bomb, 1 GiB of zeros in about 1 MiB: inflation stops at 200
//!   times the compressed size, the file is dead-lettered as a decompression bomb,
//!   peak RSS at most [`BOMB_RSS_BOUND_MIB`];
//! - a 100 MB line on the Vault socket of `lineage run`: never held whole, one dead
//!   letter with its length, the next line read, peak RSS at most
//!   [`LINE_RSS_BOUND_MIB`].

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Peak resident memory of `lineage replay` over a 1 MiB gzip bomb.
const BOMB_RSS_BOUND_MIB: u64 = 384;
/// Peak resident memory of `lineage run` receiving a 100 MB Vault line.
const LINE_RSS_BOUND_MIB: u64 = 256;

#[test]
fn a_gzip_bomb_is_dead_lettered_and_replay_stays_under_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("AWSLogs");
    std::fs::create_dir_all(&logs).unwrap();
    // 1 GiB of zeros, gzip'd at the best level: about 1 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    std::fs::write(logs.join("bomb.json.gz"), &bomb).unwrap();
    // And an ordinary file beside it, still read.
    std::fs::write(
        logs.join("ok.json"),
        r#"{"Records":[{"eventVersion":"1.08","eventID":"ok-1","eventTime":"2026-12-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","userIdentity":{"type":"IAMUser","accessKeyId":"AKIAFAKEBOUNDS000001","arn":"arn:aws:iam::111122223333:user/a","accountId":"111122223333"}}]}"#,
    )
    .unwrap();

    let out = dir.path().join("out");
    let (output, peak_kib) = common::output_with_peak_rss(
        common::lineage()
            .arg("replay")
            .arg(&logs)
            .arg("--out")
            .arg(&out),
    );
    common::assert_exit(&output, 0);
    let summary = common::summary(&out);
    common::assert_counts_add_up(&summary);
    assert_eq!(summary["normalized"], 1, "{summary:#}");
    let dead = common::jsonl(&out.join("dead_letters.jsonl"));
    let bomb_letter = dead
        .iter()
        .find(|d| {
            d["reason"]
                .as_str()
                .is_some_and(|r| r.contains("decompression bomb"))
        })
        .unwrap_or_else(|| panic!("no decompression-bomb dead letter: {dead:#?}"));
    assert!(
        bomb_letter["provenance"]
            .to_string()
            .contains("bomb.json.gz"),
        "{bomb_letter:#}"
    );
    eprintln!(
        "replay of a {} byte gzip bomb: peak RSS {} MiB",
        bomb.len(),
        peak_kib / 1024
    );
    assert!(
        peak_kib / 1024 <= BOMB_RSS_BOUND_MIB,
        "peak RSS {} MiB over the stated {BOMB_RSS_BOUND_MIB} MiB",
        peak_kib / 1024
    );
}

#[test]
fn a_100_mb_vault_line_is_dead_lettered_and_run_stays_under_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let socket_port = lineage_test_support::free_port();
    let metrics_port = lineage_test_support::free_port();
    let out = dir.path().join("out");
    let cfg = dir.path().join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nout_dir = {:?}\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\ncheckpoint_secs = 1\npoll_interval_ms = 100\n\n[[source]]\nname = \"bao\"\nkind = \"vault-socket\"\nlisten = \"127.0.0.1:{socket_port}\"\n",
            out.display().to_string()
        ),
    )
    .unwrap();
    let mut run = common::Runner::start(&cfg, metrics_port, dir.path().join("run.log"));
    run.wait_healthy();
    let before_kib = run.peak_rss_kib();

    let mut s = std::net::TcpStream::connect(("127.0.0.1", socket_port)).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    s.write_all(b"{\"type\":\"request\",\"x\":\"").unwrap();
    for _ in 0..100 {
        s.write_all(&chunk).unwrap();
    }
    s.write_all(b"\"}\n").unwrap();
    // The next line is an ordinary (unpaired) request: it is read.
    s.write_all(br#"{"time":"2026-12-01T00:00:00Z","type":"request","auth":{"accessor":"hmac-sha256:00","display_name":"token"},"request":{"id":"bounds-1","operation":"read","path":"secret/data/x"}}"#)
        .unwrap();
    s.write_all(b"\n").unwrap();
    s.flush().unwrap();

    // Both lines accounted for: one dead letter, the other read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let summary: Option<Value> = std::fs::read(out.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(s) = summary {
            if s["read"].as_u64() >= Some(2) {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "not read:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let peak_kib = run.peak_rss_kib();
    drop(s);
    assert!(run.sigterm().success());
    common::assert_counts_add_up(&summary);
    let dead = common::jsonl(&out.join("dead_letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("max_line_bytes") && reason.contains("104857625 bytes"),
        "{reason}"
    );
    eprintln!(
        "lineage run, 100 MB Vault line: peak RSS {} MiB (before it: {} MiB)",
        peak_kib / 1024,
        before_kib / 1024
    );
    assert!(
        peak_kib / 1024 <= LINE_RSS_BOUND_MIB,
        "peak RSS {} MiB over the stated {LINE_RSS_BOUND_MIB} MiB",
        peak_kib / 1024
    );
}
