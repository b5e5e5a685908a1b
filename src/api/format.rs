//! Result formats: JSON (default), NDJSON, CSV, Arrow IPC stream and Parquet, chosen by `?format=`
//! or the `Accept` header. Text formats render geometry as WKT; Arrow and Parquet keep WKB.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::geometry::{is_geometry, wkb_column_to_wkt};
use crate::query::QueryResult;

/// The names `?format=` takes, for the OpenAPI document (`jsonl`, `ipc` and `arrows` are accepted too).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultFormat {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    pub const NAMES: &'static str = "json, ndjson, csv, arrow, parquet";

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            "arrow" | "ipc" | "arrows" => Some(Format::Arrow),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    fn from_media_type(media: &str) -> Option<Self> {
        match media {
            "application/json" | "application/*" | "*/*" => Some(Format::Json),
            "application/x-ndjson" | "application/jsonl" => Some(Format::Ndjson),
            "text/csv" | "text/*" => Some(Format::Csv),
            "application/vnd.apache.arrow.stream" | "application/vnd.apache.arrow.file" => {
                Some(Format::Arrow)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// `?format=` wins; else the first media type of `Accept` (by q-value) we can produce.
    pub fn negotiate(query_format: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
        if let Some(name) = query_format {
            return Format::from_name(name).ok_or_else(|| {
                ApiError::NotAcceptable(format!(
                    "format `{name}` is not available; use one of {}",
                    Self::NAMES
                ))
            });
        }
        let Some(accept) = headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Format::Json);
        };
        let mut ranges: Vec<(f32, &str)> = accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let media = pieces.next()?.trim();
                let q = pieces
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (!media.is_empty()).then_some((q, media))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges
            .iter()
            .filter(|(q, _)| *q > 0.0)
            .find_map(|(_, media)| Format::from_media_type(&media.to_ascii_lowercase()))
            .ok_or_else(|| {
                ApiError::NotAcceptable(format!(
                    "cannot answer `Accept: {accept}`; available: application/json, application/x-ndjson, text/csv, application/vnd.apache.arrow.stream, application/vnd.apache.parquet (or ?format={})",
                    Self::NAMES.replace(", ", "|")
                ))
            })
    }
}

/// Encode a result in a format.
pub fn encode(result: &QueryResult, format: Format) -> Result<Vec<u8>, ApiError> {
    let failed =
        |e: arrow::error::ArrowError| ApiError::Internal(format!("cannot encode the result: {e}"));
    match format {
        Format::Json | Format::Ndjson => {
            let (_, batches) = as_text_columns(result, false);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let mut out = Vec::new();
            let builder = arrow::json::WriterBuilder::new().with_explicit_nulls(true);
            if format == Format::Json {
                let mut writer = builder.build::<_, arrow::json::writer::JsonArray>(&mut out);
                writer.write_batches(&refs).map_err(failed)?;
                writer.finish().map_err(failed)?;
                if out.is_empty() {
                    out.extend_from_slice(b"[]");
                }
            } else {
                let mut writer = builder.build::<_, arrow::json::writer::LineDelimited>(&mut out);
                writer.write_batches(&refs).map_err(failed)?;
                writer.finish().map_err(failed)?;
            }
            Ok(out)
        }
        Format::Csv => {
            let (schema, batches) = as_text_columns(result, true);
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    let header: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    writer
                        .write(&RecordBatch::new_empty(schema.clone()))
                        .map_err(failed)?;
                    drop(writer);
                    if out.is_empty() {
                        out.extend_from_slice(format!("{}\n", header.join(",")).as_bytes());
                    }
                } else {
                    for batch in &batches {
                        writer.write(batch).map_err(failed)?;
                    }
                }
            }
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema)
                .map_err(failed)?;
            for batch in &result.batches {
                writer.write(batch).map_err(failed)?;
            }
            writer.finish().map_err(failed)?;
            drop(writer);
            Ok(out)
        }
        Format::Parquet => {
            let mut out = Vec::new();
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut out, result.schema.clone(), None)
                    .map_err(|e| ApiError::Internal(format!("cannot encode the result: {e}")))?;
            for batch in &result.batches {
                writer
                    .write(batch)
                    .map_err(|e| ApiError::Internal(format!("cannot encode the result: {e}")))?;
            }
            writer
                .close()
                .map_err(|e| ApiError::Internal(format!("cannot encode the result: {e}")))?;
            Ok(out)
        }
    }
}

/// Geometry as WKT; for CSV also nested and binary values as their display text, which the CSV
/// writer cannot write otherwise.
pub fn as_text_columns(
    result: &QueryResult,
    flatten_nested: bool,
) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = &result.schema;
    let convert: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| {
            is_geometry(f)
                || (flatten_nested
                    && (f.data_type().is_nested()
                        || matches!(
                            f.data_type(),
                            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                        )))
        })
        .collect();
    if !convert.contains(&true) {
        return (schema.clone(), result.batches.clone());
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(&convert)
        .map(|(f, c)| {
            if *c {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let text_schema = Arc::new(Schema::new(fields));
    let batches = result
        .batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .zip(&convert)
                .map(|((column, field), c)| match (c, is_geometry(field)) {
                    (false, _) => column.clone(),
                    (true, true) => wkb_column_to_wkt(column),
                    (true, false) => display_column(column),
                })
                .collect();
            RecordBatch::try_new(text_schema.clone(), columns)
                .expect("text columns match the text schema")
        })
        .collect();
    (text_schema, batches)
}

fn display_column(column: &ArrayRef) -> ArrayRef {
    let options = FormatOptions::default();
    let Ok(formatter) = ArrayFormatter::try_new(column.as_ref(), &options) else {
        return Arc::new(StringArray::new_null(column.len()));
    };
    let values: Vec<Option<String>> = (0..column.len())
        .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect();
    Arc::new(StringArray::from(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> Result<Format, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_str(value).unwrap());
        Format::negotiate(None, &headers)
    }

    #[test]
    fn negotiation() {
        assert_eq!(
            Format::negotiate(None, &HeaderMap::new()).unwrap(),
            Format::Json
        );
        assert_eq!(accept("text/csv").unwrap(), Format::Csv);
        assert_eq!(
            accept("application/vnd.apache.arrow.stream").unwrap(),
            Format::Arrow
        );
        assert_eq!(
            accept("text/html;q=0.9, application/vnd.apache.parquet").unwrap(),
            Format::Parquet
        );
        assert_eq!(
            accept("text/csv;q=0.5, application/json;q=0.8").unwrap(),
            Format::Json
        );
        assert!(matches!(
            accept("image/png"),
            Err(ApiError::NotAcceptable(_))
        ));
        let headers = HeaderMap::new();
        assert_eq!(
            Format::negotiate(Some("csv"), &headers).unwrap(),
            Format::Csv
        );
        assert!(matches!(
            Format::negotiate(Some("xlsx"), &headers),
            Err(ApiError::NotAcceptable(_))
        ));
    }
}
