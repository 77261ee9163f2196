//! Replay throughput against the physical limit, on simulated archives.
//!
//! `cargo bench --bench replay -- [--events N] [--threads 1,2] [--repeat 3] [--dir DIR] [--json FILE] [--simulate-only]`
//! simulates (fixed seed 42) an estate whose CloudTrail archive holds about N events
//! (`.json.gz`, S3 delivery layout) with its Entra ID, GitHub and Vault logs in
//! proportion, then measures on the same CloudTrail files:
//! 1. gunzip + `serde_json` into `serde_json::Value` (the untyped baseline);
//! 2. gunzip + `serde_json` into a typed struct of the fields we read (the typed baseline);
//! 3. the full replay path parse → graph → detect → sinks + Parquet tables, at each
//!    thread count;
//! 4. the same path without the Parquet tables (one thread), to show what they cost;
//! 5. the full path over all four sources' logs (one thread).
//!
//! Every measurement runs `--repeat` times and reports its median time (default 3 runs,
//! 7 up to 200k events, where a run takes about a second). The typed baseline and the
//! one-thread replay alternate run by run, and each such pair's ratio is reported too
//! (`typed_replay_pairs`): the two runs of a pair share the machine's phase.
//!
//! It prints one markdown table row per measurement and, with `--json FILE`, writes the
//! figures for `scripts/bench.sh` (which renders them into BENCHMARKS.md). The data in
//! `--dir` is reused when it is already there (`--simulate-only` just writes it).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lineage_pipeline::{Pipeline, Settings};
use lineage_replay::{expand_inputs, replay, ReplayConfig};
use lineage_sim::SimConfig;
use serde::Deserialize;
use serde_json::json;

