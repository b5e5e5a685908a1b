//! The audit trail: every SQL query and dataset pull, allowed or denied, with who, what, how many
//! rows, when, how long and the outcome. Appended to `<data_dir>/audit.jsonl` before the response
//! leaves (so it survives a crash of the process) and fsynced by a background thread within
//! `SYNC_EVERY` (so a power loss costs at most that much of the trail, and no request waits for
//! the disk); readable by admins as `city.system.audit`. Never holds a secret: keys appear by id
//! only.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt16Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};
use tracing::error;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    /// Key id, or `anonymous`, or `invalid` for a key that did not authenticate.
    pub key_id: String,
    pub role: String,
    /// `sql` or `dataset`.
    pub action: String,
    /// The SQL text or the dataset name (with its filters).
    pub target: String,
    pub rows: u64,
    pub duration_ms: u64,
    pub status: u16,
    /// `ok`, `denied`, `rate_limited` or the error's kind.
    pub outcome: String,
}

/// How long an entry may wait in the operating system's cache before it is fsynced.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    entries: Arc<Mutex<Vec<AuditEntry>>>,
    /// Set when an entry was written since the last fsync; the syncing thread stops once the log
    /// is dropped.
    unsynced: Arc<std::sync::atomic::AtomicBool>,
}

impl AuditLog {
    /// Open the log, reading back what earlier runs appended.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join("audit.jsonl");
        let mut entries = Vec::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str(&line) {
                    entries.push(entry);
                }
            }
        }
        let _ = std::fs::create_dir_all(data_dir);
        let file = OpenOptions::new().create(true).append(true).open(&path);
        if let Err(e) = &file {
            error!(path = %path.display(), error = %e, "cannot open the audit log");
        }
        let unsynced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(copy) = file.as_ref().ok().and_then(|f| f.try_clone().ok()) {
            let flag = Arc::downgrade(&unsynced);
            let shown = path.clone();
            let _ = std::thread::Builder::new()
                .name("cruscotto-audit-sync".into())
                .spawn(move || sync_loop(copy, flag, shown));
        }
        Self {
            path,
            file: Mutex::new(file.ok()),
            entries: Arc::new(Mutex::new(entries)),
            unsynced,
        }
    }

    /// Append one entry (fsynced within `SYNC_EVERY`). A failure is logged loudly; the entry
    /// stays in memory.
    pub fn record(&self, entry: AuditEntry) {
        let line = serde_json::to_string(&entry).expect("audit entries serialise");
        {
            let mut file = self.file.lock().expect("audit file lock");
            let written = match file.as_mut() {
                Some(f) => writeln!(f, "{line}"),
                None => Err(std::io::Error::other("the audit log is not open")),
            };
            if let Err(e) = written {
                error!(path = %self.path.display(), error = %e, "cannot append to the audit log");
            }
        }
        self.unsynced
            .store(true, std::sync::atomic::Ordering::Release);
        self.entries.lock().expect("audit entries lock").push(entry);
    }

    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries.lock().expect("audit entries lock").clone()
    }

    /// The log as a table; each scan sees the entries recorded so far.
    pub fn table(&self) -> Arc<dyn TableProvider> {
        Arc::new(AuditTable {
            entries: self.entries.clone(),
        })
    }
}

/// Fsync what was appended, every `SYNC_EVERY`, until the log is dropped (and once more then).
fn sync_loop(file: File, unsynced: std::sync::Weak<std::sync::atomic::AtomicBool>, path: PathBuf) {
    loop {
        std::thread::sleep(SYNC_EVERY);
        let Some(flag) = unsynced.upgrade() else {
            let _ = file.sync_data();
            return;
        };
        if flag.swap(false, std::sync::atomic::Ordering::AcqRel) {
            if let Err(e) = file.sync_data() {
                flag.store(true, std::sync::atomic::Ordering::Release);
                error!(path = %path.display(), error = %e, "cannot fsync the audit log");
            }
        }
    }
}

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
        Field::new("rows", DataType::UInt64, false),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("status", DataType::UInt16, false),
        Field::new("outcome", DataType::Utf8, false),
    ]))
}

#[derive(Debug)]
struct AuditTable {
    entries: Arc<Mutex<Vec<AuditEntry>>>,
}

impl AuditTable {
    fn batch(&self) -> RecordBatch {
        let entries = self.entries.lock().expect("audit entries lock").clone();
        let text = |f: fn(&AuditEntry) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(entries.iter().map(f)))
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
            Arc::new(UInt64Array::from_iter_values(
                entries.iter().map(|e| e.rows),
            )),
            Arc::new(UInt64Array::from_iter_values(
                entries.iter().map(|e| e.duration_ms),
            )),
            Arc::new(UInt16Array::from_iter_values(
                entries.iter().map(|e| e.status),
            )),
            text(|e| &e.outcome),
        ];
        RecordBatch::try_new(schema(), columns).expect("audit columns match the schema")
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
        let table = MemTable::try_new(schema(), vec![vec![self.batch()]])?;
        table.scan(state, projection, filters, limit).await
    }
}
