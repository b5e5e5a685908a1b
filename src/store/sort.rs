//! A version written in its table's order (`sort_by`): the rows of a load pass through
//! DataFusion's external sort on their way to the version's file, so the row groups hold ranges of
//! the leading column and a query filtering on it reads only the row groups whose statistics
//! match. The sort holds at most `memory` bytes and spills sorted runs under the store's folder
//! beyond that, then merges them: memory stays bounded whatever the table's size.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::config::SessionConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::col;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::TryStreamExt;
use futures::stream::BoxStream;

/// Rows per batch out of the sort: the merge's unit of work.
const SORTED_BATCH_ROWS: usize = 64 * 1024;

/// Whether every column of `order` is in `schema`: an error naming the missing ones and the
/// table's columns otherwise.
pub fn check(schema: &SchemaRef, order: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = order
        .iter()
        .filter(|c| schema.index_of(c).is_err())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    Err(format!(
        "sort_by names {missing:?}, which the table does not have; its columns are {columns:?}"
    ))
}

/// `input` sorted by the columns of `order` (ascending, nulls last), spilling to `spill_dir`
/// beyond `memory` bytes. Errors of `input` come out of the stream as they went in.
pub fn sorted(
    input: BoxStream<'static, Result<RecordBatch, DataFusionError>>,
    schema: SchemaRef,
    order: &[String],
    spill_dir: &Path,
    memory: usize,
) -> Result<SendableRecordBatchStream, DataFusionError> {
    check(&schema, order).map_err(DataFusionError::Plan)?;
    std::fs::create_dir_all(spill_dir)?;
    let ordering = order
        .iter()
        .map(|name| {
            Ok(PhysicalSortExpr::new(
                col(name, &schema)?,
                SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            ))
        })
        .collect::<Result<Vec<_>, DataFusionError>>()?;
    let ordering = LexOrdering::new(ordering)
        .ok_or_else(|| DataFusionError::Plan("sort_by names no column".into()))?;
    // The sort reserves about twice a batch's size to take it in: slices of a sixteenth of its
    // memory keep one wide batch (long texts) from exceeding it alone.
    let most = (memory / 16).max(1);
    let input = input
        .map_ok(move |batch| futures::stream::iter(slices(batch, most).into_iter().map(Ok)))
        .try_flatten();
    let stream = RecordBatchStreamAdapter::new(schema.clone(), input);
    let source = Arc::new(Once {
        schema: schema.clone(),
        stream: Mutex::new(Some(Box::pin(stream))),
    });
    let scan = StreamingTableExec::try_new(schema, vec![source], None, [], false, None)?;
    let sort = SortExec::new(ordering, Arc::new(scan));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![spill_dir.to_path_buf()])),
        )
        .build_arc()?;
    let mut config = SessionConfig::new().with_batch_size(SORTED_BATCH_ROWS);
    // Headroom for merging the spilled runs, out of the same memory.
    config.options_mut().execution.sort_spill_reservation_bytes = memory / 4;
    let context = TaskContext::default()
        .with_session_config(config)
        .with_runtime(runtime);
    sort.execute(0, Arc::new(context))
}

/// `batch` cut into slices of at most about `most` bytes of Arrow memory.
fn slices(batch: RecordBatch, most: usize) -> Vec<RecordBatch> {
    let bytes = batch.get_array_memory_size();
    let rows = batch.num_rows();
    if bytes <= most || rows <= 1 {
        return vec![batch];
    }
    let per_slice = (rows * most / bytes).max(1);
    // Copied: a slice shares (and is accounted with) the whole batch's buffers.
    (0..rows)
        .step_by(per_slice)
        .map(|start| {
            let slice = batch.slice(start, per_slice.min(rows - start));
            arrow::compute::concat_batches(&slice.schema(), [&slice]).unwrap_or(slice)
        })
        .collect()
}

/// The one partition of a load: its stream, handed out once.
struct Once {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the rows of a load")
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().expect("stream lock").take();
        taken.unwrap_or_else(|| {
            let again = futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "the rows of a load were already read".into(),
                ))
            });
            Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), again))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::StreamExt;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    fn batch(start: i64, rows: i64) -> RecordBatch {
        let metrics = ["people", "clients", "latency_ms"];
        let metric: StringArray = (start..start + rows)
            .map(|i| (i % 7 != 0).then(|| metrics[(i % 3) as usize]))
            .collect();
        let n = Int64Array::from_iter_values((start..start + rows).rev());
        RecordBatch::try_new(schema(), vec![Arc::new(metric), Arc::new(n)]).unwrap()
    }

    /// 200,000 rows through a sort allowed 2 MiB: it must spill, and the merged output must be
    /// every row once, in order.
    #[tokio::test]
    async fn a_sort_larger_than_its_memory_spills_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<_> = (0..20).map(|i| Ok(batch(i * 10_000, 10_000))).collect();
        let input = futures::stream::iter(batches).boxed();
        let order = ["metric".to_string(), "n".to_string()];
        let out: Vec<RecordBatch> = sorted(input, schema(), &order, dir.path(), 2 << 20)
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in &out {
            let metric = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                rows.push((
                    metric.is_valid(i).then(|| metric.value(i).to_string()),
                    n.value(i),
                ));
            }
        }
        assert_eq!(rows.len(), 200_000);
        let mut ns: Vec<i64> = rows.iter().map(|r| r.1).collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..200_000).collect::<Vec<_>>(), "every row once");
        // Ascending, nulls last: compare as (is null, value).
        let key = |r: &(Option<String>, i64)| (r.0.is_none(), r.0.clone(), r.1);
        assert!(
            rows.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
            "in order"
        );
        assert_eq!(rows[0].0.as_deref(), Some("clients"));
        assert!(rows.last().unwrap().0.is_none());
    }

    #[tokio::test]
    async fn an_error_of_the_input_comes_out_of_the_sort() {
        let dir = tempfile::tempdir().unwrap();
        let input = futures::stream::iter(vec![
            Ok(batch(0, 10)),
            Err(DataFusionError::External("the source went away".into())),
        ])
        .boxed();
        let result: Result<Vec<RecordBatch>, _> =
            sorted(input, schema(), &["n".into()], dir.path(), 1 << 20)
                .unwrap()
                .try_collect()
                .await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("the source went away"), "{error}");
    }

    #[test]
    fn a_column_the_table_lacks_is_named() {
        let error = check(&schema(), &["metric".into(), "area".into()]).unwrap_err();
        assert!(
            error.contains("[\"area\"]") && error.contains("\"metric\", \"n\""),
            "{error}"
        );
    }
}
