//! One pipeline, every mode: the same simulated input of all four sources gives the
//! same alerts (ids and fields), the same revocation requests and the same `events`
//! table rows through
//!
//! (a) `lineage replay` of the archive;
//! (b) `lineage run` on the embedded bus following a directory while the files are
//!     written into it, a day of logs at a time;
//! (c) `lineage run` on the Kafka bus (tansu) in one process, after `lineage ingest`;
//! (d) two `lineage run` processes in one consumer group, with the input ingested
//!     after both joined.
//!
//! Alerts are compared on the fields that do not grow after an alert opens (a live
//! mode delivers an alert when it opens; replay writes it with its final count).
//! Every mode evaluates the same Sigma rule on the raw records.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{lineage, Runner};
use lineage_test_support::{free_port, read_topic, Tansu};
use serde_json::Value;

/// A Sigma rule for CloudTrail that the simulated estate triggers.
const SIGMA_RULE: &str = r#"title: KMS decrypt by a workload (parity test)
id: 5d3a9a52-2f1e-4c3b-9a77-0d1c2e3f4a5b
status: test
description: Fires on every KMS Decrypt, so every mode's Sigma path is exercised.
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: kms.amazonaws.com
    eventName: Decrypt
  condition: selection
level: low
"#;

/// An output directory's alerts by id, reduced to what every mode must agree on.
fn alerts_by_id(path: &Path) -> BTreeMap<String, Value> {
    common::jsonl(path)
        .into_iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                common::comparable_alert(&a),
            )
        })
        .collect()
}

fn action_keys(path: &Path) -> BTreeSet<String> {
    common::jsonl(path)
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap().to_owned())
        .collect()
}

