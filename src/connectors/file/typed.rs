//! Text cells to typed Arrow columns. A declared type is enforced (a value that does not fit
//! rejects its row, with the reason); an undeclared column gets the narrowest type every value
//! fits, looking at all values, not a sample.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, NaiveDateTime};

use super::config::ColumnType;
use super::csv::{TextRow, TextTable};
use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};

/// How numbers are written in the file.
#[derive(Debug, Clone, Copy)]
pub struct NumberFormat {
    pub decimal: char,
    pub thousands: Option<char>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(i32),
    Timestamp(i64),
}

/// Parse one cell as a type; `Err` says why not, in words for the person fixing the file.
fn parse_as(kind: ColumnType, text: &str, format: NumberFormat) -> Result<Option<Value>, String> {
    match kind {
        ColumnType::Text => Ok(None),
        ColumnType::Int => parse_int(text, format)
            .map(Value::Int)
            .map(Some)
            .ok_or_else(|| format!("`{text}` is not an integer")),
        ColumnType::Float => parse_float(text, format)
            .map(Value::Float)
            .map(Some)
            .ok_or_else(|| format!("`{text}` is not a number")),
        ColumnType::Bool => parse_bool(text)
            .map(Value::Bool)
            .map(Some)
            .ok_or_else(|| format!("`{text}` is not true/false")),
        ColumnType::Date => parse_date(text).map(Value::Date).map(Some).ok_or_else(|| {
            format!("`{text}` is not a date (YYYY-MM-DD, DD/MM/YYYY or DD-MM-YYYY)")
        }),
        ColumnType::Timestamp => parse_timestamp(text)
            .map(Value::Timestamp)
            .map(Some)
            .ok_or_else(|| {
                format!("`{text}` is not a timestamp (RFC 3339 or YYYY-MM-DD HH:MM:SS)")
            }),
    }
}

/// Digits with an optional sign, and thousands separators only where they group by three.
fn strip_thousands(text: &str, thousands: Option<char>) -> Option<String> {
    let Some(sep) = thousands else {
        return Some(text.to_string());
    };
    if !text.contains(sep) {
        return Some(text.to_string());
    }
    let (integer, rest) =
        match text.find(|c: char| !(c.is_ascii_digit() || c == sep || c == '-' || c == '+')) {
            Some(i) => text.split_at(i),
            None => (text, ""),
        };
    let unsigned = integer.trim_start_matches(['-', '+']);
    let mut groups = unsigned.split(sep);
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 || !groups.all(|g| g.len() == 3) {
        return None;
    }
    Some(format!("{}{}", integer.replace(sep, ""), rest))
}

fn parse_int(text: &str, format: NumberFormat) -> Option<i64> {
    strip_thousands(text, format.thousands)?.parse().ok()
}

fn parse_float(text: &str, format: NumberFormat) -> Option<f64> {
    let plain = strip_thousands(text, format.thousands)?;
    let plain = if format.decimal == ',' {
        if plain.contains('.') {
            return None;
        }
        plain.replace(',', ".")
    } else {
        if plain.contains(',') {
            return None;
        }
        plain
    };
    let digits = plain.trim_start_matches(['-', '+']);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None; // refuse `inf`, `NaN`: no open-data file means them
    }
    plain.parse().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%d/%m/%Y"))
        .or_else(|_| NaiveDate::parse_from_str(text, "%d-%m-%Y"))
        .ok()?;
    i32::try_from((date - EPOCH).num_days()).ok()
}

fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%d/%m/%Y %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .map(|t| t.and_utc().timestamp_micros())
}

/// A code such as `069001` or `01`: its leading zero matters, so inference keeps it as text
/// (a declared `int` still reads it as a number).
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() > 1 && bytes[0] == b'0' && bytes.iter().all(u8::is_ascii_digit)
}

/// What statistical tables write for a number that is missing or withheld ("-", "..", "n.d.").
/// In a column of numbers they are read as NULL, with a warning that counts them.
fn is_placeholder(text: &str) -> bool {
    matches!(
        text.trim().to_lowercase().as_str(),
        "-" | "–"
            | "—"
            | "."
            | ".."
            | "..."
            | "n.d."
            | "n.d"
            | "nd"
            | "n.a."
            | "n.a"
            | "n/a"
            | "na"
    )
}

