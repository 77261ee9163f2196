//! One scenario per detector: the attack is found, and the same data without the
//! attack raises nothing from that detector.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use lineage_core::event::*;
use lineage_core::{Alert, AttributedEvent, CredentialId, Inventory};
use lineage_detect::{
    build_detectors, AlertBook, AnomalyConfig, AnomalyDetector, Detector, DetectorsConfig, Recorded,
};
use lineage_graph::LineageGraph;

const INVENTORY: &str = r#"
[[human]]
id = "alice"
aliases = { aws_iam_user = ["alice"] }

[[human]]
id = "bob"
status = "departed"
departed_at = "2026-03-01T00:00:00Z"

[[agent]]
id = "claude"
kind = "ai-agent"
owner = "alice"
credentials = ["AKIACLAUDE0000000001"]

[[agent]]
id = "billing"
kind = "service"
owner = "bob"
credentials = ["AKIABILLING000000001"]

[[agent]]
id = "ci"
kind = "ci"
owner = "alice"
aws_iam_users = ["ci-cache"]

[[agent]]
id = "svc"
kind = "service"
owner = "alice"
credentials = ["AKIASVC0000000000001"]
"#;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap()
}

#[derive(Clone)]
struct Rec {
    use_: CredentialUse,
    facts: Vec<LineageFact>,
}

fn call(key: &str, user: &str, at: DateTime<Utc>, action: (&str, &str), ip: &str) -> Rec {
    Rec {
        use_: CredentialUse {
            source: Source::CloudTrail,
            event_id: format!("{key}-{}-{}", at.timestamp(), action.1).into(),
            time: at,
            credential: Some(CredentialRef {
                kind: CredentialKind::from_aws_key_id(key),
                id: CredentialId::new(key),
                issuer: None,
            }),
            principal: Principal {
                kind: PrincipalKind::IamUser,
                id: None,
                name: Some(user.into()),
                arn: None,
                account: None,
            },
            session: SessionContext::default(),
            client: ClientHints {
                user_agent: Some("aws-sdk-go-v2/1.30".into()),
                source_ip: Some(ip.into()),
                client_app: None,
                mcp_server: None,
            },
            operation: Operation {
                service: action.0.into(),
                name: action.1.into(),
                read_only: Some(true),
            },
            resources: vec![],
            outcome: Outcome::ok(),
            region: None,
            provenance: Provenance::file("scenario", 1),
        },
        facts: vec![],
    }
}

/// Runs the detectors the way the pipeline does (`observe_folding`, so repeats may
/// come back without details).
fn run(records: Vec<Rec>) -> Vec<Alert> {
    run_with(records, true)
}

fn run_with(records: Vec<Rec>, folding: bool) -> Vec<Alert> {
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let mut graph = LineageGraph::from_inventory(&inv);
    let mut detectors = build_detectors(&DetectorsConfig::default()).unwrap();
    let mut book = AlertBook::default();
    for r in records {
        for f in &r.facts {
            graph.apply(f);
        }
        graph.observe(&r.use_);
        let attribution = graph.attribute(&r.use_);
        let event = AttributedEvent {
            use_: r.use_,
            attribution,
        };
        for d in &mut detectors {
            let found = if folding {
                d.observe_folding(&event, &r.facts, &graph, &book)
            } else {
                d.observe(&event, &r.facts, &graph)
            };
            for f in found {
                book.record(f, &event);
            }
        }
    }
    book.into_alerts()
}

fn of<'a>(alerts: &'a [Alert], detector: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.detector == detector).collect()
}

/// A steady, benign week of the service's key: same network, same actions.
fn baseline(key: &str, user: &str, days: i64) -> Vec<Rec> {
    (0..days * 24)
        .map(|h| {
            call(
                key,
                user,
                t0() + Duration::hours(h) + Duration::minutes(7),
                ("dynamodb", "GetItem"),
                "10.0.1.20",
            )
        })
        .collect()
}

