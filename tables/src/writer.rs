//! One table's Parquet writer: rows buffered per `date=` partition, converted to
//! Arrow record batches, written zstd-compressed, files rolled by row count and
//! size. A file is written under a hidden temporary name and renamed to
//! `part-<n>.parquet` only once closed, so a reader never sees half a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::json::reader::{Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::schema::TableRow;
use super::TablesOptions;
use crate::TableError;

pub(super) fn table_error(table: &str, what: impl std::fmt::Display) -> TableError {
    TableError::Table {
        table: table.to_owned(),
        message: what.to_string(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TableError {
    TableError::Io {
        target: path.display().to_string(),
        source,
    }
}

/// An open part file of one partition.
struct OpenPart {
    writer: ArrowWriter<File>,
    temp: PathBuf,
    final_path: PathBuf,
    rows: usize,
}

/// Where a table's writer stood at a checkpoint: every row so far is in a closed
/// file, and the next file of each date gets this number.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableCursor {
    /// Rows written.
    pub rows: u64,
    /// Files closed.
    pub files: u64,
    /// Next part number per date partition.
    pub next_part: BTreeMap<NaiveDate, u32>,
}

/// Writes the rows of one table.
pub struct TableWriter<R: TableRow> {
    dir: PathBuf,
    schema: SchemaRef,
    options: TablesOptions,
    /// Turns rows into record batches; built on first use, as the events table
    /// (built from Arrow builders) never needs it and its buffers are sized for a
    /// whole batch.
    decoder: Option<Decoder>,
    /// Rows waiting to become a record batch, per partition date.
    pending: BTreeMap<NaiveDate, Vec<R>>,
    open: BTreeMap<NaiveDate, OpenPart>,
    next_part: BTreeMap<NaiveDate, u32>,
    rows: u64,
    files: u64,
    _row: PhantomData<R>,
}

impl<R: TableRow> TableWriter<R> {
    /// A writer for `R`'s table under `root` (`root/<table>/date=…/part-<n>.parquet`).
    /// Earlier files of the table are removed: a tables directory holds one run.
    pub fn create(root: &Path, options: TablesOptions) -> Result<Self, TableError> {
        let dir = root.join(R::TABLE);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(Self::empty(dir, options))
    }

    /// A writer for `dir` with nothing written yet (no file is opened until a batch).
    fn empty(dir: PathBuf, options: TablesOptions) -> Self {
        Self {
            dir,
            schema: R::schema(),
            options,
            decoder: None,
            pending: BTreeMap::new(),
            open: BTreeMap::new(),
            next_part: BTreeMap::new(),
            rows: 0,
            files: 0,
            _row: PhantomData,
        }
    }

    /// Continues a table from a [`TableWriter::checkpoint`]: files that checkpoint
    /// had closed are kept, anything written after it (closed later or left in
    /// progress by a crash) is removed, and numbering continues.
    pub fn resume(
        root: &Path,
        options: TablesOptions,
        cursor: &TableCursor,
    ) -> Result<Self, TableError> {
        let dir = root.join(R::TABLE);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let partition = entry.map_err(|e| io_error(&dir, e))?.path();
            let date = partition
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("date="))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            let Some(date) = date else { continue };
            let keep_below = cursor.next_part.get(&date).copied().unwrap_or(0);
            for file in std::fs::read_dir(&partition).map_err(|e| io_error(&partition, e))? {
                let path = file.map_err(|e| io_error(&partition, e))?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let kept = name
                    .strip_prefix("part-")
                    .and_then(|n| n.strip_suffix(".parquet"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n < keep_below);
                if !kept {
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        let mut writer = Self::empty(dir, options);
        writer.rows = cursor.rows;
        writer.files = cursor.files;
        writer.next_part = cursor.next_part.clone();
        Ok(writer)
    }

    /// Writes what is buffered and closes the open files, so every row so far is in
    /// a closed file; the writer goes on with new files.
    pub fn checkpoint(&mut self) -> Result<TableCursor, TableError> {
        self.close_all()?;
        Ok(TableCursor {
            rows: self.rows,
            files: self.files,
            next_part: self.next_part.clone(),
        })
    }

    fn close_all(&mut self) -> Result<(), TableError> {
        let pending = std::mem::take(&mut self.pending);
        for (date, rows) in pending {
            self.write_batch(date, &rows)?;
        }
        let open = std::mem::take(&mut self.open);
        for (_, part) in open {
            self.close_part(part)?;
        }
        Ok(())
    }

    /// Writes what is buffered for dates before `cutoff` and closes their open files
    /// (a later row of such a date goes to a new file).
    pub fn close_dates_before(&mut self, cutoff: NaiveDate) -> Result<(), TableError> {
        let later = self.pending.split_off(&cutoff);
        for (date, rows) in std::mem::replace(&mut self.pending, later) {
            self.write_batch(date, &rows)?;
        }
        let later = self.open.split_off(&cutoff);
        for (_, part) in std::mem::replace(&mut self.open, later) {
            self.close_part(part)?;
        }
        Ok(())
    }

    /// Adds one row.
    pub fn write(&mut self, row: R) -> Result<(), TableError> {
        let date = row.date();
        let pending = self.pending.entry(date).or_default();
        pending.push(row);
        self.rows += 1;
        if pending.len() >= self.options.batch_rows {
            let rows = std::mem::take(pending);
            self.write_batch(date, &rows)?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn encode_batch(&mut self, rows: &[R]) -> Result<RecordBatch, TableError> {
        if self.decoder.is_none() {
            let decoder = ReaderBuilder::new(self.schema.clone())
                .with_batch_size(self.options.batch_rows.max(1))
                .build_decoder()
                .map_err(|e| table_error(R::TABLE, e))?;
            self.decoder = Some(decoder);
        }
        let decoder = self.decoder.as_mut().expect("built above");
        decoder
            .serialize(rows)
            .map_err(|e| table_error(R::TABLE, e))?;
        let batch = decoder.flush().map_err(|e| table_error(R::TABLE, e))?;
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    fn write_batch(&mut self, date: NaiveDate, rows: &[R]) -> Result<(), TableError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = self.encode_batch(rows)?;
        self.write_to_part(date, &batch)
    }

    /// Writes a record batch of this table built by the caller (rows of `date`),
    /// for tables whose rows are appended to Arrow builders directly
    /// ([`super::schema::EventColumns`]). Counted like rows added with `write`.
    pub fn write_record_batch(
        &mut self,
        date: NaiveDate,
        batch: &RecordBatch,
    ) -> Result<(), TableError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.write_to_part(date, batch)
    }

    fn write_to_part(&mut self, date: NaiveDate, batch: &RecordBatch) -> Result<(), TableError> {
        if !self.open.contains_key(&date) {
            let part = self.open_part(date)?;
            self.open.insert(date, part);
        }
        let part = self.open.get_mut(&date).expect("opened above");
        part.writer
            .write(batch)
            .map_err(|e| table_error(R::TABLE, e))?;
        part.rows += batch.num_rows();
        let size = part.writer.bytes_written() + part.writer.in_progress_size();
        if part.rows >= self.options.max_rows_per_file || size >= self.options.max_bytes_per_file {
            let part = self.open.remove(&date).expect("present");
            self.close_part(part)?;
        }
        Ok(())
    }

    fn open_part(&mut self, date: NaiveDate) -> Result<OpenPart, TableError> {
        let dir = self.dir.join(format!("date={}", date.format("%Y-%m-%d")));
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let n = self.next_part.entry(date).or_insert(0);
        let final_path = dir.join(format!("part-{n}.parquet"));
        let temp = dir.join(format!(".part-{n}.parquet.inprogress"));
        *n += 1;
        let file = File::create(&temp).map_err(|e| io_error(&temp, e))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("valid level"),
            ))
            .set_max_row_group_row_count(Some(128 * 1024));
        if let Some(columns) = R::STATISTICS_COLUMNS {
            props = props.set_statistics_enabled(EnabledStatistics::None);
            for column in columns {
                props = props.set_column_statistics_enabled(
                    ColumnPath::from(*column),
                    EnabledStatistics::Page,
                );
            }
        }
        for column in R::DISTINCT_COLUMNS {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(*column), false)
                .set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None);
        }
        for column in R::PREFIXED_COLUMNS {
            debug_assert!(
                R::DISTINCT_COLUMNS.contains(column),
                "no dictionary with an encoding"
            );
            props =
                props.set_column_encoding(ColumnPath::from(*column), Encoding::DELTA_BYTE_ARRAY);
        }
        for column in R::SEQUENTIAL_COLUMNS {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(*column), false)
                .set_column_encoding(ColumnPath::from(*column), Encoding::DELTA_BINARY_PACKED);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(props))
            .map_err(|e| table_error(R::TABLE, e))?;
        Ok(OpenPart {
            writer,
            temp,
            final_path,
            rows: 0,
        })
    }

    fn close_part(&mut self, part: OpenPart) -> Result<(), TableError> {
        part.writer.close().map_err(|e| table_error(R::TABLE, e))?;
        std::fs::rename(&part.temp, &part.final_path).map_err(|e| io_error(&part.final_path, e))?;
        self.files += 1;
        tracing::debug!(table = R::TABLE, file = %part.final_path.display(), rows = part.rows, "table file closed");
        Ok(())
    }

    /// Writes what is buffered and closes every open file. Returns the rows written.
    pub fn finish(mut self) -> Result<u64, TableError> {
        self.close_all()?;
        tracing::debug!(
            table = R::TABLE,
            rows = self.rows,
            files = self.files,
            "table written"
        );
        Ok(self.rows)
    }
}
