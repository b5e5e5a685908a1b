//! Response bodies to Arrow, page by page. JSON and NDJSON records go through arrow-json, CSV
//! through the `file` connector's reader and typer. The schema is the declared one, or the one
//! inferred from the first page with records; every later page must fit it, or the pull fails
//! (a page is never loaded under a schema it does not fit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use super::config::{HttpTableConfig, ResponseFormat};
use crate::connectors::file::{self, ColumnType, FileFormat, FileTableConfig};
use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};

/// What one page held.
pub struct DecodedPage {
    pub batch: Option<RecordBatch>,
    /// Records the server sent, loaded or rejected (pagination counts them all).
    pub records: u64,
    pub rejected: Vec<RejectedRecord>,
    /// The JSON document, for cursors and totals found in it.
    pub document: Option<Value>,
}

pub struct PageDecoder<'a> {
    table: &'a HttpTableConfig,
    /// Declared, or inferred from the first page with records.
    schema: Option<SchemaRef>,
    declared: bool,
    /// CSV: the columns and types of the first page, which later pages must have.
    csv_columns: Option<(Vec<String>, BTreeMap<String, ColumnType>)>,
}

pub fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Text => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

fn column_type(data_type: &DataType) -> ColumnType {
    match data_type {
        DataType::Int64 => ColumnType::Int,
        DataType::Float64 => ColumnType::Float,
        DataType::Boolean => ColumnType::Bool,
        DataType::Date32 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        _ => ColumnType::Text,
    }
}

/// The message of a `file` connector error, without its path (the caller names the page).
fn message(error: ConnectorError) -> String {
    match error {
        ConnectorError::Parse { message, .. } | ConnectorError::Transform { message, .. } => {
            message
        }
        ConnectorError::Column {
            column, message, ..
        } => format!("column `{column}`: {message}"),
        other => other.to_string(),
    }
}

impl<'a> PageDecoder<'a> {
    pub fn new(table: &'a HttpTableConfig) -> Self {
        let declared = !table.schema.is_empty();
        let schema = declared.then(|| {
            let fields: Vec<Field> = table
                .schema
                .iter()
                .map(|(name, kind)| Field::new(name, arrow_type(*kind), true))
                .collect();
            Arc::new(Schema::new(fields))
        });
        Self {
            table,
            schema,
            declared,
            csv_columns: None,
        }
    }

