//! Tables, and nothing else: snapshot tables replaced atomically and persisted as Parquet, log
//! tables appended through a write-ahead log (see `log`), their status (source, rows, last
//! success, last error) and the records their sources rejected.
//!
//! A query resolves each table once, when it is planned, to the immutable `MemTable` registered at
//! that moment; a refresh registers a new `MemTable` in its place. So a query sees either the old
//! table or the new one, never a mix.

#[cfg(test)]
mod in_place_tests;
pub mod log;
mod persist;
pub use persist::{read_whole, write_atomically};
mod provider;
mod retain;
pub mod rollup;
mod schema;
mod system;
mod version;
pub mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider};
use datafusion::datasource::MemTable;
use serde::Serialize;
use tracing::{info, warn};

use crate::connectors::{LoadMode, LoadState, LoadedTable, RejectedRecord, Retention};

/// The catalog every table lives in.
pub const CATALOG: &str = "city";
/// Schemas the service uses itself; a connector may not take these names.
pub const RESERVED_SCHEMAS: &[&str] = &[
    "system",
    "queries",
    "information_schema",
    "public",
    crate::sdc::PUBLISHED_SCHEMA,
];
/// Tables up to this size (their rows in Arrow memory) are served from memory by default; larger
/// ones are queried in place from their Parquet snapshot (see `version`).
pub const DEFAULT_MEMORY_CACHE: u64 = 32 * 1024 * 1024;
/// Rows per record batch in a registered table: small enough to spread over the cores.
const ROWS_PER_BATCH: usize = 64 * 1024;
/// Segments an append table may have beside its snapshot: when an append reaches this many, the
/// table is compacted into one snapshot (and its batches into batches of `ROWS_PER_BATCH`), so a
/// table refreshed every minute keeps a handful of files, not 1,440 a day.
pub const COMPACT_AFTER_SEGMENTS: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot persist the snapshot of `{table}` to {}: {message}", path.display())]
    Persist {
        table: String,
        path: PathBuf,
        message: String,
    },
    #[error("cannot read the persisted snapshot {}: {message}", path.display())]
    ReadSnapshot { path: PathBuf, message: String },
    #[error("table `{table}`: {message}")]
    Register { table: String, message: String },
}

/// Where a table stands, as /status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableState {
    /// Not loaded yet.
    Loading,
    /// The last load succeeded.
    Fresh,
    /// Data is served, but the last load failed or the data is older than it should be.
    Stale,
    /// No data: the source failed and there is no snapshot to fall back on.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub schema: String,
    pub table: String,
    pub source: String,
    pub state: TableState,
    pub rows: usize,
    pub rejected: usize,
    pub last_success: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Expected time between refreshes.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Whether the rows served come from the snapshot persisted by an earlier run.
    pub from_persisted_snapshot: bool,
    /// When an append table was last reloaded in full because its source went backwards.
    pub last_reload: Option<DateTime<Utc>>,
    /// Why, with the rows before and after.
    pub last_reload_reason: Option<String>,
    /// Where queries read the rows: `memory`, or `disk` (in place from the Parquet snapshot).
    pub storage: Storage,
    /// The rows come from a built-in simulator, not from the city's real source.
    pub simulated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    #[default]
    Memory,
    Disk,
}

impl TableStatus {
    /// Stale also when the last success is older than three refresh intervals (a stuck source).
    pub fn effective_state(&self, now: DateTime<Utc>) -> TableState {
        if self.state == TableState::Fresh {
            if let Some(success) = self.last_success {
                let age = (now - success).to_std().unwrap_or_default();
                if age > self.refresh.saturating_mul(3) {
                    return TableState::Stale;
                }
            }
        }
        self.state
    }
}

type Key = (String, String);

#[derive(Debug, Clone, Default)]
struct TableData {
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
    rejected: Vec<RejectedRecord>,
    cursor: Option<String>,
    /// Number of the next appended segment on disk.
    next_segment: u64,
    /// Segments numbered below this are in the snapshot.
    snapshot_below: u64,
    /// For an append table with a retention: from when it holds the source's rows.
    retained_from: Option<i64>,
    /// The latest snapshot version on disk.
    version: Option<u64>,
    /// Served in place from a version file (`batches` is then empty): the file and its rows.
    in_place: Option<(PathBuf, usize)>,
}

