//! Log tables: rows appended by a stream (sensor readings), never replaced.
//!
//! An append is written to the table's write-ahead log and fsynced before `append` returns (one
//! fsync per call: the caller's batch is the group commit). Compaction closes the current WAL
//! file, writes its rows as Parquet segments partitioned by day
//! (`<data_dir>/log/<schema>/<table>/day=YYYY-MM-DD/part-N.parquet`), records them in
//! `manifest.json` (replaced atomically) and only then deletes the WAL file. Recovery reads the
//! manifest, drops segment files it does not list (a crash before the manifest was written), and
//! replays the WAL files it has not compacted; a torn last record is dropped. Rows in memory are
//! the segments within retention plus the WAL tail; SQL sees them as one table.
//!
//! Deduplication tells a redelivery from a new reading. Rows carry a reading key (the `dedupe`
//! columns: sensor, metric, time): a row equal to a stored one in every column but the arrival
//! time is the same reading again and is not stored; a row with a stored key but other values is
//! a conflict, and the message it came from is handed back to the caller, not stored and not
//! dropped unseen. Rows of one message are never compared with each other (a SenML pack may
//! hold several records with one name and time). Messages themselves are recognised by a key
//! the caller gives (`append_messages`), recorded in the WAL record with their rows and kept for
//! the last `MESSAGE_WINDOW` messages (`messages.bin`, rewritten at each compaction), so a
//! redelivered message is recognised even when its rows cannot be (times taken at arrival).
//!
//! One process writes a table: it holds a lock on `<table>/.lock`. Another process opening the
//! same data folder (`cruscotto query` beside a running server) gets the table read-only: it
//! reads segments and WAL but never truncates, compacts or deletes anything.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{Array, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

mod seen;
mod window;

use seen::Seen;
pub use window::MESSAGE_WINDOW;
use window::MessageWindow;

use crate::store::StoreError;
use crate::store::provider::LiveRows;
use crate::store::rollup::{self, RollupSpec};
use crate::store::wal::{self, WalWriter};

const DAY_MICROS: i64 = 86_400_000_000;
/// The message window as of the last compaction: little-endian u64 keys, oldest first.
const MESSAGES_FILE: &str = "messages.bin";
/// How long a replaced part stays on disk for the queries planned before it was replaced: longer
/// than any query may run. What a stop leaves is removed at the next start (unlisted parts).
const RETIRED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// A day with more segments than this is rewritten as one at the next compaction.
const MAX_PARTS_PER_DAY: usize = 16;

/// How a log table behaves.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The timestamp column (microseconds) that places a row in its day.
    pub time_column: String,
    /// Columns whose values identify a reading (sensor, metric, time). A row equal to a stored
    /// one on every column but `arrival` is the same reading and is not stored again; one equal
    /// only on these is a conflict. Empty: no deduplication.
    pub dedupe: Vec<String>,
    /// Columns that differ between two deliveries of one reading (the arrival time): left out
    /// when rows are compared.
    pub arrival: Vec<String>,
    /// Days of rows kept; older day partitions are deleted. None: forever.
    pub retention_days: Option<i64>,
    /// The WAL is compacted once it holds this many rows (and on every `compact` call).
    pub compact_rows: usize,
    pub rollup: Option<RollupSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    /// WAL files numbered up to this one are in the segments below.
    compacted_through: u64,
    /// Segment files, relative to the table's folder.
    parts: Vec<String>,
    next_part: u64,
    /// Days whose rollup must be recomputed (their rows changed after it was last written).
    #[serde(default)]
    rollup_dirty: Vec<i64>,
}

struct WalState {
    /// None when the table is read-only (another process writes it).
    writer: Option<WalWriter>,
    sequence: u64,
    /// The readings of the recent days (and of older days met lately), to recognise one
    /// delivered again.
    seen: Seen,
    messages: MessageWindow,
    rows_in_current: usize,
}

/// A compacted segment file of one day: its rows stay on disk, queried in place.
#[derive(Debug, Clone)]
struct Part {
    /// Relative to the table's folder.
    relative: String,
    rows: usize,
}

/// Small batches at the end of the WAL tail are merged once this many have piled up, so a scan
/// during ingestion reads a few large batches, not one per group commit.
const TAIL_BATCHES_TO_MERGE: usize = 32;
/// A tail batch of at least this many rows is left as it is.
const TAIL_BATCH_ROWS: usize = 16 * 1024;