#[test]
fn departed_owner_agent_still_using_its_key() {
    // billing's owner bob departed on 2026-03-01; the key is used the next day.
    let mut records = vec![call(
        "AKIABILLING000000001",
        "svc-billing",
        Utc.with_ymd_and_hms(2026, 2, 28, 12, 0, 0).unwrap(),
        ("dynamodb", "GetItem"),
        "10.0.1.20",
    )];
    let benign = run(records
        .iter()
        .map(|r| Rec {
            use_: r.use_.clone(),
            facts: vec![],
        })
        .collect());
    assert!(of(&benign, "departed-owner").is_empty());
    records.push(call(
        "AKIABILLING000000001",
        "svc-billing",
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap(),
        ("dynamodb", "GetItem"),
        "10.0.1.20",
    ));
    let alerts = run(records);
    let found = of(&alerts, "departed-owner");
    assert_eq!(found.len(), 1, "{alerts:#?}");
    assert_eq!(found[0].severity, lineage_core::Severity::Critical);
    assert_eq!(found[0].owner.as_ref().unwrap().as_str(), "bob");
    assert_eq!(found[0].agent.as_ref().unwrap().as_str(), "billing");
}

#[test]
fn departure_learned_from_the_logs_triggers_revocation_requests() {
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let mut graph = LineageGraph::from_inventory(&inv);
    let mut detectors = build_detectors(&DetectorsConfig::default()).unwrap();
    let mut book = AlertBook::default();
    let departure = LineageFact {
        time: t0() + Duration::days(1),
        source: Source::Entra,
        event_id: "audit-1".into(),
        kind: FactKind::OwnerDeparted {
            human: "alice".into(),
        },
    };
    let mut records = vec![
        call(
            "AKIACLAUDE0000000001",
            "svc-claude",
            t0(),
            ("s3", "GetObject"),
            "10.0.0.5",
        ),
        call(
            "AKIASVC0000000000001",
            "svc",
            t0(),
            ("sqs", "ReceiveMessage"),
            "10.0.0.6",
        ),
    ];
    let mut disabled = call(
        "AKIASVC0000000000001",
        "admin",
        t0() + Duration::days(1),
        ("entra-directory", "Disable account"),
        "10.0.0.6",
    );
    disabled.facts.push(departure);
    records.push(disabled);
    records.push(call(
        "AKIACLAUDE0000000001",
        "svc-claude",
        t0() + Duration::days(2),
        ("s3", "GetObject"),
        "10.0.0.5",
    ));
    for r in records {
        for f in &r.facts {
            graph.apply(f);
        }
        let attribution = graph.attribute(&r.use_);
        let event = AttributedEvent {
            use_: r.use_,
            attribution,
        };
        for d in &mut detectors {
            for f in d.observe(&event, &r.facts, &graph) {
                book.record(f, &event);
            }
        }
    }
    let (alerts, actions) = book.into_parts();
    assert!(of(&alerts, "departed-owner")
        .iter()
        .any(|a| a.agent.as_ref().unwrap().as_str() == "claude"));
    let revoked: Vec<&str> = actions.iter().map(|a| a.credential.id.as_str()).collect();
    assert!(revoked.contains(&"AKIACLAUDE0000000001"), "{revoked:?}");
    assert!(
        revoked.contains(&"AKIASVC0000000000001"),
        "every credential of the owner's agents: {revoked:?}"
    );
    assert!(actions
        .iter()
        .all(|a| a.status == lineage_core::ActionStatus::Requested));
    let keys: std::collections::HashSet<_> = actions.iter().map(|a| &a.idempotency_key).collect();
    assert_eq!(
        keys.len(),
        actions.len(),
        "each credential is requested once"
    );
}

