//! `city.system.tables` and `city.system.rejected_records`: the store's own state, queryable in
//! SQL like any other table.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

use super::TableStatus;
use super::input::RejectedRecord;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Arc<dyn TableProvider> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .expect("system table columns match their schema");
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("system table schema is valid"))
}

pub fn tables_table(statuses: &[TableStatus]) -> Arc<dyn TableProvider> {
    let now = Utc::now();
    let text = |f: &dyn Fn(&TableStatus) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            statuses.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let time = |f: &dyn Fn(&TableStatus) -> Option<i64>| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(statuses.iter().map(f).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    table(
        vec![
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("row_count", DataType::UInt64, false),
            Field::new("rejected_count", DataType::UInt64, false),
            Field::new("last_success", utc_micros(), true),
            Field::new("last_attempt", utc_micros(), true),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("simulated", DataType::Boolean, false),
        ],
        vec![
            text(&|s| Some(s.schema.clone())),
            text(&|s| Some(s.table.clone())),
            text(&|s| Some(s.source.clone())),
            text(&|s| {
                serde_json::to_value(s.effective_state(now))
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
            }),
            Arc::new(UInt64Array::from(
                statuses.iter().map(|s| s.rows as u64).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                statuses
                    .iter()
                    .map(|s| s.rejected as u64)
                    .collect::<Vec<_>>(),
            )),
            time(&|s| s.last_success.map(|t| t.timestamp_micros())),
            time(&|s| s.last_attempt.map(|t| t.timestamp_micros())),
            text(&|s| s.last_error.clone()),
            Arc::new(BooleanArray::from(
                statuses.iter().map(|s| s.simulated).collect::<Vec<_>>(),
            )),
        ],
    )
}

pub fn rejected_table(records: &[(String, String, RejectedRecord)]) -> Arc<dyn TableProvider> {
    let text = |f: &dyn Fn(&(String, String, RejectedRecord)) -> String| -> ArrayRef {
        Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>()))
    };
    table(
        vec![
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("line", DataType::UInt64, true),
            Field::new("reason", DataType::Utf8, false),
            Field::new("raw", DataType::Utf8, false),
        ],
        vec![
            text(&|r| r.0.clone()),
            text(&|r| r.1.clone()),
            text(&|r| r.2.source.clone()),
            Arc::new(UInt64Array::from(
                records.iter().map(|r| r.2.line).collect::<Vec<_>>(),
            )),
            text(&|r| r.2.reason.clone()),
            text(&|r| r.2.raw.clone()),
        ],
    )
}
