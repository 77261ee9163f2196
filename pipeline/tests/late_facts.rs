//! A departure that arrives after the uses it concerns (the live pipeline's sources
//! are not merged in event time: Entra delivers in bursts, HR feeds late) re-evaluates
//! the owner's recent uses and raises the alert replay raises, marked late; without
//! the re-evaluation the alert is lost.

use std::path::Path;

use chrono::{TimeZone, Utc};
use lineage_core::{FactKind, Inventory, LineageFact, Provenance, Source};
use lineage_detect::DetectorsConfig;
use lineage_ingest::{CloudTrailParser, Normalized, SourceParser};
use lineage_pipeline::AttributeStage;
use serde_json::{json, Value};

const INVENTORY: &str = r#"
[[human]]
id = "alice"

[[agent]]
id = "deploy-bot"
kind = "ci"
owner = "alice"
credentials = ["AKIALATEFACT00000001"]
"#;

fn use_at(id: &str, minute: u32) -> Normalized {
    let record = json!({
        "eventVersion": "1.08", "eventID": id,
        "eventTime": format!("2026-11-02T10:{minute:02}:00Z"),
        "eventSource": "s3.amazonaws.com", "eventName": "PutObject", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIALATEFACT00000001",
            "userName": "deploy", "accountId": "111122223333"},
        "requestParameters": {"bucketName": "releases", "key": "app.tar.gz"}
    });
    CloudTrailParser
        .parse_record(record.to_string().as_bytes(), Provenance::file("t", 1))
        .unwrap()
}

fn departure(minute: u32) -> LineageFact {
    LineageFact {
        time: Utc.with_ymd_and_hms(2026, 11, 2, 10, minute, 0).unwrap(),
        source: Source::Entra,
        event_id: "disable-alice".into(),
        kind: FactKind::OwnerDeparted {
            human: "alice".into(),
        },
    }
}

fn stage(re_evaluate: bool) -> AttributeStage {
    stage_of(INVENTORY, re_evaluate)
}

/// A stage over `inventory`, re-evaluating late facts (a live driver's) or not
/// (replay's).
fn stage_of(inventory: &str, re_evaluate: bool) -> AttributeStage {
    let inventory = Inventory::from_toml_str(inventory, Path::new("inventory.toml")).unwrap();
    let mut stage = AttributeStage::new(&inventory, &DetectorsConfig::default(), None).unwrap();
    if re_evaluate {
        stage.re_evaluate_late_facts();
    }
    stage
}

/// The alerts of `detector`, as JSON.
fn alerts_of(stage: &AttributeStage, detector: &str) -> Vec<Value> {
    stage
        .alerts()
        .alerts()
        .iter()
        .filter(|a| a.detector == detector)
        .map(|a| serde_json::to_value(a).unwrap())
        .collect()
}

/// The departed-owner alerts.
fn departed_alerts(stage: &AttributeStage) -> Vec<Value> {
    alerts_of(stage, "departed-owner")
}

