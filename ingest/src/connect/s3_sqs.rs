//! CloudTrail from S3 through SQS event notifications, the way CloudTrail is read at
//! scale: the trail's bucket sends `s3:ObjectCreated:*` notifications to an SQS
//! queue (directly, or through SNS: the SNS envelope's `Message` is unwrapped), the
//! connector receives them, fetches each announced `.json.gz` delivery file and
//! hands out its records, one [`RawBatch`] per SQS message (key = the message id).
//!
//! * **Checkpoint** = the queue. A message is deleted only on [`Connector::ack`]; an
//!   un-acked message (crash, kill) becomes visible again after the queue's
//!   visibility timeout and is delivered again, with the same batch key. No
//!   checkpoint file is needed; nothing secret (receipt handles) is persisted.
//! * **Skipped, counted** ([`ConnectorStats::skipped`]): digest files
//!   (`CloudTrail-Digest`) as `digest`, keys that are not CloudTrail delivery files
//!   (`…_CloudTrail_…json[.gz]`; Insight files, other prefixes) as
//!   `non_cloudtrail_key`, `s3:TestEvent` messages as `test_event`, non-create
//!   events as `not_object_created`. A message holding only skipped entries is handed
//!   out as an empty batch, so acking it deletes it.
//! * **Dead-lettered**: a message body that is not an S3 notification, an object
//!   that cannot be fetched for good (deleted, access denied), and any part of an
//!   object that cannot be framed (not JSON, truncated gzip): the reason plus the
//!   original bytes. Transient errors (throttling, 5xx) are retried with backoff;
//!   if retries run out, `poll` fails and the message is left to re-appear.
//! * **Trusted buckets only.** Whoever can send to the queue can name any bucket in a
//!   message, and the connector's role can often read more buckets than the trail's.
//!   Only buckets in [`S3SqsConfig::buckets`] are fetched; a notification naming
//!   another is dead-lettered with the reason and the message body, and nothing is
//!   fetched. With [`S3SqsConfig::expected_bucket_owner`] every `GetObject` carries
//!   `ExpectedBucketOwner`, so S3 itself refuses an object from a bucket of that name
//!   owned by another account (dead-lettered as "cannot be read").
//! * Configuration: the standard AWS chain ([`AwsSettings`]); `endpoint_url` and
//!   `force_path_style` for moto / MinIO.

use std::collections::VecDeque;

use aws_sdk_sqs::types::Message;
use lineage_core::{DeadLetter, Provenance, Source};

use super::aws::{load_sdk_config, runtime, with_retries, AwsSettings};
use super::http::RetryPolicy;
use super::{AckQueue, BatchId, ConnectError, Connector, ConnectorStats, RawBatch, RawRecord};
use crate::framing::{frames, Frame};

/// Settings of the S3+SQS connector.
#[derive(Clone, Debug)]
pub struct S3SqsConfig {
    /// The queue URL receiving the bucket's notifications.
    pub queue_url: String,
    /// The buckets objects may be fetched from (the trail's); at least one.
    pub buckets: Vec<String>,
    /// The account id that must own those buckets (`ExpectedBucketOwner` on each
    /// `GetObject`); `None` = not checked.
    pub expected_bucket_owner: Option<String>,
    /// AWS settings (region, profile, endpoint override).
    pub aws: AwsSettings,
    /// Path-style S3 addressing (needed for moto and most local emulators).
    pub force_path_style: bool,
    /// Messages per receive (1–10).
    pub max_messages: i32,
    /// Long-poll wait per receive, seconds (0–20).
    pub wait_time_seconds: i32,
    /// Visibility timeout to request per receive (seconds); `None` = the queue's.
    pub visibility_timeout: Option<i32>,
    /// Retries of S3/SQS calls.
    pub retry: RetryPolicy,
}

impl S3SqsConfig {
    /// Defaults for a queue whose notifications name `buckets`: 10 messages, 20 s
    /// long polls, path-style off, bucket owner not checked.
    pub fn new(queue_url: impl Into<String>, buckets: Vec<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            buckets,
            expected_bucket_owner: None,
            aws: AwsSettings::default(),
            force_path_style: false,
            max_messages: 10,
            wait_time_seconds: 20,
            visibility_timeout: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// The S3+SQS connector (see the module doc).
pub struct S3SqsConnector {
    cfg: S3SqsConfig,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    received: VecDeque<Message>,
    acks: AckQueue<Option<String>>,
    stats: ConnectorStats,
}

/// One object a notification announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key (URL-decoded).
    pub key: String,
}

/// What a notification body holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// Objects to read.
    pub objects: Vec<AnnouncedObject>,
    /// Skipped entries by reason.
    pub skipped: Vec<&'static str>,
}

