//! From one MQTT message to rows of its table: topic levels and payload fields (a JSON mapping
//! or SenML records) to typed cells, or the reason the message is rejected.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::config::{FieldMapping, FieldType, MqttTableConfig, PayloadFormat};
use super::senml;
use super::topic::TopicPattern;

/// Why a message was rejected, as a category (a column of the rejected table, and a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    NotJson,
    NotSenml,
    MissingField,
    WrongType,
    UnknownSensor,
    Topic,
    /// Larger than `max_payload`: acknowledged and recorded with its first bytes, never parsed.
    TooLarge,
    /// A reading with the same sensor, metric and time as a stored one, but other values.
    Conflict,
    /// A time outside the table's plausible window (`max_age` before arrival, `max_ahead` after).
    ImplausibleTime,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::NotJson => "not_json",
            RejectKind::NotSenml => "not_senml",
            RejectKind::MissingField => "missing_field",
            RejectKind::WrongType => "wrong_type",
            RejectKind::UnknownSensor => "unknown_sensor",
            RejectKind::Topic => "topic",
            RejectKind::TooLarge => "too_large",
            RejectKind::Conflict => "conflict",
            RejectKind::ImplausibleTime => "implausible_time",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Time(i64),
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn data_type(kind: FieldType) -> DataType {
    match kind {
        FieldType::Text => DataType::Utf8,
        FieldType::Int => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Timestamp => utc(),
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone)]
enum Source {
    /// The n-th captured topic level.
    Topic(usize),
    Field(FieldMapping),
    /// The reading's time: the `ts` field when present, else the arrival time.
    Time(Option<FieldMapping>),
    Arrival,
    Senml(SenmlColumn),
}

#[derive(Debug, Clone, Copy)]
enum SenmlColumn {
    SensorId,
    Metric,
    /// The resolved name of RFC 8428 (base name + name).
    Name,
    Value,
    Text,
    Bool,
    Data,
    Unit,
}

/// The columns of a table and how to fill them from a message.
#[derive(Debug, Clone)]
pub struct Layout {
    pub table: String,
    format: PayloadFormat,
    pattern: Option<TopicPattern>,
    columns: Vec<(Field, Source)>,
    schema: SchemaRef,
    /// Index of `sensor_id`, checked against the registry.
    pub sensor_column: usize,
    /// Index of `ts`, checked against the plausible window.
    time_column: usize,
    /// How far before its arrival a reading's time may be, in microseconds.
    max_age: i64,
    /// How far after its arrival a reading's time may be, in microseconds.
    max_ahead: i64,
}

