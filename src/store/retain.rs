//! Retention of append tables: the rows (and rejected records) whose time is before a cutoff
//! expire. The rule is the SQL `time >= cutoff` the PostgreSQL connector pulls with, so a row
//! whose time is NULL expires too, and what a table holds stays exactly what its source holds in
//! the retained window.

use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, Scalar, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::gt_eq;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use super::input::{RejectedRecord, Retention};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The batches and rejected records that are still within the retention.
pub fn retain(
    batches: &[RecordBatch],
    rejected: &[RejectedRecord],
    retention: &Retention,
) -> Result<(Vec<RecordBatch>, Vec<RejectedRecord>), String> {
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let column = batch.column_by_name(&retention.column).ok_or_else(|| {
            format!(
                "the retention column `{}` is not in the table",
                retention.column
            )
        })?;
        let mask = within(column, retention.cutoff)
            .map_err(|e| format!("retention column `{}`: {e}", retention.column))?;
        if mask.true_count() == batch.num_rows() {
            kept.push(batch.clone());
        } else if mask.true_count() > 0 {
            kept.push(filter_record_batch(batch, &mask).map_err(|e| e.to_string())?);
        }
    }
    // A record whose time could not be read is kept: its source row is in the window as far as
    // the source can tell (e.g. a timestamp of `infinity`).
    let rejected = rejected
        .iter()
        .filter(|r| r.time.is_none_or(|time| time >= retention.cutoff))
        .cloned()
        .collect();
    Ok((kept, rejected))
}

/// True where the value is at or after `cutoff` (µs since the epoch); NULL where it is NULL,
/// which `filter_record_batch` drops.
fn within(column: &ArrayRef, cutoff: i64) -> Result<BooleanArray, String> {
    let mask = match column.data_type() {
        DataType::Date32 => {
            // A date is within when its day is at or after the cutoff's day, as in SQL
            // `date >= cutoff::date`.
            let day = cutoff.div_euclid(MICROS_PER_DAY) as i32;
            gt_eq(column, &Scalar::new(Date32Array::from(vec![day])))
        }
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, zone) => gt_eq(
            column,
            &Scalar::new(
                TimestampMicrosecondArray::from(vec![cutoff]).with_timezone_opt(zone.clone()),
            ),
        ),
        other => return Err(format!("type {other} is not a date or a timestamp")),
    };
    mask.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn record(time: Option<i64>) -> RejectedRecord {
        RejectedRecord {
            source: "s".into(),
            line: None,
            reason: "r".into(),
            raw: String::new(),
            time,
        }
    }

    #[test]
    fn rows_before_the_cutoff_and_null_times_expire_in_both_column_types() {
        let day = MICROS_PER_DAY;
        let times =
            TimestampMicrosecondArray::from(vec![Some(day), None, Some(3 * day), Some(2 * day)])
                .with_timezone("UTC");
        let dates = Date32Array::from(vec![Some(1), Some(2), None, Some(3)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", arrow::datatypes::DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(times),
                Arc::new(dates),
            ],
        )
        .unwrap();
        let ids = |batches: &[RecordBatch]| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        let rejected = [record(Some(day - 1)), record(Some(2 * day)), record(None)];

        let by_time = Retention {
            column: "ts".into(),
            cutoff: 2 * day,
        };
        let (kept, kept_rejected) = retain(&[batch.clone()], &rejected, &by_time).unwrap();
        assert_eq!(ids(&kept), vec![3, 4]);
        assert_eq!(kept_rejected, rejected[1..].to_vec());

        // Dates compare by day: a cutoff in the middle of day 2 keeps day 2.
        let by_day = Retention {
            column: "day".into(),
            cutoff: 2 * day + 5,
        };
        let (kept, _) = retain(&[batch.clone()], &[], &by_day).unwrap();
        assert_eq!(ids(&kept), vec![2, 4]);

        let everything_expired = Retention {
            column: "ts".into(),
            cutoff: 10 * day,
        };
        assert!(
            retain(&[batch.clone()], &[], &everything_expired)
                .unwrap()
                .0
                .is_empty()
        );

        let wrong = Retention {
            column: "id".into(),
            cutoff: 0,
        };
        let error = retain(&[batch], &[], &wrong).unwrap_err();
        assert!(
            error.contains("`id`") && error.contains("not a date or a timestamp"),
            "{error}"
        );
    }
}
