//! The table a log table shows to SQL: one provider registered once, which reads the table's
//! rows (Parquet segments loaded in memory plus the WAL tail) at the moment each query is
//! planned. Views planned over it therefore see appended rows without being re-planned.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// Where a provider gets its current rows from.
pub type RowSource = Arc<dyn Fn() -> Vec<RecordBatch> + Send + Sync>;

pub struct LiveTable {
    schema: SchemaRef,
    rows: RowSource,
    partitions: usize,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("schema", &self.schema)
            .finish()
    }
}

impl LiveTable {
    pub fn new(schema: SchemaRef, rows: RowSource, partitions: usize) -> Self {
        Self {
            schema,
            rows,
            partitions: partitions.max(1),
        }
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The batches are shared, not copied: this is a snapshot of the table at planning time.
        let partitions = super::partition(&(self.rows)(), self.partitions);
        let snapshot = MemTable::try_new(self.schema.clone(), partitions)?;
        snapshot.scan(state, projection, filters, limit).await
    }
}
