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

/// A session with every lineage table of `dir` registered by name. Tables with no
/// files (or a missing directory) are registered empty with their schema, so a
/// query over them returns no rows instead of failing.
pub async fn open_session(dir: &Path) -> Result<SessionContext, SqlError> {
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
    let ctx = SessionContext::new_with_config(config);
    for (name, schema) in all_schemas() {
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
