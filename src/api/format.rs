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
            let (_, batches) = text_columns(result, false, false);
            if let Some(body) = super::json::encode(&batches, format == Format::Ndjson) {
                return Ok(body);
            }
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let mut out = Vec::new();
            let builder = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .with_encoder_factory(Arc::new(TimestampEncoders));
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

/// Rows per chunk of a streamed JSON body: a few tens of kilobytes.
const CHUNK_ROWS: usize = 512;

/// A result's rows in consecutive slices of at most `rows` rows (none for no rows).
fn slices(result: &QueryResult, rows: usize) -> Vec<QueryResult> {
    result
        .batches
        .iter()
        .flat_map(|batch| {
            (0..batch.num_rows())
                .step_by(rows)
                .map(|offset| batch.slice(offset, rows.min(batch.num_rows() - offset)))
        })
        .map(|slice| QueryResult {
            schema: result.schema.clone(),
            batches: vec![slice],
        })
        .collect()
}

/// Slice `index` of `count` consecutive slices, encoded so that the pieces joined in order are
/// the whole result's JSON or NDJSON body: `[rows` … `,rows` … `,rows]` for JSON.
fn encode_piece(
    slice: &QueryResult,
    format: Format,
    index: usize,
    count: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = encode(slice, format)?;
    if format == Format::Json {
        if index > 0 {
            body[0] = b',';
        }
        if index + 1 < count {
            body.pop();
        }
    }
    Ok(body)
}

/// A JSON or NDJSON body as a stream of chunks of `CHUNK_ROWS` rows, each encoded when the
/// connection takes it: the client reads the first rows while the next are encoded, and no task
/// holds a worker for more than a chunk. Same bytes as `encode`.
pub fn encode_stream(
    result: QueryResult,
    format: Format,
) -> impl futures::Stream<Item = Result<bytes::Bytes, ApiError>> + Send + 'static {
    debug_assert!(matches!(format, Format::Json | Format::Ndjson));
    let slices = slices(&result, CHUNK_ROWS);
    let count = slices.len();
    let chunks = slices
        .into_iter()
        .enumerate()
        .map(move |(i, slice)| encode_piece(&slice, format, i, count).map(bytes::Bytes::from));
    let empty =
        (count == 0 && format == Format::Json).then(|| Ok(bytes::Bytes::from_static(b"[]")));
    futures::stream::iter(chunks.chain(empty))
}

/// Geometry as WKT; for CSV also nested and binary values as their display text, which the CSV
/// writer cannot write otherwise.
pub fn as_text_columns(
    result: &QueryResult,
    flatten_nested: bool,
) -> (SchemaRef, Vec<RecordBatch>) {
    text_columns(result, flatten_nested, true)
}

/// `as_text_columns`, with timestamps left as they are unless `timestamps` (the JSON writer
/// writes them itself, through `TimestampEncoders`).
fn text_columns(
    result: &QueryResult,
    flatten_nested: bool,
    timestamps: bool,
) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = &result.schema;
    let convert: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| {
            is_geometry(f)
                || (timestamps && fast_timestamp_type(f.data_type()))
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
                    (true, false) => {
                        timestamps_as_text(column).unwrap_or_else(|| display_column(column))
                    }
                })
                .collect();
            RecordBatch::try_new(text_schema.clone(), columns)
                .expect("text columns match the text schema")
        })
        .collect();
    (text_schema, batches)
}

/// Timestamps without a time zone or in UTC: written as text here, the way Arrow's own
/// formatter writes them (`2024-03-01T10:00:00`, `.5` → `.500`, `Z` for UTC), but several times
/// faster, which is most of the cost of a JSON result with a time column.
fn fast_timestamp_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(_, tz) if tz.as_deref().is_none_or(|tz| tz == "UTC"))
}

/// A timestamp column's values as i64 with what is needed to write them, if it is a type
/// `fast_timestamp_type` covers and every year is within 0..=9999 (else Arrow's formatter
/// writes it).
pub(super) struct FastTimestamps {
    values: arrow::array::Int64Array,
    per_second: i64,
    utc: bool,
    /// The day (since 1970-01-01) last written and its text.
    last_date: Option<(i64, [u8; 10])>,
}

