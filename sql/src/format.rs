//! Printing query results: an aligned text table, CSV with a header, or JSON lines.

use arrow::record_batch::RecordBatch;

use crate::{OutputFormat, SqlError};

/// The results rendered in `format`. An empty result prints the header only
/// (table, CSV) or nothing (JSON).
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, SqlError> {
    let err = |e: arrow::error::ArrowError| SqlError::Format(e.to_string());
    match format {
        OutputFormat::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches).map_err(err)?;
            Ok(format!("{text}\n"))
        }
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            if out.is_empty() {
                if let Some(b) = batches.first() {
                    let names: Vec<&str> = b
                        .schema_ref()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    out.extend_from_slice(names.join(",").as_bytes());
                    out.push(b'\n');
                }
            }
            String::from_utf8(out).map_err(|e| SqlError::Format(e.to_string()))
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs).map_err(err)?;
                w.finish().map_err(err)?;
            }
            String::from_utf8(out).map_err(|e| SqlError::Format(e.to_string()))
        }
    }
}
