//! `city.system.audit`: the trail's files (rotated ones, then `audit.jsonl`) read at each scan,
//! a batch at a time off the async workers, so the table costs no memory between queries; then
//! the repeated refusals still being counted, so a count is complete before its line is written.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt16Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};

use super::{AuditEntry, Inner, entries};

const BATCH_ROWS: usize = 8192;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("key_id", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("target_bytes", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("status", DataType::UInt16, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
    ]))
}

fn batch(entries: &[AuditEntry]) -> RecordBatch {
    let text = |f: fn(&AuditEntry) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(entries.iter().map(f)))
    };
    let number = |f: fn(&AuditEntry) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(entries.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                entries.iter().map(|e| e.time.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
        text(|e| &e.key_id),
        text(|e| &e.role),
        text(|e| &e.action),
        text(|e| &e.target),
        number(|e| e.target_bytes),
        number(|e| e.rows),
        number(|e| e.duration_ms),
        Arc::new(UInt16Array::from_iter_values(
            entries.iter().map(|e| e.status),
        )),
        text(|e| &e.outcome),
        number(|e| e.count),
    ];
    RecordBatch::try_new(schema(), columns).expect("audit columns match the schema")
}

#[derive(Debug)]
pub(super) struct AuditTable {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.dir).finish()
    }
}

impl AuditTable {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (files, pending) = self.inner.snapshot();
        let files = Arc::new(files);
        let pending = Arc::new(pending);
        let table = StreamingTable::try_new(schema(), vec![Arc::new(Files { files, pending })])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The files of one scan, opened when it was planned, read in order as one partition.
#[derive(Debug)]
struct Files {
    files: Arc<Vec<File>>,
    pending: Arc<Vec<AuditEntry>>,
}

impl PartitionStream for Files {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(schema)
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(schema(), 2);
        let tx = builder.tx();
        let files = self.files.clone();
        let pending = self.pending.clone();
        builder.spawn_blocking(move || {
            let mut rows = Vec::with_capacity(BATCH_ROWS);
            for file in files.iter() {
                for entry in entries(file.try_clone()?) {
                    rows.push(entry);
                    if rows.len() == BATCH_ROWS {
                        if tx.blocking_send(Ok(batch(&rows))).is_err() {
                            return Ok(()); // the query stopped reading
                        }
                        rows.clear();
                    }
                }
            }
            rows.extend(pending.iter().cloned());
            if !rows.is_empty() {
                let _ = tx.blocking_send(Ok(batch(&rows)));
            }
            Ok(())
        });
        builder.build()
    }
}