    /// The table's schema so far: declared, or inferred from the first page with records.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    pub fn decode(&mut self, source: &str, body: &[u8]) -> Result<DecodedPage, String> {
        match self.table.format {
            ResponseFormat::Json => {
                let text = utf8(body)?;
                let document: Value =
                    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
                let (objects, rejected) =
                    records(source, &document, self.table.json_pointer.as_deref())?;
                let records = (objects.len() + rejected.len()) as u64;
                let batch = self.objects_to_batch(objects)?;
                Ok(DecodedPage {
                    batch,
                    records,
                    rejected,
                    document: Some(document),
                })
            }
            ResponseFormat::Ndjson => {
                let (objects, rejected) = file::json::read_ndjson(Path::new(source), utf8(body)?);
                let records = (objects.len() + rejected.len()) as u64;
                let batch = self.objects_to_batch(objects)?;
                Ok(DecodedPage {
                    batch,
                    records,
                    rejected,
                    document: None,
                })
            }
            ResponseFormat::Csv => self.csv(source, body),
        }
    }

    fn objects_to_batch(
        &mut self,
        objects: Vec<Map<String, Value>>,
    ) -> Result<Option<RecordBatch>, String> {
        let values: Vec<Value> = objects
            .into_iter()
            .map(|object| {
                Value::Object(
                    object
                        .into_iter()
                        .map(|(k, v)| (self.table.column_name(&k, 0), v))
                        .collect(),
                )
            })
            .collect();
        let inferring = self.schema.is_none();
        let schema = match &self.schema {
            Some(schema) => schema.clone(),
            None if values.is_empty() => return Ok(None),
            None => {
                let inferred =
                    arrow::json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
                        .map_err(|e| format!("cannot infer a schema: {e}"))?;
                // A field only ever null on the first page is read as text, so that a value on a
                // later page still fits.
                let fields: Vec<Field> = inferred
                    .fields()
                    .iter()
                    .map(|f| {
                        if f.data_type() == &DataType::Null {
                            Field::new(f.name(), DataType::Utf8, true)
                        } else {
                            f.as_ref().clone()
                        }
                    })
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                self.schema = Some(schema.clone());
                schema
            }
        };
        // A declared schema picks the columns (other fields are not loaded); an inferred one must
        // hold every field of every later page.
        let strict = !self.declared;
        decode_values(&schema, &values, strict).map(Some).map_err(|e| {
            let fix = if self.declared {
                "it does not fit the declared `schema`"
            } else if inferring {
                "cannot decode it"
            } else {
                "it does not fit the schema inferred from the first page (declare `schema` to fix the columns and their types)"
            };
            format!("{fix}: {e}")
        })
    }

    fn csv(&mut self, source: &str, body: &[u8]) -> Result<DecodedPage, String> {
        let table = self.table;
        let path = PathBuf::from(source);
        let text = file::csv::decode(&path, body, &table.csv.encoding).map_err(message)?;
        let options = self.csv_options(&path);
        let (text_table, mut rejected) =
            file::csv::parse(&path, &text, &options).map_err(message)?;
        let records = (text_table.rows.len() + rejected.len()) as u64;
        let columns = file::names::deduplicate(
            text_table
                .header
                .iter()
                .enumerate()
                .map(|(i, h)| table.column_name(h, i + 1))
                .collect(),
        );
        let kinds: BTreeMap<String, ColumnType> = if self.declared {
            for name in table.schema.keys() {
                if !columns.contains(name) {
                    return Err(format!(
                        "column `{name}` is declared in `schema` but not in the response; columns are {columns:?}"
                    ));
                }
            }
            table.schema.iter().map(|(k, v)| (k.clone(), *v)).collect()
        } else if let Some((first, kinds)) = &self.csv_columns {
            if first != &columns {
                return Err(format!(
                    "the columns {columns:?} differ from the first page's {first:?}"
                ));
            }
            kinds.clone()
        } else {
            BTreeMap::new()
        };
        let number_format = file::typed::NumberFormat {
            decimal: table.csv.decimal,
            thousands: table.csv.thousands,
        };
        let has_rows = !text_table.rows.is_empty();
        let (batch, bad_values) = file::typed::to_record_batch(
            source,
            text_table,
            &columns,
            &kinds,
            number_format,
            table.csv.delimiter,
        )
        .map_err(message)?;
        rejected.extend(bad_values);
        let batch = if self.declared {
            let indices: Vec<usize> = table
                .schema
                .keys()
                .map(|name| {
                    columns
                        .iter()
                        .position(|c| c == name)
                        .expect("checked above")
                })
                .collect();
            batch.project(&indices).map_err(|e| e.to_string())?
        } else {
            if self.csv_columns.is_none() && has_rows {
                let kinds = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), column_type(f.data_type())))
                    .collect();
                self.csv_columns = Some((columns, kinds));
                self.schema = Some(batch.schema());
            }
            batch
        };
        Ok(DecodedPage {
            batch: Some(batch),
            records,
            rejected,
            document: None,
        })
    }

    /// The `file` connector's CSV reader takes its options from a file table.
    fn csv_options(&self, path: &Path) -> FileTableConfig {
        let csv = &self.table.csv;
        FileTableConfig {
            name: self.table.name.clone(),
            path: path.to_path_buf(),
            format: Some(FileFormat::Csv),
            description: None,
            delimiter: csv.delimiter,
            quote: csv.quote,
            encoding: csv.encoding.clone(),
            header: csv.header,
            columns: None,
            skip_lines: csv.skip_lines,
            decimal: csv.decimal,
            thousands: csv.thousands,
            null_values: csv.null_values.clone(),
            column_names: self.table.column_names,
            rename: self.table.rename.clone(),
            schema: BTreeMap::new(),
            json_pointer: None,
            point: None,
            crs: None,
            sort_by: Vec::new(),
            unpivot: None,
            filter: None,
            simulate: None,
        }
    }
}

fn utf8(body: &[u8]) -> Result<&str, String> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| format!("the response is not UTF-8: {e}"))
}

/// The records of a JSON document: the array (or single object) at `pointer`, or the document.
/// Array items that are not objects are rejected with their position.
/// The objects of a page, and the items that were not objects.
type Records = (Vec<Map<String, Value>>, Vec<RejectedRecord>);

fn records(source: &str, document: &Value, pointer: Option<&str>) -> Result<Records, String> {
    let found = match pointer.filter(|p| !p.is_empty()) {
        Some(pointer) => document
            .pointer(pointer)
            .ok_or_else(|| format!("nothing at JSON pointer `{pointer}`"))?,
        None => document,
    };
    let items =
        match found {
            Value::Array(items) => items,
            Value::Object(object) => return Ok((vec![object.clone()], Vec::new())),
            _ => return Err(
                "the records are not a JSON array or object (set `json_pointer` to where they are)"
                    .into(),
            ),
        };
    let mut objects = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(object) => objects.push(object.clone()),
            other => rejected.push(RejectedRecord {
                time: None,
                source: source.to_string(),
                line: None,
                reason: format!("record {} is not a JSON object", i + 1),
                raw: truncate_raw(&other.to_string()),
            }),
        }
    }
    Ok((objects, rejected))
}

