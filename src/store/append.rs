//! Append tables (incremental PostgreSQL and HTTP pulls): each pull's rows become a segment
//! with the cursor reached, committed in one step; a reload replaces the table with its cursor;
//! segments are compacted into one version once there are `COMPACT_AFTER_SEGMENTS`.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use futures::{StreamExt, TryStreamExt};

use super::input::{LoadMode, LoadedTable, RejectedRecord, Retention, StreamedTable};
use super::*;

impl Store {
    /// Rows appended to an append table, or the whole of one reloaded (with its cursor).
    pub(super) async fn commit_appending(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        loaded: LoadedTable,
    ) -> Result<(), StoreError> {
        let _one_commit_at_a_time = self.commit_lock.lock().await;
        let now = Utc::now();
        let key: Key = (schema.into(), table.into());
        let previous = self.current(&key);
        if loaded.mode == LoadMode::Append {
            if let Some(existing) = &previous.schema {
                if existing.fields() != loaded.schema.fields() {
                    return Err(StoreError::Register {
                        table: table.into(),
                        message: format!(
                            "appended rows have columns {:?}, the table has {:?}",
                            field_names(&loaded.schema),
                            field_names(existing)
                        ),
                    });
                }
            }
        }
        // A load that starts a table over holds the source's rows from the cutoff on: expired
        // rows are dropped before they are persisted (a no-op when the source already left them
        // out). Appends keep the window the table has; compaction moves it.
        let starts_over = loaded.mode != LoadMode::Append || previous.schema.is_none();
        let mut loaded = loaded;
        if let (true, Some(retention)) = (starts_over, &loaded.retention) {
            let (batches, rejected) = retain::retain(&loaded.batches, &loaded.rejected, retention)
                .map_err(|message| StoreError::Register {
                    table: table.into(),
                    message,
                })?;
            loaded.batches = batches;
            loaded.rejected = rejected;
        }
        let nothing_new = loaded.mode == LoadMode::Append
            && previous.schema.is_some()
            && loaded.rows() == 0
            && loaded.rejected.is_empty()
            && (loaded.cursor.is_none() || loaded.cursor == previous.cursor);
        if nothing_new {
            // An incremental pull that found nothing: no empty segment on disk, the table is
            // simply up to date.
            self.mark_fresh(key, source, previous.rows(), previous.rejected.len(), now);
            return Ok(());
        }
        // A reload supersedes at least segment 0, so the next append never mistakes its snapshot
        // for the leftover of an old setup (see below).
        let supersedes = match loaded.mode {
            LoadMode::Reload => previous.next_segment.max(1),
            _ => previous.next_segment,
        };
        let meta = persist::SnapshotMeta {
            source: source.to_string(),
            loaded_at: now,
            rejected: loaded.rejected.clone(),
            cursor: loaded.cursor.clone(),
            supersedes_segments_below: supersedes,
            retained_from: match starts_over {
                true => loaded.retention.as_ref().map(|r| r.cutoff),
                false => previous.retained_from,
            },
            fingerprint: None,
            arrow_bytes: None,
        };
        let (path, segments) = match loaded.mode {
            LoadMode::Replace | LoadMode::Reload => (
                version::path(&self.schema_dir(schema), table, previous.next_version()),
                None,
            ),
            LoadMode::Append => {
                let dir = self.segments_dir(schema, table);
                (
                    persist::segment_path(&dir, previous.next_segment),
                    Some(dir),
                )
            }
        };
        let persisted = {
            let (path, loaded) = (path.clone(), loaded.clone());
            tokio::task::spawn_blocking(move || persist::write(&path, &loaded, &meta)).await
        };
        match persisted {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(StoreError::Persist {
                    table: table.into(),
                    path,
                    message,
                });
            }
            Err(e) => {
                return Err(StoreError::Persist {
                    table: table.into(),
                    path,
                    message: e.to_string(),
                });
            }
        }