#[test]
fn ci_runner_with_a_cached_long_lived_key() {
    // The CI runner normally works through OIDC sessions (no static key)…
    let mut session = call(
        "ASIACI00000000000001",
        "x",
        t0(),
        ("ecr", "PutImage"),
        "10.0.2.2",
    );
    session.use_.principal.kind = PrincipalKind::AssumedRole;
    let benign = run(vec![Rec {
        use_: session.use_.clone(),
        facts: vec![],
    }]);
    assert!(of(&benign, "long-lived-credential").is_empty());
    // …but one job used a cached IAM user key.
    let alerts = run(vec![
        session,
        call(
            "AKIACICACHE000000001",
            "ci-cache",
            t0() + Duration::minutes(5),
            ("s3", "PutObject"),
            "10.0.2.2",
        ),
    ]);
    let found = of(&alerts, "long-lived-credential");
    assert_eq!(found.len(), 1, "{alerts:#?}");
    assert_eq!(found[0].agent.as_ref().unwrap().as_str(), "ci");
    // A service holding a key is not this detector's business (configurable kinds).
    assert!(of(
        &run(vec![call(
            "AKIASVC0000000000001",
            "svc",
            t0(),
            ("sqs", "ReceiveMessage"),
            "10.0.0.6"
        )]),
        "long-lived-credential"
    )
    .is_empty());
}

#[test]
fn unknown_identity_with_an_ai_fingerprint_and_a_static_key() {
    let mut r = call(
        "AKIAUNKNOWN000000001",
        "dev",
        t0(),
        ("s3", "ListBuckets"),
        "10.0.0.9",
    );
    r.use_.client.user_agent = Some("Boto3/1.35.0 md/Botocore#1.35.0 mcp-server-aws/0.4.1".into());
    let alerts = run(vec![r]);
    let found = of(&alerts, "long-lived-credential");
    assert_eq!(found.len(), 1);
    assert!(found[0].evidence["fingerprint"]
        .as_str()
        .unwrap()
        .contains("MCP"));
}

#[test]
fn stolen_key_used_from_a_new_network_at_the_same_time() {
    let mut records = baseline("AKIASVC0000000000001", "svc", 3);
    let benign = run(records
        .iter()
        .map(|r| Rec {
            use_: r.use_.clone(),
            facts: vec![],
        })
        .collect());
    assert!(of(&benign, "anomaly").is_empty(), "{benign:#?}");
    let t = t0() + Duration::days(2) + Duration::hours(5) + Duration::minutes(9);
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        t,
        ("dynamodb", "GetItem"),
        "203.0.113.50",
    ));
    records.sort_by_key(|r| r.use_.time);
    let alerts = run(records);
    let found = of(&alerts, "anomaly");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].evidence["rule"], "concurrent-networks");
}

