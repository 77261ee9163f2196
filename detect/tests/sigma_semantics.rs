//! Sigma rules fire where their text says, on CloudTrail as it is written: `null`
//! matches a field CloudTrail leaves out (a call that succeeded has no
//! `errorCode`), a value inside an array matches element by element, objects are
//! reached by dotted paths, and `fieldref` compares two fields of the event. Each
//! rule family gets the event it exists for and a near miss.

use lineage_core::Source;
use lineage_detect::sigma::SigmaRules;
use serde_json::{json, Value};

fn rules(yaml: &[(&str, &str)]) -> SigmaRules {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in yaml {
        std::fs::write(dir.path().join(format!("{name}.yml")), text).unwrap();
    }
    let (rules, problems) = SigmaRules::load_dir(dir.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(rules.rules().len(), yaml.len());
    rules
}

fn fires(rules: &SigmaRules, event: &Value) -> bool {
    !rules
        .matching(Source::CloudTrail, event.to_string().as_bytes())
        .is_empty()
}

fn call(name: &str, extra: Value) -> Value {
    let mut e = json!({
        "eventVersion": "1.08", "eventID": "e-1", "eventTime": "2026-12-01T00:00:00Z",
        "eventSource": "s3.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "userName": "alice", "accessKeyId": "AKIAEXAMPLE000000001"}
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

#[test]
fn null_matches_a_field_cloudtrail_leaves_out() {
    // As SigmaHQ writes "the call succeeded" (e.g. bucket deletion, flow logs deleted).
    let r = rules(&[(
        "bucket_deleted",
        "title: Bucket deleted\nid: 0d4b3c1a-1111-4111-8111-000000000001\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventSource: s3.amazonaws.com\n    eventName: DeleteBucket\n    errorCode: null\n  condition: selection\nlevel: medium\n",
    )]);
    assert!(
        fires(&r, &call("DeleteBucket", json!({}))),
        "a success has no errorCode"
    );
    assert!(
        fires(&r, &call("DeleteBucket", json!({"errorCode": ""}))),
        "empty is null"
    );
    assert!(!fires(
        &r,
        &call("DeleteBucket", json!({"errorCode": "AccessDenied"}))
    ));
    assert!(!fires(&r, &call("ListBuckets", json!({}))));
}

#[test]
fn a_value_in_an_array_matches_element_by_element() {
    let r = rules(&[(
        "lambda_layer",
        "title: Lambda layer attached\nid: 0d4b3c1a-1111-4111-8111-000000000002\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventName|startswith: UpdateFunctionConfiguration\n    requestParameters.layers|contains: ':layer:evil'\n  condition: selection\nlevel: medium\n",
    )]);
    let with = |layers: Value| {
        call(
            "UpdateFunctionConfiguration20150331v2",
            json!({"eventSource": "lambda.amazonaws.com", "requestParameters": {"functionName": "f", "layers": layers}}),
        )
    };
    assert!(fires(
        &r,
        &with(json!([
            "arn:aws:lambda:us-east-1:111122223333:layer:ok:1",
            "arn:aws:lambda:us-east-1:444455556666:layer:evil:3"
        ]))
    ));
    assert!(!fires(
        &r,
        &with(json!(["arn:aws:lambda:us-east-1:111122223333:layer:ok:1"]))
    ));
}

#[test]
fn objects_are_reached_by_dotted_paths_and_fieldref_compares_fields() {
    let r = rules(&[
        (
            "console_failure",
            "title: Console login failed\nid: 0d4b3c1a-1111-4111-8111-000000000003\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventName: ConsoleLogin\n    responseElements.ConsoleLogin: Failure\n  condition: selection\nlevel: low\n",
        ),
        (
            "own_keys",
            "title: User made a key for themselves\nid: 0d4b3c1a-1111-4111-8111-000000000004\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventName: CreateAccessKey\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: selection\nlevel: low\n",
        ),
    ]);
    assert!(fires(
        &r,
        &call(
            "ConsoleLogin",
            json!({"responseElements": {"ConsoleLogin": "Failure"}})
        )
    ));
    assert!(!fires(
        &r,
        &call(
            "ConsoleLogin",
            json!({"responseElements": {"ConsoleLogin": "Success"}})
        )
    ));
    assert!(fires(
        &r,
        &call(
            "CreateAccessKey",
            json!({"requestParameters": {"userName": "alice"}})
        )
    ));
    assert!(!fires(
        &r,
        &call(
            "CreateAccessKey",
            json!({"requestParameters": {"userName": "backdoor"}})
        )
    ));
}