impl TableData {
    /// Rows served, in memory or in place.
    fn rows(&self) -> usize {
        self.in_place.as_ref().map_or_else(
            || self.batches.iter().map(RecordBatch::num_rows).sum(),
            |(_, rows)| *rows,
        )
    }

    fn next_version(&self) -> u64 {
        self.version.map_or(1, |v| v + 1)
    }
}

fn field_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

pub struct Store {
    data_dir: PathBuf,
    catalog: Arc<MemoryCatalogProvider>,
    status: RwLock<BTreeMap<Key, TableStatus>>,
    /// What each table holds now; the registered `MemTable`s share these batches.
    data: RwLock<BTreeMap<Key, TableData>>,
    /// Commits are serialised so an append always builds on the previous commit.
    commit_lock: tokio::sync::Mutex<()>,
    target_partitions: usize,
    /// Snapshot tables whose rows take more Arrow memory than this are queried in place.
    memory_cache: u64,
    /// Bumped after every change of a table, so the query layer can re-plan its views.
    version: tokio::sync::watch::Sender<u64>,
    /// Log tables (appended by streams), each also registered as a live table in its schema.
    logs: RwLock<BTreeMap<Key, Arc<log::LogTable>>>,
    /// When `system.tables` was last rebuilt for a log append (appends rebuild it at most once a
    /// second).
    last_system_refresh: std::sync::Mutex<std::time::Instant>,
}

impl Store {
    pub fn new(data_dir: &Path, target_partitions: usize) -> Arc<Self> {
        Self::open(data_dir, target_partitions, DEFAULT_MEMORY_CACHE)
    }

    /// A store in `data_dir` that serves snapshot tables of up to `memory_cache` bytes from
    /// memory and larger ones in place from disk.
    pub fn open(data_dir: &Path, target_partitions: usize, memory_cache: u64) -> Arc<Self> {
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let (version, _) = tokio::sync::watch::channel(0);
        let store = Arc::new(Self {
            data_dir: data_dir.to_path_buf(),
            catalog,
            status: RwLock::new(BTreeMap::new()),
            data: RwLock::new(BTreeMap::new()),
            commit_lock: tokio::sync::Mutex::new(()),
            target_partitions: target_partitions.max(1),
            memory_cache,
            version,
            logs: RwLock::new(BTreeMap::new()),
            last_system_refresh: std::sync::Mutex::new(std::time::Instant::now()),
        });
        store.schema_provider("system");
        store.refresh_system_tables();
        store
    }