#[test]
fn dormant_key_reactivated_new_action_and_denied_burst() {
    // Three days: past the learning day and the 50-use baseline `new-action` waits for.
    let mut records = baseline("AKIASVC0000000000001", "svc", 3);
    let benign = run(records
        .iter()
        .map(|r| Rec {
            use_: r.use_.clone(),
            facts: vec![],
        })
        .collect());
    assert!(of(&benign, "anomaly").is_empty());
    let back = t0() + Duration::days(60);
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        back,
        ("iam", "ListUsers"),
        "10.0.1.20",
    ));
    for i in 0..12 {
        let mut r = call(
            "AKIASVC0000000000001",
            "svc",
            back + Duration::seconds(10 + i),
            ("iam", "GetUser"),
            "10.0.1.20",
        );
        r.use_.outcome = Outcome {
            success: false,
            error_code: Some("AccessDenied".into()),
        };
        records.push(r);
    }
    let alerts = run(records);
    let rules: std::collections::BTreeSet<String> = of(&alerts, "anomaly")
        .iter()
        .map(|a| a.evidence["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        rules,
        ["denied-burst", "dormant-reactivated", "new-action"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn volume_spike_against_the_baseline() {
    let mut records = baseline("AKIASVC0000000000001", "svc", 3);
    let spike_at = t0() + Duration::days(3) + Duration::hours(2);
    let benign = run(records
        .iter()
        .map(|r| Rec {
            use_: r.use_.clone(),
            facts: vec![],
        })
        .collect());
    assert!(of(&benign, "anomaly").is_empty());
    for i in 0..400 {
        records.push(call(
            "AKIASVC0000000000001",
            "svc",
            spike_at + Duration::seconds(i * 5),
            ("dynamodb", "GetItem"),
            "10.0.1.20",
        ));
    }
    let alerts = run(records);
    let found = of(&alerts, "anomaly");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].evidence["rule"], "volume-spike");
}

#[test]
fn privilege_changes_are_flagged_and_ordinary_issuance_is_not() {
    let issued = |method, by: &str, to: &str, kind, id: &str| LineageFact {
        time: t0(),
        source: Source::CloudTrail,
        event_id: "f".into(),
        kind: FactKind::CredentialIssued {
            parent: None,
            child: CredentialRef {
                kind,
                id: CredentialId::new(id),
                issuer: None,
            },
            issued_by: Principal {
                kind: PrincipalKind::IamUser,
                id: None,
                name: Some(by.into()),
                arn: None,
                account: None,
            },
            issued_to: Some(to.into()),
            method,
            session_name: None,
            source_identity: None,
        },
    };
    let mut own = call(
        "AKIACLAUDE0000000001",
        "alice",
        t0(),
        ("iam", "CreateAccessKey"),
        "10.0.0.5",
    );
    own.facts.push(issued(
        IssuanceMethod::CreateAccessKey,
        "alice",
        "alice",
        CredentialKind::AwsAccessKey,
        "AKIANEW1",
    ));
    let mut role = call(
        "AKIACLAUDE0000000001",
        "alice",
        t0(),
        ("sts", "AssumeRole"),
        "10.0.0.5",
    );
    role.facts.push(issued(
        IssuanceMethod::AssumeRole,
        "alice",
        "arn:aws:iam::1:role/r",
        CredentialKind::AwsSessionKey,
        "ASIANEW1",
    ));
    assert!(of(&run(vec![own, role]), "privilege-change").is_empty());

    let mut other = call(
        "AKIACLAUDE0000000001",
        "alice",
        t0(),
        ("iam", "CreateAccessKey"),
        "10.0.0.5",
    );
    other.facts.push(issued(
        IssuanceMethod::CreateAccessKey,
        "alice",
        "backdoor",
        CredentialKind::AwsAccessKey,
        "AKIANEW2",
    ));
    let mut sp = call(
        "AKIACLAUDE0000000001",
        "alice",
        t0(),
        ("entra-directory", "Add service principal credentials"),
        "10.0.0.5",
    );
    sp.facts.push(issued(
        IssuanceMethod::Other,
        "alice",
        "app-1",
        CredentialKind::EntraClientSecret,
        "key-1",
    ));
    let mut vault = call(
        "AKIACLAUDE0000000001",
        "alice",
        t0(),
        ("vault", "update"),
        "10.0.0.5",
    );
    vault.use_.source = Source::Vault;
    vault.use_.operation.read_only = Some(false);
    vault.use_.resources = vec!["sys/audit/file2".into()];
    let alerts = run(vec![other, sp, vault]);
    let rules: std::collections::BTreeSet<String> = of(&alerts, "privilege-change")
        .iter()
        .map(|a| a.evidence["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        rules,
        [
            "access-key-for-other-user",
            "entra-credential-added",
            "vault-sensitive-path"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
}

#[test]
fn repeats_within_the_window_fold_and_later_ones_reopen() {
    let mut records: Vec<Rec> = (0..5)
        .map(|i| {
            call(
                "AKIACICACHE000000001",
                "ci-cache",
                t0() + Duration::hours(i),
                ("s3", "PutObject"),
                "10.0.2.2",
            )
        })
        .collect();
    records.push(call(
        "AKIACICACHE000000001",
        "ci-cache",
        t0() + Duration::days(3),
        ("s3", "PutObject"),
        "10.0.2.2",
    ));
    let alerts = run(records.clone());
    let found = of(&alerts, "long-lived-credential");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].count, 5);
    assert_ne!(found[0].id, found[1].id);
    // Repeats returned without details (observe_folding) leave the same alerts as
    // fully built findings.
    let plain = run_with(records, false);
    assert_eq!(
        serde_json::to_value(&alerts).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );
}

#[test]
fn anomaly_state_snapshots_and_restores() {
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let graph = LineageGraph::from_inventory(&inv);
    let mut d = AnomalyDetector::new(AnomalyConfig::default());
    for r in baseline("AKIASVC0000000000001", "svc", 2) {
        let a = graph.attribute(&r.use_);
        d.observe(
            &AttributedEvent {
                use_: r.use_,
                attribution: a,
            },
            &[],
            &graph,
        );
    }
    let snap = d.snapshot().unwrap();
    let mut restored = AnomalyDetector::new(AnomalyConfig::default());
    restored.restore(snap).unwrap();
    assert_eq!(restored.state(), d.state());
    // The restored detector is past learning: a new network alerts at once.
    let r = call(
        "AKIASVC0000000000001",
        "svc",
        t0() + Duration::days(2) + Duration::hours(3),
        ("dynamodb", "GetItem"),
        "198.51.100.7",
    );
    let a = graph.attribute(&r.use_);
    let found = restored.observe(
        &AttributedEvent {
            use_: r.use_,
            attribution: a,
        },
        &[],
        &graph,
    );
    assert_eq!(found.len(), 1);
}

#[test]
fn state_stays_bounded_for_a_million_credentials() {
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let graph = LineageGraph::from_inventory(&inv);
    let cap = 10_000;
    let mut d = AnomalyDetector::new(AnomalyConfig {
        max_credentials: cap,
        ..AnomalyConfig::default()
    });
    let template = call("AKIAX", "x", t0(), ("s3", "GetObject"), "10.0.0.1");
    for i in 0..1_000_000u32 {
        let mut e = AttributedEvent {
            use_: template.use_.clone(),
            attribution: Attribution::unattributed(vec![], "test"),
        };
        let key = format!("AKIA{i:016}");
        e.use_.credential.as_mut().unwrap().id = CredentialId::new(&key);
        e.use_.time = t0() + Duration::seconds(i as i64);
        d.observe(&e, &[], &graph);
        assert!(d.state().len() <= cap);
    }
    let bytes = serde_json::to_vec(&d.snapshot().unwrap()).unwrap().len();
    println!(
        "anomaly state after 1,000,000 credentials: {} tracked, snapshot {bytes} bytes",
        d.state().len()
    );
    assert!(d.state().len() <= cap);
    // One credential with one network and one action costs well under 1 KiB serialized.
    assert!(bytes < cap * 1024, "{bytes}");
}

#[test]
fn with_an_asn_database_a_network_is_its_autonomous_system() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("ip2asn.tsv");
    std::fs::write(
        &db,
        "10.0.0.0\t10.0.255.255\t64496\tZZ\tCORP-NET\n198.51.100.0\t198.51.100.255\t64500\tZZ\tELSEWHERE\n",
    )
    .unwrap();
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let graph = LineageGraph::from_inventory(&inv);
    let config = AnomalyConfig {
        asn_database: Some(db.clone()),
        ..AnomalyConfig::default()
    };
    let mut d = AnomalyDetector::from_config(config).unwrap();
    let mut observe = |r: Rec| {
        let a = graph.attribute(&r.use_);
        d.observe(
            &AttributedEvent {
                use_: r.use_,
                attribution: a,
            },
            &[],
            &graph,
        )
    };
    for r in baseline("AKIASVC0000000000001", "svc", 2) {
        assert!(observe(r).is_empty());
    }
    let later = t0() + Duration::days(2) + Duration::hours(6);
    // Another /24 of the same autonomous system: not new.
    assert!(observe(call(
        "AKIASVC0000000000001",
        "svc",
        later,
        ("dynamodb", "GetItem"),
        "10.0.2.30"
    ))
    .is_empty());
    // Another autonomous system: new.
    let found = observe(call(
        "AKIASVC0000000000001",
        "svc",
        later + Duration::hours(1),
        ("dynamodb", "GetItem"),
        "198.51.100.7",
    ));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].evidence["network"], "AS64500 ELSEWHERE");
    // A missing database is an error naming the file.
    let err = AnomalyDetector::from_config(AnomalyConfig {
        asn_database: Some(dir.join("missing.tsv")),
        ..AnomalyConfig::default()
    })
    .unwrap_err();
    assert!(err.contains("missing.tsv"), "{err}");
}