        let mut next = previous.clone();
        if starts_over {
            next.retained_from = loaded.retention.as_ref().map(|r| r.cutoff);
        }
        let mut reload_reason = None;
        match loaded.mode {
            LoadMode::Replace | LoadMode::Reload => {
                next.batches = loaded.batches.clone();
                next.in_place = None;
                next.version = Some(previous.next_version());
                next.rejected = loaded.rejected.clone();
                next.cursor = None;
                // The snapshot supersedes every segment; they are only clutter now.
                let _ = std::fs::remove_dir_all(self.segments_dir(schema, table));
                next.snapshot_below = supersedes;
                if loaded.mode == LoadMode::Reload {
                    next.cursor = loaded.cursor.clone();
                    next.next_segment = supersedes;
                    let before = previous
                        .batches
                        .iter()
                        .map(RecordBatch::num_rows)
                        .sum::<usize>()
                        + previous.rejected.len();
                    let reason = format!(
                        "the source went backwards: the table held {before} rows up to cursor {}, \
                         the source now has {} (reloaded in full, new cursor {})",
                        previous.cursor.as_deref().unwrap_or("(none)"),
                        loaded.rows() + loaded.rejected.len(),
                        loaded.cursor.as_deref().unwrap_or("(none)"),
                    );
                    warn!(schema, table, reason = %reason, "append table reloaded in full");
                    reload_reason = Some(reason);
                }
            }
            LoadMode::Append => {
                if segments.is_some() && previous.next_segment == 0 {
                    // A table that starts appending drops any replacing snapshot of an old setup.
                    version::delete_all(&self.schema_dir(schema), table);
                    next.version = None;
                    next.in_place = None;
                }
                next.batches.extend(loaded.batches.iter().cloned());
                next.rejected.extend(loaded.rejected.iter().cloned());
                next.cursor = loaded.cursor.clone().or(previous.cursor.clone());
                next.next_segment += 1;
                if next.next_segment - next.snapshot_below >= COMPACT_AFTER_SEGMENTS {
                    self.compact(
                        schema,
                        table,
                        source,
                        now,
                        &loaded.schema,
                        loaded.retention.as_ref(),
                        &mut next,
                    )
                    .await;
                }
            }
        }
        next.schema = Some(loaded.schema.clone());
        // A large version is queried in place: its rows leave memory once registered (an append
        // table's later rows stay in memory until they are compacted into its next version).
        if let (LoadMode::Replace | LoadMode::Reload, Some(v)) = (loaded.mode, next.version)
            && arrow_bytes(&next.batches) > self.memory_cache
        {
            let path = version::path(&self.schema_dir(schema), table, v);
            next.in_place = Some((path, next.rows()));
            next.batches = Vec::new();
        }
        self.register_data(schema, table, &loaded.schema, &next)?;
        let in_place = next.in_place.is_some();
        if let Some(v) = next.version {
            // A version served in place stays for the queries planned against it until the next
            // version replaces this one; one served from memory is read by no query.
            let keep_from = match previous.in_place {
                Some(_) => v.saturating_sub(1),
                None => v,
            };
            version::delete_before(&self.schema_dir(schema), table, keep_from);
        }
        let rows = next.rows();
        let rejected = next.rejected.len();
        self.data
            .write()
            .expect("data lock")
            .insert(key.clone(), next);
        self.mark_fresh(key.clone(), source, rows, rejected, now);
        {
            let mut status = self.status.write().expect("status lock");
            if let Some(entry) = status.get_mut(&key) {
                entry.storage = storage_of(in_place);
                if let Some(reason) = reload_reason {
                    entry.last_reload = Some(now);
                    entry.last_reload_reason = Some(reason);
                }
            }
        }
        info!(schema, table, rows, mode = ?loaded.mode, "table committed");
        self.changed();
        Ok(())
    }

    /// Rewrite an append table as one version superseding all its segments, then delete them;
    /// rows past the retention are dropped on the way. The rows stream from the current version
    /// (read in place when it is) and the segments' rows into the new file, so memory does not
    /// grow with the table; a version larger than the memory cache is then queried in place. The
    /// rows are durable in the segments already: a failure here only leaves them as they are.
    #[allow(clippy::too_many_arguments)]
    async fn compact(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        now: DateTime<Utc>,
        table_schema: &SchemaRef,
        retention: Option<&Retention>,
        next: &mut TableData,
    ) {
        let retained_from = retention.map(|r| r.cutoff).or(next.retained_from);
        let before = next.rows();
        let held: Vec<_> = next.batches.iter().cloned().map(Ok).collect();
        let from_version = match &next.in_place {
            None => futures::stream::empty().boxed(),
            Some((path, _)) => match version_rows(path).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(schema, table, path = %path.display(), error = %e, "cannot compact the appended segments");
                    return;
                }
            },
        };
        // The rejected records travel with an empty first batch, so the retention applies to
        // them as to the rows.
        let rejected = next.rejected.clone();
        let empty = RecordBatch::new_empty(table_schema.clone());
        let batches = futures::stream::once(async move { Ok((empty, rejected)) })
            .chain(
                from_version
                    .chain(futures::stream::iter(held))
                    .map_ok(|batch| (batch, Vec::new())),
            )
            .boxed();
        let streamed = StreamedTable {
            schema: table_schema.clone(),
            batches,
            fingerprint: None,
        };
        let (cursor, supersedes) = (next.cursor.clone(), next.next_segment);
        let meta = |rejected: Vec<RejectedRecord>, arrow_bytes: u64| persist::SnapshotMeta {
            source: source.to_string(),
            loaded_at: now,
            rejected,
            cursor,
            supersedes_segments_below: supersedes,
            retained_from,
            fingerprint: None,
            arrow_bytes: Some(arrow_bytes),
        };
        let new_version = next.next_version();
        let path = version::path(&self.schema_dir(schema), table, new_version);
        let written = match snapshot::write_stream(&path, streamed, retention, None, meta).await {
            Ok(written) => written,
            Err(e) => {
                warn!(schema, table, path = %path.display(), error = ?e, "cannot compact the appended segments");
                return;
            }
        };
        let in_place = written.bytes > self.memory_cache;
        let batches = match in_place {
            true => Vec::new(),
            false => match snapshot::read_back(&path) {
                Ok(batches) => batches,
                Err(e) => {
                    warn!(schema, table, path = %path.display(), error = %e, "cannot read the compacted version back");
                    return;
                }
            },
        };
        let segments = next.next_segment - next.snapshot_below;
        let _ = std::fs::remove_dir_all(self.segments_dir(schema, table));
        next.snapshot_below = next.next_segment;
        next.batches = batches;
        next.in_place = in_place.then(|| (path.clone(), written.rows));
        next.version = Some(new_version);
        next.rejected = written.rejected;
        next.retained_from = retained_from;
        let expired = before.saturating_sub(written.rows);
        info!(
            schema,
            table, segments, expired, in_place, "append table compacted into one version"
        );
    }
}

/// The rows of the version file at `path`, read batch by batch.
async fn version_rows(
    path: &Path,
) -> Result<
    futures::stream::BoxStream<'static, Result<RecordBatch, super::input::SourceError>>,
    String,
> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let reader = parquet::arrow::ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(|e| e.to_string())?
        .with_batch_size(ROWS_PER_BATCH)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(reader.map_err(Into::into).boxed())
}