/// Parses an SQS message body: an S3 event notification, possibly SNS-wrapped.
pub fn parse_notification(body: &str) -> Result<Notification, String> {
    let mut v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("message body is not JSON: {e}"))?;
    if v.get("Type").and_then(|t| t.as_str()) == Some("Notification") {
        let inner = v
            .get("Message")
            .and_then(|m| m.as_str())
            .ok_or("SNS notification without a string `Message`")?;
        v = serde_json::from_str(inner).map_err(|e| format!("SNS `Message` is not JSON: {e}"))?;
    }
    let mut out = Notification::default();
    if v.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        out.skipped.push("test_event");
        return Ok(out);
    }
    let records = v
        .get("Records")
        .and_then(|r| r.as_array())
        .ok_or("not an S3 event notification (no `Records` array)")?;
    for r in records {
        let event = r.get("eventName").and_then(|e| e.as_str()).unwrap_or("");
        if !event.starts_with("ObjectCreated:") {
            out.skipped.push("not_object_created");
            continue;
        }
        let bucket = r.pointer("/s3/bucket/name").and_then(|b| b.as_str());
        let key = r.pointer("/s3/object/key").and_then(|k| k.as_str());
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err("S3 event record without s3.bucket.name / s3.object.key".into());
        };
        // Keys in notifications are URL-encoded with `+` for spaces.
        let key = percent_encoding::percent_decode_str(&key.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match classify_key(&key) {
            Ok(()) => out.objects.push(AnnouncedObject {
                bucket: bucket.to_owned(),
                key,
            }),
            Err(reason) => out.skipped.push(reason),
        }
    }
    Ok(out)
}

/// Whether a key is a CloudTrail delivery file; the skip reason when not.
pub fn classify_key(key: &str) -> Result<(), &'static str> {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.contains("_CloudTrail-Digest_") || key.contains("/CloudTrail-Digest/") {
        return Err("digest");
    }
    let json = name.ends_with(".json.gz") || name.ends_with(".json");
    if name.contains("_CloudTrail_") && json {
        Ok(())
    } else {
        Err("non_cloudtrail_key")
    }
}

impl S3SqsConnector {
    /// Connects with the standard AWS chain plus the overrides in `cfg.aws`.
    pub fn new(cfg: S3SqsConfig) -> Result<Self, ConnectError> {
        let rt = runtime()?;
        let sdk = load_sdk_config(&rt, &cfg.aws);
        Self::with_sdk_config(cfg, rt, &sdk)
    }

