//! Attribution through issuance chains, principals, sessions and fingerprints, and
//! the explicit "unattributed" outcomes.

use chrono::{TimeZone, Utc};
use lineage_core::event::*;
use lineage_core::{CredentialId, Inventory};
use lineage_graph::{lineage_path, LineageGraph, MAX_REACH_RESOURCES, MAX_REACH_SERVICES};
use proptest::prelude::*;
use std::path::Path;

const INVENTORY: &str = r#"
[[human]]
id = "alice"
aliases = { aws_iam_user = ["alice"], sso_session = ["alice@example.com"] }

[[human]]
id = "bob"
aliases = { aws_iam_user = ["shared"] }

[[human]]
id = "carol"
aliases = { aws_iam_user = ["shared"] }

[[agent]]
id = "claude"
kind = "ai-agent"
owner = "alice"
credentials = ["AKIAROOT000000000001"]

[[agent]]
id = "ci"
kind = "ci"
owner = "bob"
aws_roles = ["arn:aws:iam::1:role/ci-deploy"]

[[agent]]
id = "svc"
kind = "service"
owner = "bob"
aws_iam_users = ["svc-billing"]

[[agent]]
id = "cursor"
kind = "ai-agent"
owner = "alice"
user_agents = ["*Cursor/*"]
"#;

fn graph() -> LineageGraph {
    LineageGraph::from_inventory(&Inventory::from_toml_str(INVENTORY, Path::new("t.toml")).unwrap())
}

fn cred(id: &str) -> CredentialRef {
    CredentialRef {
        kind: CredentialKind::from_aws_key_id(id),
        id: CredentialId::new(id),
        issuer: None,
    }
}

fn issued(parent: Option<&str>, child: &str, to: Option<&str>) -> LineageFact {
    LineageFact {
        time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        source: Source::CloudTrail,
        event_id: "f".into(),
        kind: FactKind::CredentialIssued {
            parent: parent.map(cred),
            child: cred(child),
            issued_by: Principal::unknown(),
            issued_to: to.map(Into::into),
            method: IssuanceMethod::AssumeRole,
            session_name: None,
            source_identity: None,
        },
    }
}

fn use_of(key: Option<&str>, kind: PrincipalKind, name: Option<&str>) -> CredentialUse {
    CredentialUse {
        source: Source::CloudTrail,
        event_id: "e".into(),
        time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap(),
        credential: key.map(cred),
        principal: Principal {
            kind,
            id: None,
            name: name.map(Into::into),
            arn: None,
            account: None,
        },
        session: SessionContext::default(),
        client: ClientHints::default(),
        operation: Operation {
            service: "s3".into(),
            name: "GetObject".into(),
            read_only: Some(true),
        },
        resources: vec![],
        outcome: Outcome::ok(),
        region: None,
        provenance: Provenance::file("t", 1),
    }
}

#[test]
fn session_chain_walks_back_to_the_declared_root() {
    let mut g = graph();
    g.apply(&issued(
        Some("AKIAROOT000000000001"),
        "ASIAONE0000000000001",
        Some("arn:aws:iam::1:role/a"),
    ));
    g.apply(&issued(
        Some("ASIAONE0000000000001"),
        "ASIATWO0000000000002",
        Some("arn:aws:iam::1:role/b"),
    ));
    let a = g.attribute(&use_of(
        Some("ASIATWO0000000000002"),
        PrincipalKind::AssumedRole,
        Some("b"),
    ));
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "claude");
    assert_eq!(a.owner.as_ref().unwrap().as_str(), "alice");
    assert_eq!(a.method, AttributionMethod::IssuanceChain);
    let chain: Vec<&str> = a.chain.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        chain,
        [
            "ASIATWO0000000000002",
            "ASIAONE0000000000001",
            "AKIAROOT000000000001"
        ]
    );
    let path: Vec<String> = lineage_path(&a)
        .iter()
        .map(|s| format!("{}:{}", s.node, s.id))
        .collect();
    assert_eq!(path.last().unwrap(), "human:alice");
    assert_eq!(path[3], "agent:claude");
}

#[test]
fn declared_key_is_declared() {
    let g = graph();
    let a = g.attribute(&use_of(
        Some("AKIAROOT000000000001"),
        PrincipalKind::IamUser,
        Some("x"),
    ));
    assert_eq!(a.method, AttributionMethod::Declared);
    assert_eq!(a.confidence, 1.0);
}

