//! Snapshot tables written as new versions, batch by batch: the rows of a load go from the
//! source to the version's Parquet file as they are read, so memory holds a few batches and the
//! row group being encoded, never the table. The version is renamed into place when complete and
//! only then swapped in; a load that fails part way leaves no file and the previous version
//! served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::info;

use super::input::{LoadedTable, RejectedRecord, Retention, StreamedTable};
use super::{Key, Storage, Store, StoreError, persist, retain, sort, version};

/// Batches waiting for the writer: the source reads the next while the writer encodes these.
const BATCHES_IN_FLIGHT: usize = 2;

/// What a finished version holds.
pub(super) struct Written {
    pub rows: usize,
    /// The rows' size in Arrow memory, as they were written.
    pub bytes: u64,
    pub rejected: Vec<RejectedRecord>,
    /// When the version was written, as its metadata says.
    pub loaded_at: DateTime<Utc>,
}

impl Store {
    /// A whole table loaded in memory, written as a new version like a streamed one.
    pub(super) async fn commit_replacing(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        loaded: LoadedTable,
    ) -> Result<(), StoreError> {
        let retention = loaded.retention.clone();
        let rejected = loaded.rejected;
        let mut batches: Vec<_> = loaded
            .batches
            .into_iter()
            .map(|b| Ok((b, Vec::new())))
            .collect();
        // The rejected records travel with the first batch (or alone, with an empty one).
        match batches.first_mut() {
            Some(Ok((_, first))) => *first = rejected,
            _ => batches.push(Ok((
                RecordBatch::new_empty(loaded.schema.clone()),
                rejected,
            ))),
        }
        let streamed = StreamedTable {
            schema: loaded.schema,
            batches: futures::stream::iter(batches).boxed(),
            fingerprint: loaded.fingerprint,
        };
        self.commit_version(schema, table, source, streamed, retention)
            .await
    }

    /// Write `streamed` as the table's next version, then swap it in: from memory if its rows
    /// fit the memory cache, in place from the file otherwise. Any earlier segments of the table
    /// are superseded.
    pub(super) async fn commit_version(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        streamed: StreamedTable,
        retention: Option<Retention>,
    ) -> Result<(), StoreError> {
        let key: Key = (schema.into(), table.into());
        let (number, supersedes) = {
            let data = self.data.read().expect("data lock");
            let current = data.get(&key);
            (
                current.map_or(1, |d| d.next_version()),
                current.map_or(0, |d| d.next_segment),
            )
        };
        let path = version::path(&self.schema_dir(schema), table, number);
        let table_schema = streamed.schema.clone();
        let fingerprint = streamed.fingerprint.clone();
        // Called when every row is written: a version is as of when it landed, so a source read
        // for longer than three refresh intervals is not stale the moment it is served, and a
        // restart restores the same `last_success`.
        let meta = |rejected: Vec<RejectedRecord>, arrow_bytes: u64| persist::SnapshotMeta {
            source: source.to_string(),
            loaded_at: Utc::now(),
            rejected,
            cursor: None,
            supersedes_segments_below: supersedes,
            retained_from: retention.as_ref().map(|r| r.cutoff),
            fingerprint: fingerprint.clone(),
            arrow_bytes: Some(arrow_bytes),
        };
        let written = write_stream(&path, streamed, retention.as_ref(), self.order(&key), meta)
            .await
            .map_err(|failure| match failure {
                Failure::Source(message) => StoreError::Source {
                    table: table.into(),
                    message,
                },
                Failure::Write(message) => StoreError::Persist {
                    table: table.into(),
                    path: path.clone(),
                    message,
                },
            })?;

        let _one_commit_at_a_time = self.commit_lock.lock().await;
        let previous = self.current(&key);
        let mut next = previous.clone();
        next.schema = Some(table_schema.clone());
        next.version = Some(number);
        next.rejected = written.rejected;
        next.cursor = None;
        next.retained_from = retention.as_ref().map(|r| r.cutoff);
        next.snapshot_below = supersedes;
        next.fingerprint = fingerprint;
        next.loaded_at = Some(written.loaded_at);
        // The version supersedes every segment; they are only clutter now.
        let _ = std::fs::remove_dir_all(self.segments_dir(schema, table));
        let in_place = written.bytes > self.memory_cache;
        if in_place {
            self.register_in_place(schema, table, &table_schema, &path)?;
            next.in_place = Some((path.clone(), written.rows));
            next.batches = Vec::new();
        } else {
            next.batches = read_back(&path)?;
            next.in_place = None;
            self.register(schema, table, &table_schema, &next.batches)?;
        }
        // A version served in place stays for the queries planned against it until the next
        // version replaces this one; one served from memory is read by no query.
        let keep_from = match previous.in_place {
            Some(_) => number.saturating_sub(1),
            None => number,
        };
        version::delete_before(&self.schema_dir(schema), table, keep_from);
        let rejected = next.rejected.len();
        self.data
            .write()
            .expect("data lock")
            .insert(key.clone(), next);
        self.mark_fresh(
            key.clone(),
            source,
            written.rows,
            rejected,
            written.loaded_at,
        );
        if let Some(entry) = self.status.write().expect("status lock").get_mut(&key) {
            entry.storage = match in_place {
                true => Storage::Disk,
                false => Storage::Memory,
            };
        }
        info!(
            schema,
            table,
            rows = written.rows,
            version = number,
            in_place,
            "new version committed"
        );
        self.changed();
        Ok(())
    }