/// Decode JSON values under a schema. On failure, name the first record that does not fit.
fn decode_values(
    schema: &SchemaRef,
    values: &[Value],
    strict: bool,
) -> Result<RecordBatch, String> {
    let decode = |values: &[Value]| -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .with_coerce_primitive(true)
            .with_strict_mode(strict)
            .with_batch_size(values.len().max(1))
            .build_decoder()?;
        decoder.serialize(values)?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
    };
    decode(values).map_err(|error| {
        let culprit = values
            .iter()
            .position(|v| decode(std::slice::from_ref(v)).is_err());
        match culprit {
            Some(i) => format!(
                "record {}: {}",
                i + 1,
                decode(std::slice::from_ref(&values[i])).unwrap_err()
            ),
            None => error.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(extra: &str) -> HttpTableConfig {
        toml::from_str(&format!("name = \"t\"\nurl = \"https://a.it/x\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_later_page_that_does_not_fit_the_first_is_an_error() {
        let table = table("json_pointer = \"/items\"");
        let mut decoder = PageDecoder::new(&table);
        let first = decoder
            .decode(
                "p1",
                br#"{"items": [{"Id": 1, "Nome": "a", "Note": null}, 7]}"#,
            )
            .unwrap();
        assert_eq!(first.records, 2);
        assert_eq!(first.rejected[0].reason, "record 2 is not a JSON object");
        assert_eq!(first.batch.unwrap().num_rows(), 1);
        let schema = decoder.schema().unwrap();
        assert_eq!(
            schema.field_with_name("note").unwrap().data_type(),
            &DataType::Utf8,
            "null-only fields are text"
        );
        // A note arriving later fits (text); an id that is not a number does not.
        assert_eq!(
            decoder
                .decode("p2", br#"{"items": [{"id": 2, "note": "x"}]}"#)
                .unwrap()
                .batch
                .unwrap()
                .num_rows(),
            1
        );
        let error = decoder
            .decode("p3", br#"{"items": [{"id": 3}, {"id": "tre"}]}"#)
            .err()
            .unwrap();
        assert!(
            error.starts_with("it does not fit the schema inferred from the first page"),
            "{error}"
        );
        assert!(error.contains("record 2"), "{error}");
        let error = decoder
            .decode("p4", br#"{"items": [{"id": 4, "nuovo": 1}]}"#)
            .err()
            .unwrap();
        assert!(error.contains("nuovo"), "{error}");
    }

    #[test]
    fn a_declared_schema_picks_and_types_the_columns() {
        let table = table(
            "schema = { quando = \"timestamp\", giorno = \"date\", n = \"int\", testo = \"text\" }",
        );
        let mut decoder = PageDecoder::new(&table);
        let page = decoder
            .decode("p1", br#"[{"quando": "2024-05-01T10:00:00+02:00", "giorno": "2024-05-01", "n": "12", "testo": 5, "altro": true}]"#)
            .unwrap();
        let batch = page.batch.unwrap();
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["quando", "giorno", "n", "testo"]);
        let shown = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(
            shown.contains("2024-05-01T08:00:00") && shown.contains("| 12 | 5 "),
            "{shown}"
        );
    }

    #[test]
    fn malformed_json_and_csv_pages() {
        let table = table("");
        let error = PageDecoder::new(&table)
            .decode("p", br#"[{"a": 1}, {"a": "#)
            .err()
            .unwrap();
        assert!(
            error.starts_with("invalid JSON: EOF while parsing"),
            "{error}"
        );

        let csv = self::table("format = \"csv\"\ncsv = { delimiter = \";\", decimal = \",\" }");
        let mut decoder = PageDecoder::new(&csv);
        let page = decoder
            .decode("p1", "Zona;Valore\nNord;1,5\nSud;2\n".as_bytes())
            .unwrap();
        assert_eq!(page.records, 2);
        assert_eq!(
            page.batch.unwrap().schema().field(1).data_type(),
            &DataType::Float64
        );
        let page = decoder
            .decode("p2", "Zona;Valore\nEst;x\n".as_bytes())
            .unwrap();
        assert_eq!(
            page.rejected[0].reason,
            "column `valore`: `x` is not a number"
        );
        let error = decoder
            .decode("p3", "Area;Valore\nOvest;3\n".as_bytes())
            .err()
            .unwrap();
        assert!(error.contains("differ from the first page"), "{error}");
    }
}
