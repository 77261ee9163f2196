//! Errors of the core crate.

use std::path::PathBuf;

/// What can go wrong while loading shared configuration or moving data on the bus.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The inventory file could not be read.
    #[error("reading inventory {path}: {source}")]
    InventoryIo {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The inventory file is not valid: the message names the line and the field.
    #[error("{path}:{line}: {message}")]
    InventoryInvalid {
        /// The file that was being read.
        path: PathBuf,
        /// 1-based line of the offending value (0 when unknown).
        line: usize,
        /// What is wrong and, where possible, which field.
        message: String,
    },
    /// The receiving side of a bus channel has gone away.
    #[error("bus channel `{0}` is closed: the downstream stage stopped")]
    BusClosed(&'static str),
}
