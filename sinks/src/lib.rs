//! `lineage-sinks` owns where alerts and records are written: JSON lines (a file or
//! stdout), dead letters, the run summary and its human-readable rendering, OCSF
//! Detection Findings, and the SOC alert sinks ([`alerts`]: rotated files, webhooks,
//! Slack, Kafka, with retries and an on-disk spool). Sinks write; they never decide
//! what is an alert. Revocation lives in `lineage-respond`, the Parquet tables in
//! `lineage-tables`.
#![warn(missing_docs, unreachable_pub)]

pub mod alerts;
mod jsonl;
pub mod ocsf;
mod report;

pub use jsonl::{private_options, JsonLinesSink};
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
}
