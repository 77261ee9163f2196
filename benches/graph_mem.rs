//! Memory and time of the lineage graph with many distinct credentials.
//!
//! `cargo bench --bench graph_mem -- [--credentials 1000000] [--json FILE]`
//!
//! Builds the graph the way replay does (apply each issuance fact, observe each use,
//! attribute it, record its reach) for N distinct credentials: 100 agents with 10
//! declared long-lived keys each (1,000 roots), every other credential an STS session
//! issued from a root or, one in ten, from another session (chains of two hops). Each
//! credential is used once. Prints time, resident memory before/after (`VmRSS`), the
//! peak (`VmHWM`) and bytes per credential.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use lineage_core::{
    CredentialId, CredentialKind, CredentialRef, CredentialUse, FactKind, IssuanceMethod,
    LineageFact, Operation, Outcome, Principal, PrincipalKind, Provenance, SessionContext, Source,
};
use lineage_graph::LineageGraph;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && arg(&args, "--credentials").is_none() {
        return; // `cargo test --benches`: nothing to measure.
    }
    let n: usize = arg(&args, "--credentials")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let json_out = arg(&args, "--json").map(PathBuf::from);

    let (agents, keys_per_agent) = (100usize, 10usize);
    let mut toml = String::from(
        "[[human]]\nid = \"owner\"\nemail = \"owner@example.com\"\nstatus = \"active\"\n",
    );
    for a in 0..agents {
        let keys: Vec<String> = (0..keys_per_agent)
            .map(|k| format!("\"AKIA{:016X}\"", a * keys_per_agent + k))
            .collect();
        toml.push_str(&format!(
            "[[agent]]\nid = \"agent-{a}\"\nkind = \"ai-agent\"\nowner = \"owner\"\ncredentials = [{}]\n",
            keys.join(", ")
        ));
    }
    let inventory =
        lineage_core::Inventory::from_toml_str(&toml, std::path::Path::new("bench.toml"))
            .expect("inventory");
    let roots = agents * keys_per_agent;

    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let mut graph = LineageGraph::from_inventory(&inventory);
    let t0 = Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap();
    // SmolStr (not a dependency of this package) by type inference from the model.
    let template = Principal {
        kind: PrincipalKind::AssumedRole,
        id: None,
        name: None,
        arn: Some("arn:aws:iam::111122223333:role/bench-role".into()),
        account: Some("111122223333".into()),
    };
    let account = template.account.clone().unwrap();
    let role = template.arn.clone().unwrap();
    let id_of = |i: usize| -> CredentialId {
        if i < roots {
            CredentialId::new(format!("AKIA{i:016X}"))
        } else {
            CredentialId::new(format!("ASIA{i:016X}"))
        }
    };
    let cred = |i: usize| CredentialRef {
        kind: if i < roots {
            CredentialKind::AwsAccessKey
        } else {
            CredentialKind::AwsSessionKey
        },
        id: id_of(i),
        issuer: Some(account.clone()),
    };
    let mut attributed = 0u64;
    for i in 0..n {
        let time = t0 + chrono::Duration::seconds(i as i64);
        let session_name = template
            .name
            .clone()
            .unwrap_or_else(|| format!("session-{i}").into());
        if i >= roots {
            // One in ten sessions is chained from the session just before it (itself
            // issued from a root key), the rest come from a root key.
            let parent = if i % 10 == 0 && i > roots + 1 {
                i - 1
            } else {
                i % roots
            };
            graph.apply(&LineageFact {
                time,
                source: Source::CloudTrail,
                event_id: format!("issue-{i}").into(),
                kind: FactKind::CredentialIssued {
                    parent: Some(cred(parent)),
                    child: cred(i),
                    issued_by: Principal {
                        kind: PrincipalKind::IamUser,
                        id: None,
                        name: Some(format!("user-{}", parent % roots).into()),
                        arn: None,
                        account: Some(account.clone()),
                    },
                    issued_to: Some(role.clone()),
                    method: IssuanceMethod::AssumeRole,
                    session_name: Some(session_name.clone()),
                    source_identity: None,
                },
            });
        }
        let use_ = CredentialUse {
            source: Source::CloudTrail,
            event_id: format!("use-{i}").into(),
            time,
            credential: Some(cred(i)),
            principal: Principal {
                kind: PrincipalKind::AssumedRole,
                id: None,
                name: None,
                arn: None,
                account: Some(account.clone()),
            },
            session: SessionContext {
                issuer_arn: (i >= roots).then(|| role.clone()),
                role_session_name: (i >= roots).then(|| session_name.clone()),
                ..SessionContext::default()
            },
            client: Default::default(),
            operation: Operation {
                service: "s3".into(),
                name: "GetObject".into(),
                read_only: Some(true),
            },
            resources: vec![format!("arn:aws:s3:::bucket-{}/*", i % 50).into()],
            outcome: Outcome::ok(),
            region: Some("us-east-1".into()),
            provenance: Provenance::file("bench", i as u64),
        };
        graph.observe(&use_);
        let a = graph.attribute(&use_);
        if a.agent.is_some() {
            attributed += 1;
        }
        if let Some(root) = &a.root_credential {
            graph.record_reach(root, &use_);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after = status_kb("VmRSS:");
    let hwm = status_kb("VmHWM:");
    let credentials = graph.credential_count();
    let per_cred = (rss_after.saturating_sub(rss_before) * 1024) as f64 / credentials as f64;
    println!(
        "graph: {credentials} credentials ({attributed} uses attributed to an agent) in {secs:.2}s \
         ({:.0} credentials/s); RSS {:.1} MiB → {:.1} MiB (peak {:.1} MiB), {per_cred:.0} bytes per credential",
        credentials as f64 / secs,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
    assert_eq!(
        attributed as usize, n,
        "every use should reach a declared key"
    );
    if let Some(path) = json_out {
        let doc = serde_json::json!({
            "credentials": credentials, "secs": secs, "attributed": attributed,
            "rss_before_kb": rss_before, "rss_after_kb": rss_after, "peak_rss_kb": hwm,
            "bytes_per_credential": per_cred,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("json out");
    }
}