#[test]
fn a_late_departure_re_evaluates_recent_uses_and_raises_the_alert_replay_raises() {
    // Replay's order: the departure at 10:02 is applied before the uses after it.
    let mut replay = stage(false);
    replay.process(use_at("u-1000", 0));
    replay.apply_identity_fact(&departure(2));
    for (id, m) in [("u-1005", 5), ("u-1010", 10)] {
        replay.process(use_at(id, m));
    }
    let want = departed_alerts(&replay);
    assert_eq!(want.len(), 1, "{want:#?}");

    // Live: every use is processed first; the departure arrives after them.
    let mut live = stage(true);
    for (id, m) in [("u-1000", 0), ("u-1005", 5), ("u-1010", 10)] {
        live.process(use_at(id, m));
    }
    assert!(departed_alerts(&live).is_empty());
    let actions_before = live.alerts().actions().len();
    assert!(live.apply_identity_fact(&departure(2)) >= 1);
    let got = departed_alerts(&live);
    assert_eq!(got.len(), 1, "{got:#?}");
    let (g, w) = (&got[0], &want[0]);
    for field in [
        "id",
        "title",
        "summary",
        "dedup_key",
        "first_seen",
        "severity",
        "owner",
    ] {
        assert_eq!(g[field], w[field], "{field}: {g:#} vs {w:#}");
    }
    // The first use after the departure opened it, the next folded in; the use
    // before the departure is not part of it.
    assert_eq!(g["count"], 2, "{g:#}");
    assert_eq!(g["event_ids"], json!(["u-1005", "u-1010"]), "{g:#}");
    // Marked late, with how late.
    let late = &g["evidence"]["late_fact"];
    assert_eq!(late["fact"], "owner-departed", "{g:#}");
    assert_eq!(late["late_secs"], 8 * 60, "{g:#}");
    // The revocation replay requests is requested too.
    assert_eq!(
        live.alerts().actions().len() - actions_before,
        replay.alerts().actions().len(),
        "{:#?}",
        live.alerts().actions()
    );

    // Applying the same departure again changes nothing: each use is re-evaluated once.
    assert_eq!(live.apply_identity_fact(&departure(2)), 0);
    assert_eq!(departed_alerts(&live)[0]["count"], 2);

    // Without the re-evaluation (replay's stage, facts in order) the late fact is lost.
    let mut lost = stage(false);
    for (id, m) in [("u-1000", 0), ("u-1005", 5), ("u-1010", 10)] {
        lost.process(use_at(id, m));
    }
    lost.apply_identity_fact(&departure(2));
    assert!(departed_alerts(&lost).is_empty());
}

#[test]
fn a_departure_after_every_use_or_before_them_re_evaluates_nothing() {
    // After the last use: nothing to re-evaluate, nothing raised.
    let mut live = stage(true);
    for (id, m) in [("u-1000", 0), ("u-1005", 5)] {
        live.process(use_at(id, m));
    }
    assert_eq!(live.apply_identity_fact(&departure(30)), 0);
    assert!(departed_alerts(&live).is_empty());
    // Known before the use: the detector saw it when the use was processed, once.
    let mut live = stage(true);
    live.apply_identity_fact(&departure(1));
    live.process(use_at("u-1005", 5));
    assert_eq!(departed_alerts(&live)[0]["count"], 1);
    assert_eq!(live.apply_identity_fact(&departure(1)), 0);
    assert_eq!(departed_alerts(&live)[0]["count"], 1);
}

