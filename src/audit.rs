//! The audit trail: every SQL query and dataset pull, allowed or denied, with who, what, how many
//! rows, when, how long and the outcome. Appended to `<data_dir>/audit.jsonl` (created 0600)
//! before the response leaves (so it survives a crash of the process) and fsynced by a background
//! thread within `SYNC_EVERY` (so a power loss costs at most that much of the trail, and no request
//! waits for the disk). Readable by admins as `city.system.audit`, which reads the files on disk,
//! rotated ones included, so memory does not grow with the trail. Never holds a secret: keys
//! appear by id only.
//!
//! Refused requests (401, 403, 429) are written without their text: a SHA-256 and a length stand
//! for it, and repeats of one refusal within `aggregate_window` become one line with their count.
//! Anyone can send refused requests, so neither their size nor their rate may set the log's.
//! The log rotates at `rotate_size`; rotated files go after `retention` or beyond `max_files`.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::config::AuditConfig;

mod table;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// When the request was answered (for an aggregated line: the last of them).
    pub time: DateTime<Utc>,
    /// Key id, `anonymous`, `none` without a key, or `invalid` for a key that did not
    /// authenticate (a revoked key keeps its id).
    pub key_id: String,
    pub role: String,
    /// `sql` or `dataset`.
    pub action: String,
    /// The SQL text or the dataset name (with its filters); for a refused request
    /// `sha256:<hex>` of it.
    pub target: String,
    /// Length of the target in bytes (for an aggregated line: of all its requests).
    #[serde(default)]
    pub target_bytes: u64,
    pub rows: u64,
    pub duration_ms: u64,
    pub status: u16,
    /// `ok`, `denied`, `rate_limited` or the error's kind.
    pub outcome: String,
    /// Requests this line stands for: more than 1 when repeated refusals were aggregated.
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

/// How long an entry may wait in the operating system's cache before it is fsynced.
const SYNC_EVERY: Duration = Duration::from_millis(200);
const CURRENT: &str = "audit.jsonl";
/// Distinct refused bodies counted per aggregated line; past it, only the count grows.
const DISTINCT_CAP: usize = 4096;

pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    config: AuditConfig,
    state: Mutex<State>,
    /// Set when an entry was written since the last fsync.
    unsynced: AtomicBool,
}

struct State {
    file: Option<File>,
    size: u64,
    /// Refusals being aggregated, by kind.
    pending: HashMap<RefusalKind, Pending>,
}

/// What makes two refusals "the same" for aggregation: who, what kind of request, which answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RefusalKind {
    key_id: String,
    role: String,
    action: String,
    status: u16,
    outcome: String,
}

struct Pending {
    since: Instant,
    /// The repeats after the first (which was written at once), folded into one entry.
    repeats: Option<AuditEntry>,
    distinct: HashSet<[u8; 32]>,
}

impl AuditLog {
    /// Open the log in `data_dir`, applying the retention to files rotated by earlier runs.
    pub fn open(data_dir: &Path, config: AuditConfig) -> Self {
        let _ = std::fs::create_dir_all(data_dir);
        let path = data_dir.join(CURRENT);
        let file = open_private(&path);
        if let Err(e) = &file {
            error!(path = %path.display(), error = %e, "cannot open the audit log");
        }
        let size = file
            .as_ref()
            .ok()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        let inner = Arc::new(Inner {
            dir: data_dir.to_path_buf(),
            config,
            state: Mutex::new(State {
                file: file.ok(),
                size,
                pending: HashMap::new(),
            }),
            unsynced: AtomicBool::new(false),
        });
        inner.apply_retention();
        let weak = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("cruscotto-audit-sync".into())
            .spawn(move || sync_loop(weak));
        Self { inner }
    }

    /// Append one entry of a request that was served (fsynced within `SYNC_EVERY`). A failure is
    /// logged loudly.
    pub fn record(&self, mut entry: AuditEntry) {
        entry.target_bytes = entry.target.len() as u64;
        entry.count = 1;
        let mut state = self.inner.state.lock().expect("audit state lock");
        self.inner.write(&mut state, &entry);
    }

