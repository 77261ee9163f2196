//! Replay throughput against the physical limit, on simulated CloudTrail archives.
//!
//! `cargo bench --bench replay -- [--events N] [--threads 1,2]` simulates an archive
//! of about N events (fixed seed), then measures on the same files:
//! 1. gunzip + `serde_json` into `serde_json::Value` (the untyped baseline);
//! 2. gunzip + `serde_json` into a typed struct of the fields we read (the typed baseline);
//! 3. the full replay path parse → graph → detect → sinks, at each thread count.
//!
//! It prints one markdown table row per measurement; `scripts/bench.sh` appends
//! them to BENCHMARKS.md with the machine and the command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lineage_detect::DetectorsConfig;
use lineage_ingest::ParseLimits;
use lineage_replay::{expand_inputs, replay, ReplayConfig};
use lineage_sim::SimConfig;
use serde::Deserialize;

#[allow(dead_code)]
#[derive(Deserialize)]
struct TypedIdentity {
    #[serde(rename = "type")]
    kind: Option<String>,
    arn: Option<String>,
    #[serde(rename = "accessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "userName")]
    user_name: Option<String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct TypedEvent {
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "eventTime")]
    event_time: String,
    #[serde(rename = "eventSource")]
    event_source: String,
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "userIdentity")]
    user_identity: TypedIdentity,
    #[serde(rename = "sourceIPAddress")]
    source_ip: Option<String>,
    #[serde(rename = "userAgent")]
    user_agent: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Records")]
    records: Vec<T>,
}

fn gunzip(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("read");
    let mut out = Vec::with_capacity(raw.len() * 10);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn row(what: &str, events: u64, bytes: u64, secs: f64, threads: usize) {
    println!(
        "| {what} | {threads} | {events} | {secs:.2} | {:.0} | {:.1} | {:.0} |",
        events as f64 / secs,
        bytes as f64 / secs / 1e6,
        events as f64 / secs / threads as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench" && args.len() == 2) {
        // `cargo test --benches` runs benches with `--bench`; nothing to measure then.
    }
    let events: u64 = arg(&args, "--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let threads: Vec<usize> = arg(&args, "--threads")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect();
    let dir = arg(&args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("lineage-bench-{events}")));

    // ~40 calls/agent-day × 24 h; size the estate so the archive holds about `events` records.
    let agents = 24usize;
    let calls_per_agent_day = 2000u32;
    let days = ((events as f64) / (agents as f64 * calls_per_agent_day as f64))
        .ceil()
        .max(1.0) as u32;
    let sim_dir = dir.join("sim");
    if !sim_dir.join("ground_truth.json").exists() {
        let started = Instant::now();
        let report = lineage_sim::simulate(
            &SimConfig {
                seed: 42,
                humans: 12,
                agents,
                days,
                calls_per_agent_day,
                record_attributions: false,
                ..SimConfig::default()
            },
            &sim_dir,
        )
        .expect("simulate");
        eprintln!(
            "simulated {} events in {} files ({:.1} MB JSON) in {:.1}s",
            report.events,
            report.files,
            report.json_bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    let logs = sim_dir.join("AWSLogs").display().to_string();
    let files = expand_inputs(std::slice::from_ref(&logs)).expect("files");

    println!(
        "| measurement | threads | events | seconds | events/s | MB/s (JSON) | events/s per core |"
    );
    println!("|---|---|---|---|---|---|---|");

    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    for f in &files {
        let body = gunzip(f);
        bytes += body.len() as u64;
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        n += v["Records"].as_array().map(|a| a.len()).unwrap_or(0) as u64;
    }
    row(
        "baseline: gunzip + serde_json::Value",
        n,
        bytes,
        started.elapsed().as_secs_f64(),
        1,
    );
    let total_bytes = bytes;

    let started = Instant::now();
    let mut n = 0u64;
    for f in &files {
        let body = gunzip(f);
        let e: Envelope<TypedEvent> = serde_json::from_slice(&body).expect("typed");
        n += e.records.len() as u64;
    }
    let typed_secs = started.elapsed().as_secs_f64();
    row(
        "baseline: gunzip + typed struct",
        n,
        total_bytes,
        typed_secs,
        1,
    );

    let inventory =
        lineage_core::Inventory::load(&sim_dir.join("inventory.toml")).expect("inventory");
    for &t in &threads {
        let out = dir.join(format!("out-{t}"));
        let started = Instant::now();
        let result = replay(&ReplayConfig {
            inputs: vec![logs.clone()],
            source: None,
            inventory: inventory.clone(),
            detectors: DetectorsConfig::default(),
            out_dir: out,
            write_events: false,
            threads: t,
            limits: ParseLimits::default(),
            sigma: None,
            detector_state: None,
            sweep_owner: None,
            tables: None,
            archive: Default::default(),
        })
        .expect("replay");
        let secs = started.elapsed().as_secs_f64();
        row(
            "lineage replay (parse → graph → detect → sinks)",
            result.summary.read,
            total_bytes,
            secs,
            t,
        );
        if t == 1 {
            println!(
                "| ratio: replay(1 thread) / typed baseline | 1 | | | {:.2} | | |",
                (result.summary.read as f64 / secs) / (n as f64 / typed_secs)
            );
        }
    }
}