impl Layout {
    pub fn new(config: &MqttTableConfig) -> Result<Self, String> {
        let pattern = config
            .topic_pattern
            .as_deref()
            .map(TopicPattern::parse)
            .transpose()?;
        let captures = pattern
            .as_ref()
            .map(TopicPattern::captures)
            .unwrap_or_default();
        let mut columns: Vec<(Field, Source)> = Vec::new();
        match config.format {
            PayloadFormat::Json => {
                for (i, name) in captures.iter().enumerate() {
                    columns.push((Field::new(name, DataType::Utf8, false), Source::Topic(i)));
                }
                // In name order: TOML tables do not keep the order they were written in.
                let mut fields: Vec<(&String, &FieldMapping)> = config.fields.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                for (name, mapping) in fields {
                    if name == "ts" {
                        continue;
                    }
                    columns.push((
                        Field::new(name, data_type(mapping.kind), mapping.optional),
                        Source::Field(mapping.clone()),
                    ));
                }
                columns.push((
                    Field::new("ts", utc(), false),
                    Source::Time(config.fields.get("ts").cloned()),
                ));
            }
            PayloadFormat::Senml => {
                for (i, name) in captures.iter().enumerate() {
                    if name != "sensor_id" && name != "metric" {
                        columns.push((Field::new(name, DataType::Utf8, false), Source::Topic(i)));
                    }
                }
                columns.push((
                    Field::new("sensor_id", DataType::Utf8, false),
                    Source::Senml(SenmlColumn::SensorId),
                ));
                columns.push((
                    Field::new("metric", DataType::Utf8, false),
                    Source::Senml(SenmlColumn::Metric),
                ));
                columns.push((
                    Field::new("name", DataType::Utf8, false),
                    Source::Senml(SenmlColumn::Name),
                ));
                columns.push((
                    Field::new("value", DataType::Float64, true),
                    Source::Senml(SenmlColumn::Value),
                ));
                columns.push((
                    Field::new("value_text", DataType::Utf8, true),
                    Source::Senml(SenmlColumn::Text),
                ));
                columns.push((
                    Field::new("value_bool", DataType::Boolean, true),
                    Source::Senml(SenmlColumn::Bool),
                ));
                columns.push((
                    Field::new("value_data", DataType::Utf8, true),
                    Source::Senml(SenmlColumn::Data),
                ));
                columns.push((
                    Field::new("unit", DataType::Utf8, true),
                    Source::Senml(SenmlColumn::Unit),
                ));
                columns.push((Field::new("ts", utc(), false), Source::Time(None)));
            }
        }
        columns.push((Field::new("received_at", utc(), false), Source::Arrival));
        let sensor_column = columns
            .iter()
            .position(|(f, _)| f.name() == "sensor_id")
            .ok_or("no `sensor_id` column")?;
        let time_column = columns
            .iter()
            .position(|(f, _)| f.name() == "ts")
            .ok_or("no `ts` column")?;
        let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let schema = Arc::new(Schema::new(
            columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        ));
        Ok(Self {
            table: config.name.clone(),
            format: config.format,
            pattern,
            columns,
            schema,
            sensor_column,
            time_column,
            max_age: micros(config.max_age),
            max_ahead: micros(config.max_ahead),
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The columns that identify a reading: a redelivered message repeats them.
    pub fn dedupe_columns(&self) -> Vec<String> {
        ["sensor_id", "metric", "ts"]
            .iter()
            .filter(|c| self.schema.index_of(c).is_ok())
            .map(|c| c.to_string())
            .collect()
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.schema.index_of(name).is_ok()
    }

    /// The rows of one message, or why it is rejected.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        arrival_micros: i64,
    ) -> Result<Vec<Vec<Cell>>, Rejection> {
        let rows = self.decode_rows(topic, payload, arrival_micros)?;
        for (index, row) in rows.iter().enumerate() {
            if let Cell::Time(time) = row[self.time_column] {
                let earliest = arrival_micros.saturating_sub(self.max_age);
                let latest = arrival_micros.saturating_add(self.max_ahead);
                if time < earliest || time > latest {
                    let at = chrono::DateTime::from_timestamp_micros(time)
                        .map_or_else(|| format!("{time} µs"), |t| t.to_rfc3339());
                    let arrived = chrono::DateTime::from_timestamp_micros(arrival_micros)
                        .map_or_else(String::new, |t| t.to_rfc3339());
                    return Err(Rejection {
                        kind: RejectKind::ImplausibleTime,
                        reason: format!(
                            "reading {index}: time {at} is outside the plausible window \
                             (max_age {} before, max_ahead {} after the arrival at {arrived})",
                            humantime::format_duration(std::time::Duration::from_micros(
                                self.max_age as u64
                            )),
                            humantime::format_duration(std::time::Duration::from_micros(
                                self.max_ahead as u64
                            )),
                        ),
                    });
                }
            }
        }
        Ok(rows)
    }

    fn decode_rows(
        &self,
        topic: &str,
        payload: &[u8],
        arrival_micros: i64,
    ) -> Result<Vec<Vec<Cell>>, Rejection> {
        let levels = match &self.pattern {
            Some(pattern) => pattern.extract(topic).ok_or_else(|| Rejection {
                kind: RejectKind::Topic,
                reason: format!(
                    "topic `{topic}` does not fit the pattern `{}`",
                    pattern.text()
                ),
            })?,
            None => Vec::new(),
        };
        match self.format {
            PayloadFormat::Json => {
                let document: Value = serde_json::from_slice(payload).map_err(|e| Rejection {
                    kind: RejectKind::NotJson,
                    reason: format!("not JSON: {e}"),
                })?;
                if !document.is_object() {
                    return Err(Rejection {
                        kind: RejectKind::WrongType,
                        reason: format!("the payload is {}, not a JSON object", kind_of(&document)),
                    });
                }
                let row = self
                    .columns
                    .iter()
                    .map(|(field, source)| match source {
                        Source::Topic(i) => Ok(Cell::Text(levels[*i].to_string())),
                        Source::Field(mapping) => read_field(&document, field.name(), mapping),
                        Source::Time(Some(mapping)) => {
                            match read_field(&document, "ts", mapping)? {
                                Cell::Null => Ok(Cell::Time(arrival_micros)),
                                time => Ok(time),
                            }
                        }
                        Source::Time(None) | Source::Arrival => Ok(Cell::Time(arrival_micros)),
                        Source::Senml(_) => unreachable!("SenML columns only in SenML tables"),
                    })
                    .collect::<Result<Vec<Cell>, Rejection>>()?;
                Ok(vec![row])
            }
            PayloadFormat::Senml => {
                let records = senml::resolve(payload, arrival_micros)?;
                let topic_sensor = self
                    .pattern
                    .as_ref()
                    .and_then(|p| p.captures().iter().position(|c| c == "sensor_id"))
                    .map(|i| levels[i]);
                let topic_metric = self
                    .pattern
                    .as_ref()
                    .and_then(|p| p.captures().iter().position(|c| c == "metric"))
                    .map(|i| levels[i]);
                records
                    .into_iter()
                    .enumerate()
                    .map(|(index, record)| {
                        self.senml_row(
                            index,
                            record,
                            &levels,
                            topic_sensor,
                            topic_metric,
                            arrival_micros,
                        )
                    })
                    .collect()
            }
        }
    }

    fn senml_row(
        &self,
        index: usize,
        record: senml::SenmlRecord,
        levels: &[&str],
        topic_sensor: Option<&str>,
        topic_metric: Option<&str>,
        arrival_micros: i64,
    ) -> Result<Vec<Cell>, Rejection> {
        // The sensor is the base name without its trailing separator, else the topic's
        // `{sensor_id}`; the metric is the record's name, else the topic's `{metric}`.
        let from_base = record
            .base_name
            .as_deref()
            .map(|b| b.trim_end_matches([':', '/', '.']))
            .filter(|b| !b.is_empty());
        let sensor = match (from_base, topic_sensor) {
            (Some(base), Some(topic)) if base != topic => {
                return Err(Rejection {
                    kind: RejectKind::Topic,
                    reason: format!(
                        "SenML record {index}: base name `{base}` is not the topic's sensor `{topic}`"
                    ),
                });
            }
            (Some(sensor), _) | (None, Some(sensor)) => sensor.to_string(),
            (None, None) => {
                return Err(Rejection {
                    kind: RejectKind::MissingField,
                    reason: format!(
                        "SenML record {index}: no sensor id (no base name `bn`, no `{{sensor_id}}` in the topic)"
                    ),
                });
            }
        };
        // A record without a name of its own is named by its base name alone (RFC 8428 §4.5.1):
        // its metric is then the topic's `{metric}`, else empty.
        let metric = if !record.name.is_empty() {
            record.name.clone()
        } else {
            topic_metric.unwrap_or_default().to_string()
        };
        let name = record.resolved_name();
        Ok(self
            .columns
            .iter()
            .map(|(_, source)| match source {
                Source::Topic(i) => Cell::Text(levels[*i].to_string()),
                Source::Senml(SenmlColumn::SensorId) => Cell::Text(sensor.clone()),
                Source::Senml(SenmlColumn::Metric) => Cell::Text(metric.clone()),
                Source::Senml(SenmlColumn::Name) => Cell::Text(name.clone()),
                Source::Senml(SenmlColumn::Data) => {
                    record.data.clone().map_or(Cell::Null, Cell::Text)
                }
                Source::Senml(SenmlColumn::Value) => record.value.map_or(Cell::Null, Cell::Float),
                Source::Senml(SenmlColumn::Text) => {
                    record.text.clone().map_or(Cell::Null, Cell::Text)
                }
                Source::Senml(SenmlColumn::Bool) => record.boolean.map_or(Cell::Null, Cell::Bool),
                Source::Senml(SenmlColumn::Unit) => {
                    record.unit.clone().map_or(Cell::Null, Cell::Text)
                }
                Source::Time(_) => Cell::Time(record.time_micros),
                Source::Arrival => Cell::Time(arrival_micros),
                Source::Field(_) => unreachable!("JSON fields only in JSON tables"),
            })
            .collect())
    }

    /// A record batch of decoded rows.
    pub fn batch(&self, rows: &[Vec<Cell>]) -> Result<RecordBatch, String> {
        batch(&self.schema, rows)
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `Value::pointer` (RFC 6901) without its allocations: it unescapes every token into a new
/// string, on every reading. Tokens without `~` need no unescaping and are looked up as they are.
fn pointer<'v>(document: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() {
        return Some(document);
    }
    if pointer.contains('~') {
        return document.pointer(pointer);
    }
    pointer
        .strip_prefix('/')?
        .split('/')
        .try_fold(document, |target, token| match target {
            Value::Object(map) => map.get(token),
            Value::Array(list) => {
                // As serde_json reads an index: no sign, no leading zero.
                let canonical =
                    !token.starts_with('+') && (token == "0" || !token.starts_with('0'));
                canonical
                    .then(|| token.parse::<usize>().ok())
                    .flatten()
                    .and_then(|i| list.get(i))
            }
            _ => None,
        })
}

fn read_field(document: &Value, column: &str, mapping: &FieldMapping) -> Result<Cell, Rejection> {
    let value = pointer(document, &mapping.pointer).filter(|v| !v.is_null());
    let Some(value) = value else {
        if mapping.optional {
            return Ok(Cell::Null);
        }
        return Err(Rejection {
            kind: RejectKind::MissingField,
            reason: format!("missing field `{column}` ({})", mapping.pointer),
        });
    };
    let wrong = |expected: &str| Rejection {
        kind: RejectKind::WrongType,
        reason: format!(
            "field `{column}` ({}): expected {expected}, found {} {}",
            mapping.pointer,
            kind_of(value),
            crate::connectors::truncate_raw(&value.to_string())
        ),
    };
    match mapping.kind {
        FieldType::Text => value
            .as_str()
            .map(|s| Cell::Text(s.to_string()))
            .ok_or_else(|| wrong("a string")),
        FieldType::Int => value
            .as_i64()
            .map(Cell::Int)
            .ok_or_else(|| wrong("an integer")),
        FieldType::Float => value
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Cell::Float)
            .ok_or_else(|| wrong("a number")),
        FieldType::Bool => value
            .as_bool()
            .map(Cell::Bool)
            .ok_or_else(|| wrong("true or false")),
        FieldType::Timestamp => match value {
            Value::Number(n) => n
                .as_f64()
                .filter(|s| s.is_finite() && s.abs() < 1e11)
                .map(|seconds| Cell::Time((seconds * 1e6).round() as i64))
                .ok_or_else(|| wrong("seconds since the epoch")),
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Cell::Time(t.timestamp_micros()))
                .map_err(|_| {
                    wrong("an RFC 3339 time (2024-05-01T10:00:00Z) or seconds since the epoch")
                }),
            _ => Err(wrong("a time")),
        },
    }
}

