//! Snapshot tables larger than the memory cache: queried in place from their version files,
//! swapped by versions under running queries, and restored from their footers alone.

use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;

use super::{Storage, Store, version};
use crate::store::input::LoadedTable;

/// `count` rows of `n` = 0, 1, 2, … in batches of 10,000.
fn numbers(count: i64) -> LoadedTable {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batches = (0..count)
        .step_by(10_000)
        .map(|start| {
            let values = Int64Array::from_iter_values(start..(start + 10_000).min(count));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
        })
        .collect();
    LoadedTable::replace(schema, batches, Vec::new())
}

fn context(store: &Store) -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_catalog("city", store.catalog());
    ctx
}

/// (count, sum) of the rows a plan returns.
async fn count_and_sum(
    ctx: &SessionContext,
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> (i64, i64) {
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    let value = |column: usize| {
        batches[0]
            .column(column)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| if a.is_null(0) { 0 } else { a.value(0) })
            .unwrap()
    };
    (value(0), value(1))
}

async fn plan(ctx: &SessionContext) -> Arc<dyn datafusion::physical_plan::ExecutionPlan> {
    ctx.sql("SELECT count(*) AS c, sum(n) AS s FROM city.s.t")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

fn triangle(count: i64) -> (i64, i64) {
    (count, count * (count - 1) / 2)
}

fn storage(store: &Store) -> (Storage, usize) {
    let status = store
        .statuses()
        .into_iter()
        .find(|s| s.table == "t")
        .unwrap();
    (status.storage, status.rows)
}

fn held_in_memory(store: &Store) -> usize {
    let data = store.data.read().unwrap();
    let table = &data[&("s".to_string(), "t".to_string())];
    table.batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test]
async fn a_large_snapshot_table_is_queried_in_place_and_replaced_by_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2, 64 * 1024);
    let ctx = context(&store);
    let versions = || {
        version::list(&dir.path().join("snapshots/s"), "t")
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };

    store
        .commit("s", "t", "src", numbers(100_000))
        .await
        .unwrap();
    assert_eq!(storage(&store), (Storage::Disk, 100_000));
    assert_eq!(
        held_in_memory(&store),
        0,
        "a table over the cache stayed in memory"
    );
    assert_eq!(
        count_and_sum(&ctx, plan(&ctx).await).await,
        triangle(100_000)
    );

    // A query planned before a refresh reads the version it was planned on, whole.
    let planned = plan(&ctx).await;
    store
        .commit("s", "t", "src", numbers(200_000))
        .await
        .unwrap();
    assert_eq!(versions(), vec![1, 2]);
    assert_eq!(count_and_sum(&ctx, planned).await, triangle(100_000));
    assert_eq!(
        count_and_sum(&ctx, plan(&ctx).await).await,
        triangle(200_000)
    );

    // A small version is served from memory; the version read in place before it stays one
    // refresh longer, then only the latest version is left.
    store.commit("s", "t", "src", numbers(10)).await.unwrap();
    assert_eq!(storage(&store), (Storage::Memory, 10));
    assert_eq!(count_and_sum(&ctx, plan(&ctx).await).await, triangle(10));
    assert_eq!(versions(), vec![2, 3]);
    store
        .commit("s", "t", "src", numbers(300_000))
        .await
        .unwrap();
    assert_eq!(versions(), vec![4]);

    // A restart registers the table from its footer, without reading its rows.
    drop(store);
    let restarted = Store::open(dir.path(), 2, 64 * 1024);
    assert!(restarted.restore("s", "t").unwrap());
    assert_eq!(storage(&restarted), (Storage::Disk, 300_000));
    assert_eq!(held_in_memory(&restarted), 0);
    let ctx = context(&restarted);
    assert_eq!(
        count_and_sum(&ctx, plan(&ctx).await).await,
        triangle(300_000)
    );
    let (_, batches) = restarted.table_batches("s", "t").unwrap();
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        300_000
    );

    // The same table under the default cache is served from memory after a restart.
    drop(restarted);
    let roomy = Store::new(dir.path(), 2);
    assert!(roomy.restore("s", "t").unwrap());
    assert_eq!(storage(&roomy), (Storage::Memory, 300_000));
    assert_eq!(held_in_memory(&roomy), 300_000);
}

/// `count` rows of `n` from `start`, appended with the cursor at their last value.
fn appended(start: i64, count: i64) -> LoadedTable {
    let mut loaded = numbers(count);
    loaded.batches = loaded
        .batches
        .iter()
        .map(|b| {
            let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let shifted = Int64Array::from_iter_values(n.values().iter().map(|v| v + start));
            RecordBatch::try_new(b.schema(), vec![Arc::new(shifted)]).unwrap()
        })
        .collect();
    loaded.mode = crate::store::input::LoadMode::Append;
    loaded.cursor = Some((start + count - 1).to_string());
    loaded
}