#[test]
fn iam_user_binding_and_human_alias() {
    let mut g = graph();
    let u = use_of(
        Some("AKIASVC0000000000001"),
        PrincipalKind::IamUser,
        Some("svc-billing"),
    );
    g.observe(&u);
    let a = g.attribute(&u);
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "svc");
    assert_eq!(a.method, AttributionMethod::PrincipalAlias);

    let u = use_of(
        Some("AKIAALICE00000000001"),
        PrincipalKind::IamUser,
        Some("alice"),
    );
    g.observe(&u);
    let a = g.attribute(&u);
    assert_eq!(a.agent, None);
    assert_eq!(a.owner.as_ref().unwrap().as_str(), "alice");
}

#[test]
fn created_key_belongs_to_its_user_before_its_creator() {
    let mut g = graph();
    // alice's agent creates a key for svc-billing: the key is svc's, not claude's.
    let mut f = issued(
        Some("AKIAROOT000000000001"),
        "AKIANEW0000000000001",
        Some("svc-billing"),
    );
    if let FactKind::CredentialIssued { method, .. } = &mut f.kind {
        *method = IssuanceMethod::CreateAccessKey;
    }
    g.apply(&f);
    let a = g.attribute(&use_of(
        Some("AKIANEW0000000000001"),
        PrincipalKind::IamUser,
        Some("svc-billing"),
    ));
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "svc");
    // …but a key for an unknown user is followed back to its creator.
    g.apply(&issued(
        Some("AKIAROOT000000000001"),
        "AKIANEW0000000000002",
        Some("backdoor"),
    ));
    let a = g.attribute(&use_of(
        Some("AKIANEW0000000000002"),
        PrincipalKind::IamUser,
        Some("backdoor"),
    ));
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "claude");
    assert_eq!(a.method, AttributionMethod::IssuanceChain);
}

#[test]
fn role_binding_sso_name_and_fingerprint() {
    let mut g = graph();
    g.apply(&issued(
        None,
        "ASIACI00000000000001",
        Some("arn:aws:iam::1:role/ci-deploy"),
    ));
    let a = g.attribute(&use_of(
        Some("ASIACI00000000000001"),
        PrincipalKind::AssumedRole,
        None,
    ));
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "ci");
    assert_eq!(a.method, AttributionMethod::SessionChain);

    let mut u = use_of(
        Some("ASIASSO0000000000001"),
        PrincipalKind::AssumedRole,
        None,
    );
    u.session.issuer_arn = Some("arn:aws:iam::1:role/AWSReservedSSO_Dev".into());
    u.session.role_session_name = Some("Alice@Example.com".into());
    let a = g.attribute(&u);
    assert_eq!(a.owner.as_ref().unwrap().as_str(), "alice");

    let mut u = use_of(
        Some("ASIAUNKNOWN000000001"),
        PrincipalKind::AssumedRole,
        None,
    );
    u.client.user_agent = Some("Boto3/1.34 Cursor/0.42.3".into());
    let a = g.attribute(&u);
    assert_eq!(a.agent.as_ref().unwrap().as_str(), "cursor");
    assert_eq!(a.method, AttributionMethod::Fingerprint);
}

#[test]
fn unattributed_and_ambiguous_say_why() {
    let mut g = graph();
    let mut u = use_of(
        Some("ASIAORPHAN0000000001"),
        PrincipalKind::AssumedRole,
        None,
    );
    u.session.issuer_arn = Some("arn:aws:iam::1:role/unknown".into());
    g.observe(&u);
    let a = g.attribute(&u);
    assert!(!a.is_attributed());
    let reason = a.unattributed_reason.unwrap();
    assert!(
        reason.contains("ASIAORPHAN0000000001") && reason.contains("role/unknown"),
        "{reason}"
    );

    let u = use_of(
        Some("AKIASHARED0000000001"),
        PrincipalKind::IamUser,
        Some("shared"),
    );
    g.observe(&u);
    let a = g.attribute(&u);
    assert!(!a.is_attributed());
    assert!(a.unattributed_reason.unwrap().contains("several humans"));

    let a = g.attribute(&use_of(
        None,
        PrincipalKind::Service,
        Some("kms.amazonaws.com"),
    ));
    assert!(a.unattributed_reason.unwrap().contains("service"));
}

#[test]
fn issuance_cycle_is_reported_not_looped() {
    let mut g = graph();
    g.apply(&issued(
        Some("ASIAA000000000000001"),
        "ASIAB000000000000001",
        None,
    ));
    g.apply(&issued(
        Some("ASIAB000000000000001"),
        "ASIAA000000000000001",
        None,
    ));
    let a = g.attribute(&use_of(
        Some("ASIAA000000000000001"),
        PrincipalKind::AssumedRole,
        None,
    ));
    assert!(a.unattributed_reason.unwrap().contains("cycle"));
}

