//! `lineage-sinks` owns every place the pipeline writes to: alerts as JSON lines (a
//! file or stdout), dead letters as JSON lines, the run summary (`summary.json`) and
//! its human-readable rendering, OCSF Detection Findings. Revocation executors and Parquet lineage tables
//! will live here too. Sinks write; they never decide what is an alert.
#![warn(missing_docs, unreachable_pub)]

pub mod alerts;
mod jsonl;
pub mod ocsf;
mod report;
pub mod response;

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
}
