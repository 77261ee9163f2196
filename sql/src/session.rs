//! The DataFusion session over a tables directory: every lineage table registered
//! by name, with its `date` partition column, and read-only query execution.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use lineage_tables::all_schemas;

use crate::SqlError;

/// The hive partition column every table has (`date=YYYY-MM-DD` directories).
pub(crate) const PARTITION_COLUMN: &str = "date";

fn with_partition_column(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// What a SQL session may use and show (`lineage sql`'s flags; the server's too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Memory the session's queries may hold at once. A query that needs more
    /// fails with "Resources exhausted" instead of growing the process (nothing is
    /// spilled to disk either, so a query cannot fill the disk).
    pub memory_limit_bytes: usize,
    /// Show `dead_letters.original` and `original_base64` (the raw bytes of
    /// records that could not be normalized: secrets redacted, but otherwise as
    /// sensitive as the logs). Hidden unless asked for.
    pub dead_letter_bytes: bool,
}

/// The default memory limit of a session: 1 GiB.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 1 << 30;

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            dead_letter_bytes: false,
        }
    }
}

/// The columns of `dead_letters` that hold raw record bytes.
const DEAD_LETTER_BYTES: [&str; 2] = ["original", "original_base64"];

/// [`open_session_with`] the default [`SessionOptions`].
pub async fn open_session(dir: &Path) -> Result<SessionContext, SqlError> {
    open_session_with(dir, &SessionOptions::default()).await
}

/// A session with every lineage table of `dir` registered by name. Tables with no
/// files (or a missing directory) are registered empty with their schema, so a
/// query over them returns no rows instead of failing.
pub async fn open_session_with(
    dir: &Path,
    options: &SessionOptions,
) -> Result<SessionContext, SqlError> {
    if !dir.is_dir() {
        return Err(SqlError::Tables(
            dir.display().to_string(),
            "not a directory (run `lineage replay --out DIR` and pass DIR/tables)".into(),
        ));
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| SqlError::Tables(dir.display().to_string(), e.to_string()))?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(options.memory_limit_bytes.max(1 << 20), 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| SqlError::Query(e.to_string()))?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for (name, schema) in all_schemas() {
        let schema = if name == "dead_letters" && !options.dead_letter_bytes {
            // Reading with a narrower table schema never touches those columns.
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .filter(|f| !DEAD_LETTER_BYTES.contains(&f.name().as_str()))
                .map(|f| f.as_ref().clone())
                .collect();
            Arc::new(Schema::new(fields))
        } else {
            schema
        };
        let table_dir = dir.join(name);
        let has_files = table_dir.is_dir() && contains_parquet(&table_dir);
        if has_files {
            let url = ListingTableUrl::parse(format!("{}/", table_dir.display()))
                .map_err(|e| SqlError::Tables(table_dir.display().to_string(), e.to_string()))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![(PARTITION_COLUMN.to_string(), DataType::Utf8)]);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(schema.clone());
            let table = ListingTable::try_new(config)
                .map_err(|e| SqlError::Tables(table_dir.display().to_string(), e.to_string()))?;
            ctx.register_table(name, Arc::new(table))
                .map_err(|e| SqlError::Query(e.to_string()))?;
        } else {
            tracing::debug!(table = name, "no files; registered empty");
            let table = MemTable::try_new(with_partition_column(&schema), vec![vec![]])
                .map_err(|e| SqlError::Query(e.to_string()))?;
            ctx.register_table(name, Arc::new(table))
                .map_err(|e| SqlError::Query(e.to_string()))?;
        }
    }
    Ok(ctx)
}

fn contains_parquet(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            contains_parquet(&p)
        } else {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        }
    })
}

/// Runs one read-only query: statements that would create, change or write
/// anything (DDL, DML, `COPY`, `SET`) are refused.
pub async fn run_query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| SqlError::Query(e.to_string()))?;
    let schema = df.schema().inner().clone();
    let mut batches = df
        .collect()
        .await
        .map_err(|e| SqlError::Query(e.to_string()))?;
    if batches.is_empty() {
        // Keep the columns, so an empty result still prints its header.
        batches.push(RecordBatch::new_empty(schema));
    }
    Ok(batches)
}