    pub fn catalog(&self) -> Arc<dyn CatalogProvider> {
        self.catalog.clone()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The schema provider of a schema, created on first use.
    pub fn schema_provider(&self, schema: &str) -> Arc<dyn SchemaProvider> {
        if let Some(existing) = self.catalog.schema(schema) {
            return existing;
        }
        let provider: Arc<dyn SchemaProvider> = Arc::new(schema::SnapshotSchema::default());
        let _ = self.catalog.register_schema(schema, provider.clone());
        self.catalog.schema(schema).unwrap_or(provider)
    }

    /// Declare a table before its first load, so /status lists it as loading.
    pub fn declare(&self, schema: &str, table: &str, source: &str, refresh: Duration) {
        self.schema_provider(schema);
        let mut status = self.status.write().expect("status lock");
        let entry = status
            .entry((schema.into(), table.into()))
            .or_insert_with(|| blank_status(schema, table, source));
        entry.refresh = refresh;
    }

    /// Label a declared table as simulated data.
    pub fn mark_simulated(&self, schema: &str, table: &str) {
        let mut status = self.status.write().expect("status lock");
        if let Some(entry) = status.get_mut(&(schema.to_string(), table.to_string())) {
            entry.simulated = true;
        }
    }

    /// The folder of a schema's snapshot versions (and of its tables' segment folders).
    fn schema_dir(&self, schema: &str) -> PathBuf {
        self.data_dir.join("snapshots").join(schema)
    }

    fn segments_dir(&self, schema: &str, table: &str) -> PathBuf {
        self.data_dir.join("snapshots").join(schema).join(table)
    }

    /// The cursors committed for a connector's tables.
    pub fn load_state(&self, schema: &str) -> LoadState {
        let data = self.data.read().expect("data lock");
        let mut state = LoadState::default();
        for ((_, table), d) in data.iter().filter(|((s, _), _)| s == schema) {
            if let Some(cursor) = &d.cursor {
                state.cursors.insert(table.clone(), cursor.clone());
                let rows: usize = d.batches.iter().map(RecordBatch::num_rows).sum();
                state
                    .rows
                    .insert(table.clone(), (rows + d.rejected.len()) as u64);
                if let Some(from) = d.retained_from {
                    state.retained_from.insert(table.clone(), from);
                }
            }
        }
        state
    }

    /// Make freshly loaded rows durable, then visible: a replacing load becomes the new snapshot,
    /// an appending one a new segment with its cursor, a reload of an append table a snapshot with
    /// its cursor that supersedes every segment. If persisting fails nothing is swapped in:
    /// what is served is always what a restart would serve.
    pub async fn commit(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        loaded: LoadedTable,
    ) -> Result<(), StoreError> {
        let _one_commit_at_a_time = self.commit_lock.lock().await;
        let now = Utc::now();
        let key: Key = (schema.into(), table.into());
        let previous = self
            .data
            .read()
            .expect("data lock")
            .get(&key)
            .cloned()
            .unwrap_or_default();
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
        // A large snapshot table is queried in place: its rows leave memory once registered.
        let in_place = match (loaded.mode, next.version) {
            (LoadMode::Replace, Some(v)) if arrow_bytes(&next.batches) > self.memory_cache => {
                Some(version::path(&self.schema_dir(schema), table, v))
            }
            _ => None,
        };
        match &in_place {
            Some(path) => {
                self.register_in_place(schema, table, &loaded.schema, path)?;
                next.in_place = Some((path.clone(), next.rows()));
                next.batches = Vec::new();
            }
            None => self.register(schema, table, &loaded.schema, &next.batches)?,
        }
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
                entry.storage = storage_of(in_place.is_some());
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

    /// Rewrite an append table as one snapshot superseding all its segments, then delete them;
    /// rows past the retention are dropped on the way. The rows are durable in the segments
    /// already: a failure here only leaves them as they are.
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
        let (retained, rejected) = match retention {
            None => (next.batches.clone(), next.rejected.clone()),
            Some(retention) => match retain::retain(&next.batches, &next.rejected, retention) {
                Ok(kept) => kept,
                Err(e) => {
                    warn!(schema, table, error = %e, "cannot apply the retention");
                    (next.batches.clone(), next.rejected.clone())
                }
            },
        };
        let retained_from = retention.map(|r| r.cutoff).or(next.retained_from);
        let expired = next
            .batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            - retained.iter().map(RecordBatch::num_rows).sum::<usize>();
        let batches = match rechunk(table_schema, &retained) {
            Ok(batches) => batches,
            Err(e) => {
                warn!(schema, table, error = %e, "cannot compact the appended segments");
                return;
            }
        };
        let mut whole = LoadedTable::replace(table_schema.clone(), batches, rejected.clone());
        whole.cursor = next.cursor.clone();
        let meta = persist::SnapshotMeta {
            source: source.to_string(),
            loaded_at: now,
            rejected: rejected.clone(),
            cursor: next.cursor.clone(),
            supersedes_segments_below: next.next_segment,
            retained_from,
        };
        let new_version = next.next_version();
        let path = version::path(&self.schema_dir(schema), table, new_version);
        let written = {
            let (path, whole) = (path.clone(), whole.clone());
            tokio::task::spawn_blocking(move || persist::write(&path, &whole, &meta)).await
        };
        match written {
            Ok(Ok(())) => {
                let segments = next.next_segment - next.snapshot_below;
                let _ = std::fs::remove_dir_all(self.segments_dir(schema, table));
                next.snapshot_below = next.next_segment;
                next.batches = whole.batches;
                next.version = Some(new_version);
                next.rejected = rejected;
                next.retained_from = retained_from;
                info!(
                    schema,
                    table, segments, expired, "append table compacted into one snapshot"
                );
            }
            Ok(Err(e)) => {
                warn!(schema, table, path = %path.display(), error = %e, "cannot compact the appended segments")
            }
            Err(e) => {
                warn!(schema, table, path = %path.display(), error = %e, "cannot compact the appended segments")
            }
        }
    }

    fn mark_fresh(&self, key: Key, source: &str, rows: usize, rejected: usize, now: DateTime<Utc>) {
        let mut status = self.status.write().expect("status lock");
        let entry = status
            .entry(key.clone())
            .or_insert_with(|| blank_status(&key.0, &key.1, source));
        entry.source = source.into();
        entry.state = TableState::Fresh;
        entry.rows = rows;
        entry.rejected = rejected;
        entry.last_success = Some(now);
        entry.last_attempt = Some(now);
        entry.last_error = None;
        entry.from_persisted_snapshot = false;
    }

    /// A load failed: keep serving what we have, say why in /status.
    pub fn record_failure(&self, schema: &str, table: &str, source: &str, error: &str) {
        let mut status = self.status.write().expect("status lock");
        let entry = status
            .entry((schema.into(), table.into()))
            .or_insert_with(|| blank_status(schema, table, source));
        entry.last_attempt = Some(Utc::now());
        entry.last_error = Some(error.to_string());
        entry.state = if entry.last_success.is_some() {
            TableState::Stale
        } else {
            TableState::Failed
        };
        warn!(
            schema,
            table, error, "load failed; the last good snapshot stays"
        );
        drop(status);
        self.changed();
    }

    /// At start-up, serve what an earlier run persisted (the snapshot, then the segments appended
    /// after it), marked stale until a refresh succeeds.
    pub fn restore(&self, schema: &str, table: &str) -> Result<bool, StoreError> {
        let read = |path: &Path| {
            persist::read(path).map_err(|message| StoreError::ReadSnapshot {
                path: path.to_path_buf(),
                message,
            })
        };
        let mut data = TableData::default();
        let mut source = String::new();
        let mut loaded_at = None;
        let mut superseded_below = 0;
        let dir = self.segments_dir(schema, table);
        let segments =
            persist::list_segments(&dir).map_err(|message| StoreError::ReadSnapshot {
                path: dir.clone(),
                message,
            })?;
        let mut in_place = None;
        if let Some((number, path)) = version::latest(&self.schema_dir(schema), table) {
            let gone = || StoreError::ReadSnapshot {
                path: path.clone(),
                message: "the file went away while it was read".into(),
            };
            let footer = persist::read_footer(&path)
                .map_err(|message| StoreError::ReadSnapshot {
                    path: path.clone(),
                    message,
                })?
                .ok_or_else(gone)?;
            data.version = Some(number);
            // A large snapshot table is registered from its footer, its rows left on disk.
            let snapshot_table = footer.meta.cursor.is_none() && segments.is_empty();
            let (loaded, meta) = if snapshot_table && footer.bytes > self.memory_cache {
                data.in_place = Some((path.clone(), footer.rows));
                in_place = Some(path);
                let loaded = LoadedTable::replace(footer.schema, Vec::new(), Vec::new());
                (loaded, footer.meta)
            } else {
                read(&path)?.ok_or_else(gone)?
            };
            data.schema = Some(loaded.schema.clone());
            data.batches = loaded.batches;
            data.rejected = meta.rejected;
            // A reloaded append table goes on from the cursor of its snapshot.
            data.cursor = meta.cursor;
            superseded_below = meta.supersedes_segments_below;
            data.retained_from = meta.retained_from;
            data.next_segment = superseded_below;
            data.snapshot_below = superseded_below;
            source = meta.source;
            loaded_at = Some(meta.loaded_at);
        }
        for (sequence, path) in segments
            .into_iter()
            .filter(|(sequence, _)| *sequence >= superseded_below)
        {
            let Some((loaded, meta)) = read(&path)? else {
                continue;
            };
            data.schema = Some(loaded.schema.clone());
            data.batches.extend(loaded.batches);
            data.rejected.extend(meta.rejected);
            data.cursor = meta.cursor.or(data.cursor);
            // The first segment of a table that started by appending holds its window.
            data.retained_from = meta.retained_from.or(data.retained_from);
            data.next_segment = sequence + 1;
            source = meta.source;
            loaded_at = Some(meta.loaded_at);
        }
        let (Some(table_schema), Some(loaded_at)) = (data.schema.clone(), loaded_at) else {
            return Ok(false);
        };
        match &in_place {
            Some(path) => self.register_in_place(schema, table, &table_schema, path)?,
            None => self.register(schema, table, &table_schema, &data.batches)?,
        }
        let rows = data.rows();
        let rejected = data.rejected.len();
        self.data
            .write()
            .expect("data lock")
            .insert((schema.into(), table.into()), data);
        {
            let mut status = self.status.write().expect("status lock");
            let entry = status
                .entry((schema.into(), table.into()))
                .or_insert_with(|| blank_status(schema, table, &source));
            entry.state = TableState::Stale;
            entry.rows = rows;
            entry.rejected = rejected;
            entry.last_success = Some(loaded_at);
            entry.from_persisted_snapshot = true;
            entry.storage = storage_of(in_place.is_some());
            entry.last_error =
                Some("served from the persisted snapshot; not refreshed since start-up".into());
        }
        info!(schema, table, rows, "restored persisted snapshot");
        self.changed();
        Ok(true)
    }

    /// Register a table queried in place from a snapshot version.
    fn register_in_place(
        &self,
        schema: &str,
        table: &str,
        table_schema: &SchemaRef,
        path: &Path,
    ) -> Result<(), StoreError> {
        let provider =
            version::in_place(path, table_schema).map_err(|message| StoreError::Register {
                table: table.into(),
                message,
            })?;
        self.register_provider(schema, table, provider)
    }

    fn register_provider(
        &self,
        schema: &str,
        table: &str,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<(), StoreError> {
        self.schema_provider(schema)
            .register_table(table.to_string(), provider)
            .map_err(|e| StoreError::Register {
                table: table.into(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    fn register(
        &self,
        schema: &str,
        table: &str,
        table_schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<(), StoreError> {
        let partitions = partition(batches, self.target_partitions);
        let mem = MemTable::try_new(table_schema.clone(), partitions).map_err(|e| {
            StoreError::Register {
                table: table.into(),
                message: e.to_string(),
            }
        })?;
        self.register_provider(schema, table, Arc::new(mem))
    }

    /// Open (recovering it) a log table and register it, and its rollup table if it has one, as
    /// live tables: queries see every append without re-planning.
    pub fn open_log(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        columns: SchemaRef,
        options: log::LogOptions,
        refresh: Duration,
    ) -> Result<Arc<log::LogTable>, StoreError> {
        let opened = log::LogTable::open(&self.data_dir, schema, table, columns.clone(), options)?;
        let rows: provider::RowSource = {
            let opened = opened.clone();
            Arc::new(move || opened.batches())
        };
        let live = provider::LiveTable::new(columns, rows, self.target_partitions);
        self.schema_provider(schema)
            .register_table(table.to_string(), Arc::new(live))
            .map_err(|e| StoreError::Register {
                table: table.into(),
                message: e.to_string(),
            })?;
        if let Some(spec) = opened.rollup_spec() {
            let rows: provider::RowSource = {
                let opened = opened.clone();
                Arc::new(move || opened.rollup_batches())
            };
            let live = provider::LiveTable::new(spec.schema(), rows, self.target_partitions);
            self.schema_provider(schema)
                .register_table(spec.table.clone(), Arc::new(live))
                .map_err(|e| StoreError::Register {
                    table: spec.table.clone(),
                    message: e.to_string(),
                })?;
        }
        self.logs
            .write()
            .expect("logs lock")
            .insert((schema.into(), table.into()), opened.clone());
        {
            let mut status = self.status.write().expect("status lock");
            let mut names = vec![(table.to_string(), opened.row_count())];
            if let Some(spec) = opened.rollup_spec() {
                names.push((spec.table.clone(), opened.rollup_row_count()));
            }
            for (name, rows) in names {
                let entry = status
                    .entry((schema.into(), name.clone()))
                    .or_insert_with(|| blank_status(schema, &name, source));
                entry.refresh = refresh;
                entry.rows = rows;
                entry.from_persisted_snapshot = rows > 0;
            }
        }
        self.changed();
        Ok(opened)
    }

    pub fn log_table(&self, schema: &str, table: &str) -> Option<Arc<log::LogTable>> {
        self.logs
            .read()
            .expect("logs lock")
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// A stream delivered to a log table: its rows (and those of its rollup) and `rejected`
    /// (records of that stream refused, kept elsewhere) go to /status, marked fresh.
    pub fn log_progress(&self, schema: &str, table: &str, source: &str, rejected: usize) {
        let Some(log) = self.log_table(schema, table) else {
            return;
        };
        let now = Utc::now();
        let mut names = vec![(table.to_string(), log.row_count(), rejected)];
        if let Some(spec) = log.rollup_spec() {
            names.push((spec.table.clone(), log.rollup_row_count(), 0));
        }
        for (name, rows, rejected) in names {
            self.mark_fresh((schema.into(), name), source, rows, rejected, now);
        }
        let mut last = self.last_system_refresh.lock().expect("refresh lock");
        if last.elapsed() >= Duration::from_secs(1) {
            *last = std::time::Instant::now();
            drop(last);
            self.refresh_system_tables();
        }
    }

    /// The rows a table holds now (a snapshot or a log table), e.g. to read a registry.
    pub fn table_batches(
        &self,
        schema: &str,
        table: &str,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        if let Some(log) = self.log_table(schema, table) {
            return Some((log.schema(), log.batches()));
        }
        let (table_schema, batches, on_disk) = {
            let data = self.data.read().expect("data lock");
            let d = data.get(&(schema.to_string(), table.to_string()))?;
            let on_disk = d.in_place.as_ref().map(|(path, _)| path.clone());
            (d.schema.clone()?, d.batches.clone(), on_disk)
        };
        match on_disk {
            None => Some((table_schema, batches)),
            // A table queried in place is read from its version when its rows are wanted whole.
            Some(path) => match persist::read(&path) {
                Ok(Some((loaded, _))) => Some((table_schema, loaded.batches)),
                Ok(None) => None,
                Err(e) => {
                    warn!(schema, table, error = %e, "cannot read the table's snapshot");
                    None
                }
            },
        }
    }

    pub fn statuses(&self) -> Vec<TableStatus> {
        self.status
            .read()
            .expect("status lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn rejected_records(&self) -> Vec<(String, String, RejectedRecord)> {
        let data = self.data.read().expect("data lock");
        data.iter()
            .flat_map(|((schema, table), d)| {
                d.rejected
                    .iter()
                    .map(move |r| (schema.clone(), table.clone(), r.clone()))
            })
            .collect()
    }

    fn changed(&self) {
        self.refresh_system_tables();
        self.version.send_modify(|v| *v += 1);
    }

    fn refresh_system_tables(&self) {
        let system = self.schema_provider("system");
        for (name, table) in [
            ("tables", system::tables_table(&self.statuses())),
            (
                "rejected_records",
                system::rejected_table(&self.rejected_records()),
            ),
        ] {
            if let Err(e) = system.register_table(name.to_string(), table) {
                warn!(table = name, error = %e, "cannot register system table");
            }
        }
    }
}

fn blank_status(schema: &str, table: &str, source: &str) -> TableStatus {
    TableStatus {
        schema: schema.into(),
        table: table.into(),
        source: source.into(),
        state: TableState::Loading,
        rows: 0,
        rejected: 0,
        last_success: None,
        last_attempt: None,
        last_error: None,
        refresh: Duration::from_secs(3600),
        from_persisted_snapshot: false,
        last_reload: None,
        last_reload_reason: None,
        storage: Storage::Memory,
        simulated: false,
    }
}

fn storage_of(in_place: bool) -> Storage {
    match in_place {
        true => Storage::Disk,
        false => Storage::Memory,
    }
}

/// The Arrow memory a table's batches take.
fn arrow_bytes(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum()
}

/// Consecutive batches concatenated up to `ROWS_PER_BATCH` rows each: an append table's many
/// small pulls become a few large batches.
fn rechunk(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        if rows > 0 && rows + batch.num_rows() > ROWS_PER_BATCH {
            out.push(arrow::compute::concat_batches(schema, &pending)?);
            pending.clear();
            rows = 0;
        }
        rows += batch.num_rows();
        pending.push(batch.clone());
    }
    if !pending.is_empty() {
        out.push(arrow::compute::concat_batches(schema, &pending)?);
    }
    Ok(out)
}

/// Slice batches to a bounded size and deal them round-robin over the partitions, so scans of a
/// large table use every core.
fn partition(batches: &[RecordBatch], partitions: usize) -> Vec<Vec<RecordBatch>> {
    let mut out = vec![Vec::new(); partitions];
    let mut next = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let length = ROWS_PER_BATCH.min(batch.num_rows() - offset);
            out[next % partitions].push(batch.slice(offset, length));
            next += 1;
            offset += length;
        }
    }
    out
}

/// The first column of the batches, an Int64 column, as its values: what the store's tests compare.
#[cfg(test)]
fn first_column_i64(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("an Int64 column")
                .values()
                .to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn rows(values: &[i64], mode: LoadMode, cursor: Option<&str>) -> LoadedTable {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap();
        LoadedTable {
            retention: None,
            schema,
            batches: vec![batch],
            rejected: Vec::new(),
            mode,
            cursor: cursor.map(str::to_string),
        }
    }

    fn ids(store: &Store) -> Vec<i64> {
        let data = store.data.read().unwrap();
        first_column_i64(&data[&("log".to_string(), "events".to_string())].batches)
    }

    #[tokio::test]
    async fn appends_commit_their_cursor_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[1, 2], LoadMode::Append, Some("2")),
            )
            .await
            .unwrap();
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[3], LoadMode::Append, Some("3")),
            )
            .await
            .unwrap();
        assert_eq!(store.load_state("log").cursor("events"), Some("3"));
        assert_eq!(ids(&store), vec![1, 2, 3]);

        let restarted = Store::new(dir.path(), 2);
        assert!(restarted.restore("log", "events").unwrap());
        assert_eq!(ids(&restarted), vec![1, 2, 3]);
        assert_eq!(restarted.load_state("log").cursor("events"), Some("3"));
        restarted
            .commit(
                "log",
                "events",
                "pg",
                rows(&[4], LoadMode::Append, Some("4")),
            )
            .await
            .unwrap();
        assert_eq!(ids(&restarted), vec![1, 2, 3, 4]);

        // A full reload replaces everything, and a restart does not resurrect the old segments.
        restarted
            .commit(
                "log",
                "events",
                "pg",
                rows(&[10, 11], LoadMode::Replace, None),
            )
            .await
            .unwrap();
        let again = Store::new(dir.path(), 2);
        assert!(again.restore("log", "events").unwrap());
        assert_eq!(ids(&again), vec![10, 11]);
        assert_eq!(again.load_state("log").cursor("events"), None);
    }

    #[tokio::test]
    async fn a_reload_replaces_an_append_table_keeps_its_cursor_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        for (values, cursor) in [(&[1, 2, 3][..], "3"), (&[4, 5][..], "5")] {
            store
                .commit(
                    "log",
                    "events",
                    "pg",
                    rows(values, LoadMode::Append, Some(cursor)),
                )
                .await
                .unwrap();
        }
        assert_eq!(store.load_state("log").committed_rows("events"), Some(5));
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[1, 2], LoadMode::Reload, Some("2")),
            )
            .await
            .unwrap();
        assert_eq!(ids(&store), vec![1, 2]);
        let state = store.load_state("log");
        assert_eq!(
            (state.cursor("events"), state.committed_rows("events")),
            (Some("2"), Some(2))
        );
        let status = store
            .statuses()
            .into_iter()
            .find(|s| s.table == "events")
            .unwrap();
        assert!(status.last_reload.is_some());
        assert_eq!(
            status.last_reload_reason.as_deref(),
            Some(
                "the source went backwards: the table held 5 rows up to cursor 5, the source now \
                 has 2 (reloaded in full, new cursor 2)"
            )
        );
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[3], LoadMode::Append, Some("3")),
            )
            .await
            .unwrap();
        assert_eq!(ids(&store), vec![1, 2, 3]);

        let restarted = Store::new(dir.path(), 2);
        assert!(restarted.restore("log", "events").unwrap());
        assert_eq!(ids(&restarted), vec![1, 2, 3]);
        assert_eq!(restarted.load_state("log").cursor("events"), Some("3"));
        // A reload right after a restart, then an append, then a restart again.
        restarted
            .commit(
                "log",
                "events",
                "pg",
                rows(&[7], LoadMode::Reload, Some("7")),
            )
            .await
            .unwrap();
        restarted
            .commit(
                "log",
                "events",
                "pg",
                rows(&[8], LoadMode::Append, Some("8")),
            )
            .await
            .unwrap();
        let again = Store::new(dir.path(), 2);
        assert!(again.restore("log", "events").unwrap());
        assert_eq!(ids(&again), vec![7, 8]);
        assert_eq!(again.load_state("log").cursor("events"), Some("8"));
    }

    #[tokio::test]
    async fn appends_are_compacted_into_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        let files = |store: &Store| {
            persist::list_segments(&store.segments_dir("log", "events"))
                .unwrap()
                .len()
                + version::list(&store.schema_dir("log"), "events").len()
        };
        let appends = 3 * COMPACT_AFTER_SEGMENTS as i64 + 5;
        let mut most = 0;
        for id in 1..=appends {
            store
                .commit(
                    "log",
                    "events",
                    "pg",
                    rows(&[id], LoadMode::Append, Some(&id.to_string())),
                )
                .await
                .unwrap();
            most = most.max(files(&store));
        }
        assert!(
            most <= COMPACT_AFTER_SEGMENTS as usize,
            "{most} files for one table"
        );
        assert_eq!(ids(&store), (1..=appends).collect::<Vec<_>>());
        // Compacted batches are large, not one per pull.
        let batches = store.data.read().unwrap()[&("log".to_string(), "events".to_string())]
            .batches
            .len();
        assert!(batches < 10, "{batches} batches");

        let restarted = Store::new(dir.path(), 2);
        assert!(restarted.restore("log", "events").unwrap());
        assert_eq!(ids(&restarted), (1..=appends).collect::<Vec<_>>());
        let state = restarted.load_state("log");
        let last = appends.to_string();
        assert_eq!(
            (state.cursor("events"), state.committed_rows("events")),
            (Some(last.as_str()), Some(appends as u64))
        );
        restarted
            .commit(
                "log",
                "events",
                "pg",
                rows(&[appends + 1], LoadMode::Append, Some("1000")),
            )
            .await
            .unwrap();
        let again = Store::new(dir.path(), 2);
        assert!(again.restore("log", "events").unwrap());
        assert_eq!(ids(&again), (1..=appends + 1).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_pull_that_found_nothing_writes_no_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[1, 2], LoadMode::Append, Some("2")),
            )
            .await
            .unwrap();
        let segments = || {
            persist::list_segments(&store.segments_dir("log", "events"))
                .unwrap()
                .len()
        };
        assert_eq!(segments(), 1);
        for _ in 0..3 {
            store
                .commit(
                    "log",
                    "events",
                    "pg",
                    rows(&[], LoadMode::Append, Some("2")),
                )
                .await
                .unwrap();
        }
        assert_eq!(segments(), 1, "empty pulls left segments behind");
        assert_eq!(ids(&store), vec![1, 2]);
        let status = store
            .statuses()
            .into_iter()
            .find(|s| s.table == "events")
            .unwrap();
        assert_eq!((status.state, status.rows), (TableState::Fresh, 2));
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[3], LoadMode::Append, Some("3")),
            )
            .await
            .unwrap();
        assert_eq!(segments(), 2);
        assert_eq!(ids(&store), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn an_append_with_other_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[1], LoadMode::Append, Some("1")),
            )
            .await
            .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "other",
            DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![5]))])
            .unwrap();
        let wrong = LoadedTable {
            schema,
            batches: vec![batch],
            rejected: Vec::new(),
            mode: LoadMode::Append,
            cursor: Some("5".into()),
            retention: None,
        };
        let error = store
            .commit("log", "events", "pg", wrong)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("appended rows have columns [\"other\"], the table has [\"id\"]"),
            "{error}"
        );
        assert_eq!(store.load_state("log").cursor("events"), Some("1"));
    }
}
