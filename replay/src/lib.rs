//! `lineage-replay` is the archive driver of the one stage graph
//! (`lineage-pipeline`): it expands paths, directories, globs and `s3://` prefixes
//! into files, decompresses and normalizes them in parallel, merges every record
//! into event-time order (lineage-changing records first within the same instant,
//! so a session is known before its first use), feeds the pipeline's attribute +
//! detect stage and outputs, and checkpoints so a killed replay resumes. The
//! stages themselves are the pipeline's; this crate only decides where records
//! come from and in which order.
#![warn(missing_docs, unreachable_pub)]

pub mod checkpoint;
mod inputs;
mod merge;
mod parse;
mod run;
mod s3;
pub mod verify;

pub use inputs::{expand_inputs, expand_inputs_counting_digests, split_s3_inputs, InputFile};
pub use lineage_pipeline::normalize::{parse_buffer, parse_file, ParsedFile};
pub use lineage_pipeline::{AttributeStage, OwnedCredential, StageState};
pub use merge::{MergeCursor, MergeStats};
pub use run::{
    replay, ArchiveOptions, Progress, ProgressHook, ReplayConfig, ReplayOutput, SweepItem,
};
pub use s3::S3Archive;

/// What can stop a replay (bad records never do: they are dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input argument names nothing.
    #[error("input `{0}` does not exist (give files, directories or quoted globs)")]
    MissingInput(String),
    /// A glob matched no file.
    #[error("glob `{0}` matched no file")]
    EmptyGlob(String),
    /// A glob is malformed.
    #[error("bad glob `{0}`: {1}")]
    BadGlob(String, String),
    /// A directory could not be listed.
    #[error("listing {0}: {1}")]
    ListDir(String, std::io::Error),
    /// The output directory could not be created or written.
    #[error("output: {0}")]
    Output(String),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] lineage_sinks::SinkError),
    /// A lineage table could not be written.
    #[error(transparent)]
    Table(#[from] lineage_tables::TableError),
    /// S3 could not be listed or reached.
    #[error("S3: {0}")]
    S3(String),
    /// A pipeline stage stopped unexpectedly.
    #[error("pipeline stage failed: {0}")]
    Stage(String),
}