impl FastTimestamps {
    pub(super) fn of(column: &dyn arrow::array::Array) -> Option<Self> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Int64Type, TimeUnit};
        let DataType::Timestamp(unit, tz) = column.data_type() else {
            return None;
        };
        if !fast_timestamp_type(column.data_type()) {
            return None;
        }
        let per_second: i64 = match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        };
        // The same buffer read as its i64 values.
        let values = arrow::compute::cast(column, &DataType::Int64).ok()?;
        let values = values.as_primitive::<Int64Type>().clone();
        let mut timestamps = Self {
            values,
            per_second,
            utc: tz.is_some(),
            last_date: None,
        };
        let mut scratch = Vec::with_capacity(32);
        let in_range = [
            arrow::compute::min(&timestamps.values),
            arrow::compute::max(&timestamps.values),
        ]
        .into_iter()
        .flatten()
        .all(|value| {
            scratch.clear();
            timestamps.write(value, &mut scratch)
        });
        in_range.then_some(timestamps)
    }

    /// Appends the value as Arrow writes it (`2024-03-01T10:00:00`, `.5` → `.500`, `Z` for UTC);
    /// false, writing nothing, if its year is outside 0..=9999. The date of the previous value is
    /// kept: results are mostly in time order, so most values only need their time of day.
    fn write(&mut self, value: i64, out: &mut Vec<u8>) -> bool {
        use chrono::Datelike;
        const DAY: i64 = 86_400;
        let seconds = value.div_euclid(self.per_second);
        let fraction =
            (value.rem_euclid(self.per_second) * (1_000_000_000 / self.per_second)) as u32;
        let day = seconds.div_euclid(DAY);
        let date = match self.last_date {
            Some((last, date)) if last == day => date,
            _ => {
                let Some(date) = chrono::DateTime::from_timestamp(day * DAY, 0) else {
                    return false;
                };
                let date = date.date_naive();
                if !(0..=9999).contains(&date.year()) {
                    return false;
                }
                let mut text = Vec::with_capacity(10);
                push_digits(&mut text, date.year() as u32, 4);
                text.push(b'-');
                push_digits(&mut text, date.month(), 2);
                text.push(b'-');
                push_digits(&mut text, date.day(), 2);
                let date: [u8; 10] = text.try_into().expect("ten bytes");
                self.last_date = Some((day, date));
                date
            }
        };
        out.extend_from_slice(&date);
        let second_of_day = seconds.rem_euclid(DAY) as u32;
        for (separator, value) in [
            (b'T', second_of_day / 3600),
            (b':', second_of_day / 60 % 60),
            (b':', second_of_day % 60),
        ] {
            out.push(separator);
            push_digits(out, value, 2);
        }
        // Arrow's `%.f`: nothing for whole seconds, else 3, 6 or 9 digits as needed.
        if fraction != 0 {
            out.push(b'.');
            if fraction % 1_000_000 == 0 {
                push_digits(out, fraction / 1_000_000, 3);
            } else if fraction % 1_000 == 0 {
                push_digits(out, fraction / 1_000, 6);
            } else {
                push_digits(out, fraction, 9);
            }
        }
        if self.utc {
            out.push(b'Z');
        }
        true
    }
}

/// The column as text, if `FastTimestamps` covers it.
fn timestamps_as_text(column: &ArrayRef) -> Option<ArrayRef> {
    let mut timestamps = FastTimestamps::of(column.as_ref())?;
    let values = timestamps.values.clone();
    let mut out = arrow::array::StringBuilder::with_capacity(values.len(), values.len() * 24);
    let mut text = Vec::with_capacity(32);
    for value in values.iter() {
        let Some(value) = value else {
            out.append_null();
            continue;
        };
        text.clear();
        timestamps.write(value, &mut text);
        out.append_value(std::str::from_utf8(&text).expect("ASCII"));
    }
    Some(Arc::new(out.finish()))
}

/// Arrow's JSON writer with `FastTimestamps` writing the timestamps it covers, straight into the
/// output (Arrow's own encoder parses its format string for every value).
#[derive(Debug)]
struct TimestampEncoders;

