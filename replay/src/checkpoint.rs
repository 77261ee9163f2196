//! Resumable replay: the manifest of finished files and the checkpoint it points to.
//!
//! A long replay (a month of an organisation's CloudTrail) that is killed should not
//! start over. Every `checkpoint_every` (at a file boundary of the event-time merge)
//! replay records, in `<out>/replay-manifest.json`:
//!
//! - which input files are finished (every record released into the pipeline) and,
//!   for files the merge holds partly released, how many of their sorted records
//!   went (a [`MergeCursor`]);
//! - the run's counts so far and where each streaming output stood: the byte length
//!   of `events.jsonl` and `dead_letters.jsonl`, the closed Parquet files of the
//!   `events` and `dead_letters` tables (open files are closed at a checkpoint);
//! - the state of the attribute stage (graph, detector baselines, alert book,
//!   statistics) in `<out>/replay-state/state-<n>.json.gz`, and what the `events`
//!   table learned per credential in `events-<n>.json.gz`.
//!
//! The checkpoint travels through the pipeline as a marker after the last record it
//! covers: the attribute stage writes its state when the marker reaches it, the
//! events sink flushes and closes its files when the marker reaches it, and only
//! then is the manifest replaced (write to a temporary name, fsync, rename). A crash
//! at any moment therefore leaves the previous complete checkpoint.
//!
//! `--resume` reads the manifest, refuses when the inputs or settings differ (a
//! fingerprint of file names and sizes, inventory, detector settings, time range and
//! outputs), restores the state, cuts the JSON-lines outputs back to the recorded
//! lengths, removes table files written after the checkpoint, and continues the
//! merge from its cursor: finished files are not read again, partly released ones
//! are re-parsed and their released records skipped. The resumed run's outputs equal
//! an uninterrupted run's (tested by killing a replay with SIGKILL).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use lineage_core::RunSummary;
use lineage_pipeline::state_files;
use lineage_tables::{EventsCursor, TableCursor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merge::MergeCursor;
use crate::ReplayError;

/// The manifest's file name in the output directory.
pub const MANIFEST_FILE: &str = "replay-manifest.json";
/// The directory (under the output directory) of the checkpoint state files.
pub const STATE_DIR: &str = "replay-state";
pub(crate) const VERSION: u32 = 1;

/// `<out>/replay-manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Format version.
    pub version: u32,
    /// Fingerprint of the inputs and settings; a resume needs the same.
    pub fingerprint: String,
    /// True once the run finished (nothing to resume).
    pub complete: bool,
    /// When this manifest was written.
    pub written_at: DateTime<Utc>,
    /// Input files of the run.
    pub files_total: u64,
    /// Files whose records were all released into the pipeline, by name.
    pub finished: Vec<String>,
    /// Files partly released (the merge held the rest), by name.
    pub in_progress: Vec<InProgress>,
    /// The checkpoint to resume from (absent once complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// A file the merge had partly released at the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InProgress {
    /// Its name.
    pub name: String,
    /// Records released (in the file's event-time order).
    pub released: u64,
}

/// Bytes and records of a JSON-lines output at a checkpoint.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SinkOffset {
    /// Bytes flushed.
    pub bytes: u64,
    /// Records in them.
    pub records: u64,
}

/// Everything a resume needs besides the state files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Checkpoint number (names its state files).
    pub generation: u64,
    /// Where the merge stood.
    pub merge: MergeCursor,
    /// Counts of the files taken in so far (read, normalized, dead-lettered, per source).
    pub summary: RunSummary,
    /// Records outside `--since/--until` so far.
    pub outside_time_range: u64,
    /// `dead_letters.jsonl`.
    pub dead_letters_jsonl: SinkOffset,
    /// The `dead_letters` table, when tables are written.
    pub dead_letters_table: Option<TableCursor>,
    /// `events.jsonl`, when written (filled by the events sink).
    pub events_jsonl: Option<SinkOffset>,
}

impl Checkpoint {
    pub(crate) fn state_file(&self) -> String {
        format!("{STATE_DIR}/state-{}.json.gz", self.generation)
    }

    pub(crate) fn events_file(&self) -> String {
        format!("{STATE_DIR}/events-{}.json.gz", self.generation)
    }
}

/// Hex SHA-256 over the parts (each length-prefixed, so no two lists collide).
pub(crate) fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Output(format!("{}: {e}", path.display()))
}

/// Writes a gzip-compressed JSON state file (`out/<rel>`), atomically.
pub(crate) fn write_state_file(
    out_dir: &Path,
    rel: &str,
    write: impl FnOnce(&mut dyn Write) -> serde_json::Result<()>,
) -> Result<(), ReplayError> {
    state_files::write_gz_json(&out_dir.join(rel), write).map_err(ReplayError::Output)
}

/// Reads a state file written by [`write_state_file`].
pub(crate) fn read_state_file<T: DeserializeOwned>(
    out_dir: &Path,
    rel: &str,
) -> Result<T, ReplayError> {
    state_files::read_gz_json(&out_dir.join(rel)).map_err(ReplayError::Output)
}

/// Replaces the manifest, then removes state files of older checkpoints.
pub(crate) fn write_manifest(out_dir: &Path, manifest: &Manifest) -> Result<(), ReplayError> {
    state_files::write_json(&out_dir.join(MANIFEST_FILE), manifest).map_err(ReplayError::Output)?;
    // State files of older checkpoints go; later ones (the attribute stage runs
    // ahead of the events sink and may have written the next one) stay.
    let current = manifest
        .checkpoint
        .as_ref()
        .map_or(u64::MAX, |c| c.generation);
    let dir = out_dir.join(STATE_DIR);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let generation = name
                .split_once('-')
                .and_then(|(_, rest)| rest.split('.').next())
                .and_then(|n| n.parse::<u64>().ok());
            if generation.is_none_or(|g| g < current) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if manifest.checkpoint.is_none() {
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

/// The manifest in `out_dir`, if any.
pub(crate) fn read_manifest(out_dir: &Path) -> Result<Option<Manifest>, ReplayError> {
    let path = out_dir.join(MANIFEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, e)),
    };
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| io_err(&path, format!("not a replay manifest: {e}")))?;
    if m.version != VERSION {
        return Err(io_err(
            &path,
            format!(
                "manifest version {} (this lineage writes {VERSION})",
                m.version
            ),
        ));
    }
    Ok(Some(m))
}

/// Removes a previous run's manifest and state (a run that does not resume).
pub(crate) fn clear(out_dir: &Path) -> Result<(), ReplayError> {
    let path = out_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path, e)),
    }
    let dir: PathBuf = out_dir.join(STATE_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    }
    Ok(())
}

/// The events sink's part of a checkpoint, written to `events-<n>.json.gz`.
#[derive(Serialize, Deserialize)]
pub(crate) struct EventsState {
    pub table: Option<EventsCursor>,
}