/// An append table larger than the memory cache: its compacted version is queried in place and
/// only the rows appended since are held in memory, across compactions and a restart.
#[tokio::test]
async fn a_large_append_table_keeps_only_its_latest_rows_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2, 64 * 1024);
    let ctx = context(&store);
    let per_pull = 10_000;
    let pulls = super::COMPACT_AFTER_SEGMENTS as i64 * 2 + 3;
    for pull in 0..pulls {
        store
            .commit("s", "t", "src", appended(pull * per_pull, per_pull))
            .await
            .unwrap();
    }
    let total = pulls * per_pull;
    assert_eq!(storage(&store), (Storage::Disk, total as usize));
    assert_eq!(
        held_in_memory(&store),
        3 * per_pull as usize,
        "only the pulls since the last compaction are held"
    );
    assert_eq!(count_and_sum(&ctx, plan(&ctx).await).await, triangle(total));
    assert_eq!(
        store.load_state("s").committed_rows("t"),
        Some(total as u64)
    );
    let (_, whole) = store.table_batches("s", "t").unwrap();
    assert_eq!(
        whole.iter().map(RecordBatch::num_rows).sum::<usize>(),
        total as usize
    );

    // A restart registers the version in place and reads back only the segments after it.
    drop(store);
    let restarted = Store::open(dir.path(), 2, 64 * 1024);
    assert!(restarted.restore("s", "t").unwrap());
    assert_eq!(storage(&restarted), (Storage::Disk, total as usize));
    assert_eq!(held_in_memory(&restarted), 3 * per_pull as usize);
    let ctx = context(&restarted);
    assert_eq!(count_and_sum(&ctx, plan(&ctx).await).await, triangle(total));
    assert_eq!(
        restarted.load_state("s").cursor("t"),
        Some((total - 1).to_string().as_str())
    );
    // Appending goes on from there, through the next compaction.
    for pull in pulls..pulls + super::COMPACT_AFTER_SEGMENTS as i64 {
        restarted
            .commit("s", "t", "src", appended(pull * per_pull, per_pull))
            .await
            .unwrap();
    }
    let total = (pulls + super::COMPACT_AFTER_SEGMENTS as i64) * per_pull;
    assert_eq!(count_and_sum(&ctx, plan(&ctx).await).await, triangle(total));
    assert!(held_in_memory(&restarted) < 20 * per_pull as usize);
}

/// A load that takes longer than three refresh intervals (a large file, a short refresh) is
/// fresh when it lands: its success is when it finished, not when it started.
#[tokio::test]
async fn a_load_longer_than_its_refresh_interval_lands_fresh() {
    use futures::StreamExt;

    use super::TableState;
    use crate::store::input::{Loaded, StreamedTable};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2, 64 * 1024);
    store.declare("s", "t", "src", std::time::Duration::from_millis(50));
    let whole = numbers(20_000);
    let schema = whole.schema.clone();
    let batches = futures::stream::iter(whole.batches)
        .then(|batch| async move {
            // Three refresh intervals pass while the source is read.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok((batch, Vec::new()))
        })
        .boxed();
    store
        .commit(
            "s",
            "t",
            "src",
            Loaded::Streamed(StreamedTable {
                schema,
                batches,
                fingerprint: None,
            }),
        )
        .await
        .unwrap();
    let status = store
        .statuses()
        .into_iter()
        .find(|s| s.table == "t")
        .unwrap();
    assert_eq!(status.rows, 20_000);
    assert_eq!(
        status.effective_state(chrono::Utc::now()),
        TableState::Fresh,
        "last success {:?}",
        status.last_success
    );
}

/// `count` rows of `label` (one of five words, some with `%` and `_`) and `n`, appended with the
/// cursor at `start + count - 1`.
fn labelled(start: i64, count: i64) -> LoadedTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let words = ["alfa", "beta", "50%_off", "gamma", "delta"];
    let labels: arrow::array::StringArray = (start..start + count)
        .map(|i| Some(words[(i % 5) as usize]))
        .collect();
    let values = Int64Array::from_iter_values(start..start + count);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(labels), Arc::new(values)]).unwrap();
    let mut loaded = LoadedTable::replace(schema, vec![batch], Vec::new());
    loaded.mode = crate::store::input::LoadMode::Append;
    loaded.cursor = Some((start + count - 1).to_string());
    loaded
}

/// Text read in place is read as Arrow's view type (faster to group and compare), also where a
/// table's compacted version is read with the rows appended since held in memory; the SQL
/// functions take it, and every result gives text as `Utf8`, as tables in memory do.
#[tokio::test]
async fn text_read_in_place_is_read_as_views_and_answered_as_utf8() {
    use arrow::array::AsArray;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2, 64 * 1024);
    let engine = crate::query::QueryEngine::new(&store, Vec::new(), Default::default());
    let per_pull = 20_000;
    let pulls = super::COMPACT_AFTER_SEGMENTS as i64 + 2;
    for pull in 0..pulls {
        store
            .commit("s", "t", "src", labelled(pull * per_pull, per_pull))
            .await
            .unwrap();
    }
    let total = pulls * per_pull;
    assert_eq!(storage(&store), (Storage::Disk, total as usize));
    assert!(
        held_in_memory(&store) > 0,
        "some rows are not compacted yet"
    );
    let table = store
        .schema_provider("s")
        .table("t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        table.schema().field(0).data_type(),
        &DataType::Utf8View,
        "the table's text is read as views"
    );

    let result = engine
        .execute(
            "SELECT upper(label) || '!' AS shout, count(*) AS c, sum(n) AS s FROM city.s.t \
             WHERE label NOT LIKE '%!%%' ESCAPE '!' GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap();
    assert_eq!(result.schema.field(0).data_type(), &DataType::Utf8);
    let batch = arrow::compute::concat_batches(&result.schema, &result.batches).unwrap();
    assert_eq!(batch.column(0).data_type(), &DataType::Utf8);
    let shouts: Vec<&str> = batch
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(shouts, ["ALFA!", "BETA!", "DELTA!", "GAMMA!"]);
    let counts = batch
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(counts.values().iter().sum::<i64>(), total / 5 * 4);
    // Every fifth value from 0 (alfa) up: n ≡ 0 (mod 5).
    let alfa: i64 = (0..total).step_by(5).sum();
    assert_eq!(
        batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        alfa
    );
}