#[test]
fn a_live_stage_forgets_idle_credentials_after_its_retention_and_keeps_declared_ones() {
    let mut live = stage(true);
    live.set_retention(chrono::Duration::days(1));
    // A session key issued from the declared key on day 0 (its facts come with the
    // AssumeRole record), then only the declared key in use two days later.
    let assume = json!({
        "eventVersion": "1.08", "eventID": "assume-1", "eventTime": "2026-11-02T10:00:00Z",
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIALATEFACT00000001",
            "userName": "deploy", "accountId": "111122223333"},
        "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/r", "roleSessionName": "s"},
        "responseElements": {"credentials": {"accessKeyId": "ASIAIDLESESSION00001"}}
    });
    live.process(
        CloudTrailParser
            .parse_record(assume.to_string().as_bytes(), Provenance::file("t", 1))
            .unwrap(),
    );
    let session = lineage_core::CredentialId::new("ASIAIDLESESSION00001");
    assert!(live.graph().credential(&session).is_some());
    // A key nobody declared, used once on day 0: the anomaly detector learns a
    // baseline for it (its own root).
    let mut stray = use_at("stray", 0);
    stray.use_.credential = Some(lineage_core::event::CredentialRef {
        kind: lineage_core::event::CredentialKind::AwsAccessKey,
        id: lineage_core::CredentialId::new("AKIASTRAYKEY00000001"),
        issuer: None,
    });
    live.process(stray);
    // A key the declared user created on day 0 and used once: attributed to alice
    // through its issuance, so the departed-owner detector remembers it for her.
    let create = json!({
        "eventVersion": "1.08", "eventID": "create-1", "eventTime": "2026-11-02T10:01:00Z",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIALATEFACT00000001",
            "userName": "deploy", "accountId": "111122223333"},
        "requestParameters": {"userName": "deploy"},
        "responseElements": {"accessKey": {"accessKeyId": "AKIACREATEDKEY000001",
            "userName": "deploy", "status": "Active"}}
    });
    live.process(
        CloudTrailParser
            .parse_record(create.to_string().as_bytes(), Provenance::file("t", 1))
            .unwrap(),
    );
    let mut created = use_at("created-use", 2);
    created.use_.credential = Some(lineage_core::event::CredentialRef {
        kind: lineage_core::event::CredentialKind::AwsAccessKey,
        id: lineage_core::CredentialId::new("AKIACREATEDKEY000001"),
        issuer: None,
    });
    live.process(created);
    let departed = |s: &AttributeStage| s.snapshot()["departed-owner"].clone();
    assert!(
        departed(&live)["seen"]["alice"]
            .get("AKIACREATEDKEY000001")
            .is_some()
            && departed(&live)["methods"]
                .get("AKIACREATEDKEY000001")
                .is_some(),
        "{}",
        departed(&live)
    );
    let baselines = |s: &AttributeStage| s.snapshot()["anomaly"]["credentials"].clone();
    assert!(
        baselines(&live).get("AKIASTRAYKEY00000001").is_some(),
        "{}",
        baselines(&live)
    );
    let later = use_at("later", 0);
    for i in 0..50_000 {
        let mut n = later.clone();
        n.use_.event_id = format!("later-{i}").into();
        n.use_.time = Utc.with_ymd_and_hms(2026, 11, 4, 10, 0, 0).unwrap();
        live.process(n);
    }
    assert!(
        live.graph().credential(&session).is_none(),
        "idle for two days with one day of retention"
    );
    // The detectors forget what the graph forgot.
    assert!(
        baselines(&live).get("AKIASTRAYKEY00000001").is_none(),
        "{}",
        baselines(&live)
    );
    assert!(live
        .graph()
        .credential(&lineage_core::CredentialId::new("AKIACREATEDKEY000001"))
        .is_none());
    assert!(
        departed(&live)["seen"]["alice"]
            .get("AKIACREATEDKEY000001")
            .is_none()
            && departed(&live)["methods"]
                .get("AKIACREATEDKEY000001")
                .is_none(),
        "{}",
        departed(&live)
    );
    // The declared key, in use all along, is still remembered for her.
    assert!(
        departed(&live)["seen"]["alice"]
            .get("AKIALATEFACT00000001")
            .is_some(),
        "{}",
        departed(&live)
    );
    let declared = lineage_core::CredentialId::new("AKIALATEFACT00000001");
    assert!(live.graph().credential(&declared).is_some());
}

const SCOPED_INVENTORY: &str = r#"
[[human]]
id = "alice"

[[agent]]
id = "deploy-bot"
kind = "ci"
owner = "alice"
credentials = ["AKIALATEFACT00000001"]

[[agent.scope]]
source = "cloudtrail"
actions = ["sts:AssumeRole", "s3:Get*"]
"#;

fn scoped_stage(re_evaluate: bool) -> AttributeStage {
    stage_of(SCOPED_INVENTORY, re_evaluate)
}

fn cloudtrail(record: Value) -> Normalized {
    CloudTrailParser
        .parse_record(record.to_string().as_bytes(), Provenance::file("t", 1))
        .unwrap()
}

/// The declared key assumes a role at 10:00 and gets a session key.
fn assume_role() -> Normalized {
    cloudtrail(json!({
        "eventVersion": "1.08", "eventID": "assume-late", "eventTime": "2026-11-02T10:00:00Z",
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIALATEFACT00000001",
            "userName": "deploy", "accountId": "111122223333"},
        "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/deployer",
            "roleSessionName": "deploy-run"},
        "responseElements": {"credentials": {"accessKeyId": "ASIALATESESSION00001"}}
    }))
}