fn is_number(kind: ColumnType) -> bool {
    matches!(kind, ColumnType::Int | ColumnType::Float)
}

/// What a column's values seen so far allow it to be. Inference is fed one value at a time, so
/// a file is typed over every value without holding them: the narrowest type every non-null
/// value fits, text when none other does. Placeholders ("-", "n.d.", …) among numbers do not
/// make a column text.
#[derive(Debug, Clone)]
pub struct Inference {
    /// The types every value so far fits, narrowest first.
    candidates: Vec<ColumnType>,
    /// A value other than a placeholder was seen.
    any: bool,
    /// A value fits no other type, or is a code: the column is text whatever follows.
    text: bool,
    placeholders: bool,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            candidates: vec![
                ColumnType::Int,
                ColumnType::Float,
                ColumnType::Bool,
                ColumnType::Date,
                ColumnType::Timestamp,
            ],
            any: false,
            text: false,
            placeholders: false,
        }
    }
}

impl Inference {
    /// Take one non-null value into account.
    pub fn see(&mut self, value: &str, format: NumberFormat) {
        if self.text {
            return;
        }
        if is_placeholder(value) {
            self.placeholders = true;
            return;
        }
        self.any = true;
        if is_code(value) {
            self.text = true;
            return;
        }
        self.candidates
            .retain(|kind| parse_as(*kind, value, format).is_ok());
        self.text = self.candidates.is_empty();
    }

    /// The type of the values seen.
    pub fn kind(&self) -> ColumnType {
        let kind = if self.text || !self.any {
            ColumnType::Text
        } else {
            self.candidates[0]
        };
        if self.placeholders && !is_number(kind) {
            // Placeholders alone, or among text: the column is what it says.
            return ColumnType::Text;
        }
        kind
    }
}

#[cfg(test)]
fn infer(values: impl Iterator<Item = String>, format: NumberFormat) -> ColumnType {
    let mut inference = Inference::default();
    for value in values {
        inference.see(&value, format);
    }
    inference.kind()
}

/// Each column's type: declared, or else inferred.
pub fn kinds(
    columns: &[String],
    declared: &BTreeMap<String, ColumnType>,
    inferred: &[Inference],
) -> Vec<ColumnType> {
    columns
        .iter()
        .zip(inferred)
        .map(|(name, inference)| {
            declared
                .get(name)
                .copied()
                .unwrap_or_else(|| inference.kind())
        })
        .collect()
}

fn data_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Text => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::Text => Builder::Text(StringBuilder::new()),
            ColumnType::Int => Builder::Int(Int64Builder::new()),
            ColumnType::Float => Builder::Float(Float64Builder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Date => Builder::Date(Date32Builder::new()),
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
        }
    }

    fn append(&mut self, text: Option<&str>, value: Option<Value>) {
        match (self, value) {
            (Builder::Text(b), _) => b.append_option(text),
            (Builder::Int(b), Some(Value::Int(v))) => b.append_value(v),
            (Builder::Float(b), Some(Value::Float(v))) => b.append_value(v),
            (Builder::Bool(b), Some(Value::Bool(v))) => b.append_value(v),
            (Builder::Date(b), Some(Value::Date(v))) => b.append_value(v),
            (Builder::Timestamp(b), Some(Value::Timestamp(v))) => b.append_value(v),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Date(b), _) => b.append_null(),
            (Builder::Timestamp(b), _) => b.append_null(),
        }
    }

    /// The values appended since the last finish.
    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Build one record batch. `columns` are the final names (already normalised and renamed), in
/// header order; `declared` maps some of them to enforced types.
pub fn to_record_batch(
    source: &str,
    table: TextTable,
    columns: &[String],
    declared: &BTreeMap<String, ColumnType>,
    format: NumberFormat,
    delimiter: char,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let mut inferred = vec![Inference::default(); columns.len()];
    for (i, inference) in inferred.iter_mut().enumerate() {
        if declared.contains_key(&columns[i]) {
            continue;
        }
        for value in table.rows.iter().filter_map(|r| r.cells[i].as_deref()) {
            inference.see(value, format);
        }
    }
    let kinds = kinds(columns, declared, &inferred);
    let mut typer = Typer::new(source, columns, kinds, format, delimiter);
    let rejected = table
        .rows
        .iter()
        .filter_map(|row| typer.push(row))
        .collect();
    let batch = typer.finish_batch()?;
    typer.warn_placeholders();
    Ok((batch, rejected))
}

