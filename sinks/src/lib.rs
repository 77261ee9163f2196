//! `lineage-sinks` owns every place the pipeline writes to or acts on: alerts as JSON
//! lines (a file or stdout), dead letters, the run summary and its human-readable
//! rendering, OCSF Detection Findings, the SOC alert sinks ([`alerts`]: rotated
//! files, webhooks, Slack, Kafka, with retries and an on-disk spool) and the
//! response path ([`response`]: policy, idempotency ledger and the AWS, Vault, GitHub
//! and Entra revocation executors) and the Parquet lineage tables ([`tables`]). Sinks
//! write and execute; they never decide what is an alert or what deserves revocation.
#![warn(missing_docs, unreachable_pub)]

pub mod alerts;
mod jsonl;
pub mod ocsf;
mod report;
pub mod response;
pub mod tables;

pub use jsonl::JsonLinesSink;
pub use report::{render_alert, render_summary};

/// What can go wrong while writing output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output could not be created or written.
    #[error("writing {target}: {source}")]
    Io {
        /// File path or `stdout`.
        target: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A value could not be serialized.
    #[error("serializing a record for {target}: {source}")]
    Serialize {
        /// File path or `stdout`.
        target: String,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A lineage table could not be encoded or written.
    #[error("lineage table {table}: {message}")]
    Table {
        /// Table name.
        table: String,
        /// What went wrong.
        message: String,
    },
}