proptest! {
    /// Any sequence of issuance facts over a small id space: attribution terminates,
    /// never panics, and its chain never repeats a credential.
    #[test]
    fn attribution_terminates_on_arbitrary_graphs(edges in prop::collection::vec((0u8..12, 0u8..12), 0..60), probe in 0u8..12) {
        let mut g = graph();
        let id = |n: u8| if n == 0 { "AKIAROOT000000000001".to_owned() } else { format!("ASIAX{n:015}") };
        for (p, c) in edges {
            g.apply(&issued(Some(&id(p)), &id(c), None));
        }
        let a = g.attribute(&use_of(Some(&id(probe)), PrincipalKind::AssumedRole, None));
        let mut seen = std::collections::HashSet::new();
        prop_assert!(a.chain.iter().all(|c| seen.insert(c.clone())));
        prop_assert!(a.chain.len() <= 64);
        prop_assert!(a.is_attributed() || a.unattributed_reason.is_some());
    }
}

#[test]
fn vault_display_names_resolve_through_the_email_or_login() {
    let g = graph();
    assert_eq!(
        g.human_by_alias("oidc-alice@example.com")
            .unwrap()
            .unwrap()
            .as_str(),
        "alice"
    );
    assert_eq!(
        g.human_by_alias("userpass-alice")
            .unwrap()
            .unwrap()
            .as_str(),
        "alice"
    );
    assert_eq!(g.human_by_alias("token-alice").unwrap(), None);
    assert!(
        g.human_by_alias("ldap-shared").is_err(),
        "ambiguous stays ambiguous"
    );
}

