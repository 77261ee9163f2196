//! The live pipeline on a real Kafka-protocol broker (tansu, in-memory storage,
//! started per test on a free 127.0.0.1 port and killed on drop). That it equals
//! replay in one and two processes is `tests/parity.rs`; here:
//!
//! - crash safety: ≥ 100k records, `lineage run` SIGKILLed four times (while
//!   joining its groups, in the middle of normalize, in the middle of graph/detect,
//!   after the first alert — each judged by the process's own metrics) and
//!   restarted; every raw record is accounted for by event id (normalized or
//!   dead-lettered), no alert or action appears twice, and the alerts still equal
//!   replay's (state is rebuilt from the partitions' history).
//!
//! - uses held at shutdown (waiting for a quiet source) are processed after the
//!   restart from the snapshot, not skipped as duplicates.
//!
//! - a restart under other static member names (the config file moved) gets the
//!   partitions once the old members' sessions expire.
//!
//! - `[bus.topic_config]` reaches the topics `lineage run` creates, and the test
//!   broker then enforces their `retention.ms` (what the Kafka soak benchmark needs).
//!
//! Needs `tansu`: `LINEAGE_TANSU_BIN` (scripts/test.sh exports it) or on PATH, built
//! by `scripts/services/tansu.sh install` with its fixes (an unpatched tansu 0.6
//! loses records when a consumer resumes inside a record batch, which this crash
//! test detects).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use lineage_test_support::{free_port, read_topic, Tansu};
use serde_json::Value;

use common::{KillPoint, Runner};

/// `lineage replay` of the same inputs: its alerts by id.
fn replay_alerts(inputs: &[String], inventory: &Path, out: &Path) -> BTreeMap<String, Value> {
    replay_alerts_with(inputs, inventory, out, &["--no-tables"])
}

fn replay_alerts_with(
    inputs: &[String],
    inventory: &Path,
    out: &Path,
    extra: &[&str],
) -> BTreeMap<String, Value> {
    let paths: Vec<&Path> = inputs.iter().map(Path::new).collect();
    let inv = inventory.display().to_string();
    let mut args = vec!["--inventory", &inv];
    args.extend_from_slice(extra);
    let o = common::replay(&paths, out, &args);
    common::assert_exit(&o, 0);
    common::jsonl(&out.join("alerts.jsonl"))
        .into_iter()
        .map(|a| (a["id"].as_str().unwrap().to_owned(), a))
        .collect()
}

fn write_config(path: &Path, brokers: &str, group: &str, inventory: &Path, out: &Path, port: u16) {
    write_config_with(path, brokers, group, inventory, out, port, "");
}

/// [`write_config`] with more `[run]` settings (`extra_run`, TOML lines).
fn write_config_with(
    path: &Path,
    brokers: &str,
    group: &str,
    inventory: &Path,
    out: &Path,
    port: u16,
    extra_run: &str,
) {
    common::KafkaRunConfig {
        extra_run,
        ..common::KafkaRunConfig::new(brokers, group, inventory, out, port)
    }
    .write(path);
}

