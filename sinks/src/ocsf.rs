//! Alerts as OCSF Detection Findings (class 2004, OCSF 1.1): what SIEMs such as
//! Security Lake, Splunk and Sentinel ingest without a custom parser.

use lineage_core::Alert;
use serde_json::{json, Value};

/// OCSF schema version the output follows.
pub const OCSF_VERSION: &str = "1.1.0";

/// One alert as an OCSF Detection Finding.
pub fn detection_finding(a: &Alert) -> Value {
    let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    let attacks: Vec<Value> = a
        .mitre
        .iter()
        .map(|t| json!({ "technique": { "uid": t }, "version": "14" }))
        .collect();
    let mut resources = Vec::new();
    if let Some(c) = &a.credential {
        resources.push(json!({ "type": "credential", "uid": c.id, "data": { "kind": c.kind, "issuer": c.issuer } }));
    }
    if let Some(root) = &a.root_credential {
        resources.push(json!({ "type": "root_credential", "uid": root }));
    }
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "severity_id": a.severity.ocsf_id(),
        "severity": format!("{:?}", a.severity),
        "status_id": 1,
        "status": "New",
        "time": ms(a.last_seen),
        "count": a.count,
        "message": a.summary,
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": "lineage", "vendor_name": "lineage", "version": env!("CARGO_PKG_VERSION") },
            "correlation_uid": a.dedup_key,
        },
        "finding_info": {
            "uid": a.id,
            "title": a.title,
            "desc": a.summary,
            "types": [a.detector],
            "first_seen_time": ms(a.first_seen),
            "last_seen_time": ms(a.last_seen),
            "analytic": { "name": a.detector, "type_id": 1, "type": "Rule" },
            "attacks": attacks,
            "related_events": a.event_ids.iter().map(|e| json!({ "uid": e })).collect::<Vec<_>>(),
        },
        "actor": {
            "user": a.owner.as_ref().map(|o| json!({ "uid": o, "type": "User" })),
            "app_name": a.agent,
        },
        "resources": resources,
        "evidences": [ { "data": a.evidence } ],
        "unmapped": {
            "lineage_path": a.lineage_path,
            "agent": a.agent,
            "owner": a.owner,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use lineage_core::{Alert, Severity};

    #[test]
    fn finding_has_the_ocsf_class_and_required_fields() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a = Alert {
            id: "abc".into(),
            detector: "departed-owner".into(),
            severity: Severity::Critical,
            title: "t".into(),
            summary: "s".into(),
            first_seen: t,
            last_seen: t,
            count: 2,
            dedup_key: "k".into(),
            credential: None,
            root_credential: None,
            agent: None,
            owner: None,
            lineage_path: vec![],
            mitre: vec!["T1078.004".into()],
            evidence: json!({"x": 1}),
            event_ids: vec!["e1".into()],
            blast_radius: None,
        };
        let f = detection_finding(&a);
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 5);
        assert_eq!(f["finding_info"]["uid"], "abc");
        assert_eq!(
            f["finding_info"]["attacks"][0]["technique"]["uid"],
            "T1078.004"
        );
        assert_eq!(f["time"], t.timestamp_millis());
        assert_eq!(f["metadata"]["version"], OCSF_VERSION);
    }
}