/// A finding with `key` about `event`.
fn finding(key: &str) -> lineage_detect::Finding {
    lineage_detect::Finding {
        detector: "out-of-scope",
        severity: lineage_core::Severity::High,
        title: format!("finding {key}"),
        summary: String::new(),
        dedup_key: key.into(),
        distinct: None,
        mitre: &[],
        evidence: serde_json::json!({}),
        actions: vec![],
    }
}

fn event_at(at: DateTime<Utc>) -> AttributedEvent {
    let r = call(
        "AKIASVC0000000000001",
        "svc",
        at,
        ("s3", "ListBuckets"),
        "10.0.0.1",
    );
    AttributedEvent {
        use_: r.use_,
        attribution: Attribution::unattributed(vec![], "test"),
    }
}

#[test]
fn a_live_book_forgets_closed_alerts_and_keeps_their_counts_and_window_ids() {
    // Suppression of one day: an alert nothing folded into for a day is closed.
    let mut book = AlertBook::with_suppression(Duration::days(1));
    let first = book.record(finding("a"), &event_at(t0()));
    book.record(finding("b"), &event_at(t0() + Duration::hours(30)));
    book.record(finding("b"), &event_at(t0() + Duration::hours(40)));
    let first_id = book.alerts()[match first {
        Recorded::New(i) | Recorded::Repeat(i) => i,
    }]
    .id
    .clone();
    assert_eq!(book.retire_closed(), 1, "only `a` is closed");
    assert_eq!(book.alerts().len(), 1);
    assert_eq!(book.alerts()[0].dedup_key, "b");
    assert_eq!(book.alerts()[0].count, 2, "the open alert keeps folding");
    assert_eq!(
        book.opened_by_detector()["out-of-scope"],
        2,
        "counts keep retired ones"
    );
    // `b` still folds after the retirement (its index moved).
    assert_eq!(
        book.record(finding("b"), &event_at(t0() + Duration::hours(41))),
        Recorded::Repeat(0)
    );
    assert_eq!(book.alerts()[0].count, 3);
    // `a` again, after its window: a new alert with a window id, not `a`'s first id
    // (which the live outputs have already de-duplicated against).
    let again = book.record(finding("a"), &event_at(t0() + Duration::hours(42)));
    let Recorded::New(i) = again else {
        panic!("{again:?}")
    };
    assert_ne!(book.alerts()[i].id, first_id);
    assert_eq!(book.opened_by_detector()["out-of-scope"], 3);
    // Nothing closed: nothing retired.
    assert_eq!(book.retire_closed(), 0);
    assert_eq!(book.alerts().len(), 2);
}

