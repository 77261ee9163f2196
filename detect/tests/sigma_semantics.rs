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

#[test]
fn a_dotted_path_continues_through_a_list_of_objects() {
    // SigmaHQ's ECS credential-endpoint rule: `containerDefinitions` is a list of
    // objects in a real RegisterTaskDefinition, so the path crosses an array.
    let r = rules(&[(
        "ecs_cred_endpoint",
        "title: ECS task definition queries the credential endpoint\nid: 0d4b3c1a-1111-4111-8111-000000000005\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventSource: ecs.amazonaws.com\n    eventName: RegisterTaskDefinition\n    requestParameters.containerDefinitions.command|contains: '$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'\n  condition: selection\nlevel: medium\n",
    )]);
    let task = |commands: Value| {
        let mut e = call(
            "RegisterTaskDefinition",
            json!({"requestParameters": {"family": "f", "containerDefinitions": [
                {"name": "web", "image": "nginx", "command": ["nginx"]},
                {"name": "side", "image": "alpine", "command": commands}
            ]}}),
        );
        e["eventSource"] = json!("ecs.amazonaws.com");
        e
    };
    assert!(fires(
        &r,
        &task(json!([
            "sh",
            "-c",
            "curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
        ]))
    ));
    assert!(fires(
        &r,
        &task(json!(
            "curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
        ))
    ));
    assert!(!fires(&r, &task(json!(["sleep", "60"]))));
}

#[test]
fn an_object_compared_with_text_is_matched_as_its_text() {
    // SigmaHQ's VM export failure: `responseElements|contains: 'Failure'`, where
    // responseElements is an object.
    let r = rules(&[(
        "export_failure",
        "title: EC2 VM export failure\nid: 0d4b3c1a-1111-4111-8111-000000000006\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  selection:\n    eventName: CreateInstanceExportTask\n    eventSource: ec2.amazonaws.com\n  filter1:\n    errorMessage|contains: '*'\n  filter2:\n    errorCode|contains: '*'\n  filter3:\n    responseElements|contains: 'Failure'\n  condition: selection and not 1 of filter*\nlevel: low\n",
    )]);
    let export = |response: Value| {
        let mut e = call(
            "CreateInstanceExportTask",
            json!({"responseElements": response}),
        );
        e["eventSource"] = json!("ec2.amazonaws.com");
        e
    };
    assert!(fires(
        &r,
        &export(json!({"exportTask": {"state": "active", "exportTaskId": "t-1"}}))
    ));
    assert!(
        !fires(
            &r,
            &export(json!({"exportTask": {"state": "Failure", "exportTaskId": "t-2"}}))
        ),
        "the filter on the response object holds back a failed export"
    );
}