/// The allocator the `lineage` binary uses (baselines and replay alike run on it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The median of `n` timings of `f` (in seconds).
fn median_secs(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    median((0..n.max(1)).map(|_| f()).collect())
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Events per second of a replay (`read` events in `secs`) over the typed baseline's
/// (`typed_events` in `typed_secs`): the ratio issue 9 sets at 0.5.
fn per_typed(read: u64, secs: f64, typed_events: u64, typed_secs: f64) -> f64 {
    (read as f64 / secs) / (typed_events as f64 / typed_secs)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn row(what: &str, events: u64, bytes: u64, secs: f64, threads: usize) -> serde_json::Value {
    let eps = events as f64 / secs;
    println!(
        "| {what} | {threads} | {events} | {secs:.2} | {eps:.0} | {:.1} | {:.0} |",
        bytes as f64 / secs / 1e6,
        eps / threads as f64
    );
    json!({
        "what": what, "threads": threads, "events": events, "secs": secs,
        "events_per_sec": eps, "mb_per_sec": bytes as f64 / secs / 1e6,
        "events_per_sec_per_core": eps / threads as f64,
    })
}

/// Estate size for about `events` CloudTrail records: 24 agents, the days grow with
/// the size (so the time span, and the number of session credentials, grow too), the
/// calls per agent-day fill the rest. The simulator adds about 16% on top of the calls
/// (issuance, console and service records), measured at seed 42.
fn estate(events: u64) -> (usize, u32, u32) {
    let agents = 24usize;
    let days = (events as f64 / 60_000.0).ceil().clamp(2.0, 60.0) as u32;
    let calls = ((events as f64) / (agents as f64 * days as f64 * 1.16))
        .round()
        .max(10.0) as u32;
    (agents, days, calls)
}

fn main() {
    // The allocator settings of the `lineage` binary, so the replay measured here
    // allocates as the command does.
    // SAFETY: the first thing `main` does; no other thread exists yet.
    unsafe { lineage_pipeline::tune_allocator() };
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && arg(&args, "--events").is_none() {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then
        // there is nothing to measure.
        return;
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
    let json_out = arg(&args, "--json").map(PathBuf::from);
    // Each measurement is repeated and its median time reported: on a shared 2-core
    // machine one run can be 10–20% off, and a small size's runs are cheap to repeat.
    let repeat: usize = arg(&args, "--repeat")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if events <= 200_000 { 7 } else { 3 })
        .max(1);

    let (agents, days, calls_per_agent_day) = estate(events);
    let sim_dir = dir.join("sim");
    let mut simulated = None;
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
                all_sources: true,
                ..SimConfig::default()
            },
            &sim_dir,
        )
        .expect("simulate");
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "simulated {} events in {} files ({:.1} MB JSON) in {secs:.1}s",
            report.events,
            report.files,
            report.json_bytes as f64 / 1e6,
        );
        simulated = Some(json!({"events": report.events, "files": report.files,
            "json_bytes": report.json_bytes, "secs": secs}));
    }
    if args.iter().any(|a| a == "--simulate-only") {
        return;
    }
    let logs = sim_dir.join("AWSLogs").display().to_string();
    let files = expand_inputs(std::slice::from_ref(&logs)).expect("files");
    let compressed: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();

    println!(
        "| measurement | threads | events | seconds | events/s | MB/s (JSON) | events/s per core |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();

    let (mut n, mut bytes) = (0u64, 0u64);
    let value_secs = median_secs(repeat, || {
        (n, bytes) = (0, 0);
        let started = Instant::now();
        for f in &files {
            let body = gunzip(f);
            bytes += body.len() as u64;
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            n += v["Records"].as_array().map(|a| a.len()).unwrap_or(0) as u64;
        }
        started.elapsed().as_secs_f64()
    });
    let value = row(
        "baseline: gunzip + serde_json::Value",
        n,
        bytes,
        value_secs,
        1,
    );
    rows.push(value.clone());
    let total_bytes = bytes;

    let mut n = 0u64;
    let mut typed_once = || {
        n = 0;
        let started = Instant::now();
        for f in &files {
            let body = gunzip(f);
            let e: Envelope<TypedEvent> = serde_json::from_slice(&body).expect("typed");
            n += e.records.len() as u64;
        }
        started.elapsed().as_secs_f64()
    };

    let inventory =
        lineage_core::Inventory::load(&sim_dir.join("inventory.toml")).expect("inventory");
    let pipeline = std::sync::Arc::new(Pipeline::new(Settings::default(), inventory, None));
    let run_once = |inputs: Vec<String>, t: usize, out: PathBuf, tables: bool| {
        let _ = std::fs::remove_dir_all(&out);
        let started = Instant::now();
        let result = replay(&ReplayConfig {
            pipeline: pipeline.clone(),
            inputs,
            source: None,
            out_dir: out.clone(),
            write_events: false,
            threads: t,
            respond: false,
            detector_state: None,
            sweep_owner: None,
            tables: tables.then(|| out.join("tables")),
            archive: Default::default(),
        })
        .expect("replay");
        (started.elapsed().as_secs_f64(), result.summary)
    };
    // The median time of `repeat` runs, with the last run's summary (the same every time).
    let run = |inputs: Vec<String>, t: usize, out: PathBuf, tables: bool| {
        let mut summary = None;
        let secs = median_secs(repeat, || {
            let (secs, s) = run_once(inputs.clone(), t, out.clone(), tables);
            summary = Some(s);
            secs
        });
        (secs, summary.expect("ran at least once"))
    };
    // The typed baseline and the one-thread replay (the ratio's two sides) alternate
    // run by run, so the slow and fast phases of a shared machine fall on both alike.
    let (mut typed_times, mut replay_one) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        typed_times.push(typed_once());
        if threads.contains(&1) {
            replay_one.push(run_once(vec![logs.clone()], 1, dir.join("out-1"), true));
        }
    }
    // Each round's own ratio: the two runs of a round share the machine's phase, so
    // the spread of these says how far the ratio of the medians can be trusted.
    let round_ratios: Vec<f64> = typed_times
        .iter()
        .zip(&replay_one)
        .map(|(&typed, (replay, summary))| per_typed(summary.read, *replay, n, typed))
        .collect();
    let pairs: Vec<serde_json::Value> = typed_times
        .iter()
        .zip(&replay_one)
        .zip(&round_ratios)
        .map(|((typed, (replay, _)), ratio)| {
            json!({"typed_secs": typed, "replay_secs": replay, "ratio": ratio})
        })
        .collect();
    let typed_secs = median(typed_times);
    let typed = row(
        "baseline: gunzip + typed struct",
        n,
        total_bytes,
        typed_secs,
        1,
    );
    rows.push(typed.clone());
    let cloudtrail_events = n;
    let mut replays = Vec::new();
    for &t in &threads {
        let (secs, summary) = if t == 1 {
            let secs = median(replay_one.iter().map(|(secs, _)| *secs).collect());
            (secs, replay_one.pop().expect("ran at least once").1)
        } else {
            run(vec![logs.clone()], t, dir.join(format!("out-{t}")), true)
        };
        let mut r = row(
            "lineage replay (parse → graph → detect → sinks + tables)",
            summary.read,
            total_bytes,
            secs,
            t,
        );
        r["attributed"] = json!(summary.attributed);
        r["unattributed"] = json!(summary.unattributed);
        r["alerts"] = json!(summary.alerts);
        r["peak_buffered_records"] = json!(summary.peak_buffered_records);
        if t == 1 {
            let ratio = per_typed(summary.read, secs, n, typed_secs);
            println!("| ratio: replay(1 thread) / typed baseline | 1 | | | {ratio:.2} | | |");
            let (low, high) = round_ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
            println!(
                "| ratio per round (typed run, then replay run): {} rounds, {low:.2}–{high:.2} | 1 | | | | | |",
                round_ratios.len()
            );
        }
        rows.push(r.clone());
        replays.push(r);
    }

    // Without the Parquet tables (the path the earlier runs in BENCHMARKS.md measured),
    // to show what the tables cost.
    let (secs, summary) = run(vec![logs.clone()], 1, dir.join("out-notables"), false);
    let notables = row(
        "lineage replay without tables (parse → graph → detect → sinks)",
        summary.read,
        total_bytes,
        secs,
        1,
    );
    println!(
        "| ratio: replay without tables (1 thread) / typed baseline | 1 | | | {:.2} | | |",
        per_typed(summary.read, secs, n, typed_secs)
    );
    rows.push(notables.clone());

    // The same path over every source the simulator wrote (CloudTrail, Entra ID,
    // GitHub, Vault), to show the other parsers in proportion.
    let mut all_inputs: Vec<String> = std::fs::read_dir(&sim_dir)
        .expect("sim dir")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path().display().to_string())
        .collect();
    all_inputs.sort();
    let all_bytes: u64 = expand_inputs(&all_inputs)
        .expect("files")
        .iter()
        .map(|f| {
            if f.extension().is_some_and(|e| e == "gz") {
                gunzip(f).len() as u64
            } else {
                std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum();
    let (secs, summary) = run(all_inputs, 1, dir.join("out-all"), true);
    let mut all = row(
        "lineage replay, all four sources (CloudTrail + Entra + GitHub + Vault)",
        summary.read,
        all_bytes,
        secs,
        1,
    );
    all["by_source"] = json!(summary
        .by_source
        .iter()
        .map(|(k, v)| (k.clone(), v.read))
        .collect::<std::collections::BTreeMap<_, _>>());
    rows.push(all.clone());

    if let Some(path) = json_out {
        let doc = json!({
            "target_events": events,
            "estate": {"seed": 42, "humans": 12, "agents": agents, "days": days,
                       "calls_per_agent_day": calls_per_agent_day},
            "simulated": simulated,
            "dir": dir,
            "cloudtrail_files": files.len(),
            "cloudtrail_events": cloudtrail_events,
            "cloudtrail_json_bytes": total_bytes,
            "cloudtrail_gz_bytes": compressed,
            "value": value,
            "typed": typed,
            "typed_replay_pairs": pairs,
            "replay": replays,
            "all_sources": all,
            "no_tables": notables,
            "rows": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("json out");
    }
}
