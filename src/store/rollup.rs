//! Hourly rollups of a log table: per key (e.g. sensor and metric) and hour, the count, mean,
//! minimum and maximum of a value column. A day's summaries are kept while it receives rows and
//! updated with each compaction's rows (recomputed from the day's rows after a restart), so a
//! late reading simply changes its day's rollup, and they are kept longer than the raw
//! rows (`rollup_retention`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

const HOUR_MICROS: i64 = 3_600_000_000;

/// What to roll up.
#[derive(Debug, Clone)]
pub struct RollupSpec {
    /// Name of the rollup table, in the log table's schema.
    pub table: String,
    /// Columns grouped by (read as text).
    pub keys: Vec<String>,
    /// The numeric column summarised.
    pub value: String,
    /// Days a rollup is kept (None: forever).
    pub retention_days: Option<i64>,
}

impl RollupSpec {
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .keys
            .iter()
            .map(|k| Field::new(k, DataType::Utf8, true))
            .collect();
        fields.push(Field::new(
            "hour",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        fields.push(Field::new("readings", DataType::Int64, false));
        fields.push(Field::new("value_avg", DataType::Float64, true));
        fields.push(Field::new("value_min", DataType::Float64, true));
        fields.push(Field::new("value_max", DataType::Float64, true));
        Arc::new(Schema::new(fields))
    }
}

#[derive(Default)]
struct Summary {
    readings: i64,
    sum: f64,
    values: i64,
    min: Option<f64>,
    max: Option<f64>,
}

/// One group of the rollup: its key values, its hour and the summary of its readings.
struct Group {
    keys: Vec<Option<String>>,
    hour: i64,
    summary: Summary,
}

/// The running hourly summaries of one day: rows are folded in as they are compacted, so a
/// compaction costs its own rows, not the whole day's again. Rows are folded in the order they
/// were stored, so the figures are those of summarising the day at once.
#[derive(Default)]
pub struct HourlyState {
    /// Keyed by the hour and the key values, encoded as bytes (no allocation per row).
    groups: std::collections::HashMap<Box<[u8]>, Group>,
}

impl HourlyState {
    /// Add the rows of `batch` to the summaries.
    pub fn fold(
        &mut self,
        spec: &RollupSpec,
        time_column: &str,
        batch: &RecordBatch,
    ) -> Result<(), String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("rollup: no column `{name}`"))
        };
        let keys: Vec<StringArray> = spec
            .keys
            .iter()
            .map(|k| {
                let array = cast(column(k)?, &DataType::Utf8).map_err(|e| e.to_string())?;
                Ok(array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8")
                    .clone())
            })
            .collect::<Result<_, String>>()?;
        let times = cast(
            column(time_column)?,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| e.to_string())?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamp");
        let values = cast(column(&spec.value)?, &DataType::Float64).map_err(|e| e.to_string())?;
        let values = values
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to float");
        let mut encoded = Vec::new();
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let hour = times.value(row).div_euclid(HOUR_MICROS) * HOUR_MICROS;
            encoded.clear();
            encoded.extend_from_slice(&hour.to_le_bytes());
            for k in &keys {
                if k.is_null(row) {
                    encoded.push(0);
                } else {
                    let value = k.value(row).as_bytes();
                    encoded.push(1);
                    encoded.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    encoded.extend_from_slice(value);
                }
            }
            let group = match self.groups.get_mut(encoded.as_slice()) {
                Some(group) => group,
                None => self
                    .groups
                    .entry(encoded.clone().into_boxed_slice())
                    .or_insert_with(|| Group {
                        keys: keys
                            .iter()
                            .map(|k| (!k.is_null(row)).then(|| k.value(row).to_string()))
                            .collect(),
                        hour,
                        summary: Summary::default(),
                    }),
            };
            let summary = &mut group.summary;
            summary.readings += 1;
            if !values.is_null(row) {
                let value = values.value(row);
                summary.sum += value;
                summary.values += 1;
                summary.min = Some(summary.min.map_or(value, |m| m.min(value)));
                summary.max = Some(summary.max.map_or(value, |m| m.max(value)));
            }
        }
        Ok(())
    }

    /// The summaries as the rollup table's rows, ordered by key values and hour.
    pub fn batch(&self, spec: &RollupSpec) -> Result<RecordBatch, String> {
        let mut groups: Vec<&Group> = self.groups.values().collect();
        groups.sort_by(|a, b| a.keys.cmp(&b.keys).then(a.hour.cmp(&b.hour)));
        let mut columns: Vec<ArrayRef> = (0..spec.keys.len())
            .map(|i| {
                Arc::new(StringArray::from_iter(
                    groups.iter().map(|g| g.keys[i].as_deref()),
                )) as ArrayRef
            })
            .collect();
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(groups.iter().map(|g| g.hour))
                .with_timezone("UTC"),
        ));
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| g.summary.readings),
        )));
        columns.push(Arc::new(Float64Array::from_iter(groups.iter().map(|g| {
            (g.summary.values > 0).then(|| g.summary.sum / g.summary.values as f64)
        }))));
        columns.push(Arc::new(Float64Array::from_iter(
            groups.iter().map(|g| g.summary.min),
        )));
        columns.push(Arc::new(Float64Array::from_iter(
            groups.iter().map(|g| g.summary.max),
        )));
        RecordBatch::try_new(spec.schema(), columns).map_err(|e| e.to_string())
    }
}

/// The hourly rollup of `batches` (rows of one log table), grouped by the spec's keys.
pub fn hourly(
    spec: &RollupSpec,
    time_column: &str,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    let mut state = HourlyState::default();
    for batch in batches {
        state.fold(spec, time_column, batch)?;
    }
    state.batch(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_summaries_per_sensor_and_metric() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let t0 = 1_700_000_000_000_000 / HOUR_MICROS * HOUR_MICROS;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "a", "b", "a"])),
                Arc::new(StringArray::from(vec!["t", "t", "t", "t", "t"])),
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    Some(3.0),
                    None,
                    Some(7.0),
                    Some(10.0),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        t0,
                        t0 + 10,
                        t0 + 20,
                        t0 + 30,
                        t0 + HOUR_MICROS + 1,
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let spec = RollupSpec {
            table: "orarie".into(),
            keys: vec!["sensor_id".into(), "metric".into()],
            value: "value".into(),
            retention_days: None,
        };
        let rollup = hourly(&spec, "ts", &[batch]).unwrap();
        assert_eq!(rollup.num_rows(), 3);
        let readings = rollup
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let avg = rollup
            .column(4)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let max = rollup
            .column(6)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        // a, first hour: three readings, one without a value.
        assert_eq!(
            (readings.value(0), avg.value(0), max.value(0)),
            (3, 2.0, 3.0)
        );
        // a, second hour.
        assert_eq!((readings.value(1), avg.value(1)), (1, 10.0));
        // b.
        assert_eq!((readings.value(2), avg.value(2)), (1, 7.0));
    }
}