    /// Append a refused request: its target replaced by a digest and a length, and repeats of
    /// the same refusal within `aggregate_window` folded into one line written when it closes.
    pub fn record_refused(&self, mut entry: AuditEntry) {
        let digest: [u8; 32] = Sha256::digest(entry.target.as_bytes()).into();
        entry.target_bytes = entry.target.len() as u64;
        entry.target = format!("sha256:{}", hex(&digest));
        entry.count = 1;
        let kind = RefusalKind {
            key_id: entry.key_id.clone(),
            role: entry.role.clone(),
            action: entry.action.clone(),
            status: entry.status,
            outcome: entry.outcome.clone(),
        };
        let window = self.inner.config.aggregate_window;
        let mut state = self.inner.state.lock().expect("audit state lock");
        if let Some(pending) = state.pending.get_mut(&kind)
            && pending.since.elapsed() < window
        {
            if pending.distinct.len() < DISTINCT_CAP {
                pending.distinct.insert(digest);
            }
            let distinct = pending.distinct.len();
            match &mut pending.repeats {
                Some(repeats) => {
                    repeats.count += 1;
                    repeats.target_bytes += entry.target_bytes;
                    repeats.time = entry.time;
                    repeats.duration_ms = entry.duration_ms;
                    if distinct > 1 {
                        repeats.target = format!("{distinct} distinct, last {}", entry.target);
                    }
                }
                None => pending.repeats = Some(entry),
            }
            return;
        }
        // A new window: close the previous one of this kind, then write this refusal at once,
        // so a single refusal is never delayed.
        if let Some(pending) = state.pending.remove(&kind)
            && let Some(repeats) = pending.repeats
        {
            self.inner.write(&mut state, &repeats);
        }
        self.inner.write(&mut state, &entry);
        state.pending.insert(
            kind,
            Pending {
                since: Instant::now(),
                repeats: None,
                distinct: HashSet::new(),
            },
        );
    }

    /// The log as a table; each scan reads every file, rotated ones included, as it is then.
    pub fn table(&self) -> Arc<dyn TableProvider> {
        Arc::new(table::AuditTable::new(self.inner.clone()))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.inner.flush_all();
        if let Some(file) = &self.inner.state.lock().expect("audit state lock").file {
            let _ = file.sync_data();
        }
    }
}

impl Inner {
    /// Append one line (one write, so a reader never sees half of two lines), then rotate when
    /// the file reached its size.
    fn write(&self, state: &mut State, entry: &AuditEntry) {
        let mut line = serde_json::to_string(entry).expect("audit entries serialise");
        line.push('\n');
        let written = match state.file.as_mut() {
            Some(f) => f.write_all(line.as_bytes()),
            None => Err(std::io::Error::other("the audit log is not open")),
        };
        match written {
            Ok(()) => {
                state.size += line.len() as u64;
                self.unsynced.store(true, Ordering::Release);
            }
            Err(e) => {
                error!(path = %self.dir.join(CURRENT).display(), error = %e, "cannot append to the audit log")
            }
        }
        if state.size >= self.config.rotate_size.as_u64() {
            self.rotate(state);
        }
    }

