//! Files that must survive a crash whole or not at all: written under a temporary
//! name, fsynced, then renamed over the old one. Used for checkpoints (replay's and
//! the embedded live run's) and their gzip-compressed JSON state files.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::de::DeserializeOwned;

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Writes `path` through a temporary name (fsynced, then renamed), creating its
/// directory; readable by its owner only.
pub fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let file = lineage_sinks::private_options()
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| err(&tmp, e))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(|e| err(&tmp, e))?;
    let file = out.into_inner().map_err(|e| err(&tmp, e.error()))?;
    file.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself is durable once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes a gzip-compressed JSON state file, atomically.
pub fn write_gz_json(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> serde_json::Result<()>,
) -> Result<(), String> {
    replace_file(path, |out| {
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        write(&mut gz).map_err(std::io::Error::other)?;
        gz.finish().map(|_| ())
    })
}

/// Reads a state file written by [`write_gz_json`].
pub fn read_gz_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(BufReader::new(file))
        .read_to_end(&mut text)
        .map_err(|e| err(path, e))?;
    serde_json::from_slice(&text).map_err(|e| err(path, format!("not a state file: {e}")))
}

/// Replaces a JSON file (pretty-printed), atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    replace_file(path, |out| {
        serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })
}
