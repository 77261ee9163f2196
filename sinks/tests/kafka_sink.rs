//! The Kafka alert sink against a real Kafka-protocol broker, tansu (in-memory
//! storage, started by the test on a free 127.0.0.1 port): alerts arrive keyed by
//! their dedup key, and a sink whose broker is unreachable spools.
//!
//! Needs the `tansu` binary: `LINEAGE_TANSU_BIN` (scripts/test.sh exports it from
//! `scripts/services/tansu.sh install`) or `tansu` on PATH. Without it the test
//! fails; it never skips.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use lineage_core::{AgentId, Alert, HumanId, Severity};
use lineage_sinks::alerts::{
    AlertFanout, AlertSinkConfig, AlertSinksConfig, KafkaSinkConfig, SinkStats,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

fn alert(i: usize) -> Alert {
    let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, i as u32).unwrap();
    Alert {
        id: format!("kafka-alert-{i:03}").into(),
        detector: "departed-owner".into(),
        severity: Severity::High,
        title: format!("Key of departed owner used #{i}"),
        summary: format!("AKIAEXAMPLE{i:03} was used after its owner left."),
        first_seen: t,
        last_seen: t,
        count: 1 + i as u64,
        dedup_key: format!("departed-owner|AKIAEXAMPLE{i:03}"),
        credential: None,
        root_credential: None,
        agent: Some(AgentId::new("deploy-bot")),
        owner: Some(HumanId::new("alice@example.com")),
        lineage_path: Vec::new(),
        mitre: vec!["T1078.004".into()],
        evidence: serde_json::json!({ "action": "s3:GetObject", "n": i }),
        event_ids: vec![format!("ev-{i}").into()],
        blast_radius: None,
    }
}

use lineage_test_support::{free_port, Tansu};

fn kafka_sink(
    name: &str,
    brokers: String,
    topic: &str,
    extra: &[(&str, &str)],
) -> AlertSinksConfig {
    let librdkafka: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AlertSinksConfig {
        sinks: vec![AlertSinkConfig::Kafka(KafkaSinkConfig {
            name: Some(name.into()),
            topic: topic.into(),
            timeout_secs: 20,
            librdkafka,
            ..KafkaSinkConfig::new(brokers)
        })],
        ..AlertSinksConfig::default()
    }
}

fn stats_of(fanout: &AlertFanout, name: &str) -> SinkStats {
    fanout
        .stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sink named {name}"))
}

/// Every message of `topic`, read from the start, until `want` have arrived or 30 s pass.
fn consume(brokers: &str, topic: &str, want: usize) -> Vec<(Option<String>, serde_json::Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("lineage-test-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(e)) => eprintln!("consumer: {e}"),
            Some(Ok(m)) => {
                let key = m.key().map(|k| String::from_utf8(k.to_vec()).unwrap());
                let value: serde_json::Value =
                    serde_json::from_slice(m.payload().expect("a value")).expect("JSON value");
                got.push((key, value));
            }
        }
    }
    got
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn alerts_reach_the_topic_keyed_by_dedup_key() {
    let tansu = Tansu::start();
    let spool = tempfile::tempdir().unwrap();
    let topic = "lineage.alerts";
    tansu.create_topic(topic, 3);
    let mut fanout = AlertFanout::build(
        &kafka_sink("kafka", tansu.brokers(), topic, &[]),
        spool.path(),
    )
    .unwrap();
    let sent: Vec<Alert> = (0..5).map(alert).collect();
    for a in &sent {
        fanout
            .send(a)
            .unwrap_or_else(|e| panic!("send {}: {e}\ntansu log:\n{}", a.id, tansu.log()));
    }
    let s = stats_of(&fanout, "kafka");
    assert_eq!(s.kind, "kafka");
    assert_eq!(
        (s.delivered, s.spooled, s.failed, s.pending),
        (5, 0, 0, 0),
        "{s:?}\ntansu log:\n{}",
        tansu.log()
    );

    // Three partitions: order holds per key, so match the messages up by key.
    let got = consume(&tansu.brokers(), topic, 5);
    assert_eq!(got.len(), 5, "messages consumed: {got:?}");
    let by_key: BTreeMap<String, Alert> = got
        .into_iter()
        .map(|(key, value)| {
            let back: Alert = serde_json::from_value(value).expect("the value is an alert");
            (key.expect("a key"), back)
        })
        .collect();
    assert_eq!(by_key.len(), 5, "one message per dedup key");
    for a in &sent {
        let back = &by_key[&a.dedup_key];
        assert_eq!(back.id, a.id);
        assert_eq!(back, a);
    }
}

#[test]
fn an_unreachable_broker_spools_the_alert_and_it_is_resent_when_the_broker_is_up() {
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let topic = "lineage.alerts.resent";
    let cfg = kafka_sink(
        "kafka-down",
        format!("127.0.0.1:{port}"),
        topic,
        &[("message.timeout.ms", "1500")],
    );
    let mut fanout = AlertFanout::build(&cfg, spool.path()).unwrap();
    let a = alert(7);
    let started = Instant::now();
    fanout.send(&a).expect("spooled, so Ok");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let s = stats_of(&fanout, "kafka-down");
    assert_eq!((s.delivered, s.spooled, s.pending), (0, 1, 1), "{s:?}");
    let lines = read_lines(&spool.path().join("kafka-down.jsonl"));
    assert_eq!(lines.len(), 1);
    let back: Alert = serde_json::from_value(lines[0].clone()).unwrap();
    assert_eq!(back, a);

    // The broker comes up on that port: flushing the spool delivers the alert.
    let tansu = Tansu::start_on(port);
    tansu.create_topic(topic, 1);
    let resent = fanout
        .flush_spool()
        .unwrap_or_else(|e| panic!("flush: {e}\ntansu log:\n{}", tansu.log()));
    let s = stats_of(&fanout, "kafka-down");
    assert_eq!(resent, 1, "{s:?}\ntansu log:\n{}", tansu.log());
    assert_eq!((s.delivered, s.resent, s.pending), (1, 1, 0), "{s:?}");
    let got = consume(&tansu.brokers(), topic, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.as_deref(), Some(a.dedup_key.as_str()));
    assert_eq!(got[0].1["id"], a.id.as_str());
}

#[test]
fn a_bad_librdkafka_property_fails_the_build_without_quoting_its_value() {
    let spool = tempfile::tempdir().unwrap();
    let cfg = kafka_sink(
        "kafka-bad",
        "127.0.0.1:9".into(),
        "lineage.alerts",
        &[("sasl.passwrd", "hunter2-secret")],
    );
    let err = AlertFanout::build(&cfg, spool.path())
        .expect_err("an unknown librdkafka property is refused")
        .to_string();
    assert!(err.contains("kafka-bad"), "{err}");
    assert!(!err.contains("hunter2"), "the value leaked: {err}");
}