/// Build a record batch from rows of cells laid out as `schema`.
pub fn batch(schema: &SchemaRef, rows: &[Vec<Cell>]) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| -> Result<ArrayRef, String> {
            let mismatch = |cell: &Cell| {
                format!(
                    "column `{}`: {cell:?} does not fit {}",
                    field.name(),
                    field.data_type()
                )
            };
            Ok(match field.data_type() {
                DataType::Utf8 => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                    for row in rows {
                        match &row[i] {
                            Cell::Text(s) => b.append_value(s),
                            Cell::Null => b.append_null(),
                            other => return Err(mismatch(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                DataType::Int64 => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    for row in rows {
                        match &row[i] {
                            Cell::Int(v) => b.append_value(*v),
                            Cell::Null => b.append_null(),
                            other => return Err(mismatch(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                DataType::Float64 => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    for row in rows {
                        match &row[i] {
                            Cell::Float(v) => b.append_value(*v),
                            Cell::Int(v) => b.append_value(*v as f64),
                            Cell::Null => b.append_null(),
                            other => return Err(mismatch(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                DataType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    for row in rows {
                        match &row[i] {
                            Cell::Bool(v) => b.append_value(*v),
                            Cell::Null => b.append_null(),
                            other => return Err(mismatch(other)),
                        }
                    }
                    Arc::new(b.finish())
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                    for row in rows {
                        match &row[i] {
                            Cell::Time(v) => b.append_value(*v),
                            Cell::Null => b.append_null(),
                            other => return Err(mismatch(other)),
                        }
                    }
                    Arc::new(b.finish().with_timezone("UTC"))
                }
                other => {
                    return Err(format!(
                        "column `{}`: type {other} is not produced by the MQTT connector",
                        field.name()
                    ));
                }
            })
        })
        .collect::<Result<_, String>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The table of rejected messages: when, which topic, why, and the payload (truncated).
pub fn rejected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("received_at", utc(), false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("error_kind", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

#[cfg(test)]
mod tests;