/// The session key deletes a bucket (out of the agent's scope) at 10:0`minute`.
fn session_use(id: &str, minute: u32) -> Normalized {
    cloudtrail(json!({
        "eventVersion": "1.08", "eventID": id,
        "eventTime": format!("2026-11-02T10:{minute:02}:00Z"),
        "eventSource": "s3.amazonaws.com", "eventName": "DeleteBucket", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0",
        "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIALATESESSION00001",
            "principalId": "AROAEXAMPLE:deploy-run",
            "arn": "arn:aws:sts::111122223333:assumed-role/deployer/deploy-run",
            "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"type": "Role",
                "arn": "arn:aws:iam::111122223333:role/deployer", "userName": "deployer"}}},
        "requestParameters": {"bucketName": "releases"}
    }))
}

fn scope_alerts(stage: &AttributeStage) -> Vec<Value> {
    alerts_of(stage, "out-of-scope")
}

#[test]
fn a_late_issuance_corrects_the_uses_it_attributes_and_raises_the_alert_replay_raises() {
    // Replay's order: the AssumeRole record before the session's uses.
    let mut replay = scoped_stage(false);
    replay.process(assume_role());
    let want_events: Vec<_> = [("s-1", 5), ("s-2", 6)]
        .into_iter()
        .map(|(id, m)| replay.process(session_use(id, m)))
        .collect();
    assert_eq!(
        want_events[0]
            .attribution
            .agent
            .as_ref()
            .map(|a| a.as_str()),
        Some("deploy-bot"),
        "{want_events:#?}"
    );
    let want = scope_alerts(&replay);
    assert_eq!(want.len(), 1, "DeleteBucket is out of scope: {want:#?}");

    // Live: the session's uses come first (CloudTrail's other partition, or the
    // AssumeRole record's file delivered later), then the record with the issuance.
    let mut live = scoped_stage(true);
    let first: Vec<_> = [("s-1", 5), ("s-2", 6)]
        .into_iter()
        .map(|(id, m)| live.process(session_use(id, m)))
        .collect();
    assert!(
        first.iter().all(|e| e.attribution.agent.is_none()),
        "not attributable before the issuance: {first:#?}"
    );
    assert!(scope_alerts(&live).is_empty());
    assert!(live.take_corrections().is_empty());
    live.process(assume_role());

    // Each use's attribution is corrected to replay's, as revision 1.
    let corrections = live.take_corrections();
    assert_eq!(corrections.len(), 2, "{corrections:#?}");
    for (c, w) in corrections.iter().zip(&want_events) {
        assert_eq!(c.revision, 1);
        assert_eq!(c.event.use_.event_id, w.use_.event_id);
        assert_eq!(c.event.attribution, w.attribution);
    }
    // The out-of-scope alert replay raises, marked late.
    let got = scope_alerts(&live);
    assert_eq!(got.len(), 1, "{got:#?}");
    let (g, w) = (&got[0], &want[0]);
    for field in [
        "id",
        "title",
        "dedup_key",
        "first_seen",
        "severity",
        "agent",
        "owner",
    ] {
        assert_eq!(g[field], w[field], "{field}: {g:#} vs {w:#}");
    }
    assert_eq!(g["count"], w["count"], "{g:#}");
    assert_eq!(
        g["evidence"]["late_fact"]["fact"], "credential-issued",
        "{g:#}"
    );
    assert_eq!(g["evidence"]["late_fact"]["late_secs"], 6 * 60, "{g:#}");
    // The statistics count each use once, as replay does.
    assert_eq!(live.by_method(), replay.by_method());
    assert_eq!(live.unattributed, replay.unattributed);

    // The same fact again corrects nothing more.
    live.process(assume_role());
    assert!(live.take_corrections().is_empty());
    assert_eq!(scope_alerts(&live)[0]["count"], w["count"]);

    // Without the re-evaluation (replay's stage) the uses stay unattributed.
    let mut lost = scoped_stage(false);
    for (id, m) in [("s-1", 5), ("s-2", 6)] {
        lost.process(session_use(id, m));
    }
    lost.process(assume_role());
    assert!(lost.take_corrections().is_empty());
    assert!(scope_alerts(&lost).is_empty());
}
