//! What the store takes in: the rows a connector loaded (whole, or batch by batch as the store
//! writes them), how they change their table, the records the source rejected, and what the
//! store has committed so far, which a connector reads to load incrementally. Connectors use
//! these types; the store does not look into connectors.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;

/// What one load of a table produced.
pub enum Loaded {
    /// Every row in memory: small sources, and the increments of an append table.
    Whole(LoadedTable),
    /// The whole table, read batch by batch while the store writes its new version: memory does
    /// not grow with the table's size.
    Streamed(StreamedTable),
    /// The source is the one the table's current version was read from (same fingerprint): it
    /// was not read again.
    Unchanged,
}

impl Loaded {
    /// The rows in memory, for a load that has them so (`None` for a streamed or unchanged one).
    pub fn into_whole(self) -> Option<LoadedTable> {
        match self {
            Loaded::Whole(loaded) => Some(loaded),
            Loaded::Streamed(_) | Loaded::Unchanged => None,
        }
    }
}

impl Loaded {
    /// Every row in memory, a streamed load read to its end (`None` when unchanged). For small
    /// tables and tests: the point of streaming is not to do this.
    pub async fn collect(self) -> Result<Option<LoadedTable>, SourceError> {
        use futures::TryStreamExt;
        match self {
            Loaded::Whole(loaded) => Ok(Some(loaded)),
            Loaded::Unchanged => Ok(None),
            Loaded::Streamed(streamed) => {
                let read: Vec<(RecordBatch, Vec<RejectedRecord>)> =
                    streamed.batches.try_collect().await?;
                let (batches, rejected): (Vec<_>, Vec<_>) = read.into_iter().unzip();
                let mut loaded = LoadedTable::replace(
                    streamed.schema,
                    batches,
                    rejected.into_iter().flatten().collect(),
                );
                loaded.fingerprint = streamed.fingerprint;
                Ok(Some(loaded))
            }
        }
    }
}

impl From<LoadedTable> for Loaded {
    fn from(loaded: LoadedTable) -> Self {
        Loaded::Whole(loaded)
    }
}

/// An error of a source met while its batches are read.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Batches of a streamed load, each with the records refused while it was read.
pub type BatchStream = BoxStream<'static, Result<(RecordBatch, Vec<RejectedRecord>), SourceError>>;

/// A whole table replacing the previous version, read as the store consumes `batches`.
pub struct StreamedTable {
    /// Every batch has this schema.
    pub schema: SchemaRef,
    pub batches: BatchStream,
    /// What identifies the source as read (see `LoadedTable::fingerprint`).
    pub fingerprint: Option<String>,
}

/// What the store has committed, as a connector needs it to load incrementally.
#[derive(Debug, Clone, Default)]
pub struct LoadState {
    /// Table name → the cursor committed with its last appended rows.
    pub cursors: std::collections::BTreeMap<String, String>,
    /// Table name → the source rows an append table holds up to its cursor (stored and rejected),
    /// so a connector can tell when the source went backwards.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Table name → for an append table with a retention, the time (µs since the epoch, UTC)
    /// from which it holds the source's rows: those rows and nothing older.
    pub retained_from: std::collections::BTreeMap<String, i64>,
    /// Table name → the fingerprint of the source its current version was read from.
    pub fingerprints: std::collections::BTreeMap<String, String>,
}

impl LoadState {
    /// The last committed cursor of a table: load only what comes after it.
    pub fn cursor(&self, table: &str) -> Option<&str> {
        self.cursors.get(table).map(String::as_str)
    }

    /// How many source rows the table holds up to its committed cursor.
    pub fn committed_rows(&self, table: &str) -> Option<u64> {
        self.rows.get(table).copied()
    }

    /// From when an append table with a retention holds the source's rows.
    pub fn retained_from(&self, table: &str) -> Option<i64> {
        self.retained_from.get(table).copied()
    }

    /// Whether the table's current version was read from a source with this fingerprint.
    pub fn unchanged(&self, table: &str, fingerprint: &str) -> bool {
        self.fingerprints
            .get(table)
            .is_some_and(|f| f == fingerprint)
    }
}

/// How a load changes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// The rows are the whole table: they replace the previous snapshot.
    #[default]
    Replace,
    /// The rows come after those already stored (an incremental pull): they are appended, and
    /// the cursor is committed with them in one step, so a crash neither loses nor repeats rows.
    Append,
    /// The rows are the whole of an append table again, pulled because the source went backwards
    /// (rewritten, truncated, refilled): they replace it, with their cursor.
    Reload,
}

/// A complete table, ready to replace the previous snapshot.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Records that could not be read, each with where it was and why.
    pub rejected: Vec<RejectedRecord>,
    pub mode: LoadMode,
    /// For `Append`: the position reached (e.g. the largest event id), committed with the rows.
    pub cursor: Option<String>,
    /// For an append table with a retention: what expires, applied when the table is compacted.
    pub retention: Option<Retention>,
    /// What identifies the source as read (its size and time of change, the settings that read
    /// it), kept with the version: a later load of a source with the same fingerprint is
    /// `Loaded::Unchanged`.
    pub fingerprint: Option<String>,
}

/// Rows of an append table whose time is before `cutoff` expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// A `Date32` or `Timestamp(µs)` column of the table.
    pub column: String,
    /// µs since the epoch, UTC.
    pub cutoff: i64,
}

impl Retention {
    /// Rows kept for `keep` from now, by their time in `column`.
    pub fn from_now(column: &str, keep: Duration) -> Self {
        let keep = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
        Self {
            column: column.to_string(),
            cutoff: chrono::Utc::now().timestamp_micros().saturating_sub(keep),
        }
    }
}

impl LoadedTable {
    /// A complete table replacing the previous snapshot.
    pub fn replace(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        rejected: Vec<RejectedRecord>,
    ) -> Self {
        Self {
            schema,
            batches,
            rejected,
            mode: LoadMode::Replace,
            cursor: None,
            retention: None,
            fingerprint: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A record that could not be loaded. It is kept, never silently dropped.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedRecord {
    /// The file or endpoint the record came from.
    pub source: String,
    /// 1-based line in the source, when it has lines.
    pub line: Option<u64>,
    pub reason: String,
    /// The record as it was read, truncated to a bounded length.
    pub raw: String,
    /// In a table with a retention: the record's time (µs since the epoch, UTC), by which it
    /// expires with the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
}
