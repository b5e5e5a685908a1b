//! The table a log table shows to SQL: one provider registered once, which takes the table's
//! rows at the moment each query is planned — its compacted parts, read in place from their
//! Parquet files, and the WAL tail held in memory. Views planned over it therefore see appended
//! rows without being re-planned, and no part's rows are held in memory.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;

/// A log table's rows at one moment.
#[derive(Debug, Clone, Default)]
pub struct LiveRows {
    /// Compacted parts, queried in place.
    pub files: Vec<PathBuf>,
    /// Rows not compacted yet, in memory.
    pub tail: Vec<RecordBatch>,
}

/// Where a provider gets its current rows from.
pub type RowSource = Arc<dyn Fn() -> LiveRows + Send + Sync>;

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
    /// `schema` is the rows' own; the table shows its text as views, as its parts are read.
    pub fn new(schema: SchemaRef, rows: RowSource, partitions: usize) -> Self {
        Self {
            schema: super::version::text_as_views(&schema),
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

    /// Filters reach the Parquet scan, which skips parts and row groups by their statistics (a
    /// part holds one day); DataFusion still applies them above.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = (self.rows)();
        let mut inputs = Vec::with_capacity(2);
        if !rows.files.is_empty() {
            let parts = super::version::in_place_files(&rows.files, &self.schema)
                .map_err(datafusion::error::DataFusionError::Execution)?;
            inputs.push(parts.scan(state, projection, filters, limit).await?);
        }
        if !rows.tail.is_empty() || inputs.is_empty() {
            // The tail as it is at planning time, cast to the parts' view types.
            let tail = rows
                .tail
                .iter()
                .map(|batch| super::version::cast_columns(batch, &self.schema))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let partitions = super::partition(&tail, self.partitions);
            let tail = MemTable::try_new(self.schema.clone(), partitions)?;
            inputs.push(tail.scan(state, projection, filters, limit).await?);
        }
        UnionExec::try_new(inputs)
    }
}