#[test]
fn reach_keeps_the_first_services_and_resources_and_says_when_it_dropped_some() {
    let mut g = graph();
    let root = CredentialId::new("AKIAROOT000000000001");
    g.apply(&issued(
        Some("AKIAROOT000000000001"),
        "ASIAONE0000000000001",
        None,
    ));
    let reach = |g: &mut LineageGraph, service: &str, resources: &[&str]| {
        let mut u = use_of(
            Some("ASIAONE0000000000001"),
            PrincipalKind::AssumedRole,
            None,
        );
        u.operation.service = service.into();
        u.resources = resources.iter().map(|&r| r.into()).collect();
        g.record_reach(&root, &u);
    };
    // Repeats are kept once; nothing is dropped while both lists have room.
    reach(&mut g, "s3", &["arn:r0", "arn:r1"]);
    reach(&mut g, "s3", &["arn:r1", "arn:r0"]);
    let r = g.blast_radius(&root);
    assert_eq!(r.services, ["s3"]);
    assert_eq!(r.resources, ["arn:r0", "arn:r1"]);
    assert!(!r.truncated);
    // Fill the resources to the cap: still nothing dropped.
    let more: Vec<String> = (2..MAX_REACH_RESOURCES)
        .map(|i| format!("arn:r{i}"))
        .collect();
    reach(
        &mut g,
        "s3",
        &more.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(g.blast_radius(&root).resources.len(), MAX_REACH_RESOURCES);
    assert!(!g.blast_radius(&root).truncated);
    // A known resource past the cap drops nothing; a new one is dropped and said so.
    reach(&mut g, "s3", &["arn:r3"]);
    assert!(!g.blast_radius(&root).truncated);
    reach(&mut g, "s3", &["arn:new"]);
    let r = g.blast_radius(&root);
    assert!(r.truncated);
    assert_eq!(r.resources.len(), MAX_REACH_RESOURCES);
    assert!(!r.resources.iter().any(|x| x == "arn:new"));
    // Once truncated with full resources, services still gather until their own cap.
    for i in 0..MAX_REACH_SERVICES + 5 {
        reach(&mut g, &format!("svc{i}"), &["arn:later"]);
    }
    let r = g.blast_radius(&root);
    assert_eq!(r.services.len(), MAX_REACH_SERVICES);
    assert_eq!(r.services[0], "s3");
    assert_eq!(r.services[1], "svc0");
    assert_eq!(r.resources[0], "arn:r0");
    assert!(!r.resources.iter().any(|x| x == "arn:later"));
}

proptest! {
    /// Retention never cuts what a recent use needs: after evicting every credential
    /// with no activity since the cutoff, each credential that was used, issued or
    /// changed at or after it attributes exactly as it did without eviction (same
    /// chain, root, agent, owner, method), and the inventory's credentials stay.
    #[test]
    fn eviction_keeps_every_chain_a_use_within_the_window_needs(
        steps in prop::collection::vec((0u8..3, 0u8..16, 0u8..16, 0u32..100), 0..80),
        cutoff_day in 0u32..100,
    ) {
        let id = |n: u8| if n == 0 { "AKIAROOT000000000001".to_owned() } else { format!("ASIAX{n:015}") };
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(d.into());
        let mut steps = steps;
        steps.sort_by_key(|s| s.3);
        let (mut kept, mut full) = (graph(), graph());
        let mut active = std::collections::HashSet::new();
        for &(kind, a, b, d) in &steps {
            let time = day(d);
            match kind {
                // An issuance: a → b.
                0 if a != b => {
                    let mut f = issued(Some(&id(a)), &id(b), None);
                    f.time = time;
                    kept.apply(&f);
                    full.apply(&f);
                    if time >= day(cutoff_day) {
                        active.insert(id(b));
                    }
                }
                // A status change of a.
                1 => {
                    let f = LineageFact {
                        time,
                        source: Source::CloudTrail,
                        event_id: "s".into(),
                        kind: FactKind::CredentialStatusChanged {
                            credential: cred(&id(a)),
                            status: "Inactive".into(),
                            changed_by: Principal::unknown(),
                        },
                    };
                    kept.apply(&f);
                    full.apply(&f);
                    if time >= day(cutoff_day) {
                        active.insert(id(a));
                    }
                }
                // A use of a.
                _ => {
                    let mut u = use_of(Some(&id(a)), PrincipalKind::AssumedRole, None);
                    u.time = time;
                    kept.observe(&u);
                    full.observe(&u);
                    if time >= day(cutoff_day) {
                        active.insert(id(a));
                    }
                }
            }
        }
        kept.evict_inactive(day(cutoff_day));
        prop_assert!(kept.credential(&CredentialId::new("AKIAROOT000000000001")).is_some());
        for c in &active {
            let u = use_of(Some(c), PrincipalKind::AssumedRole, None);
            let (a, b) = (kept.attribute(&u), full.attribute(&u));
            prop_assert_eq!(&a.chain, &b.chain, "{}", c);
            prop_assert_eq!(&a.root_credential, &b.root_credential);
            prop_assert_eq!(&a.agent, &b.agent);
            prop_assert_eq!(&a.owner, &b.owner);
            prop_assert_eq!(a.method, b.method);
        }
        // Nothing recent was forgotten; everything forgotten was idle since the cutoff.
        for (cid, meta) in full.credentials() {
            if kept.credential(cid).is_none() {
                prop_assert!(!active.contains(cid.as_str()), "{} evicted", cid);
                prop_assert!(meta.last_used.is_none_or(|t| t < day(cutoff_day)));
            }
        }
    }
}

#[test]
fn eviction_forgets_idle_credentials_and_keeps_tombstones_for_the_window() {
    let mut g = graph();
    let day =
        |d: i64| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(d);
    let mut f = issued(Some("AKIAROOT000000000001"), "ASIAOLD0000000000001", None);
    f.time = day(0);
    g.apply(&f);
    let mut f = issued(Some("AKIAROOT000000000001"), "ASIADEL0000000000001", None);
    f.time = day(0);
    g.apply(&f);
    g.apply(&LineageFact {
        time: day(80),
        source: Source::CloudTrail,
        event_id: "d".into(),
        kind: FactKind::CredentialStatusChanged {
            credential: cred("ASIADEL0000000000001"),
            status: "Deleted".into(),
            changed_by: Principal::unknown(),
        },
    });
    assert_eq!(g.evict_inactive(day(60)), 1);
    assert!(g
        .credential(&CredentialId::new("ASIAOLD0000000000001"))
        .is_none());
    // Deleted at day 80: its tombstone stays until day 80 + the window.
    assert!(g
        .credential(&CredentialId::new("ASIADEL0000000000001"))
        .is_some());
    assert!(g
        .credential(&CredentialId::new("AKIAROOT000000000001"))
        .is_some());
    // A checkpoint of a graph with evicted vertices restores with the same answers
    // (the stable graph keeps its vertex indices across the holes).
    let mut f = issued(Some("ASIADEL0000000000001"), "ASIANEW0000000000001", None);
    f.time = day(81);
    g.apply(&f);
    let probe = use_of(
        Some("ASIANEW0000000000001"),
        PrincipalKind::AssumedRole,
        None,
    );
    let want = g.attribute(&probe);
    let text = serde_json::to_string(&g).unwrap();
    let restored: LineageGraph = serde_json::from_str(&text).unwrap();
    let restored =
        restored.restore(&Inventory::from_toml_str(INVENTORY, Path::new("t.toml")).unwrap());
    let got = restored.attribute(&probe);
    assert_eq!(got.chain, want.chain);
    assert_eq!(got.agent.as_ref().map(|a| a.as_str()), Some("claude"));
    assert!(restored
        .credential(&CredentialId::new("ASIAOLD0000000000001"))
        .is_none());
    assert_eq!(g.evict_inactive(day(300)), 2);
    // The inventory's credential is never forgotten.
    assert!(g
        .credential(&CredentialId::new("AKIAROOT000000000001"))
        .is_some());
}
