//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`: a result sent in COPY's text, CSV or
//! binary form (psql's `\copy ... TO STDOUT`, the ADBC PostgreSQL driver's binary reads). Only
//! the format is COPY's: the query runs through the gate like any other. Every other COPY (from
//! a client, to or from a file or a program) is left to the guard, which refuses it.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use bytes::Bytes;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::errors::protocol_error;

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
    let wire = match format {
        CopyFormat::Binary => Format::UnifiedBinary,
        _ => Format::UnifiedText,
    };
    let fields: Arc<Vec<FieldInfo>> = Arc::new(arrow_schema_to_pg_fields(schema, &wire, None)?);
    let mut encoder = match format {
        CopyFormat::Text { delimiter, null } => CopyEncoder::new_text(
            fields.clone(),
            CopyTextOptions {
                delimiter: delimiter.to_string().into(),
                null_string: null.as_str().into(),
            },
        ),
        CopyFormat::Csv {
            delimiter,
            null,
            quote,
            ..
        } => CopyEncoder::new_csv(
            fields.clone(),
            CopyCsvOptions {
                delimiter: delimiter.to_string().into(),
                quote: quote.to_string().into(),
                escape: quote.to_string().into(),
                null_string: null.as_str().into(),
                force_quote: Vec::new(),
            },
        ),
        CopyFormat::Binary => CopyEncoder::new_binary(fields.clone()),
    };
    let mut data = Vec::new();
    if let CopyFormat::Csv {
        header: true,
        delimiter,
        ..
    } = format
    {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        data.push(Ok(CopyData::new(Bytes::from(format!(
            "{}\n",
            names.join(&delimiter.to_string())
        )))));
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 && *format == CopyFormat::Binary {
        // The encoder writes the header with the first row; with none it is written here.
        let mut header = b"PGCOPY\n\xFF\r\n\x00".to_vec();
        header.extend_from_slice(&[0; 8]);
        data.push(Ok(CopyData::new(Bytes::from(header))));
    }
    let code = if *format == CopyFormat::Binary { 1 } else { 0 };
    // One message a row, encoded as it is sent, never the whole result at once; the client
    // stops at the first error.
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
        code,
        schema.fields().len(),
        futures::stream::iter(data.into_iter().chain(encoded)),
    ))
}
