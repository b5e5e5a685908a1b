//! Hourly rollups of a log table: per key (e.g. sensor and metric) and hour, the count, mean,
//! minimum and maximum of a value column. They are recomputed for a whole day from that day's
//! rows, so a late reading simply changes its day's rollup, and they are kept longer than the raw
//! rows (`rollup_retention`).

use std::collections::BTreeMap;
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

/// The hourly rollup of `batches` (rows of one log table), grouped by the spec's keys.
pub fn hourly(
    spec: &RollupSpec,
    time_column: &str,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    let mut groups: BTreeMap<(Vec<Option<String>>, i64), Summary> = BTreeMap::new();
    for batch in batches {
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
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let key: Vec<Option<String>> = keys
                .iter()
                .map(|k| (!k.is_null(row)).then(|| k.value(row).to_string()))
                .collect();
            let hour = times.value(row).div_euclid(HOUR_MICROS) * HOUR_MICROS;
            let summary = groups.entry((key, hour)).or_default();
            summary.readings += 1;
            if !values.is_null(row) {
                let value = values.value(row);
                summary.sum += value;
                summary.values += 1;
                summary.min = Some(summary.min.map_or(value, |m| m.min(value)));
                summary.max = Some(summary.max.map_or(value, |m| m.max(value)));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = (0..spec.keys.len())
        .map(|i| {
            Arc::new(StringArray::from(
                groups.keys().map(|(k, _)| k[i].clone()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(groups.keys().map(|(_, h)| *h).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    columns.push(Arc::new(Int64Array::from(
        groups.values().map(|s| s.readings).collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(Float64Array::from(
        groups
            .values()
            .map(|s| (s.values > 0).then(|| s.sum / s.values as f64))
            .collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(Float64Array::from(
        groups.values().map(|s| s.min).collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(Float64Array::from(
        groups.values().map(|s| s.max).collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(spec.schema(), columns).map_err(|e| e.to_string())
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