/// Rows of text cells to typed record batches, one batch at a time, the columns' types decided
/// beforehand (declared, or inferred over every value). A value that does not fit its column's
/// type rejects its row, with the reason.
pub struct Typer {
    source: String,
    columns: Vec<String>,
    kinds: Vec<ColumnType>,
    format: NumberFormat,
    delimiter: char,
    schema: SchemaRef,
    builders: Vec<Builder>,
    rows: usize,
    /// Per column: the placeholders read as NULL, by token.
    placeholders: Vec<BTreeMap<String, usize>>,
    parsed: Vec<Option<Value>>,
}

impl Typer {
    pub fn new(
        source: &str,
        columns: &[String],
        kinds: Vec<ColumnType>,
        format: NumberFormat,
        delimiter: char,
    ) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .zip(&kinds)
            .map(|(name, kind)| Field::new(name, data_type(*kind), true))
            .collect();
        Self {
            source: source.to_string(),
            columns: columns.to_vec(),
            builders: kinds.iter().map(|k| Builder::new(*k)).collect(),
            placeholders: vec![BTreeMap::new(); columns.len()],
            parsed: Vec::with_capacity(columns.len()),
            kinds,
            format,
            delimiter,
            schema: Arc::new(Schema::new(fields)),
            rows: 0,
        }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows taken since the last batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Take one row (its cells in the columns' order), or reject it saying why.
    pub fn push(&mut self, row: &TextRow) -> Option<RejectedRecord> {
        self.parsed.clear();
        let mut problem = None;
        for (i, cell) in row.cells.iter().enumerate() {
            let value = match cell {
                Some(text) if is_number(self.kinds[i]) && is_placeholder(text) => {
                    *self.placeholders[i]
                        .entry(text.trim().to_string())
                        .or_default() += 1;
                    Ok(None)
                }
                Some(text) => parse_as(self.kinds[i], text, self.format),
                None => Ok(None),
            };
            match value {
                Ok(value) => self.parsed.push(value),
                Err(reason) => {
                    problem = Some(format!("column `{}`: {reason}", self.columns[i]));
                    break;
                }
            }
        }
        if let Some(reason) = problem {
            let raw = row
                .cells
                .iter()
                .map(|c| c.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&self.delimiter.to_string());
            return Some(RejectedRecord {
                time: None,
                source: self.source.clone(),
                line: Some(row.line),
                reason,
                raw: truncate_raw(&raw),
            });
        }
        for (i, value) in self.parsed.drain(..).enumerate() {
            self.builders[i].append(row.cells[i].as_deref(), value);
        }
        self.rows += 1;
        None
    }

    /// The rows taken since the last batch, as a batch.
    pub fn finish_batch(&mut self) -> Result<RecordBatch, ConnectorError> {
        self.rows = 0;
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| ConnectorError::Parse {
            path: self.source.as_str().into(),
            message: e.to_string(),
        })
    }

    /// Warn, once the rows are all taken, of the placeholders read as NULL in each column.
    pub fn warn_placeholders(&self) {
        for (column, tokens) in self.columns.iter().zip(&self.placeholders) {
            if let Some(text) = placeholder_warning(column, tokens) {
                tracing::warn!(source = %self.source, column = %column, "{text}");
            }
        }
    }
}