    /// Connects with a ready SDK configuration (tests pass static credentials).
    pub fn with_sdk_config(
        cfg: S3SqsConfig,
        rt: tokio::runtime::Runtime,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, ConnectError> {
        if !(1..=10).contains(&cfg.max_messages) {
            return Err(ConnectError::Config("max_messages must be 1–10".into()));
        }
        if cfg.buckets.iter().all(|b| b.trim().is_empty()) {
            return Err(ConnectError::Config(
                "s3-sqs: `buckets` must name the trail's bucket(s); a notification naming \
                 any other bucket is dead-lettered, not fetched"
                    .into(),
            ));
        }
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(cfg.force_path_style)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Ok(Self {
            cfg,
            rt,
            s3,
            sqs,
            received: VecDeque::new(),
            acks: AckQueue::default(),
            stats: ConnectorStats::default(),
        })
    }

    fn receive(&mut self) -> Result<(), ConnectError> {
        let (sqs, cfg) = (&self.sqs, &self.cfg);
        let out = self.rt.block_on(with_retries(
            "sqs:ReceiveMessage",
            &cfg.retry,
            &mut self.stats,
            || {
                sqs.receive_message()
                    .queue_url(&cfg.queue_url)
                    .max_number_of_messages(cfg.max_messages)
                    .wait_time_seconds(cfg.wait_time_seconds)
                    .set_visibility_timeout(cfg.visibility_timeout)
                    .send()
            },
        ))?;
        self.received.extend(out.messages.unwrap_or_default());
        Ok(())
    }

    /// Fetches one object and frames it into records and dead letters.
    fn read_object(
        &mut self,
        obj: &AnnouncedObject,
        records: &mut Vec<RawRecord>,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), ConnectError> {
        let origin = format!("s3://{}/{}", obj.bucket, obj.key);
        let s3 = &self.s3;
        let fetched = self.rt.block_on(async {
            let get = with_retries("s3:GetObject", &self.cfg.retry, &mut self.stats, || {
                s3.get_object()
                    .bucket(&obj.bucket)
                    .key(&obj.key)
                    .set_expected_bucket_owner(self.cfg.expected_bucket_owner.clone())
                    .send()
            })
            .await?;
            get.body
                .collect()
                .await
                .map(|b| b.into_bytes().to_vec())
                .map_err(|e| ConnectError::Source(format!("{origin}: reading the body: {e}")))
        });
        let bytes = match fetched {
            Ok(b) => b,
            Err(ConnectError::Source(why)) => {
                tracing::warn!(%origin, %why, "object cannot be read; dead-lettered");
                dead.push(DeadLetter::new(
                    Source::CloudTrail,
                    format!("object cannot be read: {why}"),
                    Provenance::file(&origin, 0),
                    b"",
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let (plain, gz_error) = crate::decompress(&bytes);
        let mut last = 0;
        for frame in frames(&plain, &["Records"]) {
            match frame {
                Frame::Record(n, r) => {
                    last = n;
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(r) {
                        dead.push(DeadLetter::new(
                            Source::CloudTrail,
                            format!("malformed object: record {n} is not JSON: {e}"),
                            Provenance::file(&origin, n),
                            r,
                        ));
                        continue;
                    }
                    records.push(RawRecord {
                        bytes: r.to_vec(),
                        origin: format!("{origin}#{n}"),
                    });
                }
                Frame::Broken(n, fragment, why) => {
                    last = n;
                    dead.push(DeadLetter::new(
                        Source::CloudTrail,
                        format!("malformed object: {why}"),
                        Provenance::file(&origin, n),
                        fragment,
                    ));
                }
            }
        }
        if let Some(why) = gz_error {
            dead.push(DeadLetter::new(
                Source::CloudTrail,
                format!("malformed object: {why}"),
                Provenance::file(&origin, last + 1),
                &bytes,
            ));
        }
        Ok(())
    }
}

impl Connector for S3SqsConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        if self.received.is_empty() {
            self.receive()?;
        }
        let Some(message) = self.received.pop_front() else {
            return Ok(None);
        };
        let message_id = message.message_id.clone().unwrap_or_default();
        let body = message.body.clone().unwrap_or_default();
        let mut records = Vec::new();
        let mut dead = Vec::new();
        match parse_notification(&body) {
            Ok(n) => {
                for reason in n.skipped {
                    self.stats.skip(reason);
                }
                for obj in &n.objects {
                    if !self.cfg.buckets.contains(&obj.bucket) {
                        tracing::warn!(bucket = %obj.bucket, key = %obj.key, %message_id,
                            "notification names a bucket not in `buckets`; not fetched");
                        dead.push(DeadLetter::new(
                            Source::CloudTrail,
                            format!(
                                "SQS message {message_id} names s3://{}/{}, a bucket not in \
                                 `buckets` ({}): not fetched. A forged or misrouted \
                                 notification; add the bucket to `buckets` if it is a trail's",
                                obj.bucket,
                                obj.key,
                                self.cfg.buckets.join(", ")
                            ),
                            Provenance::Stream {
                                name: format!("sqs:{}", self.cfg.queue_url).into(),
                                record: 1,
                            },
                            body.as_bytes(),
                        ));
                        continue;
                    }
                    self.read_object(obj, &mut records, &mut dead)?;
                }
            }
            Err(why) => dead.push(DeadLetter::new(
                Source::CloudTrail,
                format!("SQS message {message_id}: {why}"),
                Provenance::Stream {
                    name: format!("sqs:{}", self.cfg.queue_url).into(),
                    record: 1,
                },
                body.as_bytes(),
            )),
        }
        let id = self.acks.push(message.receipt_handle);
        let batch = RawBatch {
            id,
            key: format!("sqs-{message_id}"),
            source: Source::CloudTrail,
            records,
            dead_letters: dead,
            position: format!("sqs message {message_id}"),
        };
        self.stats.handed_out(&batch);
        Ok(Some(batch))
    }

    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError> {
        // Every message is independent: delete it as soon as its own batch is acked.
        let handle = {
            let (state, acked) = self
                .acks
                .outstanding
                .get_mut(&batch)
                .ok_or(ConnectError::UnknownBatch(batch))?;
            if *acked {
                return Err(ConnectError::UnknownBatch(batch));
            }
            state.take()
        };
        if let Some(handle) = handle {
            let (sqs, cfg) = (&self.sqs, &self.cfg);
            self.rt.block_on(with_retries(
                "sqs:DeleteMessage",
                &cfg.retry,
                &mut self.stats,
                || {
                    sqs.delete_message()
                        .queue_url(&cfg.queue_url)
                        .receipt_handle(&handle)
                        .send()
                },
            ))?;
        }
        self.acks.ack(batch)?;
        self.stats.acked += 1;
        Ok(())
    }

    fn stats(&self) -> &ConnectorStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_keys() {
        assert_eq!(
            classify_key("AWSLogs/1/CloudTrail/us-east-1/2023/07/10/1_CloudTrail_us-east-1_20230710T1145Z_x.json.gz"),
            Ok(())
        );
        assert_eq!(
            classify_key("AWSLogs/1/CloudTrail-Digest/us-east-1/2023/07/10/1_CloudTrail-Digest_us-east-1_t_20230710T1145Z.json.gz"),
            Err("digest")
        );
        assert_eq!(classify_key("other/readme.txt"), Err("non_cloudtrail_key"));
    }

    #[test]
    fn unwraps_sns_and_decodes_keys() {
        let inner = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"AWSLogs/1/CloudTrail/x/1_CloudTrail_r_t+%28copy%29.json.gz"}}}]}"#;
        let sns = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        let n = parse_notification(&sns).unwrap();
        assert_eq!(
            n.objects[0].key,
            "AWSLogs/1/CloudTrail/x/1_CloudTrail_r_t (copy).json.gz"
        );
        assert_eq!(
            parse_notification(r#"{"Event":"s3:TestEvent"}"#)
                .unwrap()
                .skipped,
            vec!["test_event"]
        );
        assert!(parse_notification("nope").is_err());
    }
}
