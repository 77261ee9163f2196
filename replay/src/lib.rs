//! `lineage-replay` runs archived audit logs through the pipeline: it expands
//! paths, directories and globs into files, decompresses and parses them in
//! parallel, merges every record into event-time order (lineage-changing records
//! first within the same second, so a session is known before its first use) and
//! drives the same attribute → detect → sink stages the live pipeline uses, over the
//! embedded bus. It owns the stage wiring ([`AttributeStage`]); the stages' logic
//! lives in `lineage-graph`, `lineage-detect` and `lineage-sinks`.
#![warn(missing_docs, unreachable_pub)]

mod alloc;
pub mod checkpoint;
mod inputs;
pub mod live;
mod merge;
mod parse;
mod run;
mod s3;
mod stage;

pub use alloc::tune_allocator;
pub use inputs::{expand_inputs, split_s3_inputs, InputFile};
pub use merge::{MergeCursor, MergeStats};
pub use parse::{parse_buffer, parse_file, ParsedFile};
pub use run::{
    replay, ArchiveOptions, Progress, ProgressHook, ReplayConfig, ReplayOutput, SweepItem,
};
pub use s3::S3Archive;
pub use stage::{AttributeStage, OwnedCredential, StageState};

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
    /// S3 could not be listed or reached.
    #[error("S3: {0}")]
    S3(String),
    /// A pipeline stage stopped unexpectedly.
    #[error("pipeline stage failed: {0}")]
    Stage(String),
}
