//! Tables, and nothing else: snapshot tables replaced atomically and persisted as Parquet, log
//! tables appended through a write-ahead log (see `log`), their status (source, rows, last
//! success, last error) and the records their sources rejected.
//!
//! A query resolves each table once, when it is planned, to the immutable `MemTable` registered at
//! that moment; a refresh registers a new `MemTable` in its place. So a query sees either the old
//! table or the new one, never a mix.

#[cfg(test)]
mod in_place_tests;
pub mod input;
pub mod log;
mod persist;
pub use persist::{read_whole, write_atomically};
pub use version::{cast_columns, retyped};
mod append;
mod logs;
mod provider;
mod restore;
mod retain;
pub mod rollup;
mod schema;
mod snapshot;
mod sort;
mod system;
#[cfg(test)]
mod tests;
mod version;
pub mod wal;
mod wal_rows;

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

use input::{LoadMode, LoadState, Loaded, LoadedTable, RejectedRecord};

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
pub const ROWS_PER_BATCH: usize = 64 * 1024;
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
    /// The source failed while its rows were being written: nothing was swapped in.
    #[error("{message}")]
    Source { table: String, message: String },
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
    /// When the last load found the source unchanged (not read again): since when it has been
    /// the one the served version was read from.
    pub unchanged_since: Option<DateTime<Utc>>,
    /// The number of the version on disk that a snapshot table serves.
    pub version: Option<u64>,
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
    /// What identified the source of the latest version (`LoadedTable::fingerprint`).
    fingerprint: Option<String>,
    /// When the latest version was loaded.
    loaded_at: Option<DateTime<Utc>>,
}

impl TableData {
    /// Rows served: in place from the version file, and in memory (for a table in place, the
    /// rows appended since its version).
    fn rows(&self) -> usize {
        let held: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        self.in_place.as_ref().map_or(0, |(_, rows)| *rows) + held
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
    /// The columns each table's versions are sorted by (`sort_by`), for tables that have one.
    orders: RwLock<BTreeMap<Key, Vec<String>>>,
    /// Memory a version's sort may hold before it spills to disk.
    sort_memory: std::sync::atomic::AtomicUsize,
}

/// Memory a version's sort holds before spilling, unless configured (`[storage] sort_memory`).
pub const DEFAULT_SORT_MEMORY: usize = 256 << 20;

/// Where sorts spill, under `data_dir`; emptied at start-up (a killed sort leaves its runs).
const SORT_SPILL_DIR: &str = ".sort";

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
            orders: RwLock::new(BTreeMap::new()),
            sort_memory: std::sync::atomic::AtomicUsize::new(DEFAULT_SORT_MEMORY),
        });
        let _ = std::fs::remove_dir_all(data_dir.join(SORT_SPILL_DIR));
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

    /// Write the table's versions sorted by `columns` (none: in the source's order).
    pub fn set_sort_order(&self, schema: &str, table: &str, columns: Vec<String>) {
        let key: Key = (schema.into(), table.into());
        let mut orders = self.orders.write().expect("orders lock");
        match columns.is_empty() {
            true => orders.remove(&key),
            false => orders.insert(key, columns),
        };
    }

    /// How much memory a version's sort may hold before it spills to disk.
    pub fn set_sort_memory(&self, bytes: usize) {
        self.sort_memory
            .store(bytes.max(1 << 20), std::sync::atomic::Ordering::Relaxed);
    }

    /// How the table's next version is ordered, if it has an order.
    fn order(&self, key: &Key) -> Option<snapshot::Order> {
        let columns = self.orders.read().expect("orders lock").get(key).cloned()?;
        Some(snapshot::Order {
            columns,
            spill_dir: self.data_dir.join(SORT_SPILL_DIR),
            memory: self.sort_memory.load(std::sync::atomic::Ordering::Relaxed),
        })
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

    /// What a table holds now (nothing yet: the default).
    fn current(&self, key: &Key) -> TableData {
        self.data
            .read()
            .expect("data lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// The cursors committed for a connector's tables.
    pub fn load_state(&self, schema: &str) -> LoadState {
        let data = self.data.read().expect("data lock");
        let mut state = LoadState::default();
        for ((_, table), d) in data.iter().filter(|((s, _), _)| s == schema) {
            if let Some(fingerprint) = &d.fingerprint {
                state
                    .fingerprints
                    .insert(table.clone(), fingerprint.clone());
            }
            if let Some(cursor) = &d.cursor {
                state.cursors.insert(table.clone(), cursor.clone());
                let rows = d.rows();
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
        loaded: impl Into<Loaded>,
    ) -> Result<(), StoreError> {
        match loaded.into() {
            Loaded::Unchanged => {
                self.confirm_unchanged(schema, table, source);
                Ok(())
            }
            Loaded::Streamed(streamed) => {
                self.commit_version(schema, table, source, streamed, None)
                    .await
            }
            Loaded::Whole(loaded) if loaded.mode == LoadMode::Replace => {
                self.commit_replacing(schema, table, source, loaded).await
            }
            Loaded::Whole(loaded) => self.commit_appending(schema, table, source, loaded).await,
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
        entry.unchanged_since = None;
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

    /// Register what `data` holds: its version in place with the rows appended since (an
    /// append table), its version in place alone, or its rows in memory.
    fn register_data(
        &self,
        schema: &str,
        table: &str,
        table_schema: &SchemaRef,
        data: &TableData,
    ) -> Result<(), StoreError> {
        match &data.in_place {
            None => self.register(schema, table, table_schema, &data.batches),
            Some((path, _)) if data.batches.is_empty() => {
                self.register_in_place(schema, table, table_schema, path)
            }
            Some((path, _)) => {
                let rows = provider::LiveRows {
                    files: vec![path.clone()],
                    tail: data.batches.clone(),
                };
                let live = provider::LiveTable::new(
                    table_schema.clone(),
                    Arc::new(move || rows.clone()),
                    self.target_partitions,
                );
                self.register_provider(schema, table, Arc::new(live))
            }
        }
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

    /// The rows a table holds now (a snapshot or a log table), e.g. to read a registry.
    pub fn table_batches(
        &self,
        schema: &str,
        table: &str,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        if let Some(log) = self.log_table(schema, table) {
            return match log.batches() {
                Ok(batches) => Some((log.schema(), batches)),
                Err(e) => {
                    warn!(schema, table, error = %e, "cannot read the log table's parts");
                    None
                }
            };
        }
        let (table_schema, batches, on_disk) = {
            let data = self.data.read().expect("data lock");
            let d = data.get(&(schema.to_string(), table.to_string()))?;
            let on_disk = d.in_place.as_ref().map(|(path, _)| path.clone());
            (d.schema.clone()?, d.batches.clone(), on_disk)
        };
        match on_disk {
            None => Some((table_schema, batches)),
            // A table queried in place is read from its version when its rows are wanted whole,
            // then the rows appended since.
            Some(path) => match persist::read(&path) {
                Ok(Some((mut loaded, _))) => {
                    loaded.batches.extend(batches);
                    Some((table_schema, loaded.batches))
                }
                Ok(None) => None,
                Err(e) => {
                    warn!(schema, table, error = %e, "cannot read the table's snapshot");
                    None
                }
            },
        }
    }

    pub fn statuses(&self) -> Vec<TableStatus> {
        let data = self.data.read().expect("data lock");
        self.status
            .read()
            .expect("status lock")
            .iter()
            .map(|(key, status)| TableStatus {
                version: data.get(key).and_then(|d| d.version),
                ..status.clone()
            })
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
        unchanged_since: None,
        version: None,
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