/// Runs `records` through the anomaly detector with `config` and the book the
/// pipeline uses (folding, default budget); returns the anomaly alerts.
fn anomaly_alerts(records: Vec<Rec>, config: AnomalyConfig) -> Vec<Alert> {
    let inv = Inventory::from_toml_str(INVENTORY, Path::new("inv.toml")).unwrap();
    let mut graph = LineageGraph::from_inventory(&inv);
    let mut d = AnomalyDetector::from_config(config).unwrap();
    let mut book = AlertBook::default().with_budget(lineage_detect::AlertBudget::default());
    for r in records {
        graph.observe(&r.use_);
        let attribution = graph.attribute(&r.use_);
        let event = AttributedEvent {
            use_: r.use_,
            attribution,
        };
        for f in d.observe_folding(&event, &[], &graph, &book) {
            book.record(f, &event);
        }
    }
    book.into_alerts()
}

#[test]
fn a_fresh_network_per_use_folds_into_one_alert_per_rule_that_lists_the_networks() {
    // Three steady days, then 500 uses over 40 hours, each from a fresh /24 (hosted CI
    // runners, serverless egress): one alert per rule, not one per use.
    let mut records = baseline("AKIASVC0000000000001", "svc", 3);
    let start = t0() + Duration::days(3) + Duration::hours(1);
    for i in 0..500i64 {
        records.push(call(
            "AKIASVC0000000000001",
            "svc",
            start + Duration::seconds(i * 290),
            ("dynamodb", "GetItem"),
            &format!("198.{}.{}.9", 18 + i / 250, i % 250),
        ));
    }
    let alerts = anomaly_alerts(records, AnomalyConfig::default());
    let rules: Vec<&str> = alerts
        .iter()
        .map(|a| a.evidence["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["new-network", "concurrent-networks"], "{alerts:#?}");
    // Every use is in the folded count; the evidence lists 20 networks and counts all.
    assert_eq!(alerts.iter().map(|a| a.count).sum::<u64>(), 500);
    let concurrent = &alerts[1];
    assert_eq!(
        concurrent.evidence["networks"].as_array().unwrap().len(),
        20
    );
    assert_eq!(concurrent.evidence["networks_total"], 499);
    assert_eq!(
        concurrent.dedup_key,
        "anomaly|concurrent-networks|AKIASVC0000000000001"
    );
}

#[test]
fn a_credential_multi_network_by_nature_is_learned_and_a_new_autonomous_system_still_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("ip2asn.tsv");
    std::fs::write(&db, "198.51.100.0\t198.51.100.255\t64500\tZZ\tELSEWHERE\n").unwrap();
    // Learning day: a NAT pool / serverless egress over 12 networks.
    let mut records: Vec<Rec> = (0..72i64)
        .map(|h| {
            call(
                "AKIASVC0000000000001",
                "svc",
                t0() + Duration::hours(h) + Duration::minutes(7),
                ("dynamodb", "GetItem"),
                &format!("52.{}.{}.4", 10 + h % 12, h % 12),
            )
        })
        .collect();
    // After learning: 30 further fresh networks, one a minute.
    let after = t0() + Duration::days(3) + Duration::hours(2);
    for i in 0..30i64 {
        records.push(call(
            "AKIASVC0000000000001",
            "svc",
            after + Duration::minutes(i),
            ("dynamodb", "GetItem"),
            &format!("54.{}.1.4", 100 + i),
        ));
    }
    let without_db = anomaly_alerts(records.clone(), AnomalyConfig::default());
    assert!(without_db.is_empty(), "{without_db:#?}");
    // Multi-network learning off: the same traffic alerts.
    let off = anomaly_alerts(
        records.clone(),
        AnomalyConfig {
            multi_network_min: 0,
            ..AnomalyConfig::default()
        },
    );
    assert!(!off.is_empty());
    // With an ASN database, a use from a resolved autonomous system still alerts.
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        after + Duration::hours(2),
        ("dynamodb", "GetItem"),
        "198.51.100.7",
    ));
    let with_db = anomaly_alerts(
        records,
        AnomalyConfig {
            asn_database: Some(db),
            ..AnomalyConfig::default()
        },
    );
    assert_eq!(with_db.len(), 1, "{with_db:#?}");
    assert_eq!(with_db[0].evidence["network"], "AS64500 ELSEWHERE");
}