#[derive(Default)]
struct Rows {
    /// Compacted segments per day (days since the epoch).
    parts: BTreeMap<i64, Vec<Part>>,
    /// WAL files closed for compaction but not compacted yet, with their rows.
    closed: Vec<(u64, Vec<RecordBatch>)>,
    /// Rows of the WAL file being written.
    current: Vec<RecordBatch>,
    rollups: BTreeMap<i64, RecordBatch>,
    manifest: Manifest,
    /// Rows held in all of the above but the rollups.
    total: usize,
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: usize,
    pub duplicates: usize,
    /// Messages not stored because a row of theirs conflicts with a stored reading.
    pub conflicts: Vec<Conflict>,
}

/// A message left out because one of its rows has a stored reading's key but other values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Index of the message in the slice given to `append_messages`.
    pub message: usize,
    /// The conflicting row, in the batch given.
    pub row: usize,
}

/// The rows of one message in a batch, and the key that recognises the message when it comes
/// again (None: not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRows {
    pub key: Option<u64>,
    pub rows: Range<usize>,
}

pub struct LogTable {
    pub schema_name: String,
    pub table: String,
    dir: PathBuf,
    rollup_dir: Option<PathBuf>,
    schema: SchemaRef,
    options: LogOptions,
    wal: Mutex<WalState>,
    rows: RwLock<Rows>,
    compacting: Mutex<()>,
    /// Part files (or day folders) no longer listed, deleted once `RETIRED_FOR` has passed: a
    /// query planned before they were replaced may still be reading them.
    retired: Mutex<Vec<(std::time::Instant, PathBuf)>>,
    /// The running rollup summaries of the days compacted lately (only compaction touches them).
    rollup_state: Mutex<BTreeMap<i64, rollup::HourlyState>>,
    /// Held while this process writes the table.
    _lock: Option<std::fs::File>,
}