impl arrow::json::EncoderFactory for TimestampEncoders {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a arrow::datatypes::FieldRef,
        array: &'a dyn arrow::array::Array,
        _options: &'a arrow::json::EncoderOptions,
    ) -> Result<Option<arrow::json::writer::NullableEncoder<'a>>, arrow::error::ArrowError> {
        let Some(timestamps) = FastTimestamps::of(array) else {
            return Ok(None);
        };
        let nulls = array.nulls().cloned();
        Ok(Some(arrow::json::writer::NullableEncoder::new(
            Box::new(timestamps),
            nulls,
        )))
    }
}

impl arrow::json::Encoder for FastTimestamps {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.push(b'"');
        let written = self.write(self.values.value(idx), out);
        debug_assert!(written, "the range was checked when the encoder was made");
        out.push(b'"');
    }
}

/// `n` in decimal, zero-padded to `width` digits (at most 9).
fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buffer = [b'0'; 9];
    let mut n = n;
    for digit in buffer[..width].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buffer[..width]);
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
pub(super) mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> Result<Format, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_str(value).unwrap());
        Format::negotiate(None, &headers)
    }

    /// What Arrow's own JSON writer writes for the batch, with nulls written out.
    fn arrow_json(batch: &RecordBatch) -> Vec<u8> {
        arrow_writes(&[batch.clone()], Format::Json)
    }

    /// What Arrow's own JSON or NDJSON writer writes for the batches, with nulls written out.
    pub(in crate::api) fn arrow_writes(batches: &[RecordBatch], format: Format) -> Vec<u8> {
        let mut out = Vec::new();
        let builder = arrow::json::WriterBuilder::new().with_explicit_nulls(true);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        if format == Format::Json {
            let mut writer = builder.build::<_, arrow::json::writer::JsonArray>(&mut out);
            writer.write_batches(&refs).unwrap();
            writer.finish().unwrap();
        } else {
            let mut writer = builder.build::<_, arrow::json::writer::LineDelimited>(&mut out);
            writer.write_batches(&refs).unwrap();
            writer.finish().unwrap();
        }
        out
    }

    /// JSON and NDJSON bodies are byte for byte what Arrow's own writer writes, for the types a
    /// query returns, nulls, strings that need escaping, several batches, and no rows at all.
    #[test]
    fn json_is_what_arrow_writes() {
        use arrow::array::{
            BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, ListArray,
            TimestampMicrosecondArray, UInt8Array,
        };
        use arrow::datatypes::Int32Type;
        let batch = RecordBatch::try_from_iter([
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])) as ArrayRef,
            ),
            (
                "u",
                Arc::new(UInt8Array::from(vec![Some(255), Some(0), None])),
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(1.5), Some(1.0 / 3.0), None])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("a \"q\" \\ \n \u{1} città"),
                    None,
                    Some(""),
                ])),
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(19_000), None, Some(-1)])),
            ),
            (
                "l",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                    Some(vec![Some(1), None]),
                    None,
                    Some(vec![]),
                ])),
            ),
            (
                "dec",
                Arc::new(
                    Decimal128Array::from(vec![Some(12_345), None, Some(-5)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            (
                "t",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_709_287_200_500_000),
                        None,
                        Some(0),
                    ])
                    .with_timezone("UTC"),
                ),
            ),
        ])
        .unwrap();
        for batches in [
            vec![batch.clone()],
            vec![batch.clone(), batch.slice(1, 2), batch.slice(0, 0)],
            vec![],
        ] {
            let result = QueryResult {
                schema: batch.schema(),
                batches: batches.clone(),
            };
            for format in [Format::Json, Format::Ndjson] {
                let mut expected = String::from_utf8(arrow_writes(&batches, format)).unwrap();
                if expected.is_empty() && format == Format::Json {
                    expected = "[]".into();
                }
                assert_eq!(
                    String::from_utf8(encode(&result, format).unwrap()).unwrap(),
                    expected,
                    "{} batches, {format:?}",
                    batches.len()
                );
            }
        }
    }

    /// The fast path writes exactly what Arrow's formatter writes, for every unit, with and
    /// without UTC, before 1970, with each length of fraction, and nulls.
    #[test]
    fn timestamps_as_arrow_writes_them() {
        use arrow::array::{
            Array, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
            TimestampSecondArray,
        };
        let nanos: Vec<Option<i64>> = vec![
            Some(0),
            Some(1_709_287_200_000_000_000),
            Some(1_709_290_800_000_000_000), // an hour later, the same day
            Some(1_709_287_200_000_000_000), // back again
            Some(1_709_287_200_500_000_000),
            Some(1_709_287_200_123_456_000),
            Some(1_709_287_200_123_456_789),
            Some(-1_000),
            Some(-2_000_000_000), // the same day, 1969-12-31T23:59:58
            Some(-86_400_000_000_001),
            Some(951_782_400_000_000_000), // 2000-02-29
            Some(i64::MAX),                // 2262-04-11T23:47:16.854775807
            None,
        ];
        for tz in [None, Some("UTC")] {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(
                    TimestampSecondArray::from(
                        nanos
                            .iter()
                            .map(|v| v.map(|n| n.div_euclid(1_000_000_000)))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone_opt(tz),
                ),
                Arc::new(
                    TimestampMillisecondArray::from(
                        nanos
                            .iter()
                            .map(|v| v.map(|n| n.div_euclid(1_000_000)))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone_opt(tz),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        nanos
                            .iter()
                            .map(|v| v.map(|n| n.div_euclid(1_000)))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone_opt(tz),
                ),
                Arc::new(TimestampNanosecondArray::from(nanos.clone()).with_timezone_opt(tz)),
            ];
            for column in columns {
                // The whole JSON body is what Arrow's JSON writer writes for the column as it is.
                let batch = RecordBatch::try_from_iter([("t", column.clone())]).unwrap();
                let direct = arrow_json(&batch);
                let result = QueryResult {
                    schema: batch.schema(),
                    batches: vec![batch],
                };
                assert_eq!(
                    String::from_utf8(encode(&result, Format::Json).unwrap()).unwrap(),
                    String::from_utf8(direct).unwrap()
                );
                let fast = timestamps_as_text(&column).expect("covered type");
                let arrow = display_column(&column);
                assert_eq!(fast.len(), arrow.len());
                let fast = fast.as_any().downcast_ref::<StringArray>().unwrap();
                let arrow = arrow.as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..fast.len() {
                    assert_eq!(
                        fast.is_null(i),
                        arrow.is_null(i),
                        "{:?} row {i}",
                        column.data_type()
                    );
                    if !fast.is_null(i) {
                        assert_eq!(
                            fast.value(i),
                            arrow.value(i),
                            "{:?} row {i}",
                            column.data_type()
                        );
                    }
                }
            }
        }
        // Other time zones and out-of-range years are left to Arrow, in JSON too.
        let rome: ArrayRef =
            Arc::new(TimestampSecondArray::from(vec![0]).with_timezone("Europe/Rome"));
        assert!(timestamps_as_text(&rome).is_none());
        let far: ArrayRef = Arc::new(TimestampSecondArray::from(vec![
            Some(0),
            None,
            Some(400_000_000_000),
        ]));
        assert!(timestamps_as_text(&far).is_none());
        for column in [rome, far] {
            let batch = RecordBatch::try_from_iter([("t", column)]).unwrap();
            let direct = arrow_json(&batch);
            let result = QueryResult {
                schema: batch.schema(),
                batches: vec![batch],
            };
            assert_eq!(encode(&result, Format::Json).unwrap(), direct);
        }
    }

    /// A streamed body is byte for byte the encoded one, for one row, chunk boundaries and none.
    #[test]
    fn streamed_bodies_equal_encoded_ones() {
        use arrow::array::Int64Array;
        use futures::StreamExt;
        for rows in [0usize, 1, CHUNK_ROWS, CHUNK_ROWS + 1, 3 * CHUNK_ROWS + 7] {
            let batch = RecordBatch::try_from_iter([(
                "n",
                Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
            )])
            .unwrap();
            // Two batches, so slices also end where a batch ends.
            let result = QueryResult {
                schema: batch.schema(),
                batches: vec![batch.clone(), batch],
            };
            for format in [Format::Json, Format::Ndjson] {
                let streamed: Vec<u8> = futures::executor::block_on(
                    encode_stream(result.clone(), format)
                        .map(|chunk| chunk.unwrap().to_vec())
                        .concat(),
                );
                let whole = String::from_utf8(encode(&result, format).unwrap()).unwrap();
                assert_eq!(
                    String::from_utf8(streamed).unwrap(),
                    whole,
                    "{rows} rows, {format:?}"
                );
            }
        }
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
