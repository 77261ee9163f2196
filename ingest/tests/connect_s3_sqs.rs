//! The S3+SQS CloudTrail connector against a real moto server (`moto_server` from
//! `$LINEAGE_MOTO_SERVER`, set by `scripts/test.sh`, else on `PATH`; started on a
//! free 127.0.0.1 port and killed on drop; without it the test fails with an install
//! hint, it never skips).
//!
//! The test creates a bucket whose `s3:ObjectCreated:*` notifications go to an SQS
//! queue (moto delivers them, plus an `s3:TestEvent`), uploads the repository's 55
//! real Invictus CloudTrail delivery files as `.json.gz` objects (54 through the
//! notification; the last one in a second bucket announced by an SNS-wrapped
//! notification the test sends itself, since moto's SNS→SQS fan-out is not used
//! here), plus a digest file, a non-CloudTrail key, a malformed object, and a
//! notification naming a bucket the connector is not configured for (dead-lettered,
//! never fetched). A
//! downstream like `lineage connect` writes one file per batch key and then acks.
//! The first connector is dropped midway with one batch written but not acked and
//! more messages received but unprocessed (a crash); a second connector finishes.
//! Every one of the 2,900 records arrives exactly once, by `eventID`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use lineage_ingest::connect::http::RetryPolicy;
use lineage_ingest::connect::s3_sqs::{S3SqsConfig, S3SqsConnector};
use lineage_ingest::connect::{single_line, Connector, RawBatch};
use lineage_ingest::{parse_bytes, CloudTrailParser, ParseLimits};

use lineage_test_support::Moto;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn invictus_files() -> Vec<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cloudtrail/invictus/CloudTrail");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 55, "the Invictus sample has 55 delivery files");
    files
}

/// The downstream: one file per batch key (a re-delivery replaces it), then ack.
fn deliver(out: &Path, batch: &RawBatch) {
    let mut body = Vec::new();
    for r in &batch.records {
        body.extend_from_slice(&single_line(&r.bytes));
        body.push(b'\n');
    }
    if !body.is_empty() {
        lineage_ingest::connect::checkpoint::write_atomically(
            &out.join(format!("{}.jsonl", batch.key)),
            &body,
        )
        .unwrap();
    }
}

