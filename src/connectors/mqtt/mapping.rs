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
    Value,
    Text,
    Bool,
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
        let metric = if !record.name.is_empty() {
            record.name.clone()
        } else if let Some(m) = topic_metric {
            m.to_string()
        } else {
            return Err(Rejection {
                kind: RejectKind::MissingField,
                reason: format!("SenML record {index}: no metric (`n`)"),
            });
        };
        Ok(self
            .columns
            .iter()
            .map(|(_, source)| match source {
                Source::Topic(i) => Cell::Text(levels[*i].to_string()),
                Source::Senml(SenmlColumn::SensorId) => Cell::Text(sensor.clone()),
                Source::Senml(SenmlColumn::Metric) => Cell::Text(metric.clone()),
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
mod tests {
    use super::*;
    use crate::connectors::ConnectorConfig;
    use std::path::Path;

    fn table(extra: &str) -> MqttTableConfig {
        let text = format!(
            "kind = \"mqtt\"\nbroker = \"mqtt://h\"\nclient_id = \"c\"\n[[table]]\nname = \"letture\"\ntopics = [\"b/#\"]\n{extra}"
        );
        let ConnectorConfig::Mqtt(config) =
            ConnectorConfig::parse(Path::new("s.toml"), &text).unwrap()
        else {
            panic!()
        };
        config.tables[0].clone()
    }

    fn json_layout() -> Layout {
        Layout::new(&table(
            "topic_pattern = \"b/+/{sensor_id}/{metric}\"\nformat = \"json\"\n\
             fields = { value = { pointer = \"/v\", type = \"float\" }, ts = { pointer = \"/t\", type = \"timestamp\", optional = true }, \
             unit = { pointer = \"/meta/u\", type = \"text\", optional = true } }\n",
        ))
        .unwrap()
    }

    const ARRIVAL: i64 = 1_700_000_000_000_000;

    #[test]
    fn json_fields_and_topic_levels_become_columns() {
        let layout = json_layout();
        let names: Vec<String> = layout
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            vec!["sensor_id", "metric", "unit", "value", "ts", "received_at"]
        );
        assert_eq!(layout.dedupe_columns(), vec!["sensor_id", "metric", "ts"]);
        let rows = layout
            .decode(
                "b/probe/sonda-1/latency_ms",
                br#"{"v": 12, "t": 1700000001.5, "meta": {"u": "ms"}}"#,
                ARRIVAL,
            )
            .unwrap();
        assert_eq!(
            rows[0],
            vec![
                Cell::Text("sonda-1".into()),
                Cell::Text("latency_ms".into()),
                Cell::Text("ms".into()),
                Cell::Float(12.0),
                Cell::Time(1_700_000_001_500_000),
                Cell::Time(ARRIVAL)
            ]
        );
        // No time in the payload: the arrival time. RFC 3339 times are read too.
        let rows = layout
            .decode("b/probe/sonda-1/latency_ms", br#"{"v": 1.5}"#, ARRIVAL)
            .unwrap();
        assert_eq!(
            (rows[0][2].clone(), rows[0][4].clone()),
            (Cell::Null, Cell::Time(ARRIVAL))
        );
        let rows = layout
            .decode(
                "b/probe/s/m",
                br#"{"v": 1, "t": "2023-11-14T22:13:20Z"}"#,
                0,
            )
            .unwrap();
        assert_eq!(rows[0][4], Cell::Time(ARRIVAL));
        let batch = layout.batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn json_rejections_name_the_field() {
        let layout = json_layout();
        let reject =
            |topic: &str, payload: &[u8]| layout.decode(topic, payload, ARRIVAL).unwrap_err();
        let not_json = reject("b/p/s/m", b"v=12");
        assert_eq!(not_json.kind, RejectKind::NotJson);
        let missing = reject("b/p/s/m", br#"{"valore": 12}"#);
        assert_eq!(
            (missing.kind, missing.reason.as_str()),
            (RejectKind::MissingField, "missing field `value` (/v)")
        );
        let wrong = reject("b/p/s/m", br#"{"v": "dodici"}"#);
        assert_eq!(wrong.kind, RejectKind::WrongType);
        assert_eq!(
            wrong.reason,
            "field `value` (/v): expected a number, found a string \"dodici\""
        );
        assert_eq!(reject("b/p/s/m", b"[1,2]").kind, RejectKind::WrongType);
        assert_eq!(reject("b/p/s", br#"{"v": 1}"#).kind, RejectKind::Topic);
        assert_eq!(
            reject("b/p/s/m", br#"{"v": 1, "t": "ieri"}"#).kind,
            RejectKind::WrongType
        );
    }

    #[test]
    fn senml_records_become_rows_per_sensor_and_metric() {
        let layout = Layout::new(&table(
            "topic_pattern = \"b/{zona}/#\"\nformat = \"senml\"\n",
        ))
        .unwrap();
        let names: Vec<String> = layout
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            vec![
                "zona",
                "sensor_id",
                "metric",
                "value",
                "value_text",
                "value_bool",
                "unit",
                "ts",
                "received_at"
            ]
        );
        let rows = layout
            .decode("b/navile/x", br#"[{"bn":"amb-3/","bt":1700000000,"bu":"ug/m3","n":"pm10","v":21.5},{"n":"pm2_5","v":12}]"#, ARRIVAL)
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1][..4],
            [
                Cell::Text("navile".into()),
                Cell::Text("amb-3".into()),
                Cell::Text("pm2_5".into()),
                Cell::Float(12.0)
            ]
        );
        assert_eq!(rows[1][6], Cell::Text("ug/m3".into()));
        assert_eq!(rows[1][7], Cell::Time(1_700_000_000_000_000));
        // Without a base name and without `{sensor_id}` in the topic, there is no sensor.
        let error = layout
            .decode("b/navile", br#"[{"n":"pm10","v":1}]"#, ARRIVAL)
            .unwrap_err();
        assert_eq!(error.kind, RejectKind::MissingField);
    }

    #[test]
    fn pointers_read_as_serde_json_reads_them() {
        let document: Value = serde_json::json!({
            "v": 1.5, "a/b": 2, "m~n": 3, "list": [10, 20, {"x": "y"}], "": 4, "nested": {"deep": {"k": true}}
        });
        for p in [
            "",
            "/v",
            "/a~1b",
            "/m~0n",
            "/list/0",
            "/list/2/x",
            "/list/01",
            "/list/+1",
            "/list/3",
            "/list/x",
            "/",
            "/nested/deep/k",
            "/nested/missing",
            "v",
            "/v/0",
        ] {
            assert_eq!(pointer(&document, p), document.pointer(p), "{p}");
        }
    }
}