fn io_error(table: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Persist {
        table: table.to_string(),
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl LogTable {
    /// Open a log table, recovering what an earlier run left: segments listed in the manifest,
    /// then the WAL files not yet compacted.
    pub fn open(
        data_dir: &Path,
        schema_name: &str,
        table: &str,
        schema: SchemaRef,
        options: LogOptions,
    ) -> Result<Arc<Self>, StoreError> {
        let dir = data_dir.join("log").join(schema_name).join(table);
        let rollup_dir = options
            .rollup
            .as_ref()
            .map(|r| data_dir.join("log").join(schema_name).join(&r.table));
        std::fs::create_dir_all(&dir).map_err(|e| io_error(table, &dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(table, &lock_path, e))?;
        let lock = match lock.try_lock() {
            Ok(()) => Some(lock),
            Err(std::fs::TryLockError::WouldBlock) => {
                warn!(schema = schema_name, table, dir = %dir.display(), "another process writes this log table; reading it only");
                None
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(table, &lock_path, e)),
        };
        let writable = lock.is_some();
        let manifest_path = dir.join("manifest.json");
        let manifest: Manifest = match std::fs::read(&manifest_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| io_error(table, &manifest_path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io_error(table, &manifest_path, e)),
        };
        if writable {
            remove_unlisted_parts(&dir, &manifest);
        }
        let mut rows = Rows {
            manifest,
            ..Rows::default()
        };

        for relative in rows.manifest.parts.clone() {
            let path = dir.join(&relative);
            let Some(day) = day_of_part(&relative) else {
                continue;
            };
            let (file_schema, part_rows) =
                part_footer(&path).map_err(|e| StoreError::ReadSnapshot {
                    path: path.clone(),
                    message: e,
                })?;
            check_schema(table, &path, &schema, &file_schema)?;
            rows.parts.entry(day).or_default().push(Part {
                relative,
                rows: part_rows,
            });
        }

        // The window as of the last compaction, then the messages of the WAL not compacted.
        let mut messages = MessageWindow::default();
        if let Ok(bytes) = std::fs::read(dir.join(MESSAGES_FILE)) {
            messages.extend_from_bytes(&bytes);
        }
        let mut replayed_messages = Vec::new();
        let wal_dir = dir.join("wal");
        let files = wal::list(&wal_dir).map_err(|e| io_error(table, &wal_dir, e))?;
        let mut last_sequence = rows.manifest.compacted_through;
        for (sequence, path) in files {
            last_sequence = last_sequence.max(sequence);
            if sequence <= rows.manifest.compacted_through {
                // Compacted before a crash that came ahead of its deletion.
                if writable {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let replayed = wal::read(&path, &schema).map_err(|e| StoreError::ReadSnapshot {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if replayed.torn_bytes > 0 && writable {
                warn!(schema = schema_name, table, file = %path.display(), torn_bytes = replayed.torn_bytes, "dropping a torn WAL record (never acknowledged)");
                wal::truncate(&path, replayed.valid_bytes)
                    .map_err(|e| io_error(table, &path, e))?;
            }
            for batch in &replayed.batches {
                check_schema(table, &path, &schema, &batch.schema())?;
            }
            replayed_messages.extend(replayed.messages);
            rows.closed.push((sequence, replayed.batches));
        }

        if let Some(rollup_dir) = &rollup_dir {
            for (day, path) in list_rollups(rollup_dir) {
                match read_parquet(&path).and_then(|batches| {
                    concat_batches(&batches[0].schema(), &batches).map_err(|e| e.to_string())
                }) {
                    Ok(batch) => {
                        rows.rollups.insert(day, batch);
                    }
                    Err(e) => {
                        warn!(file = %path.display(), error = %e, "cannot read a rollup; it is recomputed")
                    }
                }
            }
        }

        rows.total = rows.parts.values().flatten().map(|p| p.rows).sum::<usize>()
            + rows
                .closed
                .iter()
                .flat_map(|(_, b)| b)
                .map(RecordBatch::num_rows)
                .sum::<usize>();
        for key in replayed_messages {
            messages.push(key);
        }
        let compared = compared_columns(&schema, &options);
        let mut seen = Seen::new(
            options.dedupe.clone(),
            compared.clone(),
            &options.time_column,
        );
        if seen.enabled() {
            // The readings of the recent days, to recognise one delivered again: their parts
            // are read for their hashes, their rows not kept.
            let newest = newest_day(&rows);
            let recent = seen.recent(newest);
            let mut batches = Vec::new();
            for (_, part) in rows
                .parts
                .iter()
                .filter(|(day, _)| recent.contains(day))
                .flat_map(|(day, parts)| parts.iter().map(move |p| (day, p)))
            {
                let path = dir.join(&part.relative);
                batches.extend(read_parquet(&path).map_err(|e| StoreError::ReadSnapshot {
                    path: path.clone(),
                    message: e,
                })?);
            }
            batches.extend(rows.closed.iter().flat_map(|(_, b)| b.iter().cloned()));
            let days: Vec<i64> = match recent.start {
                i64::MIN => vec![i64::MIN],
                start => (start..=newest).collect(),
            };
            for day in days {
                seen.hold(day, batches.iter())
                    .map_err(|m| StoreError::Register {
                        table: table.into(),
                        message: m,
                    })?;
            }
        }
        let sequence = last_sequence + 1;
        let writer = if writable {
            Some(
                WalWriter::open(&wal::path(&wal_dir, sequence))
                    .map_err(|e| io_error(table, &wal_dir, e))?,
            )
        } else {
            None
        };
        let log = Arc::new(Self {
            schema_name: schema_name.into(),
            table: table.into(),
            dir,
            rollup_dir,
            schema,
            options,
            wal: Mutex::new(WalState {
                writer,
                sequence,
                seen,
                messages,
                rows_in_current: 0,
            }),
            rows: RwLock::new(rows),
            compacting: Mutex::new(()),
            retired: Mutex::default(),
            rollup_state: Mutex::default(),
            _lock: lock,
        });
        // Recomputes rollups a crash left stale and applies retention.
        log.compact()?;
        info!(
            schema = schema_name,
            table,
            rows = log.row_count(),
            "log table opened"
        );
        Ok(log)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// False when another process writes this table.
    pub fn is_writable(&self) -> bool {
        self._lock.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rollup_spec(&self) -> Option<&RollupSpec> {
        self.options.rollup.as_ref()
    }

    /// The rows as a query sees them now: the compacted parts' files, then the WAL tail.
    pub fn live_rows(&self) -> LiveRows {
        let rows = self.rows.read().expect("log rows lock");
        LiveRows {
            files: rows
                .parts
                .values()
                .flatten()
                .map(|p| self.dir.join(&p.relative))
                .collect(),
            tail: rows
                .closed
                .iter()
                .flat_map(|(_, b)| b.iter().cloned())
                .chain(rows.current.iter().cloned())
                .collect(),
        }
    }

    /// Every row held, read from disk: segments first, then the WAL tail, in append order.
    pub fn batches(&self) -> Result<Vec<RecordBatch>, String> {
        let live = self.live_rows();
        let mut out = Vec::new();
        for path in &live.files {
            out.extend(read_parquet(path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        out.extend(live.tail);
        Ok(out)
    }

    pub fn rollup_batches(&self) -> Vec<RecordBatch> {
        self.rows
            .read()
            .expect("log rows lock")
            .rollups
            .values()
            .cloned()
            .collect()
    }

    pub fn row_count(&self) -> usize {
        self.rows.read().expect("log rows lock").total
    }

    pub fn rollup_row_count(&self) -> usize {
        self.rollup_batches()
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    /// Append rows and make them durable: when this returns `Ok`, they are fsynced in the WAL and
    /// visible to queries. Each row is a message of its own: see `append_messages`.
    pub fn append(&self, batch: &RecordBatch) -> Result<Appended, StoreError> {
        let messages: Vec<MessageRows> = (0..batch.num_rows())
            .map(|row| MessageRows {
                key: None,
                rows: row..row + 1,
            })
            .collect();
        self.append_messages(batch, &messages)
    }

    /// Whether a message with this key was recorded among the last `MESSAGE_WINDOW`.
    pub fn has_message(&self, key: u64) -> bool {
        self.wal.lock().expect("wal lock").messages.contains(key)
    }

    /// Append the rows of some messages and make them durable with the keys of the messages
    /// stored. Rows that are readings stored already are left out; a message with a row whose
    /// reading key is stored with other values is left out whole and returned as a conflict.
    pub fn append_messages(
        &self,
        batch: &RecordBatch,
        messages: &[MessageRows],
    ) -> Result<Appended, StoreError> {
        check_schema(&self.table, &self.dir, &self.schema, &batch.schema())?;
        let failed = |message: String| StoreError::Register {
            table: self.table.clone(),
            message,
        };
        let mut wal = self.wal.lock().expect("wal lock");
        let mut keep: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut duplicates = 0;
        let mut conflicts = Vec::new();
        let mut stored_messages = Vec::new();
        let mut new_keys: HashSet<u64> = HashSet::new();
        let mut new_readings: HashSet<u64> = HashSet::new();
        let hashes = if wal.seen.enabled() {
            Some(wal.seen.hash(batch).map_err(failed)?)
        } else {
            None
        };
        if let Some(hashed) = &hashes {
            // A reading of a day not held (a late one): that day's readings are read first.
            let missing: std::collections::BTreeSet<i64> = hashed
                .days
                .iter()
                .copied()
                .filter(|day| !wal.seen.is_held(*day))
                .collect();
            for day in missing {
                let batches = self.rows_of_day(day)?;
                wal.seen.hold(day, batches.iter()).map_err(failed)?;
            }
        }
        for (index, message) in messages.iter().enumerate() {
            let Some(hashed) = &hashes else {
                keep.extend(message.rows.clone().map(|r| r as u32));
                if !message.rows.is_empty() {
                    stored_messages.extend(message.key);
                }
                continue;
            };
            let mut fresh = Vec::new();
            let mut seen = 0;
            let mut conflict = None;
            for row in message.rows.clone() {
                let (day, key, reading) =
                    (hashed.days[row], hashed.keys[row], hashed.readings[row]);
                if wal.seen.has_reading(day, reading) || new_readings.contains(&reading) {
                    seen += 1;
                } else if wal.seen.has_key(day, key) || new_keys.contains(&key) {
                    conflict = Some(row);
                    break;
                } else {
                    fresh.push(row);
                }
            }
            if let Some(row) = conflict {
                conflicts.push(Conflict {
                    message: index,
                    row,
                });
                continue;
            }
            duplicates += seen;
            // Added after the message: its own rows never count against each other.
            for &row in &fresh {
                new_keys.insert(hashed.keys[row]);
                new_readings.insert(hashed.readings[row]);
                keep.push(row as u32);
            }
            if !fresh.is_empty() {
                stored_messages.extend(message.key);
            }
        }
        let keep_rows = keep.clone();
        let batch = if keep.len() == batch.num_rows() {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(keep)).map_err(|e| failed(e.to_string()))?
        };
        if batch.num_rows() == 0 {
            return Ok(Appended {
                stored: 0,
                duplicates,
                conflicts,
            });
        }
        let Some(writer) = wal.writer.as_mut() else {
            return Err(StoreError::Register {
                table: self.table.clone(),
                message: format!(
                    "read-only here: another cruscotto process writes {}",
                    self.dir.display()
                ),
            });
        };
        writer
            .append_with_messages(&batch, &stored_messages)
            .map_err(|e| io_error(&self.table, writer.path(), e))?;
        if let Some(hashed) = &hashes {
            for &row in &keep_rows {
                let row = row as usize;
                wal.seen
                    .add(hashed.days[row], hashed.keys[row], hashed.readings[row]);
            }
        }
        for key in stored_messages {
            wal.messages.push(key);
        }
        wal.rows_in_current += batch.num_rows();
        let stored = batch.num_rows();
        let mut rows = self.rows.write().expect("log rows lock");
        rows.current.push(batch);
        merge_small_tail(&self.schema, &mut rows.current).map_err(failed)?;
        rows.total += stored;
        Ok(Appended {
            stored,
            duplicates,
            conflicts,
        })
    }

    /// Every row of `day` held: its parts, read from disk, and the WAL tail's rows of it.
    fn rows_of_day(&self, day: i64) -> Result<Vec<RecordBatch>, StoreError> {
        let (paths, tail) = {
            let rows = self.rows.read().expect("log rows lock");
            let paths: Vec<PathBuf> = rows
                .parts
                .iter()
                .filter(|(d, _)| **d == day || day == i64::MIN)
                .flat_map(|(_, parts)| parts.iter().map(|p| self.dir.join(&p.relative)))
                .collect();
            let tail: Vec<RecordBatch> = rows
                .closed
                .iter()
                .flat_map(|(_, b)| b.iter().cloned())
                .chain(rows.current.iter().cloned())
                .collect();
            (paths, tail)
        };
        let mut batches = Vec::new();
        for path in &paths {
            batches.extend(read_parquet(path).map_err(|e| io_error(&self.table, path, e))?);
        }
        batches.extend(tail);
        Ok(batches)
    }

    /// Delete a part (or a day's folder) the manifest no longer lists, once no query planned
    /// before can still read it; and what was retired long enough ago.
    fn retire(&self, path: PathBuf) {
        let mut retired = self.retired.lock().expect("retired lock");
        retired.push((std::time::Instant::now(), path));
        retired.retain(|(at, path)| {
            if at.elapsed() < RETIRED_FOR {
                return true;
            }
            let _ = match path.is_dir() {
                true => std::fs::remove_dir_all(path),
                false => std::fs::remove_file(path),
            };
            false
        });
    }

    /// Whether the WAL holds enough rows to be worth compacting now.
    pub fn wants_compaction(&self) -> bool {
        self.wal.lock().expect("wal lock").rows_in_current >= self.options.compact_rows
    }

    /// Close the current WAL file and move every closed WAL file into day segments, then apply
    /// retention and refresh the rollups of the days that changed. Safe to call at any time;
    /// appends go on meanwhile (into the next WAL file).
    pub fn compact(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.compacting.lock().expect("compaction lock");
        if !self.is_writable() {
            return Ok(());
        }
        {
            let mut wal = self.wal.lock().expect("wal lock");
            if wal.rows_in_current > 0 {
                let next = wal.sequence + 1;
                let path = wal::path(&self.dir.join("wal"), next);
                let writer = WalWriter::open(&path).map_err(|e| io_error(&self.table, &path, e))?;
                let closed_sequence = wal.sequence;
                wal.writer = Some(writer);
                wal.sequence = next;
                wal.rows_in_current = 0;
                let mut rows = self.rows.write().expect("log rows lock");
                let current = std::mem::take(&mut rows.current);
                rows.closed.push((closed_sequence, current));
            }
        }
        let (closed, mut manifest, parts_per_day) = {
            let rows = self.rows.read().expect("log rows lock");
            (
                rows.closed.clone(),
                rows.manifest.clone(),
                rows.parts.clone(),
            )
        };
        let cutoff = self.options.retention_days.map(|days| today() - days);
        let mut new_parts: BTreeMap<i64, Vec<Part>> = BTreeMap::new();
        // The rows compacted now, per day: what the rollups have not seen yet.
        let mut fresh: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
        let mut replaced_days = Vec::new();
        let mut expired_rows = 0;
        if let Some(through) = closed.iter().map(|(s, _)| *s).max() {
            let by_day = split_by_day(
                &self.schema,
                &self.options.time_column,
                closed.iter().flat_map(|(_, b)| b),
            )
            .map_err(|m| StoreError::Register {
                table: self.table.clone(),
                message: m,
            })?;
            for (day, mut batches) in by_day {
                if cutoff.is_some_and(|c| day < c) {
                    expired_rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
                    continue;
                }
                fresh.insert(day, batches.clone());
                let existing = parts_per_day.get(&day).map_or(&[][..], Vec::as_slice);
                if existing.len() + 1 > MAX_PARTS_PER_DAY {
                    // Rewrite the whole day as one segment: its parts are read back (one day's
                    // rows, never the table's).
                    let mut all = Vec::new();
                    for part in existing {
                        let path = self.dir.join(&part.relative);
                        all.extend(
                            read_parquet(&path).map_err(|e| io_error(&self.table, &path, e))?,
                        );
                    }
                    all.append(&mut batches);
                    batches = all;
                    replaced_days.push(day);
                }
                let relative = format!(
                    "day={}/part-{:012}.parquet",
                    day_name(day),
                    manifest.next_part
                );
                manifest.next_part += 1;
                let path = self.dir.join(&relative);
                crate::store::write_atomically(&path, self.schema.clone(), &batches, Vec::new())
                    .map_err(|e| io_error(&self.table, &path, e))?;
                let rows = batches.iter().map(RecordBatch::num_rows).sum();
                new_parts
                    .entry(day)
                    .or_default()
                    .push(Part { relative, rows });
            }
            let replaced: Vec<String> = {
                let rows = self.rows.read().expect("log rows lock");
                replaced_days
                    .iter()
                    .flat_map(|d| rows.parts[d].iter().map(|p| p.relative.clone()))
                    .collect()
            };
            manifest.parts.retain(|p| !replaced.contains(p));
            manifest
                .parts
                .extend(new_parts.values().flatten().map(|p| p.relative.clone()));
            manifest.compacted_through = manifest.compacted_through.max(through);
            // The message keys of the WAL files about to go, before the manifest lets them go.
            self.write_messages()?;
            if self.options.rollup.is_some() {
                manifest.rollup_dirty.extend(new_parts.keys().copied());
                manifest.rollup_dirty.sort();
                manifest.rollup_dirty.dedup();
            }
            self.write_manifest(&manifest)?;
            {
                let mut rows = self.rows.write().expect("log rows lock");
                // Their rows are in the day's new part: the total does not change.
                for day in &replaced_days {
                    rows.parts.remove(day);
                }
                for (day, parts) in new_parts {
                    rows.parts.entry(day).or_default().extend(parts);
                }
                rows.closed.retain(|(s, _)| *s > through);
                rows.total -= expired_rows;
                rows.manifest = manifest.clone();
            }
            for path in replaced {
                self.retire(self.dir.join(path));
            }
            for (sequence, path) in
                wal::list(&self.dir.join("wal")).map_err(|e| io_error(&self.table, &self.dir, e))?
            {
                if sequence <= through {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        self.apply_retention(cutoff, &mut manifest)?;
        self.refresh_rollups(&mut manifest, &fresh)?;
        let newest = newest_day(&self.rows.read().expect("log rows lock"));
        self.wal.lock().expect("wal lock").seen.forget_old(newest);
        Ok(())
    }

    fn apply_retention(
        &self,
        cutoff: Option<i64>,
        manifest: &mut Manifest,
    ) -> Result<(), StoreError> {
        let Some(cutoff) = cutoff else { return Ok(()) };
        let expired: Vec<i64> = self
            .rows
            .read()
            .expect("log rows lock")
            .parts
            .keys()
            .copied()
            .filter(|d| *d < cutoff)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let prefixes: Vec<String> = expired
            .iter()
            .map(|d| format!("day={}/", day_name(*d)))
            .collect();
        manifest
            .parts
            .retain(|p| !prefixes.iter().any(|prefix| p.starts_with(prefix)));
        self.write_manifest(manifest)?;
        {
            let mut rows = self.rows.write().expect("log rows lock");
            for day in &expired {
                if let Some(parts) = rows.parts.remove(day) {
                    rows.total -= parts.iter().map(|p| p.rows).sum::<usize>();
                }
            }
            rows.manifest = manifest.clone();
        }
        for day in &expired {
            self.retire(self.dir.join(format!("day={}", day_name(*day))));
        }
        info!(schema = %self.schema_name, table = %self.table, days = expired.len(), "retention: old day partitions deleted");
        Ok(())
    }

    /// Bring the rollups of the days marked dirty up to date: a day whose summaries are held
    /// takes in just its `fresh` rows; any other (after a restart, or a day not touched lately)
    /// is summarised again from all its rows.
    fn refresh_rollups(
        &self,
        manifest: &mut Manifest,
        fresh: &BTreeMap<i64, Vec<RecordBatch>>,
    ) -> Result<(), StoreError> {
        /// Days whose summaries stay in memory between compactions: readings arrive for today,
        /// and late ones for the days just before.
        const DAYS_HELD: usize = 3;
        let (Some(spec), Some(rollup_dir)) = (&self.options.rollup, &self.rollup_dir) else {
            return Ok(());
        };
        let failed = |m: String| StoreError::Register {
            table: spec.table.clone(),
            message: m,
        };
        let mut states = self.rollup_state.lock().expect("rollup state lock");
        for day in manifest.rollup_dirty.clone() {
            let incremental = match (states.get_mut(&day), fresh.get(&day)) {
                (Some(state), Some(rows)) => Some(
                    rows.iter()
                        .try_for_each(|b| state.fold(spec, &self.options.time_column, b)),
                ),
                _ => None,
            };
            if !matches!(incremental, Some(Ok(()))) {
                states.remove(&day);
                let paths: Vec<PathBuf> = self
                    .rows
                    .read()
                    .expect("log rows lock")
                    .parts
                    .get(&day)
                    .map(|p| p.iter().map(|p| self.dir.join(&p.relative)).collect())
                    .unwrap_or_default();
                let mut batches = Vec::new();
                for path in &paths {
                    batches.extend(read_parquet(path).map_err(|e| io_error(&spec.table, path, e))?);
                }
                if batches.is_empty() {
                    continue;
                }
                let mut state = rollup::HourlyState::default();
                for batch in &batches {
                    state
                        .fold(spec, &self.options.time_column, batch)
                        .map_err(failed)?;
                }
                states.insert(day, state);
            }
            let rollup = states[&day].batch(spec).map_err(failed)?;
            let path = rollup_dir.join(format!("day={}.parquet", day_name(day)));
            write_parquet(&path, &rollup).map_err(|e| io_error(&spec.table, &path, e))?;
            self.rows
                .write()
                .expect("log rows lock")
                .rollups
                .insert(day, rollup);
        }
        while states.len() > DAYS_HELD {
            states.pop_first();
        }
        drop(states);
        if !manifest.rollup_dirty.is_empty() {
            manifest.rollup_dirty.clear();
            self.write_manifest(manifest)?;
            self.rows.write().expect("log rows lock").manifest = manifest.clone();
        }
        if let Some(days) = spec.retention_days {
            let cutoff = today() - days;
            let expired: Vec<i64> = self
                .rows
                .read()
                .expect("log rows lock")
                .rollups
                .keys()
                .copied()
                .filter(|d| *d < cutoff)
                .collect();
            for day in expired {
                let _ =
                    std::fs::remove_file(rollup_dir.join(format!("day={}.parquet", day_name(day))));
                self.rows
                    .write()
                    .expect("log rows lock")
                    .rollups
                    .remove(&day);
            }
        }
        Ok(())
    }

    fn write_messages(&self) -> Result<(), StoreError> {
        let bytes = self.wal.lock().expect("wal lock").messages.to_bytes();
        let path = self.dir.join(MESSAGES_FILE);
        write_atomically(&self.dir, &path, &bytes).map_err(|e| io_error(&self.table, &path, e))
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.dir.join("manifest.json");
        let temporary = self.dir.join("manifest.json.tmp");
        let bytes =
            serde_json::to_vec_pretty(manifest).map_err(|e| io_error(&self.table, &path, e))?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| io_error(&self.table, &path, e))
    }
}

/// Write a file whole or not at all: a temporary file, fsynced, renamed, and the folder fsynced.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Every column but the arrival ones, in schema order.
fn compared_columns(schema: &SchemaRef, options: &LogOptions) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|name| !options.arrival.contains(name))
        .collect()
}

fn check_schema(
    table: &str,
    path: &Path,
    expected: &SchemaRef,
    found: &SchemaRef,
) -> Result<(), StoreError> {
    if expected.fields() == found.fields() {
        return Ok(());
    }
    let names = |s: &SchemaRef| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(StoreError::Register {
        table: table.into(),
        message: format!(
            "{} holds columns ({}) but the table is configured with ({}); move the old data away to change a log table's columns",
            path.display(),
            names(found),
            names(expected)
        ),
    })
}

/// Today, in days since the epoch (UTC).
/// The newest day the table has rows of, or today if later.
fn newest_day(rows: &Rows) -> i64 {
    rows.parts
        .keys()
        .next_back()
        .copied()
        .unwrap_or(i64::MIN)
        .max(today())
}

fn today() -> i64 {
    Utc::now().timestamp().div_euclid(86_400)
}

fn day_name(day: i64) -> String {
    DateTime::from_timestamp(day * 86_400, 0).map_or_else(
        || day.to_string(),
        |t| t.date_naive().format("%Y-%m-%d").to_string(),
    )
}

fn parse_day(name: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp()
            .div_euclid(86_400),
    )
}

/// `day=2024-05-01/part-….parquet` → its day.
fn day_of_part(relative: &str) -> Option<i64> {
    parse_day(relative.strip_prefix("day=")?.split('/').next()?)
}

/// Segment files a crash left behind before the manifest listed them.
fn remove_unlisted_parts(dir: &Path, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for day_dir in entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        let Some(day_name) = day_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !day_name.starts_with("day=") {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&day_dir) else {
            continue;
        };
        for file in files.filter_map(|e| e.ok()).map(|e| e.path()) {
            let relative = format!(
                "{day_name}/{}",
                file.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            );
            if !manifest.parts.contains(&relative) {
                warn!(file = %file.display(), "removing a segment no manifest lists (a compaction interrupted by a crash)");
                let _ = std::fs::remove_file(&file);
            }
        }
        let _ = std::fs::remove_dir(&day_dir);
    }
}

fn list_rollups(dir: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(i64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let day = parse_day(name.strip_prefix("day=")?.strip_suffix(".parquet")?)?;
            Some((day, p))
        })
        .collect();
    out.sort();
    out
}

/// Rows grouped by the day of their time column (null times go to day 0).
fn split_by_day<'a>(
    schema: &SchemaRef,
    time_column: &str,
    batches: impl Iterator<Item = &'a RecordBatch>,
) -> Result<BTreeMap<i64, Vec<RecordBatch>>, String> {
    let index = schema.index_of(time_column).map_err(|e| e.to_string())?;
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let times = cast(
            batch.column(index),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| e.to_string())?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamp");
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let day = if times.is_null(row) {
                0
            } else {
                times.value(row).div_euclid(DAY_MICROS)
            };
            rows.entry(day).or_default().push(row as u32);
        }
        if rows.len() == 1 {
            let (day, _) = rows.into_iter().next().expect("one day");
            out.entry(day).or_default().push(batch.clone());
            continue;
        }
        for (day, indices) in rows {
            let part =
                take_record_batch(batch, &UInt32Array::from(indices)).map_err(|e| e.to_string())?;
            out.entry(day).or_default().push(part);
        }
    }
    Ok(out)
}

/// One hash per row over the given columns, for deduplication. Text and integer-like columns
/// (timestamps included) are hashed as they are; others through their text form.
pub fn row_hashes(batch: &RecordBatch, columns: &[String]) -> Result<Vec<u64>, String> {
    let mut hashers: Vec<std::collections::hash_map::DefaultHasher> =
        (0..batch.num_rows()).map(|_| Default::default()).collect();
    for name in columns {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| format!("no column `{name}` to deduplicate on"))?;
        match column.data_type() {
            DataType::Utf8 => {
                let text = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("Utf8 is a StringArray");
                for (row, hasher) in hashers.iter_mut().enumerate() {
                    text.is_valid(row).then(|| text.value(row)).hash(hasher);
                }
            }
            DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date32 | DataType::Int32 => {
                let numbers = cast(column, &DataType::Int64).map_err(|e| e.to_string())?;
                let numbers = numbers
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("cast to Int64");
                for (row, hasher) in hashers.iter_mut().enumerate() {
                    numbers
                        .is_valid(row)
                        .then(|| numbers.value(row))
                        .hash(hasher);
                }
            }
            DataType::Float64 => {
                let numbers = column
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .expect("Float64 is a Float64Array");
                for (row, hasher) in hashers.iter_mut().enumerate() {
                    numbers
                        .is_valid(row)
                        .then(|| numbers.value(row).to_bits())
                        .hash(hasher);
                }
            }
            _ => {
                let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                let text = text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8");
                for (row, hasher) in hashers.iter_mut().enumerate() {
                    text.is_valid(row).then(|| text.value(row)).hash(hasher);
                }
            }
        }
    }
    Ok(hashers.into_iter().map(|h| h.finish()).collect())
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), String> {
    crate::store::write_atomically(
        path,
        batch.schema(),
        std::slice::from_ref(batch),
        Vec::new(),
    )
}

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, String> {
    Ok(crate::store::read_whole(path, "")?.1)
}

/// A part's schema and rows, from its footer.
fn part_footer(path: &Path) -> Result<(SchemaRef, usize), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    Ok((builder.schema().clone(), rows))
}

/// Merge the small batches at the end of `tail` into one once `TAIL_BATCHES_TO_MERGE` have piled
/// up: appends cost O(rows) amortised, and a scan meets few batches.
fn merge_small_tail(schema: &SchemaRef, tail: &mut Vec<RecordBatch>) -> Result<(), String> {
    let small = tail
        .iter()
        .rev()
        .take_while(|b| b.num_rows() < TAIL_BATCH_ROWS)
        .count();
    if small < TAIL_BATCHES_TO_MERGE {
        return Ok(());
    }
    let from = tail.len() - small;
    let merged = concat_batches(schema, &tail[from..]).map_err(|e| e.to_string())?;
    tail.truncate(from);
    tail.push(merged);
    Ok(())
}

#[cfg(test)]
mod tests;