/// The `events` table's rows, each event's latest revision: what was attributed to
/// whom, by which method.
fn event_rows(tables: &Path) -> Vec<String> {
    let o = lineage()
        .args(["sql", "--tables"])
        .arg(tables)
        .args(["--format", "csv"])
        .arg(
            // Each event's current attribution: its row of the highest revision (a
            // live run writes a correction row when a late fact changes one).
            "SELECT source, event_id, credential_id, root_credential, agent, owner, method, \
             action, success FROM (SELECT *, row_number() OVER (PARTITION BY source, \
             event_id, provenance ORDER BY revision DESC) AS current FROM events) \
             WHERE current = 1 ORDER BY source, event_id, credential_id, action",
        )
        .output()
        .unwrap();
    common::assert_exit(&o, 0);
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir`, grouped by the simulated day its path names (`YYYY/MM/DD`
/// for CloudTrail, `d=DD` for Entra, a date in the name for the others), in day order.
fn files_by_day(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut files = Vec::new();
    common::files_under(dir, &mut files);
    let mut days: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if !rel.contains('/') {
            continue; // inventory.toml, ground_truth.json
        }
        let day = day_of(&rel).unwrap_or_else(|| panic!("no day in {rel}"));
        days.entry(day).or_default().push(f);
    }
    days
}

fn day_of(rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    if let Some(w) = parts
        .windows(3)
        .find(|w| w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2 && w[0].starts_with("20"))
    {
        return Some(format!("{}-{}-{}", w[0], w[1], w[2]));
    }
    let field = |k: &str| parts.iter().find_map(|p| p.strip_prefix(k));
    if let (Some(y), Some(m), Some(d)) = (field("y="), field("m="), field("d=")) {
        return Some(format!("{y}-{m}-{d}"));
    }
    date_in(rel)
}

/// Files the directory source has read and acknowledged (its checkpoint).
fn files_done(checkpoint: &Path) -> usize {
    std::fs::read(checkpoint)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["state"]["done"].as_object().map(|m| m.len()))
        .unwrap_or(0)
}

fn date_in(s: &str) -> Option<String> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(9)).find_map(|i| {
        let w = &b[i..i + 10];
        (w[4] == b'-' && w[7] == b'-' && w[..4].iter().all(u8::is_ascii_digit))
            .then(|| String::from_utf8_lossy(w).into_owned())
    })
}

/// Delivers `files` (under `from`) as one drop into `to/<name>`, keeping their
/// paths: copied into a hidden staging directory, then renamed into place at once,
/// as a sync tool would.
fn deliver(files: &[PathBuf], from: &Path, to: &Path, name: &str) {
    let staging = to.join(format!(".incoming-{name}"));
    for f in files {
        let dest = staging.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(f, &dest).unwrap();
    }
    std::fs::rename(&staging, to.join(name)).unwrap();
}

fn kafka_config(
    path: &Path,
    brokers: &str,
    group: &str,
    inventory: &Path,
    out: &Path,
    port: u16,
    sigma_toml: &str,
) {
    common::KafkaRunConfig {
        top: sigma_toml,
        ..common::KafkaRunConfig::new(brokers, group, inventory, out, port)
    }
    .write(path);
}

/// True when the processes have nothing left to do with what was ingested: no
/// consumer lag, no use held for a quiet source, and every event normalize put on
/// `lineage.events` taken in by a graph stage. (The lag alone is not enough: it is
/// refreshed every 2 s, and a use the graph stage has consumed may still be held,
/// not yet in the tables.)
fn settled(runners: &[&Runner]) -> bool {
    let sum = |name: &str, filters: &[&str]| -> f64 {
        runners.iter().map(|r| r.metric(name, filters)).sum()
    };
    // Events normalize put on `lineage.events`: a Vault request and its response
    // are normalized and joined into one.
    let normalized = sum(
        "lineage_events_total",
        &["stage=\"normalize\"", "outcome=\"out\""],
    ) - sum(
        "lineage_events_total",
        &["stage=\"normalize\"", "outcome=\"joined\""],
    );
    sum("lineage_consumer_lag", &[]) == 0.0
        && sum("lineage_graph_held_events", &[]) == 0.0
        && normalized > 0.0
        && sum(
            "lineage_events_total",
            &["stage=\"graph\"", "outcome=\"in\""],
        ) >= normalized
}

/// Waits until `path` holds `want` lines and the processes have [`settled`].
fn wait_for_alert_lines(path: &Path, want: usize, runners: &[&Runner]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let lag: f64 = runners
            .iter()
            .map(|r| r.metric("lineage_consumer_lag", &[]))
            .sum();
        if lines >= want && settled(runners) {
            std::thread::sleep(Duration::from_millis(1500));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{lines} of {want} alerts in {} after 120 s (lag {lag}):\n{}",
            path.display(),
            runners
                .iter()
                .map(|r| {
                    let metrics = r.get("/metrics").map(|(_, t)| t).unwrap_or_default();
                    let progress: Vec<&str> = metrics
                        .lines()
                        .filter(|l| {
                            l.starts_with("lineage_events_total")
                                || l.starts_with("lineage_graph_held_events")
                                || l.starts_with("lineage_consumer_lag")
                        })
                        .collect();
                    format!("{}\n{}", progress.join("\n"), r.log())
                })
                .collect::<Vec<_>>()
                .join("\n-----\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Fails listing the first rows one side has and the other lacks.
fn assert_same_rows(mode: &str, got: &[String], want: &[String]) {
    fn count(rows: &[String]) -> BTreeMap<&str, i64> {
        let mut m: BTreeMap<&str, i64> = BTreeMap::new();
        for r in rows {
            *m.entry(r.as_str()).or_default() += 1;
        }
        m
    }
    let (g, w) = (count(got), count(want));
    let missing: Vec<&&str> = w
        .keys()
        .filter(|k| g.get(*k) != w.get(*k))
        .take(10)
        .collect();
    let extra: Vec<&&str> = g
        .keys()
        .filter(|k| g.get(*k) != w.get(*k))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{mode}: events table differs from replay's ({} rows, replay {}): replay has {missing:#?}\n{mode} has {extra:#?}",
        got.len(),
        want.len()
    );
}

fn assert_same(mode: &str, got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) {
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{mode}: alerts differ from replay: missing {missing:?}, extra {extra:?}"
    );
    for (id, a) in want {
        let g = &got[id];
        if g["evidence"].get("late_fact").is_none() {
            assert_eq!(g, a, "{mode}: alert {id} differs from replay");
            continue;
        }
        // Raised by a fact that came after the uses (a live run processes what has
        // arrived): the same alert about the same credential, agent and owner; it
        // opened on the earliest use still in the re-evaluation window, so no
        // earlier than replay's.
        for field in [
            "detector",
            "severity",
            "title",
            "dedup_key",
            "credential",
            "root_credential",
            "agent",
            "owner",
            "lineage_path",
            "mitre",
        ] {
            assert_eq!(g[field], a[field], "{mode}: late alert {id}: {field}");
        }
        let time = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v["first_seen"].as_str().unwrap()).unwrap()
        };
        assert!(
            time(g) >= time(a),
            "{mode}: late alert {id} opened before replay's"
        );
    }
}

#[test]
fn replay_embedded_live_and_kafka_give_the_same_alerts_actions_and_events() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let inputs = common::simulate(&sim, &["--seed", "11"]);
    let inventory = sim.join("inventory.toml");
    // A Sigma rule every mode evaluates on the raw records.
    let rules = tmp.path().join("rules");
    std::fs::create_dir_all(rules.join("aws")).unwrap();
    std::fs::write(rules.join("aws/kms_decrypt.yml"), SIGMA_RULE).unwrap();
    let sigma_toml = format!("sigma_rules = {:?}\n", rules.display().to_string());

    // (a) replay: the reference.
    let replay_out = tmp.path().join("replay");
    let paths: Vec<&Path> = inputs.iter().map(Path::new).collect();
    let inv = inventory.display().to_string();
    let rules_arg = rules.display().to_string();
    common::assert_exit(
        &common::replay(
            &paths,
            &replay_out,
            &["--inventory", &inv, "--sigma-rules", &rules_arg],
        ),
        0,
    );
    let want = alerts_by_id(&replay_out.join("alerts.jsonl"));
    let want_actions = action_keys(&replay_out.join("actions.jsonl"));
    let want_events = event_rows(&replay_out.join("tables"));
    let replay_summary = common::summary(&replay_out);
    assert!(
        want.len() >= 5,
        "the simulation raises alerts: {}",
        want.len()
    );
    assert!(!want_actions.is_empty(), "and revocation requests");

    // (b) embedded live: a directory followed while a day of files at a time is
    // delivered into it.
    let watch = tmp.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let live = tmp.path().join("live");
    let port = free_port();
    let cfg = tmp.path().join("embedded.toml");
    std::fs::write(
        &cfg,
        format!(
            "{sigma_toml}[run]\ninventory = {inv:?}\nout_dir = {out:?}\nmetrics_addr = \"127.0.0.1:{port}\"\n\
             checkpoint_secs = 1\npoll_interval_ms = 100\n\n\
             [[source]]\nname = \"delivered\"\nkind = \"directory\"\npath = {watch:?}\nsettle_ms = 200\n",
            out = live.display().to_string(),
            watch = watch.display().to_string(),
        ),
    )
    .unwrap();
    let mut run = Runner::start(&cfg, port, tmp.path().join("embedded.log"));
    run.wait_healthy();
    let days = files_by_day(&sim);
    assert!(days.len() >= 2, "several days of logs: {:?}", days.keys());
    let mut delivered = 0usize;
    for (day, files) in &days {
        deliver(files, &sim, &watch, day);
        delivered += files.len();
        // The next day is written once this one is read and checkpointed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while files_done(&live.join("state/sources/delivered.json")) < delivered {
            assert!(
                Instant::now() < deadline,
                "{} of {delivered} files read:\n{}",
                files_done(&live.join("state/sources/delivered.json")),
                run.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let read = replay_summary["read"].as_f64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read(live.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| s["read"].as_f64().unwrap_or(0.0) >= read);
        if done && run.metric("lineage_graph_held_events", &[]) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the embedded run did not read all {read} records:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(run.sigterm().success(), "SIGTERM exits 0");
    let summary = common::summary(&live);
    common::assert_counts_add_up(&summary);
    assert_eq!(summary["read"], replay_summary["read"], "{summary:#}");
    assert_same("embedded", &alerts_by_id(&live.join("alerts.jsonl")), &want);
    assert_eq!(
        action_keys(&live.join("actions.jsonl")),
        want_actions,
        "embedded actions"
    );
    assert_same_rows("embedded", &event_rows(&live.join("tables")), &want_events);

    // (c) Kafka, one process.
    let tansu = Tansu::start();
    let report = common::ingest(&tansu.brokers(), &inputs);
    assert_eq!(
        report["read"], replay_summary["read"],
        "ingest frames as replay does: {report}"
    );
    let port = free_port();
    let cfg = tmp.path().join("kafka.toml");
    let out = tmp.path().join("kafka");
    kafka_config(
        &cfg,
        &tansu.brokers(),
        "parity",
        &inventory,
        &out,
        port,
        &sigma_toml,
    );
    let mut run = Runner::start(&cfg, port, tmp.path().join("kafka.log"));
    run.wait_healthy();
    wait_for_alert_lines(&out.join("alerts.jsonl"), want.len(), &[&run]);
    let (_, metrics) = run.get("/metrics").expect("metrics served");
    assert!(
        metrics.contains("lineage_processing_latency_seconds_count"),
        "{metrics}"
    );
    assert_eq!(
        run.metric(
            "lineage_events_total",
            &["stage=\"normalize\"", "outcome=\"in\""]
        ),
        read,
        "{metrics}"
    );
    assert!(run.sigterm().success(), "SIGTERM exits 0");
    assert_same("kafka", &alerts_by_id(&out.join("alerts.jsonl")), &want);
    assert_eq!(
        action_keys(&out.join("actions.jsonl")),
        want_actions,
        "kafka actions"
    );
    assert_same_rows("kafka", &event_rows(&out.join("tables")), &want_events);
    // Keys are the dedup keys, each alert once on the topic.
    let on_topic = read_topic(&tansu.brokers(), "lineage.alerts");
    assert_eq!(
        on_topic.len(),
        want.len(),
        "each alert once on lineage.alerts"
    );
    for m in &on_topic {
        let a: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(m.key, a["dedup_key"].as_str().unwrap());
    }
    drop(tansu);

    // (d) Kafka, two processes in one group, joined before the data arrives.
    let tansu = Tansu::start();
    let (pa, pb) = (free_port(), free_port());
    let (ca, cb) = (tmp.path().join("a.toml"), tmp.path().join("b.toml"));
    let (oa, ob) = (tmp.path().join("out-a"), tmp.path().join("out-b"));
    kafka_config(
        &ca,
        &tansu.brokers(),
        "scale",
        &inventory,
        &oa,
        pa,
        &sigma_toml,
    );
    kafka_config(
        &cb,
        &tansu.brokers(),
        "scale",
        &inventory,
        &ob,
        pb,
        &sigma_toml,
    );
    let mut a = Runner::start(&ca, pa, tmp.path().join("a.log"));
    a.wait_healthy();
    let mut b = Runner::start(&cb, pb, tmp.path().join("b.log"));
    b.wait_healthy();
    std::thread::sleep(Duration::from_secs(4));
    // The sources deliver a day at a time, CloudTrail last, as live sources do:
    // none is a day behind another, and CloudTrail's files come 5–15 minutes after
    // the calls while Entra, GitHub and Vault stream within seconds. Nothing waits
    // for a quiet source, so this is what makes the run equal replay field for
    // field; a fact that comes later still is re-evaluated within a bounded window
    // (`pipeline/tests/late_facts.rs`).
    let lag = || a.metric("lineage_consumer_lag", &[]) + b.metric("lineage_consumer_lag", &[]);
    for files in days.values() {
        let mut files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        files.sort_by_key(|f| f.contains("cloudtrail"));
        common::ingest(&tansu.brokers(), &files);
        let deadline = Instant::now() + Duration::from_secs(60);
        // The lag metric is refreshed every 2 s.
        std::thread::sleep(Duration::from_millis(2500));
        while lag() > 0.0 {
            assert!(Instant::now() < deadline, "lag {}:\n{}", lag(), a.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let both = || -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for o in [&oa, &ob] {
            if o.join("alerts.jsonl").exists() {
                m.extend(alerts_by_id(&o.join("alerts.jsonl")));
            }
        }
        m
    };
    while both().len() < want.len() || !settled(&[&a, &b]) {
        assert!(
            Instant::now() < deadline,
            "{} of {} alerts from two processes:\n{}\n-----\n{}",
            both().len(),
            want.len(),
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let graph = |r: &Runner| {
        r.metric(
            "lineage_events_total",
            &["stage=\"graph\"", "outcome=\"in\""],
        )
    };
    assert!(
        graph(&a) > 0.0 && graph(&b) > 0.0,
        "both processes took part: {} and {} events",
        graph(&a),
        graph(&b)
    );
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    let on_topic: Vec<Value> = read_topic(&tansu.brokers(), "lineage.alerts")
        .iter()
        .map(|m| common::comparable_alert(&serde_json::from_slice(&m.payload).unwrap()))
        .collect();
    assert_eq!(
        on_topic.len(),
        want.len(),
        "each alert once on lineage.alerts"
    );
    let by_id: BTreeMap<String, Value> = on_topic
        .into_iter()
        .map(|a| (a["id"].as_str().unwrap().to_owned(), a))
        .collect();
    assert_same("kafka, two processes", &by_id, &want);
    let mut actions = action_keys(&oa.join("actions.jsonl"));
    actions.extend(action_keys(&ob.join("actions.jsonl")));
    assert_eq!(actions, want_actions, "two processes' actions");
}