/// "column `residenti`: 76 placeholders read as NULL (\"-\" 70, \"n.d.\" 6)", or nothing.
fn placeholder_warning(column: &str, tokens: &BTreeMap<String, usize>) -> Option<String> {
    let total: usize = tokens.values().sum();
    if total == 0 {
        return None;
    }
    let each: Vec<String> = tokens.iter().map(|(t, n)| format!("{t:?} {n}")).collect();
    Some(format!(
        "column `{column}`: {total} placeholders among its numbers read as NULL ({}); declare \
         the column `text` in `schema` to keep them",
        each.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_among_numbers_are_null_and_counted() {
        let values = ["12", "-", "7", "n.d.", "-", ""].map(String::from);
        assert_eq!(
            infer(values.iter().filter(|v| !v.is_empty()).cloned(), PLAIN),
            ColumnType::Int
        );
        assert_eq!(
            infer(["-", "n.d."].map(String::from).into_iter(), PLAIN),
            ColumnType::Text
        );
        assert_eq!(
            infer(["a", "-"].map(String::from).into_iter(), PLAIN),
            ColumnType::Text
        );
        let table = TextTable {
            header: vec!["residenti".into()],
            rows: values
                .iter()
                .enumerate()
                .map(|(i, v)| super::super::csv::TextRow {
                    line: i as u64 + 2,
                    cells: vec![(!v.is_empty()).then(|| v.clone())],
                })
                .collect(),
        };
        let (batch, rejected) = to_record_batch(
            "t.csv",
            table,
            &["residenti".into()],
            &BTreeMap::new(),
            PLAIN,
            ';',
        )
        .unwrap();
        assert!(rejected.is_empty());
        let residents = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(
            residents.iter().collect::<Vec<_>>(),
            [Some(12), None, Some(7), None, None, None]
        );
        let tokens = BTreeMap::from([("-".to_string(), 2), ("n.d.".to_string(), 1)]);
        assert_eq!(
            placeholder_warning("residenti", &tokens).unwrap(),
            "column `residenti`: 3 placeholders among its numbers read as NULL (\"-\" 2, \"n.d.\" 1); declare the column `text` in `schema` to keep them"
        );
    }

    const ITALIAN: NumberFormat = NumberFormat {
        decimal: ',',
        thousands: Some('.'),
    };
    const PLAIN: NumberFormat = NumberFormat {
        decimal: '.',
        thousands: None,
    };

    #[test]
    fn italian_numbers() {
        assert_eq!(
            parse_float("4402575,4660000000", ITALIAN),
            Some(4402575.466)
        );
        assert_eq!(parse_int("1.948", ITALIAN), Some(1948));
        assert_eq!(parse_int("1.234.567", ITALIAN), Some(1234567));
        assert_eq!(parse_float("-1.234,5", ITALIAN), Some(-1234.5));
        assert_eq!(parse_int("21.77", ITALIAN), None, "groups of three only");
        assert_eq!(
            parse_float("3.9", ITALIAN),
            None,
            "a decimal point is not an Italian decimal"
        );
        assert_eq!(parse_float("3.9", PLAIN), Some(3.9));
        assert_eq!(parse_float("nan", PLAIN), None);
    }

    #[test]
    fn codes_with_leading_zeros_stay_text() {
        let values = ["069001", "037006"].map(String::from);
        assert_eq!(infer(values.into_iter(), PLAIN), ColumnType::Text);
        let values = ["0", "12", "-3"].map(String::from);
        assert_eq!(infer(values.into_iter(), PLAIN), ColumnType::Int);
        let values = ["0.5", "03/01/2024"].map(String::from);
        assert_eq!(infer(values[..1].iter().cloned(), PLAIN), ColumnType::Float);
        assert_eq!(infer(values[1..].iter().cloned(), PLAIN), ColumnType::Date);
        assert_eq!(
            parse_int("01", PLAIN),
            Some(1),
            "a declared int reads a code as its number"
        );
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let infer_of = |v: &[&str]| infer(v.iter().map(|s| s.to_string()), PLAIN);
        assert_eq!(infer_of(&["1", "2.5"]), ColumnType::Float);
        assert_eq!(infer_of(&["2023-05-31", "2024-06-20"]), ColumnType::Date);
        assert_eq!(infer_of(&["2024-06-20 10:00:00"]), ColumnType::Timestamp);
        assert_eq!(infer_of(&["true", "FALSE"]), ColumnType::Bool);
        assert_eq!(infer_of(&["1", "x"]), ColumnType::Text);
        assert_eq!(infer_of(&[]), ColumnType::Text);
    }
}