fn alerts_on_topic(brokers: &str) -> Vec<Value> {
    read_topic(brokers, "lineage.alerts")
        .into_iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

/// Waits until the alerts topic holds `want` alerts, the consumer lag is 0 and no
/// use is held.
fn wait_for_alerts(
    brokers: &str,
    want_alerts: &BTreeMap<String, Value>,
    runners: &[&Runner],
) -> Vec<Value> {
    let want = want_alerts.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = alerts_on_topic(brokers);
        let lag: f64 = runners
            .iter()
            .map(|r| r.metric("lineage_consumer_lag", &[]))
            .sum();
        let held: f64 = runners
            .iter()
            .map(|r| r.metric("lineage_graph_held_events", &[]))
            .sum();
        if got.len() >= want && lag == 0.0 && held == 0.0 {
            // Anything still in flight would show up now.
            std::thread::sleep(Duration::from_millis(1500));
            return alerts_on_topic(brokers);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = runners.iter().map(|r| r.log()).collect();
            let lags: Vec<String> = runners
                .iter()
                .filter_map(|r| r.get("/metrics"))
                .flat_map(|(_, text)| {
                    text.lines()
                        .filter(|l| {
                            l.starts_with("lineage_consumer_lag")
                                || l.starts_with("lineage_events_total")
                        })
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            let got_ids: HashSet<&str> = got.iter().filter_map(|a| a["id"].as_str()).collect();
            let missing: Vec<String> = want_alerts
                .iter()
                .filter(|(id, _)| !got_ids.contains(id.as_str()))
                .map(|(_, a)| {
                    format!(
                        "{} {} credential {} root {} first_seen {}",
                        a["id"],
                        a["detector"],
                        a["credential"],
                        a["root_credential"],
                        a["first_seen"]
                    )
                })
                .collect();
            panic!(
                "{} of {want} alerts after 120 s (lag {lag}); missing:\n{}\n{}\n{}",
                got.len(),
                missing.join("\n"),
                lags.join("\n"),
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (up to 60 s) until the sinks stage has written `want` lines to `path`: it
/// consumes `lineage.alerts` on its own schedule, after the alerts are on the topic.
fn wait_for_lines(path: &Path, want: usize, run: &Runner) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= want {
            return;
        }
        if Instant::now() > deadline {
            let metrics = run
                .get("/metrics")
                .map(|(_, text)| {
                    text.lines()
                        .filter(|l| l.contains("stage=\"sinks\""))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            let log = run.log();
            let sinks_log: Vec<&str> = log.lines().filter(|l| l.contains("sinks")).collect();
            panic!(
                "{lines} of {want} alerts in {} after 60 s\nsinks metrics:\n{metrics}\nsinks log:\n{}",
                path.display(),
                sinks_log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_same_alerts(got: &[Value], want: &BTreeMap<String, Value>) {
    let got_by_id: BTreeMap<String, Value> = got
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                common::comparable_alert(a),
            )
        })
        .collect();
    assert_eq!(
        got_by_id.len(),
        got.len(),
        "an alert id appears twice on the topic"
    );
    let want_ids: BTreeSet<&String> = want.keys().collect();
    let got_ids: BTreeSet<&String> = got_by_id.keys().collect();
    let missing: Vec<_> = want_ids.difference(&got_ids).collect();
    let extra: Vec<_> = got_ids.difference(&want_ids).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "alerts differ from replay: missing {missing:?}, extra {extra:?}"
    );
    for (id, a) in want {
        assert_eq!(
            &got_by_id[id],
            &common::comparable_alert(a),
            "alert {id} differs from replay"
        );
    }
}

#[test]
fn sigkilled_pipeline_accounts_for_every_record_and_repeats_no_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let inputs = common::simulate(
        &sim,
        &[
            "--agents",
            "40",
            "--days",
            "6",
            "--calls-per-agent-day",
            "400",
        ],
    );
    let inventory = sim.join("inventory.toml");
    let want = replay_alerts(&inputs, &inventory, &tmp.path().join("replay"));
    let tansu = Tansu::start();
    let report = common::ingest(&tansu.brokers(), &inputs);
    let read = report["read"].as_u64().unwrap();
    assert!(read >= 100_000, "at least 100k records: {report}");

    let port = free_port();
    let cfg = tmp.path().join("lineage.toml");
    let out = tmp.path().join("live");
    write_config(&cfg, &tansu.brokers(), "crash", &inventory, &out, port);
    let log = tmp.path().join("run.log");
    // Kill at several points of the run, each process after its own progress (the
    // counters start at zero in every process): while joining the groups, in the
    // middle of normalize, in the middle of graph/detect, and once alerts flow.
    let kill_points: [(&str, KillPoint); 4] = [
        ("while joining", KillPoint::AfterMs(700)),
        (
            "mid-normalize",
            KillPoint::Metric(
                "lineage_events_total",
                &["stage=\"normalize\"", "outcome=\"out\""],
                15_000.0,
            ),
        ),
        (
            "mid-graph",
            KillPoint::Metric(
                "lineage_events_total",
                &["stage=\"graph\"", "outcome=\"in\""],
                15_000.0,
            ),
        ),
        (
            "after the first alert",
            KillPoint::Metric("lineage_alerts_total", &[], 1.0),
        ),
    ];
    let mut kills = 0;
    for (name, point) in kill_points {
        let mut run = Runner::start(&cfg, port, log.clone());
        run.wait_healthy();
        run.wait_for(name, &point);
        run.sigkill();
        kills += 1;
    }
    assert_eq!(kills, 4);
    let mut run = Runner::start(&cfg, port, log.clone());
    run.wait_healthy();
    let got = wait_for_alerts(&tansu.brokers(), &want, &[&run]);
    wait_for_lines(&out.join("alerts.jsonl"), want.len(), &run);
    let status = run.sigterm();
    assert!(status.success(), "SIGTERM exits 0: {status}");

    // Every raw record is accounted for, by key (source event id).
    // Raw key → where it is (`source[partition]@offset`, for the failure message).
    let mut raw_at: HashMap<String, String> = HashMap::new();
    let mut raw_messages = 0u64;
    for source in ["cloudtrail", "entra", "github", "vault"] {
        for m in read_topic(&tansu.brokers(), &format!("lineage.raw.{source}")) {
            raw_messages += 1;
            raw_at.insert(m.key, format!("{source}[{}]@{}", m.partition, m.offset));
        }
    }
    let raw_keys: HashSet<String> = raw_at.keys().cloned().collect();
    assert_eq!(
        raw_messages, read,
        "the raw topics hold exactly what was ingested"
    );
    let events = read_topic(&tansu.brokers(), "lineage.events");
    let normalized: HashSet<String> = events
        .iter()
        .map(|m| m.headers["event-id"].clone())
        .collect();
    let dead: HashSet<String> = read_topic(&tansu.brokers(), "lineage.dlq")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let accounted: HashSet<String> = normalized.union(&dead).cloned().collect();
    let mut lost: Vec<&String> = raw_keys
        .difference(&accounted)
        .map(|k| &raw_at[k])
        .collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} records never normalized nor dead-lettered: {lost:?}\n{}",
        lost.len(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        accounted.len(),
        raw_keys.len(),
        "nothing appears that was not read"
    );

    // No alert or action twice, on the topics or in the sink's files.
    assert_same_alerts(&got, &want);
    let actions = read_topic(&tansu.brokers(), "lineage.actions");
    let action_keys: Vec<&str> = actions.iter().map(|m| m.key.as_str()).collect();
    let unique: HashSet<&str> = action_keys.iter().copied().collect();
    assert_eq!(unique.len(), action_keys.len(), "an action appears twice");
    let replay_actions = common::jsonl(&tmp.path().join("replay/actions.jsonl"));
    let replay_keys: HashSet<&str> = replay_actions
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(unique, replay_keys, "actions equal replay's");
    let written = common::jsonl(&out.join("alerts.jsonl"));
    assert_same_alerts(&written, &want);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains("panicked"), "{log_text}");

    // A restart after SIGTERM restores the graph stage's snapshot and re-reads no
    // partition of lineage.events (the killed runs above, without one, re-read
    // theirs from offset 0), then processes what comes next, raising nothing twice.
    // To know what it emitted, it reads the output topics only from the offsets the
    // snapshot recorded, not from their beginning.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("state/graph-snapshot/meta.json")).unwrap())
            .unwrap();
    let mut after_snapshot = 0;
    let mut on_topics = 0;
    for topic in ["lineage.alerts", "lineage.actions"] {
        let from = &meta["outputs"][topic];
        assert!(
            from.is_object(),
            "snapshot records {topic}'s offsets: {meta}"
        );
        for m in read_topic(&tansu.brokers(), topic) {
            on_topics += 1;
            let start = from[m.partition.to_string()].as_i64().unwrap_or(0);
            after_snapshot += u64::from(m.offset >= start);
        }
    }
    let mut run = Runner::start(&cfg, port, log.clone());
    run.wait_healthy();
    let next = tmp.path().join("next.json");
    std::fs::write(
        &next,
        serde_json::json!({"Records": [trail_record("after-restart-1", 0)]}).to_string(),
    )
    .unwrap();
    common::ingest(&tansu.brokers(), &[next.display().to_string()]);
    run.wait_metric(
        "lineage_events_total",
        &["stage=\"graph\"", "outcome=\"out\""],
        1.0,
        Duration::from_secs(90),
    );
    assert_eq!(
        run.metric("lineage_graph_restored_from_snapshot", &[]),
        1.0,
        "{}",
        run.log()
    );
    assert_eq!(
        run.metric("lineage_graph_rebuild_events", &[]),
        0.0,
        "events re-read at restart:\n{}",
        run.log()
    );
    assert_eq!(
        run.metric("lineage_graph_output_ids_read", &[]),
        after_snapshot as f64,
        "output messages read at restart (of {on_topics} on the topics):\n{}",
        run.log()
    );
    // (tansu reports a partition's end as its last batch's base offset, so that
    // batch is read again: some, never all, of what several runs emitted.)
    assert!(
        after_snapshot < on_topics,
        "{after_snapshot} of {on_topics}"
    );
    assert!(run.sigterm().success());
    let after: Vec<Value> = alerts_on_topic(&tansu.brokers());
    assert_eq!(
        after.len(),
        got.len(),
        "no alert raised again after the restart"
    );
}

/// A CloudTrail record with `id`, padded with `pad` bytes in a request parameter.
fn trail_record(id: &str, pad: usize) -> Value {
    serde_json::json!({
        "eventVersion": "1.08", "eventID": id, "eventTime": "2026-12-01T10:00:00Z",
        "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.1", "userAgent": "aws-cli/2.15.0",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAOKAY000000000001",
            "userName": "u", "accountId": "111122223333", "arn": "arn:aws:iam::111122223333:user/u"},
        "requestParameters": {"padding": "x".repeat(pad)}
    })
}

#[test]
fn records_and_dead_letters_over_the_message_limit_are_dead_lettered_cut_to_fit() {
    let tmp = tempfile::tempdir().unwrap();
    // A record over the bus's message limit (1,000,000 bytes less headroom) ...
    let big = tmp.path().join("big.json");
    std::fs::write(
        &big,
        serde_json::json!({ "Records": [
            trail_record("ok-1", 0), trail_record("too-big", 1_200_000), trail_record("ok-2", 0)
        ]})
        .to_string(),
    )
    .unwrap();
    // ... and a broken record under it whose dead letter is not: 900 kB of
    // backslashes double when the dead letter is written as JSON.
    let broken = tmp.path().join("broken.json");
    let mut text = format!(
        "{{\"Records\":[{},{{\"eventID\":\"cut\",\"k\":\"",
        trail_record("ok-3", 0)
    );
    text.push_str(&"\\\\".repeat(450_000));
    std::fs::write(&broken, text).unwrap();
    // And a file nobody wrote: three records, each its own dead letter under
    // `unknown`, as replay counts them.
    let mystery = tmp.path().join("mystery.jsonl");
    std::fs::write(&mystery, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
    let inventory = tmp.path().join("inventory.toml");
    std::fs::write(&inventory, "[[human]]\nid = \"u\"\n").unwrap();

    let tansu = Tansu::start();
    let inputs = [
        big.display().to_string(),
        broken.display().to_string(),
        mystery.display().to_string(),
    ];
    let report = common::ingest(&tansu.brokers(), &inputs);
    assert_eq!(report["read"], 8, "{report}");
    assert_eq!(report["produced"], 4, "{report}");
    assert_eq!(report["dead_lettered"], 4, "{report}");

    let port = free_port();
    let cfg = tmp.path().join("lineage.toml");
    let out = tmp.path().join("live");
    write_config(&cfg, &tansu.brokers(), "oversized", &inventory, &out, port);
    let mut run = Runner::start(&cfg, port, tmp.path().join("run.log"));
    run.wait_healthy();
    let deadline = Instant::now() + Duration::from_secs(90);
    let dead = loop {
        let dead: Vec<Value> = read_topic(&tansu.brokers(), "lineage.dlq")
            .into_iter()
            .map(|m| {
                assert!(m.payload.len() < 1_000_000, "fits one message");
                serde_json::from_slice(&m.payload).unwrap()
            })
            .collect();
        let events = read_topic(&tansu.brokers(), "lineage.events").len();
        if dead.len() >= 5 && events >= 3 {
            assert_eq!((dead.len(), events), (5, 3), "{dead:#?}");
            break dead;
        }
        assert!(run.running(), "the pipeline keeps running:\n{}", run.log());
        assert!(Instant::now() < deadline, "{dead:#?}\n{}", run.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    let status = run.sigterm();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let unknown: Vec<&Value> = dead.iter().filter(|d| d["source"] == "unknown").collect();
    assert_eq!(unknown.len(), 3, "{dead:#?}");
    assert!(
        unknown
            .iter()
            .all(|d| d["reason"].as_str().unwrap().contains("pass --source")),
        "{unknown:#?}"
    );
    let too_big = dead
        .iter()
        .find(|d| d["reason"].as_str().unwrap().contains("message limit"))
        .expect("the oversized record is dead-lettered at ingest");
    assert!(too_big["original_len"].as_u64().unwrap() > 1_200_000);
    let cut = dead
        .iter()
        .find(|d| {
            d["original"]
                .as_str()
                .is_some_and(|o| o.contains("\"cut\""))
        })
        .expect("the broken record is dead-lettered by normalize");
    let reason = cut["reason"].as_str().unwrap();
    assert!(reason.contains("original cut to its first"), "{reason}");
    assert!(cut["original_len"].as_u64().unwrap() > 900_000, "{cut:#}");
}

/// An Entra departure delivered after the CloudTrail uses it concerns (Entra's
/// export lags; the graph stage stopped waiting for the quiet Entra partition): the
/// uses were processed without it, and when it arrives the owner's recent uses are
/// re-evaluated and the departed-owner alert replay raises goes out, marked late.
#[test]
fn a_departure_delivered_after_the_uses_raises_the_alert_replay_raises_marked_late() {
    let tmp = tempfile::tempdir().unwrap();
    let late = common::LateDeparture::write(tmp.path());
    let inputs = [
        late.trail.display().to_string(),
        late.disable.display().to_string(),
    ];
    let want = late.replay_alert(&tmp.path().join("replay"));
    let inventory = late.inventory.clone();

    let tansu = Tansu::start();
    let port = free_port();
    let cfg = tmp.path().join("lineage.toml");
    let out = tmp.path().join("live");
    write_config(&cfg, &tansu.brokers(), "late", &inventory, &out, port);
    // The key is declared (known to the graph), so its uses do not wait for the
    // silent Entra partition at all.
    let mut run = Runner::start(&cfg, port, tmp.path().join("run.log"));
    run.wait_healthy();
    common::ingest(&tansu.brokers(), &[inputs[0].clone()]);
    // The three uses processed.
    run.wait_metric(
        "lineage_events_total",
        &["stage=\"graph\"", "outcome=\"out\""],
        3.0,
        Duration::from_secs(90),
    );
    assert!(
        alerts_on_topic(&tansu.brokers())
            .iter()
            .all(|a| a["detector"] != "departed-owner"),
        "no departure known yet"
    );
    // Now the departure, 5 to 10 minutes of event time older than the uses after it.
    common::ingest(&tansu.brokers(), &[inputs[1].clone()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let departed: Vec<Value> = alerts_on_topic(&tansu.brokers())
            .into_iter()
            .filter(|a| a["detector"] == "departed-owner")
            .collect();
        if !departed.is_empty() {
            break departed;
        }
        assert!(run.running(), "{}", run.log());
        assert!(Instant::now() < deadline, "no late alert:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    let status = run.sigterm();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert_eq!(got.len(), 1, "{got:#?}");
    common::LateDeparture::assert_late_alert(&got[0], &want);
}

/// Uses of a credential the graph does not know wait (here: for as long as the run
/// lasts) for a quiet source's facts. Stopped while they wait, the run commits no
/// offset past them and its snapshot does not count them as processed, so the next
/// run restores the snapshot, reads them again and processes them: none is skipped
/// as a duplicate of itself, and each reaches the `events` table once.
#[test]
fn uses_held_at_shutdown_are_processed_after_the_restart_from_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("inventory.toml");
    std::fs::write(&inventory, "[[human]]\nid = \"u\"\n").unwrap();
    let ids = ["held-1", "held-2", "held-3"];
    let records: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut r = trail_record(id, 0);
            // A key no inventory entry or earlier fact names.
            r["userIdentity"]["accessKeyId"] = "AKIAHELDUNKNOWN00001".into();
            r
        })
        .collect();
    let trail = tmp.path().join("trail.json");
    std::fs::write(
        &trail,
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();

    let tansu = Tansu::start();
    let out = tmp.path().join("live");
    // One config file for both runs, as an operator restarts a service: the same
    // static member names, so the restart takes the partitions back at once.
    let cfg = tmp.path().join("lineage.toml");
    let port = free_port();
    write_config_with(
        &cfg,
        &tansu.brokers(),
        "held",
        &inventory,
        &out,
        port,
        "quiet_source_wait_ms = 600000\nsource_idle_ms = 600000",
    );
    let mut run = Runner::start(&cfg, port, tmp.path().join("waiting.log"));
    run.wait_healthy();
    common::ingest(&tansu.brokers(), &[trail.display().to_string()]);
    run.wait_metric(
        "lineage_graph_held_events",
        &[],
        ids.len() as f64,
        Duration::from_secs(90),
    );
    assert_eq!(
        run.metric(
            "lineage_events_total",
            &["stage=\"graph\"", "outcome=\"out\""]
        ),
        0.0,
        "held, not processed"
    );
    assert!(run.sigterm().success(), "SIGTERM exits 0");
    let meta: Value = serde_json::from_slice(
        &std::fs::read(out.join("state/graph-snapshot/meta.json")).expect("a snapshot at shutdown"),
    )
    .unwrap();
    assert!(
        meta["offsets"]
            .as_object()
            .unwrap()
            .values()
            .all(|o| o.as_i64() == Some(0)),
        "no offset past a held use: {meta}"
    );

    // Restarted with the default wait: the uses go through after half a second.
    let port = free_port();
    write_config(&cfg, &tansu.brokers(), "held", &inventory, &out, port);
    let mut run = Runner::start(&cfg, port, tmp.path().join("restarted.log"));
    run.wait_healthy();
    run.wait_metric(
        "lineage_events_total",
        &["stage=\"graph\"", "outcome=\"out\""],
        ids.len() as f64,
        Duration::from_secs(90),
    );
    assert_eq!(run.metric("lineage_graph_restored_from_snapshot", &[]), 1.0);
    assert_eq!(
        run.metric(
            "lineage_events_total",
            &["stage=\"graph\"", "outcome=\"duplicate\""]
        ),
        0.0,
        "a held use is not a duplicate of itself:\n{}",
        run.log()
    );
    assert!(run.sigterm().success(), "SIGTERM exits 0");
    let o = common::lineage()
        .args(["sql", "--tables"])
        .arg(out.join("tables"))
        .args([
            "--format",
            "csv",
            "SELECT event_id FROM events ORDER BY event_id",
        ])
        .output()
        .unwrap();
    common::assert_exit(&o, 0);
    let rows: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(rows, ids, "each held use in the events table once");
}

/// The static member names come from the host and the config file's path, so a
/// process restarted from a config file in another place joins under new names. Its
/// predecessor's members are dead ones it does not take over: the broker expires
/// them after their session timeout and the new process gets the partitions. (A tansu
/// 0.6 coordinator never expired a dead static member while only static members
/// asked, so this group waited for ever; fixed by the tansu patch.)
#[test]
fn a_restart_under_other_member_names_gets_the_partitions_after_the_old_sessions_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("inventory.toml");
    std::fs::write(&inventory, "[[human]]\nid = \"u\"\n").unwrap();
    let trail = |name: &str, ids: &[&str]| {
        let path = tmp.path().join(name);
        let records: Vec<Value> = ids.iter().map(|id| trail_record(id, 0)).collect();
        std::fs::write(&path, serde_json::json!({ "Records": records }).to_string()).unwrap();
        path.display().to_string()
    };
    let tansu = Tansu::start();
    let out = tmp.path().join("live");
    for (run_no, dir) in ["first", "moved"].iter().enumerate() {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("lineage.toml");
        let port = free_port();
        write_config(&cfg, &tansu.brokers(), "moved", &inventory, &out, port);
        let mut run = Runner::start(&cfg, port, dir.join("run.log"));
        run.wait_healthy();
        let ids: Vec<String> = (1..=3).map(|i| format!("run{run_no}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        common::ingest(
            &tansu.brokers(),
            &[trail(&format!("trail-{run_no}.json"), &ids)],
        );
        // Within the old members' 10 s session timeout and a rebalance or two.
        run.wait_metric(
            "lineage_events_total",
            &["stage=\"graph\"", "outcome=\"out\""],
            3.0,
            Duration::from_secs(90),
        );
        assert!(run.sigterm().success(), "SIGTERM exits 0");
    }
}

/// The configs of `topic` as the broker describes them.
fn topic_configs(brokers: &str, topic: &str) -> BTreeMap<String, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio_runtime();
    let described = rt
        .block_on(admin.describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(20))),
        ))
        .unwrap();
    let resource = described
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("describe {topic}: {e}"));
    resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The low watermark (log start) of `topic`'s partition 0.
fn log_start(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .0
}

#[test]
fn bus_topic_config_reaches_the_topics_lineage_creates_and_the_test_broker_enforces_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let tansu = Tansu::start_maintained_every("1s");
    let port = free_port();
    let cfg = tmp.path().join("lineage.toml");
    let out = tmp.path().join("live");
    let inventory = tmp.path().join("inventory.toml");
    std::fs::write(&inventory, "").unwrap();
    write_config(&cfg, &tansu.brokers(), "retain", &inventory, &out, port);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[bus.topic_config]\n\"retention.ms\" = \"2000\"\n\"cleanup.policy\" = \"delete\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let mut run = Runner::start(&cfg, port, tmp.path().join("run.log"));
    run.wait_healthy();

    let events = topic_configs(&tansu.brokers(), "lineage.events");
    assert_eq!(
        events.get("retention.ms").map(String::as_str),
        Some("2000"),
        "{events:?}"
    );
    assert_eq!(
        events.get("cleanup.policy").map(String::as_str),
        Some("delete"),
        "{events:?}"
    );
    let identity = topic_configs(&tansu.brokers(), "lineage.identity");
    assert_eq!(
        identity.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "the identity topic stays compacted: {identity:?}"
    );

    // Three deliveries, three record batches on the raw topic, each read before the
    // next is sent (the newest batch always stays, so the first one waits safely for
    // the group's assignment); once older than two seconds the broker deletes all
    // but the newest.
    for i in 0..3 {
        let path = tmp.path().join(format!("trail-{i}.json"));
        let records: Vec<Value> = (0..5)
            .map(|j| trail_record(&format!("retain-{i}-{j}"), 0))
            .collect();
        std::fs::write(&path, serde_json::json!({ "Records": records }).to_string()).unwrap();
        common::ingest(&tansu.brokers(), &[path.display().to_string()]);
        run.wait_metric(
            "lineage_events_total",
            &["stage=\"normalize\"", "outcome=\"in\""],
            5.0 * (i + 1) as f64,
            Duration::from_secs(90),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let start = log_start(&tansu.brokers(), "lineage.raw.cloudtrail");
        if start > 0 {
            assert!(start <= 15, "the newest batch stays: log start {start}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never moved the log start:\n{}",
            tansu.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(run.running(), "{}", run.log());
    let status = run.sigterm();
    assert!(status.success(), "SIGTERM exits 0: {status}");
}