#[test]
fn s3_sqs_delivers_every_invictus_record_exactly_once_across_a_crash() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sdk = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .load(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    // Queue (short visibility timeout, so a crashed consumer's messages come back fast).
    let queue_url = rt
        .block_on(
            sqs.create_queue()
                .queue_name("cloudtrail-notifications")
                .attributes(QueueAttributeName::VisibilityTimeout, "3")
                .send(),
        )
        .unwrap()
        .queue_url
        .unwrap();
    let attrs = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send(),
        )
        .unwrap();
    let queue_arn = attrs.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
    for bucket in ["trail-bucket", "other-bucket", "attacker-bucket"] {
        rt.block_on(s3.create_bucket().bucket(bucket).send())
            .unwrap();
    }
    rt.block_on(
        s3.put_bucket_notification_configuration()
            .bucket("trail-bucket")
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(&queue_arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();

    let prefix = "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10";
    let files = invictus_files();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for r in v["Records"].as_array().unwrap() {
            *expected
                .entry(r["eventID"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let name = f.file_name().unwrap().to_str().unwrap();
        let last = i == files.len() - 1;
        let bucket = if last { "other-bucket" } else { "trail-bucket" };
        rt.block_on(
            s3.put_object()
                .bucket(bucket)
                .key(format!("{prefix}/{name}.gz"))
                .body(ByteStream::from(gzip(&bytes)))
                .send(),
        )
        .unwrap();
        if last {
            // An SNS-wrapped notification, as when the bucket notifies an SNS topic
            // that fans out to the queue.
            let inner = serde_json::json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": format!("{prefix}/{name}.gz")}}
            }]});
            let sns = serde_json::json!({
                "Type": "Notification", "MessageId": "sns-1",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:trail", "Message": inner.to_string()
            });
            rt.block_on(
                sqs.send_message()
                    .queue_url(&queue_url)
                    .message_body(sns.to_string())
                    .send(),
            )
            .unwrap();
        }
    }
    // A notification for a bucket that is not the trail's (anyone who can send to
    // the queue can write one): a well-formed CloudTrail file in it is never fetched.
    let forged_key =
        format!("{prefix}/218007301253_CloudTrail_us-east-1_20230710T1400Z_forged.json.gz");
    rt.block_on(
        s3.put_object()
            .bucket("attacker-bucket")
            .key(&forged_key)
            .body(ByteStream::from(gzip(
                br#"{"Records":[{"eventVersion":"1.08","eventID":"forged-1","eventTime":"2023-07-10T14:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","userIdentity":{"type":"IAMUser","accessKeyId":"AKIAVICTIM0000000001","userName":"victim"}}]}"#,
            )))
            .send(),
    )
    .unwrap();
    let forged = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "attacker-bucket"}, "object": {"key": forged_key}}
    }]});
    rt.block_on(
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(forged.to_string())
            .send(),
    )
    .unwrap();
    let total: usize = expected.values().sum();
    assert_eq!(total, 2900, "the Invictus sample holds 2,900 records");
    assert_eq!(expected.len(), 2900, "eventIDs are unique in the sample");
    // Things to skip or dead-letter.
    let digest_prefix = "AWSLogs/218007301253/CloudTrail-Digest/us-east-1/2023/07/10";
    let extra: [(String, Vec<u8>); 3] = [
        (
            format!("{digest_prefix}/218007301253_CloudTrail-Digest_us-east-1_trail_us-east-1_20230710T1200Z.json.gz"),
            gzip(br#"{"awsAccountId":"218007301253","digestStartTime":"2023-07-10T11:00:00Z"}"#),
        ),
        ("notes/readme.txt".to_owned(), b"not a log".to_vec()),
        (
            format!("{prefix}/218007301253_CloudTrail_us-east-1_20230710T1300Z_broken.json.gz"),
            gzip(b"this is not JSON at all"),
        ),
    ];
    for (key, body) in &extra {
        rt.block_on(
            s3.put_object()
                .bucket("trail-bucket")
                .key(key)
                .body(ByteStream::from(body.clone()))
                .send(),
        )
        .unwrap();
    }

    let config = || {
        let mut c = S3SqsConfig::new(
            &queue_url,
            vec!["trail-bucket".into(), "other-bucket".into()],
        );
        // moto's account owns both buckets.
        c.expected_bucket_owner = Some("123456789012".into());
        c.force_path_style = true;
        c.max_messages = 5;
        c.wait_time_seconds = 1;
        c.retry = RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            max_rate_limit_wait: Duration::from_secs(2),
        };
        let rt = lineage_ingest::connect::aws::runtime().unwrap();
        S3SqsConnector::with_sdk_config(c, rt, &sdk).unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let mut dead_letters = Vec::new();

    // First run: 20 batches written and acked, then one written but not acked, and
    // whatever else was received is abandoned with the process.
    let mut first = config();
    let mut acked = 0;
    while acked < 20 {
        let Some(batch) = first.poll().unwrap() else {
            continue;
        };
        deliver(out.path(), &batch);
        dead_letters.extend(batch.dead_letters.clone());
        first.ack(batch.id).unwrap();
        acked += 1;
    }
    let crashed = loop {
        if let Some(b) = first.poll().unwrap() {
            if !b.records.is_empty() {
                break b;
            }
            first.ack(b.id).unwrap();
        }
    };
    deliver(out.path(), &crashed);
    let mut stats = first.stats().clone();
    drop(first);

    // Second run: picks up the rest, including the re-appearing un-acked messages.
    let mut second = config();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < Duration::from_secs(6) {
        assert!(Instant::now() < deadline, "the queue did not drain");
        if let Some(batch) = second.poll().unwrap() {
            deliver(out.path(), &batch);
            dead_letters.extend(batch.dead_letters.clone());
            second.ack(batch.id).unwrap();
            idle_since = Instant::now();
        }
    }
    for (k, v) in &second.stats().skipped {
        *stats.skipped.entry(k.clone()).or_default() += v;
    }

    // Downstream: every record exactly once, and every record parses or dead-letters.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = 0;
    let mut counts = lineage_ingest::ParseCounts::default();
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            *seen
                .entry(v["eventID"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        counts += parse_bytes(
            &CloudTrailParser,
            &bytes,
            &path.display().to_string(),
            ParseLimits::default(),
            |_| {},
        );
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}");
    assert_eq!(lines, 2900);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(counts.read, 2900);
    assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
    // The same records parse to the same outcome as the original delivery files.
    let mut direct = lineage_ingest::ParseCounts::default();
    for f in &files {
        direct += parse_bytes(
            &CloudTrailParser,
            &std::fs::read(f).unwrap(),
            "orig",
            ParseLimits::default(),
            |_| {},
        );
    }
    assert_eq!(counts, direct);

    assert_eq!(stats.skipped.get("digest"), Some(&1), "{stats:?}");
    assert_eq!(
        stats.skipped.get("non_cloudtrail_key"),
        Some(&1),
        "{stats:?}"
    );
    assert!(
        stats.skipped.get("test_event").is_some_and(|n| *n >= 1),
        "{stats:?}"
    );
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
    let malformed: Vec<_> = dead_letters
        .iter()
        .filter(|d| d.reason.starts_with("malformed object"))
        .collect();
    assert_eq!(malformed.len(), 1, "{dead_letters:?}");
    assert_eq!(
        malformed[0].original.as_deref(),
        Some("this is not JSON at all")
    );
    let foreign: Vec<_> = dead_letters
        .iter()
        .filter(|d| d.reason.contains("a bucket not in `buckets`"))
        .collect();
    assert_eq!(foreign.len(), 1, "{dead_letters:?}");
    assert!(
        foreign[0].reason.contains("s3://attacker-bucket/"),
        "{:?}",
        foreign[0]
    );
    assert!(
        foreign[0]
            .original
            .as_deref()
            .is_some_and(|o| o.contains("attacker-bucket")),
        "the notification is kept: {:?}",
        foreign[0]
    );
    assert!(
        !seen.contains_key("forged-1"),
        "the foreign object was never read"
    );

    // The queue is empty: everything was acked and deleted.
    let left = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(left[&QueueAttributeName::ApproximateNumberOfMessages], "0");
    assert_eq!(
        left[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
        "0"
    );
}
