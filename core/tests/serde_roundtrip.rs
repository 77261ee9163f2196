//! Every event-model type survives a JSON round trip unchanged.

use chrono::{TimeZone, Utc};
use lineage_core::*;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "json was {json}");
}

fn sample_use() -> CredentialUse {
    CredentialUse {
        source: Source::CloudTrail,
        event_id: "e-1".into(),
        time: Utc.with_ymd_and_hms(2023, 7, 10, 11, 54, 48).unwrap(),
        credential: Some(CredentialRef {
            kind: CredentialKind::AwsSessionKey,
            id: CredentialId::new("ASIAEXAMPLE"),
            issuer: Some("123456789012".into()),
        }),
        principal: Principal {
            kind: PrincipalKind::AssumedRole,
            id: Some("AROA:x".into()),
            name: Some("role".into()),
            arn: Some("arn:aws:sts::1:assumed-role/role/x".into()),
            account: Some("1".into()),
        },
        session: SessionContext {
            parent_credential: None,
            issuer_arn: Some("arn:aws:iam::1:role/role".into()),
            role_session_name: Some("x".into()),
            source_identity: Some("alice".into()),
            mfa_authenticated: Some(false),
            created_at: Some(Utc.with_ymd_and_hms(2023, 7, 10, 11, 54, 47).unwrap()),
        },
        client: ClientHints {
            user_agent: Some("aws-cli/2".into()),
            source_ip: Some("192.0.2.1".into()),
            client_app: None,
            mcp_server: Some("aws-mcp".into()),
        },
        operation: Operation {
            service: "ec2".into(),
            name: "GetPasswordData".into(),
            read_only: Some(true),
        },
        resources: vec!["arn:aws:ec2:us-east-1:1:instance/i-1".into()],
        outcome: Outcome {
            success: false,
            error_code: Some("Client.UnauthorizedOperation".into()),
        },
        region: Some("us-east-1".into()),
        provenance: Provenance::file("a.json", 3),
    }
}

#[test]
fn credential_use_round_trips() {
    round_trip(&sample_use());
    let mut minimal = sample_use();
    minimal.credential = None;
    minimal.session = SessionContext::default();
    minimal.client = ClientHints::default();
    minimal.resources.clear();
    minimal.provenance = Provenance::Kafka {
        topic: "lineage.raw.cloudtrail".into(),
        partition: 3,
        offset: 42,
    };
    round_trip(&minimal);
}

#[test]
fn lineage_facts_round_trip() {
    let child = CredentialRef {
        kind: CredentialKind::AwsSessionKey,
        id: CredentialId::new("ASIACHILD"),
        issuer: None,
    };
    let facts = [
        FactKind::CredentialIssued {
            parent: Some(CredentialRef {
                kind: CredentialKind::AwsAccessKey,
                id: CredentialId::new("AKIAPARENT"),
                issuer: Some("1".into()),
            }),
            child: child.clone(),
            issued_by: Principal::unknown(),
            issued_to: Some("arn:aws:iam::1:role/r".into()),
            method: IssuanceMethod::AssumeRole,
            session_name: Some("s".into()),
            source_identity: None,
        },
        FactKind::CredentialStatusChanged {
            credential: child,
            status: "Inactive".into(),
            changed_by: Principal::unknown(),
        },
        FactKind::OwnerAssigned {
            subject: "agent-1".into(),
            owner: "alice@example.com".into(),
        },
        FactKind::OwnerDeparted {
            human: "alice".into(),
        },
    ];
    for kind in facts {
        round_trip(&LineageFact {
            time: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            source: Source::CloudTrail,
            event_id: "e".into(),
            kind,
        });
    }
}

#[test]
fn attributed_event_alert_and_action_round_trip() {
    let attribution = Attribution {
        chain: vec![CredentialId::new("ASIA1"), CredentialId::new("AKIA1")],
        root_credential: Some(CredentialId::new("AKIA1")),
        agent: Some(AgentId::new("claude")),
        owner: Some(HumanId::new("alice")),
        method: AttributionMethod::IssuanceChain,
        confidence: 0.95,
        unattributed_reason: None,
    };
    round_trip(&AttributedEvent {
        use_: sample_use(),
        attribution: attribution.clone(),
    });
    round_trip(&Attribution::unattributed(vec![], "no credential"));
    let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    round_trip(&Alert {
        id: "a1".into(),
        detector: "out-of-scope".into(),
        severity: Severity::High,
        title: "t".into(),
        summary: "s".into(),
        first_seen: t,
        last_seen: t,
        count: 2,
        dedup_key: "k".into(),
        credential: sample_use().credential,
        root_credential: attribution.root_credential.clone(),
        agent: attribution.agent.clone(),
        owner: attribution.owner.clone(),
        lineage_path: vec![LineageStep {
            node: "credential".into(),
            id: "ASIA1".into(),
            via: AttributionMethod::IssuanceChain,
        }],
        mitre: vec!["T1078.004".into()],
        evidence: serde_json::json!({"action": "iam:CreateUser"}),
        event_ids: vec!["e-1".into()],
        blast_radius: Some(BlastRadius {
            root: Some(CredentialId::new("AKIA1")),
            descendant_credentials: 3,
            services: vec!["s3".into()],
            resources: vec!["arn:aws:s3:::b".into()],
            truncated: false,
        }),
    });
    round_trip(&Action {
        idempotency_key: "aws:AKIA1:departed".into(),
        kind: ActionKind::DeactivateAwsAccessKey,
        credential: sample_use().credential.unwrap(),
        reason: "owner departed".into(),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: t,
        status: ActionStatus::DryRun,
        result: None,
        target: serde_json::json!({"user_name": "svc"}),
    });
    round_trip(&DeadLetter::new(
        Source::Vault,
        "bad",
        Provenance::file("f", 1),
        b"{",
    ));
}