#[test]
fn new_action_ignores_new_reads_and_fires_for_writes_secrets_and_denied_then_allowed() {
    let mut records = baseline("AKIASVC0000000000001", "svc", 3);
    let at = t0() + Duration::days(3) + Duration::hours(2);
    // Denied a known action once, then allowed it: its permissions grew.
    let mut denied = call(
        "AKIASVC0000000000001",
        "svc",
        at,
        ("dynamodb", "GetItem"),
        "10.0.1.20",
    );
    denied.use_.event_id = "denied-getitem".into();
    denied.use_.outcome = Outcome {
        success: false,
        error_code: Some("AccessDenied".into()),
    };
    records.push(denied);
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        at + Duration::minutes(1),
        ("dynamodb", "GetItem"),
        "10.0.1.20",
    ));
    // A new read: nothing.
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        at + Duration::minutes(2),
        ("dynamodb", "Scan"),
        "10.0.1.20",
    ));
    // A new write.
    let mut write = call(
        "AKIASVC0000000000001",
        "svc",
        at + Duration::minutes(3),
        ("dynamodb", "DeleteTable"),
        "10.0.1.20",
    );
    write.use_.operation.read_only = Some(false);
    records.push(write);
    // A new read of a secret.
    records.push(call(
        "AKIASVC0000000000001",
        "svc",
        at + Duration::minutes(4),
        ("secretsmanager", "GetSecretValue"),
        "10.0.1.20",
    ));
    let alerts = anomaly_alerts(records, AnomalyConfig::default());
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.evidence["rule"], "new-action");
    assert_eq!(a.evidence["denied_before"], true);
    assert_eq!(a.severity, lineage_core::Severity::Medium);
    assert_eq!(
        a.evidence["actions"],
        serde_json::json!([
            "dynamodb:GetItem",
            "dynamodb:DeleteTable",
            "secretsmanager:GetSecretValue"
        ])
    );
    assert_eq!(a.count, 3);
}

