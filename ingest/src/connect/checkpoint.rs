//! The checkpoint store: one small JSON file per connector, replaced atomically.
//!
//! # Format
//!
//! ```json
//! {
//!   "format": 1,
//!   "connector": "github-audit",
//!   "updated_at": "2024-05-01T12:00:00Z",
//!   "state": { … connector-specific … }
//! }
//! ```
//!
//! `state` is what the connector needs to resume and nothing secret (no tokens, no
//! SQS receipt handles): the file tailer's `{path, inode, offset, size}`, the
//! GitHub connector's `{after, since_ms, ids_at_since}`, and so on (each connector's
//! module doc lists its fields). A checkpoint naming another connector is refused,
//! so two connectors cannot share one file by mistake.
//!
//! # Durability
//!
//! [`CheckpointStore::save`] writes `<file>.tmp`, fsyncs it, renames it over the
//! file and fsyncs the directory: a crash leaves either the old or the new
//! checkpoint, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version written in every checkpoint file.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Reading or writing a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("checkpoint {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The file exists but is not a checkpoint this connector can use.
    #[error("checkpoint {0}: {1}")]
    Invalid(PathBuf, String),
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    format: u32,
    connector: String,
    state: T,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    format: u32,
    connector: &'a str,
    updated_at: String,
    state: &'a T,
}

/// A checkpoint file for one connector; `None` path means "keep nothing" (in-memory runs).
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    path: Option<PathBuf>,
    connector: String,
}

impl CheckpointStore {
    /// The checkpoint of `connector` in `path`.
    pub fn new(path: impl Into<PathBuf>, connector: &str) -> Self {
        Self {
            path: Some(path.into()),
            connector: connector.to_owned(),
        }
    }

    /// A store that never persists (every run starts from the beginning).
    pub fn ephemeral(connector: &str) -> Self {
        Self {
            path: None,
            connector: connector.to_owned(),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The saved state, or `None` when there is no checkpoint yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, CheckpointError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CheckpointError::Io(path.clone(), e)),
        };
        let env: Envelope<T> = serde_json::from_slice(&bytes)
            .map_err(|e| CheckpointError::Invalid(path.clone(), e.to_string()))?;
        if env.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Invalid(
                path.clone(),
                format!(
                    "format {} is not {CHECKPOINT_FORMAT} (written by another version)",
                    env.format
                ),
            ));
        }
        if env.connector != self.connector {
            return Err(CheckpointError::Invalid(
                path.clone(),
                format!(
                    "belongs to connector `{}`, not `{}`",
                    env.connector, self.connector
                ),
            ));
        }
        Ok(Some(env.state))
    }

    /// Replaces the checkpoint atomically (tmp file, fsync, rename, fsync dir).
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), CheckpointError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |e| CheckpointError::Io(path.clone(), e);
        let body = serde_json::to_vec_pretty(&EnvelopeOut {
            format: CHECKPOINT_FORMAT,
            connector: &self.connector,
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            state,
        })
        .map_err(|e| CheckpointError::Invalid(path.clone(), e.to_string()))?;
        write_atomically(path, &body).map_err(io)
    }
}

/// Writes `bytes` to `path` via `<path>.tmp` + fsync + rename + directory fsync.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_connectors_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let store = CheckpointStore::new(&path, "file-tail");
        assert_eq!(store.load::<u64>().unwrap(), None);
        store.save(&42u64).unwrap();
        assert_eq!(store.load::<u64>().unwrap(), Some(42));
        assert!(!dir.path().join("cp.json.tmp").exists());
        let other = CheckpointStore::new(&path, "github-audit");
        assert!(matches!(
            other.load::<u64>(),
            Err(CheckpointError::Invalid(..))
        ));
    }
}