    /// Close `audit.jsonl` under a name that sorts by time and start a new one.
    fn rotate(&self, state: &mut State) {
        let current = self.dir.join(CURRENT);
        if let Some(file) = &state.file {
            let _ = file.sync_data();
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let mut rotated = self.dir.join(format!("audit-{stamp}.jsonl"));
        let mut n = 1;
        while rotated.exists() {
            rotated = self.dir.join(format!("audit-{stamp}-{n}.jsonl"));
            n += 1;
        }
        if let Err(e) = std::fs::rename(&current, &rotated) {
            error!(path = %current.display(), error = %e, "cannot rotate the audit log");
            return;
        }
        match open_private(&current) {
            Ok(file) => {
                state.file = Some(file);
                state.size = 0;
            }
            Err(e) => {
                error!(path = %current.display(), error = %e, "cannot open the audit log");
                state.file = None;
            }
        }
        self.apply_retention();
    }

    /// Rotated files, oldest first.
    fn rotated(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_rotated(p))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Delete rotated files older than `retention`, then the oldest beyond `max_files`.
    fn apply_retention(&self) {
        let files = self.rotated();
        let now = SystemTime::now();
        let expired = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > self.config.retention)
        };
        let excess = files.len().saturating_sub(self.config.max_files);
        for (i, path) in files.iter().enumerate() {
            if i < excess || expired(path) {
                match std::fs::remove_file(path) {
                    Ok(()) => {
                        warn!(path = %path.display(), "audit log file past its retention deleted")
                    }
                    Err(e) => {
                        error!(path = %path.display(), error = %e, "cannot delete an audit log file past its retention")
                    }
                }
            }
        }
    }

    /// Write every aggregation whose window has closed (all of them when `all`).
    fn flush(&self, all: bool) {
        let window = self.config.aggregate_window;
        let mut state = self.state.lock().expect("audit state lock");
        let closed: Vec<RefusalKind> = state
            .pending
            .iter()
            .filter(|(_, p)| all || p.since.elapsed() >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for kind in closed {
            if let Some(pending) = state.pending.remove(&kind)
                && let Some(repeats) = pending.repeats
            {
                self.write(&mut state, &repeats);
            }
        }
    }

    fn flush_all(&self) {
        self.flush(true);
    }

    /// Every file of the trail, oldest first, opened now (a scan reads what they hold even if
    /// they are rotated or deleted meanwhile), and the repeated refusals not yet written.
    fn snapshot(&self) -> (Vec<File>, Vec<AuditEntry>) {
        let state = self.state.lock().expect("audit state lock");
        let mut files: Vec<File> = self
            .rotated()
            .iter()
            .filter_map(|p| File::open(p).ok())
            .collect();
        // Opened anew, not a clone of the writer's descriptor: a clone shares its offset, which
        // stands at the end of the file.
        if state.file.is_some()
            && let Ok(current) = File::open(self.dir.join(CURRENT))
        {
            files.push(current);
        }
        let pending = state
            .pending
            .values()
            .filter_map(|p| p.repeats.clone())
            .collect();
        (files, pending)
    }
}

/// Flush closed aggregations and fsync what was appended, every `SYNC_EVERY`, until the log is
/// dropped.
fn sync_loop(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(SYNC_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.flush(false);
        if inner.unsynced.swap(false, Ordering::AcqRel) {
            // A duplicate of the descriptor, so writers do not wait for the disk.
            let file = inner
                .state
                .lock()
                .expect("audit state lock")
                .file
                .as_ref()
                .and_then(|f| f.try_clone().ok());
            if let Some(file) = file
                && let Err(e) = file.sync_data()
            {
                inner.unsynced.store(true, Ordering::Release);
                error!(path = %inner.dir.join(CURRENT).display(), error = %e, "cannot fsync the audit log");
            }
        }
    }
}

fn is_rotated(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
}

/// Open for appending, readable and writable by the owner only. A file created earlier with a
/// wider mode is narrowed: the trail names keys, clients and queries.
fn open_private(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(path = %path.display(), mode = format!("{mode:o}"), "audit log was readable by others: narrowed to 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a file from its start by positional reads, so several scans can share one descriptor
/// (and its offset) with the writer.
struct PositionalReader {
    file: File,
    offset: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buffer, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The entries of one file; a line that does not parse (a torn last line) is skipped.
fn entries(file: File) -> impl Iterator<Item = AuditEntry> {
    BufReader::new(PositionalReader { file, offset: 0 })
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut entry: AuditEntry = serde_json::from_str(&line).ok()?;
            if entry.target_bytes == 0 {
                // Lines written before the length was recorded.
                entry.target_bytes = entry.target.len() as u64;
            }
            Some(entry)
        })
}

#[cfg(test)]
mod tests;