#[test]
fn an_alert_budget_folds_the_excess_into_one_summary_per_hour_and_drops_nothing() {
    use lineage_core::Severity;
    let mut book = AlertBook::default().with_budget(lineage_detect::AlertBudget {
        per_credential_per_hour: 2,
        per_hour: 3,
    });
    let low = |key: &str| lineage_detect::Finding {
        severity: Severity::Low,
        detector: "anomaly",
        ..finding(key)
    };
    let at = t0() + Duration::minutes(5);
    // Five distinct low findings about one credential in one hour: two alerts, then
    // one summary counting the other three.
    for k in 0..5 {
        book.record(low(&format!("k{k}")), &event_at(at + Duration::minutes(k)));
    }
    // A high finding still opens its own alert.
    book.record(finding("high"), &event_at(at + Duration::minutes(6)));
    let alerts = book.alerts();
    let budget: Vec<_> = alerts
        .iter()
        .filter(|a| a.detector == lineage_detect::BUDGET_DETECTOR)
        .collect();
    assert_eq!(alerts.len(), 4, "{alerts:#?}");
    assert_eq!(budget.len(), 1);
    assert_eq!(budget[0].count, 3);
    assert_eq!(budget[0].evidence["folded_by_detector"]["anomaly"], 3);
    assert_eq!(
        budget[0].evidence["folded_titles"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(alerts.iter().any(|a| a.dedup_key == "high"));
    // The next hour has a fresh budget; the global one (3 an hour) is spent by the
    // two low alerts and the high one, so another credential's finding folds into the
    // hour's summary for all.
    let mut other = event_at(at + Duration::minutes(7));
    other.use_.credential.as_mut().unwrap().id = CredentialId::new("AKIAOTHER00000000001");
    book.record(low("other"), &other);
    let all = book
        .alerts()
        .iter()
        .find(|a| a.dedup_key.starts_with("alert-budget|all|"))
        .expect("the hour's summary for all credentials");
    assert_eq!(all.count, 1);
    assert_eq!(
        all.evidence["credentials"],
        serde_json::json!(["AKIAOTHER00000000001"])
    );
    let next = book.record(low("k9"), &event_at(at + Duration::hours(1)));
    assert!(matches!(next, Recorded::New(_)));
    assert_eq!(book.alerts().last().unwrap().dedup_key, "k9");
    // The spent budget goes into the live state files (JSON) and comes back.
    let json = serde_json::to_string(&book).expect("a book with a spent budget is JSON");
    let mut back: AlertBook = serde_json::from_str(&json).unwrap();
    let again = back.record(
        low("k10"),
        &event_at(at + Duration::hours(1) + Duration::minutes(1)),
    );
    assert!(
        matches!(again, Recorded::New(_)),
        "one of the hour's 2 per credential left"
    );
    back.record(
        low("k11"),
        &event_at(at + Duration::hours(1) + Duration::minutes(2)),
    );
    assert!(back
        .alerts()
        .last()
        .unwrap()
        .dedup_key
        .starts_with("alert-budget|credential|"));
}

#[test]
fn a_worse_repeat_raises_the_severity_of_the_alert_it_folds_into() {
    use lineage_core::Severity;
    let mut book = AlertBook::default();
    let denied = lineage_detect::Finding {
        severity: Severity::Medium,
        ..finding("k")
    };
    book.record(denied, &event_at(t0()));
    assert_eq!(book.alerts()[0].severity, Severity::Medium);
    book.record(finding("k"), &event_at(t0() + Duration::minutes(1)));
    assert_eq!(book.alerts().len(), 1);
    assert_eq!(book.alerts()[0].severity, Severity::High);
}