    /// The source was not read again: it is the one the current version came from. The table is
    /// fresh, and /status says since when its source has not changed.
    pub(super) fn confirm_unchanged(&self, schema: &str, table: &str, source: &str) {
        let key: Key = (schema.into(), table.into());
        let Some((rows, rejected, since)) = self
            .data
            .read()
            .expect("data lock")
            .get(&key)
            .map(|d| (d.rows(), d.rejected.len(), d.loaded_at))
        else {
            return;
        };
        let now = Utc::now();
        self.mark_fresh(key.clone(), source, rows, rejected, now);
        if let Some(entry) = self.status.write().expect("status lock").get_mut(&key) {
            entry.unchanged_since = since;
        }
        info!(schema, table, "source unchanged; not read again");
        // No row changed: the views need no re-planning, only system.tables its new status.
        self.refresh_system_tables();
    }
}

#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The source failed while it was read.
    Source(String),
    /// The version could not be written.
    Write(String),
}

/// How a version's rows are ordered: by `columns`, sorted in at most `memory` bytes, spilling
/// into `spill_dir` beyond.
pub(super) struct Order {
    pub columns: Vec<String>,
    pub spill_dir: PathBuf,
    pub memory: usize,
}

/// Consume `streamed` into a new Parquet file at `path`: the source is read here (through the
/// external sort when the table has an order) while a blocking task encodes and writes the
/// batches, `BATCHES_IN_FLIGHT` at most between them.
pub(super) async fn write_stream(
    path: &Path,
    streamed: StreamedTable,
    retention: Option<&Retention>,
    order: Option<Order>,
    meta: impl FnOnce(Vec<RejectedRecord>, u64) -> persist::SnapshotMeta,
) -> Result<Written, Failure> {
    let table_schema = streamed.schema.clone();
    let mut writer =
        persist::AtomicWriter::create(path, table_schema.clone()).map_err(Failure::Write)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<RecordBatch>(BATCHES_IN_FLIGHT);
    let encoder = tokio::task::spawn_blocking(move || {
        let (mut rows, mut bytes) = (0, 0);
        while let Some(batch) = receiver.blocking_recv() {
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size() as u64;
            writer.write(&batch)?;
        }
        Ok::<_, String>((writer, rows, bytes))
    });
    let rejected = Arc::new(Mutex::new(Vec::new()));
    // The source's own failure, kept aside: through the sort it would come out as the sort's.
    let source_failure = Arc::new(Mutex::new(None));
    let prepared = prepare(
        streamed.batches,
        table_schema.clone(),
        retention.cloned(),
        rejected.clone(),
        source_failure.clone(),
    );
    let mut batches = match order {
        None => prepared.boxed(),
        Some(order) => {
            sort::check(&table_schema, &order.columns).map_err(Failure::Source)?;
            let input = prepared
                .map_err(|f| DataFusionError::External(format!("{f:?}").into()))
                .boxed();
            let columns = order.columns.clone();
            sort::sorted(
                input,
                table_schema.clone(),
                &order.columns,
                &order.spill_dir,
                order.memory,
            )
            .map_err(|e| Failure::Source(e.to_string()))?
            .map_err(move |e| Failure::Write(format!("sorting by {columns:?}: {e}")))
            .boxed()
        }
    };
    let read = async {
        while let Some(batch) = batches.next().await {
            if sender.send(batch?).await.is_err() {
                // The writer stopped: its error is reported below.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(batches);
    drop(sender);
    let encoded = encoder
        .await
        .map_err(|e| Failure::Write(format!("the writer task failed: {e}")))?;
    if let Some(failure) = source_failure.lock().expect("failure lock").take() {
        return Err(failure);
    }
    read?;
    let (writer, rows, bytes) = encoded.map_err(Failure::Write)?;
    let rejected = std::mem::take(&mut *rejected.lock().expect("rejected lock"));
    let meta = meta(rejected.clone(), bytes);
    let loaded_at = meta.loaded_at;
    let entry = persist::meta_entry(&meta).map_err(Failure::Write)?;
    tokio::task::spawn_blocking(move || writer.finish(vec![entry]))
        .await
        .map_err(|e| Failure::Write(format!("the writer task failed: {e}")))?
        .map_err(Failure::Write)?;
    Ok(Written {
        rows,
        bytes,
        rejected,
        loaded_at,
    })
}

/// The source's batches as the table stores them: conformed to its schema, expired rows of a
/// retention refused, empty batches dropped; refused records go to `rejected`, and a failure of
/// the source also to `failure`.
fn prepare(
    batches: super::input::BatchStream,
    schema: SchemaRef,
    retention: Option<Retention>,
    rejected: Arc<Mutex<Vec<RejectedRecord>>>,
    failure: Arc<Mutex<Option<Failure>>>,
) -> BoxStream<'static, Result<RecordBatch, Failure>> {
    batches
        .enumerate()
        .map(move |(index, item)| {
            let (batch, refused) = item.map_err(|e| Failure::Source(e.to_string()))?;
            let batch = conform(&schema, batch, index + 1).map_err(Failure::Source)?;
            let (batch, refused) = match &retention {
                None => (Some(batch), refused),
                Some(retention) => {
                    let (kept, refused) =
                        retain::retain(&[batch], &refused, retention).map_err(Failure::Source)?;
                    (kept.into_iter().next(), refused)
                }
            };
            rejected.lock().expect("rejected lock").extend(refused);
            Ok(batch.filter(|b| b.num_rows() > 0))
        })
        .inspect_err(move |f: &Failure| *failure.lock().expect("failure lock") = Some(f.clone()))
        .try_filter_map(|batch| futures::future::ready(Ok(batch)))
        .boxed()
}

/// A batch under the table's schema: the same columns and types by position (a source may
/// differ in metadata or nullability), or an error naming the batch.
fn conform(schema: &SchemaRef, batch: RecordBatch, number: usize) -> Result<RecordBatch, String> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let types = |s: &SchemaRef| -> Vec<String> {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect()
    };
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| {
        format!(
            "batch {number} has columns {:?}, the table has {:?}: {e}",
            types(&batch.schema()),
            types(schema)
        )
    })
}

/// A version small enough for the memory cache, read into memory.
pub(super) fn read_back(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let read = persist::read(path).map_err(|message| StoreError::ReadSnapshot {
        path: path.to_path_buf(),
        message,
    })?;
    read.map(|(loaded, _)| loaded.batches)
        .ok_or_else(|| StoreError::ReadSnapshot {
            path: path.to_path_buf(),
            message: "the version went away once written".into(),
        })
}
