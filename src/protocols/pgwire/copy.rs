//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`: a result sent in COPY's text, CSV or
//! binary form (psql's `\copy ... TO STDOUT`, the ADBC PostgreSQL driver's binary reads). Only
//! the format is COPY's: the query runs through the gate like any other. Every other COPY (from
//! a client, to or from a file or a program) is left to the guard, which refuses it.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use bytes::Bytes;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::errors::protocol_error;
use super::text::{self, Escaping};

/// COPY's three forms.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    Text {
        delimiter: char,
        null: String,
    },
    Csv {
        delimiter: char,
        null: String,
        header: bool,
        quote: char,
    },
    Binary,
}

/// A `COPY ... TO STDOUT`: the query to run and the form to send its rows in.
#[derive(Debug, Clone)]
pub struct CopyOut {
    pub sql: String,
    pub format: CopyFormat,
}

/// The `COPY ... TO STDOUT` a statement is, if it is one.
pub fn copy_out(statement: &Statement) -> Option<PgWireResult<CopyOut>> {
    let Statement::Copy {
        source,
        to: true,
        target: CopyTarget::Stdout,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    let sql = match source {
        CopySource::Query(query) => query.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let columns = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {columns} FROM {table_name}")
        }
    };
    Some(format(options, legacy_options).map(|format| CopyOut { sql, format }))
}

fn format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyFormat> {
    let (mut kind, mut delimiter, mut null, mut header, mut quote) =
        ("text".to_string(), None, None, false, '"');
    for option in options {
        match option {
            CopyOption::Format(name) => kind = name.value.to_ascii_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(text) => null = Some(text.clone()),
            CopyOption::Header(on) => header = *on,
            CopyOption::Quote(c) => quote = *c,
            CopyOption::Encoding(_) => {}
            other => {
                return Err(protocol_error(
                    "0A000",
                    format!("COPY option `{other}` is not supported here"),
                ));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => kind = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(text) => null = Some(text.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                kind = "csv".into();
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = *c,
                        other => {
                            return Err(protocol_error(
                                "0A000",
                                format!("COPY option `{other}` is not supported here"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(protocol_error(
                    "0A000",
                    format!("COPY option `{other}` is not supported here"),
                ));
            }
        }
    }
    match kind.as_str() {
        "text" => Ok(CopyFormat::Text {
            delimiter: delimiter.unwrap_or('\t'),
            null: null.unwrap_or_else(|| "\\N".into()),
        }),
        "csv" => Ok(CopyFormat::Csv {
            delimiter: delimiter.unwrap_or(','),
            null: null.unwrap_or_default(),
            header,
            quote,
        }),
        "binary" => Ok(CopyFormat::Binary),
        other => Err(protocol_error(
            "22023",
            format!("COPY format `{other}` is not known: use text, csv or binary"),
        )),
    }
}

/// The rows of a result as a COPY OUT response.
pub fn response(
    schema: &Schema,
    batches: Vec<RecordBatch>,
    format: &CopyFormat,
) -> PgWireResult<CopyResponse> {
    let escaping = match format {
        CopyFormat::Text { delimiter, null } => Escaping::Text {
            delimiter: single_byte(*delimiter, "DELIMITER")?,
            null: null.as_bytes().to_vec(),
        },
        CopyFormat::Csv {
            delimiter,
            null,
            quote,
            ..
        } => Escaping::Csv {
            delimiter: single_byte(*delimiter, "DELIMITER")?,
            quote: single_byte(*quote, "QUOTE")?,
            null: null.as_bytes().to_vec(),
        },
        CopyFormat::Binary => return binary(schema, batches),
    };
    let fields: Vec<FieldInfo> = arrow_schema_to_pg_fields(schema, &Format::UnifiedText, None)?;
    let mut header = Vec::new();
    if let CopyFormat::Csv { header: true, .. } = format {
        let names = RecordBatch::try_new(
            Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), DataType::Utf8, false))
                    .collect::<Vec<_>>(),
            )),
            schema
                .fields()
                .iter()
                .map(|f| Arc::new(StringArray::from(vec![f.name().as_str()])) as ArrayRef)
                .collect(),
        )
        .map_err(|e| protocol_error("XX000", format!("writing the CSV header: {e}")))?;
        let text_fields = arrow_schema_to_pg_fields(&names.schema(), &Format::UnifiedText, None)?;
        header = text::rows(&names, &text_fields, &escaping)?;
    }
    // A batch at a time: its rows are written column by column into one buffer, then sent one
    // message a row (as PostgreSQL sends them), never the whole result at once.
    let rows =
        batches
            .into_iter()
            .flat_map(move |batch| match text::rows(&batch, &fields, &escaping) {
                Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(error) => vec![Err(error)],
            });
    let messages = header
        .into_iter()
        .map(Ok)
        .chain(rows)
        .map(|row| row.map(CopyData::new));
    Ok(CopyResponse::new(
        0,
        schema.fields().len(),
        futures::stream::iter(messages),
    ))
}

/// A COPY option that must be one byte (PostgreSQL says the same of its own).
fn single_byte(c: char, option: &str) -> PgWireResult<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        protocol_error(
            "0A000",
            format!("COPY {option} must be a single one-byte character, not `{c}`"),
        )
    })
}

/// The rows in COPY's binary form (the ADBC PostgreSQL driver's reads), encoded by arrow-pg.
fn binary(schema: &Schema, batches: Vec<RecordBatch>) -> PgWireResult<CopyResponse> {
    let fields: Arc<Vec<FieldInfo>> = Arc::new(arrow_schema_to_pg_fields(
        schema,
        &Format::UnifiedBinary,
        None,
    )?);
    let mut encoder = CopyEncoder::new_binary(fields.clone());
    let mut data = Vec::new();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        // The encoder writes the header with the first row; with none it is written here.
        let mut header = b"PGCOPY\n\xFF\r\n\x00".to_vec();
        header.extend_from_slice(&[0; 8]);
        data.push(Ok(CopyData::new(Bytes::from(header))));
    }
    // One message a row, encoded as it is sent; the client stops at the first error.
    let rows = batches.into_iter().flat_map(|batch| {
        let batch = Arc::new(batch);
        (0..batch.num_rows()).map(move |row| (batch.clone(), row))
    });
    let encoded = rows.map(move |(batch, row)| {
        let schema = batch.schema();
        for (column, field) in fields.iter().enumerate() {
            encode_value(
                &mut encoder,
                batch.column(column),
                row,
                schema.field(column),
                field,
            )?;
        }
        Ok(encoder.take_copy())
    });
    Ok(CopyResponse::new(
        1,
        schema.fields().len(),
        futures::stream::iter(data.into_iter().chain(encoded)),
    ))
}
