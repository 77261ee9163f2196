//! Reading archives from S3 (`s3://bucket/prefix`): listing with `ListObjectsV2`
//! paging and fetching objects, through aws-sdk-s3 with the standard credential
//! chain and region settings. An endpoint override (for MinIO, LocalStack or moto)
//! switches to path-style addressing, which those servers need on a bare host:port.
//!
//! Replay's parse workers are threads, not tasks, so the client runs on its own small
//! tokio runtime and each call blocks the worker that made it.

use crate::inputs::{is_digest_key, is_log_key};
use crate::{InputFile, ReplayError};

/// An S3 client for replay.
pub struct S3Archive {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl std::fmt::Debug for S3Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Archive").finish_non_exhaustive()
    }
}

impl S3Archive {
    /// A client from the standard AWS configuration (environment, profile, instance
    /// role…); `endpoint` overrides where requests go and turns on path-style URLs.
    pub fn connect(endpoint: Option<&str>) -> Result<Self, ReplayError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lineage-s3")
            .enable_all()
            .build()
            .map_err(|e| ReplayError::S3(format!("starting the S3 client runtime: {e}")))?;
        let client = runtime.block_on(async {
            let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let mut builder = aws_sdk_s3::config::Builder::from(&shared);
            if shared.region().is_none() {
                builder = builder.region(aws_sdk_s3::config::Region::new("us-east-1"));
            }
            if let Some(url) = endpoint {
                builder = builder.endpoint_url(url).force_path_style(true);
            }
            aws_sdk_s3::Client::from_conf(builder.build())
        });
        Ok(Self { runtime, client })
    }

    /// Every log object under `prefix` (digest files and non-log keys left out), in
    /// key order; `digests` counts the CloudTrail digest files left out.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        digests: &mut u64,
    ) -> Result<Vec<InputFile>, ReplayError> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    ReplayError::S3(format!(
                        "listing s3://{bucket}/{prefix}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                })?;
                for object in page.contents() {
                    let Some(key) = object.key() else { continue };
                    if is_digest_key(key) {
                        *digests += 1;
                    } else if is_log_key(key) {
                        out.push(InputFile::S3 {
                            bucket: bucket.to_string(),
                            key: key.to_string(),
                            size: object.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                }
            }
            if out.is_empty() {
                return Err(ReplayError::MissingInput(format!(
                    "s3://{bucket}/{prefix} (no log objects under that prefix)"
                )));
            }
            Ok(out)
        })
    }

    /// The bytes of one object.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
            let body = object
                .body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?;
            Ok(body.into_bytes().to_vec())
        })
    }
}
