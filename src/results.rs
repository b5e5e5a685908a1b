//! The results the dashboards serve. A visitor never waits for a saved query and never sees a
//! time-out caused by one: every saved query a dashboard reads is computed in the background when
//! the data behind it changed (at most once per `min_interval`), when its result reaches
//! `recompute_after` (for queries that depend on the time of day), and at start when none is kept.
//! Each result is persisted under `<data_dir>/results`, so a restart serves the last ones at once.
//! A refresh that fails keeps the last result and records why; the dashboard shows both.
//!
//! Both versions are kept: the raw result (analysts, admins) and, for a query that carries counts
//! of persons or reads one that does, the published one (everyone else, see `crate::sdc`). A kept
//! result whose published version cannot be read back is dropped, never served raw to the public.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::config::ResultsConfig;
use crate::query::{QUERIES_SCHEMA, QueryError, QueryResult};
use crate::service::Service;

/// Parquet key-value metadata key of a kept result.
const META_KEY: &str = "cruscotto.result";
/// How often the background task looks for results to recompute when nothing changes.
const TICK: Duration = Duration::from_secs(5);
/// How long to wait for the views to be re-planned after the data changed.
const REPLAN_WAIT: Duration = Duration::from_secs(10);

/// What a source table held when a result was computed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp {
    pub table: String,
    pub rows: usize,
    /// The version a snapshot table serves: a refresh that found its source unchanged keeps it.
    #[serde(default)]
    pub version: Option<u64>,
    /// For a table without versions (a log table), when it last received rows.
    pub last_success: Option<DateTime<Utc>>,
}

/// A computed result of one saved query.
#[derive(Clone)]
pub struct Computed {
    pub raw: Arc<QueryResult>,
    /// What callers below analyst see; `None` when that is the raw result.
    pub published: Option<Arc<QueryResult>>,
    pub computed_at: DateTime<Utc>,
    sources: Vec<SourceStamp>,
}

/// The last refresh of a result that failed, after the result kept was computed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub error: String,
    /// The saved query does not plan over the current tables (a source missing or changed).
    pub not_planned: bool,
}

#[derive(Clone, Default)]
pub struct Entry {
    pub computed: Option<Computed>,
    pub failure: Option<Failure>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the saved query `{query}` does not run over the current tables: {reason}")]
    NotPlanned { query: String, reason: String },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Publish(String),
    /// The last attempt failed a moment ago and is not repeated yet.
    #[error("{}", .0.error)]
    Failed(Failure),
}

/// What is kept on disk beside each result.
#[derive(Debug, Serialize, Deserialize)]
struct KeptMeta {
    query: String,
    fingerprint: String,
    computed_at: DateTime<Utc>,
    sources: Vec<SourceStamp>,
    /// Whether the public sees a published version (kept in `<query>.published.parquet`).
    protected: bool,
    min_count: u64,
}

pub struct DashboardResults {
    dir: PathBuf,
    /// Changes when any saved query changes: a kept result of other SQL is never served.
    fingerprint: String,
    settings: ResultsConfig,
    min_count: u64,
    entries: Mutex<HashMap<String, Entry>>,
    /// One computation per query at a time; a second caller waits for the first and reuses it.
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DashboardResults {
    /// The results kept by an earlier run, those of the current saved queries only.
    pub fn open(
        data_dir: &Path,
        saved: &[crate::query::saved::SavedQuery],
        settings: ResultsConfig,
        min_count: u64,
    ) -> Self {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(env!("CARGO_PKG_VERSION"));
        for query in saved {
            hasher.update(query.name.as_bytes());
            hasher.update([0]);
            hasher.update(query.sql.as_bytes());
            hasher.update([0]);
            hasher.update(serde_json::to_vec(&query.metadata).unwrap_or_default());
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let fingerprint: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let this = Self {
            dir: data_dir.join("results"),
            fingerprint,
            settings,
            min_count,
            entries: Default::default(),
            computing: Default::default(),
        };
        let kept = this.read_kept();
        if !kept.is_empty() {
            info!(
                results = kept.len(),
                "dashboard results kept by the last run"
            );
        }
        *this.entries.lock().expect("results lock") = kept
            .into_iter()
            .map(|(query, computed)| {
                let entry = Entry {
                    computed: Some(computed),
                    failure: None,
                };
                (query, entry)
            })
            .collect();
        this
    }

    /// The result and last failure of a query, as they are now.
    pub fn entry(&self, query: &str) -> Entry {
        self.entries
            .lock()
            .expect("results lock")
            .get(query)
            .cloned()
            .unwrap_or_default()
    }

    /// The last result of a query. Computed now only when there is none yet (the first start,
    /// before the background task got to it); otherwise returned at once, however old.
    pub async fn get(&self, service: &Arc<Service>, query: &str) -> Result<Computed, RefreshError> {
        if let Some(computed) = self.entry(query).computed {
            return Ok(computed);
        }
        self.refresh(service, query).await?;
        let entry = self.entry(query);
        match (entry.computed, entry.failure) {
            (Some(computed), _) => Ok(computed),
            // Refreshed a moment ago by another caller, and it failed: not tried again at once.
            (None, Some(failure)) => Err(RefreshError::Failed(failure)),
            (None, None) => Err(RefreshError::Publish(format!("no result of `{query}` yet"))),
        }
    }

    /// Compute a query's result if it is due, keep it, and on failure keep the last one with the
    /// reason.
    async fn refresh(&self, service: &Arc<Service>, query: &str) -> Result<(), RefreshError> {
        let lock = self
            .computing
            .lock()
            .expect("results lock")
            .entry(query.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let sources = stamp(service, query);
        let entry = self.entry(query);
        // A caller that waited for another's computation takes its result.
        if !due(&entry, &sources, Utc::now(), &self.settings) {
            return Ok(());
        }
        let started = Utc::now();
        match self.compute(service, query).await {
            Ok((raw, published)) => {
                let computed = Computed {
                    raw: Arc::new(raw),
                    published,
                    computed_at: started,
                    sources,
                };
                self.entries.lock().expect("results lock").insert(
                    query.to_string(),
                    Entry {
                        computed: Some(computed.clone()),
                        failure: None,
                    },
                );
                let (dir, fingerprint, min_count) =
                    (self.dir.clone(), self.fingerprint.clone(), self.min_count);
                let name = query.to_string();
                let kept = tokio::task::spawn_blocking(move || {
                    keep(&dir, &name, &fingerprint, min_count, &computed)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|kept| kept);
                if let Err(e) = kept {
                    warn!(query, error = %e, "cannot keep the dashboard result on disk");
                }
                debug!(query, "dashboard result computed");
                Ok(())
            }
            Err(error) => {
                warn!(query, error = %error, "dashboard result not refreshed; the last one is kept");
                self.entries
                    .lock()
                    .expect("results lock")
                    .entry(query.to_string())
                    .or_default()
                    .failure = Some(Failure {
                    at: Utc::now(),
                    error: error.to_string(),
                    not_planned: matches!(error, RefreshError::NotPlanned { .. }),
                });
                Err(error)
            }
        }
    }

    async fn compute(
        &self,
        service: &Arc<Service>,
        query: &str,
    ) -> Result<(QueryResult, Option<Arc<QueryResult>>), RefreshError> {
        if let Some(view) = service
            .engine
            .views()
            .into_iter()
            .find(|v| v.name == query && !v.ok)
        {
            return Err(RefreshError::NotPlanned {
                query: query.to_string(),
                reason: view.error.unwrap_or_default(),
            });
        }
        let sql = format!("SELECT * FROM {QUERIES_SCHEMA}.\"{query}\"");
        let raw = service.engine.execute(&sql).await.map_err(|e| match e {
            QueryError::Invalid(reason) => RefreshError::NotPlanned {
                query: query.to_string(),
                reason,
            },
            other => RefreshError::Query(other),
        })?;
        let published = crate::sdc::published(service, query, self.min_count)
            .await
            .map_err(|e| match e {
                crate::sdc::PublishError::Query(e) => RefreshError::Query(e),
                other => RefreshError::Publish(other.to_string()),
            })?;
        Ok((raw, published))
    }

    /// The kept results that still match the saved queries and the disclosure settings.
    fn read_kept(&self) -> HashMap<String, Computed> {
        let Ok(files) = std::fs::read_dir(&self.dir) else {
            return HashMap::new();
        };
        let mut kept = HashMap::new();
        for file in files.flatten() {
            let path = file.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(query) = name.strip_suffix(".raw.parquet") else {
                continue;
            };
            match read_kept_one(&self.dir, query, &self.fingerprint, self.min_count) {
                Ok(Some(computed)) => {
                    kept.insert(query.to_string(), computed);
                }
                Ok(None) => debug!(query, "kept result is of other SQL or settings; not used"),
                Err(e) => warn!(query, error = %e, "cannot read the kept dashboard result"),
            }
        }
        kept
    }
}

/// What a query's source tables hold now.
fn stamp(service: &Service, query: &str) -> Vec<SourceStamp> {
    let statuses = service.store.statuses();
    crate::dashboards::source_tables(query, service.engine.saved(), &service.engine.views())
        .into_iter()
        .map(|table| {
            let status = statuses
                .iter()
                .find(|s| format!("{}.{}", s.schema, s.table) == table);
            let version = status.and_then(|s| s.version);
            SourceStamp {
                rows: status.map_or(0, |s| s.rows),
                last_success: status
                    .filter(|_| version.is_none())
                    .and_then(|s| s.last_success),
                version,
                table,
            }
        })
        .collect()
}

/// Whether a result should be computed again: there is none (and no failure just now), its
/// sources changed and it is at least `min_interval` old, or it is `recompute_after` old. A
/// failed refresh is retried after `min_interval`.
fn due(
    entry: &Entry,
    sources: &[SourceStamp],
    now: DateTime<Utc>,
    settings: &ResultsConfig,
) -> bool {
    let since = |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default();
    if let Some(failure) = &entry.failure
        && since(failure.at) < settings.min_interval
    {
        return false;
    }
    match &entry.computed {
        None => true,
        Some(computed) => {
            let age = since(computed.computed_at);
            (computed.sources != sources && age >= settings.min_interval)
                || age >= settings.recompute_after
                || entry.failure.is_some()
        }
    }
}

fn kept_path(dir: &Path, query: &str, kind: &str) -> PathBuf {
    dir.join(format!("{query}.{kind}.parquet"))
}

/// Write a result (and its published version) under `dir`: the published one first, so a raw
/// file never stands beside a published one of another computation for long; reading checks
/// that both have the same time.
fn keep(
    dir: &Path,
    query: &str,
    fingerprint: &str,
    min_count: u64,
    computed: &Computed,
) -> Result<(), String> {
    let meta = KeptMeta {
        query: query.to_string(),
        fingerprint: fingerprint.to_string(),
        computed_at: computed.computed_at,
        sources: computed.sources.clone(),
        protected: computed.published.is_some(),
        min_count,
    };
    let meta = vec![KeyValue::new(
        META_KEY.to_string(),
        serde_json::to_string(&meta).map_err(|e| e.to_string())?,
    )];
    if let Some(published) = &computed.published {
        crate::store::write_atomically(
            &kept_path(dir, query, "published"),
            published.schema.clone(),
            &published.batches,
            meta.clone(),
        )?;
    } else {
        let _ = std::fs::remove_file(kept_path(dir, query, "published"));
    }
    crate::store::write_atomically(
        &kept_path(dir, query, "raw"),
        computed.raw.schema.clone(),
        &computed.raw.batches,
        meta,
    )
}

fn read_result(path: &Path) -> Result<(QueryResult, KeptMeta), String> {
    let (schema, batches, meta) = crate::store::read_whole(path, META_KEY)?;
    let meta: KeptMeta =
        serde_json::from_str(&meta.ok_or("no result metadata")?).map_err(|e| e.to_string())?;
    Ok((QueryResult { schema, batches }, meta))
}

/// A kept result, `None` when it is of other SQL or disclosure settings, or its published
/// version is missing or of another computation.
fn read_kept_one(
    dir: &Path,
    query: &str,
    fingerprint: &str,
    min_count: u64,
) -> Result<Option<Computed>, String> {
    let (raw, meta) = read_result(&kept_path(dir, query, "raw"))?;
    if meta.fingerprint != fingerprint || meta.query != query || meta.min_count != min_count {
        return Ok(None);
    }
    let published = if meta.protected {
        let (published, published_meta) = read_result(&kept_path(dir, query, "published"))?;
        if published_meta.computed_at != meta.computed_at
            || published_meta.fingerprint != fingerprint
        {
            return Ok(None);
        }
        Some(Arc::new(published))
    } else {
        None
    };
    Ok(Some(Computed {
        raw: Arc::new(raw),
        published,
        computed_at: meta.computed_at,
        sources: meta.sources,
    }))
}

/// The saved queries the dashboards read.
fn dashboard_queries(service: &Service) -> Vec<String> {
    let mut names: Vec<String> = service
        .config
        .dashboards
        .iter()
        .flat_map(|d| d.dashboard.query_references())
        .map(|(_, query)| query.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Keep every dashboard result up to date in the background, one query at a time (visitors'
/// and analysts' queries keep the other permits).
pub fn spawn_refresh(service: Arc<Service>) {
    let queries = dashboard_queries(&service);
    if queries.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut changes = service.store.subscribe();
        while !service.initial_load_done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            for query in &queries {
                // A failure is kept in the entry (and logged) for the dashboard to show.
                let _ = service.results.refresh(&service, query).await;
            }
            let generation = service.engine.generation();
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // The views are re-planned shortly after a change: compute over the new plans.
                    let deadline = tokio::time::Instant::now() + REPLAN_WAIT;
                    while service.engine.generation() == generation
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    changes.borrow_and_update();
                }
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;

    fn settings() -> ResultsConfig {
        ResultsConfig {
            min_interval: Duration::from_secs(30),
            recompute_after: Duration::from_secs(600),
        }
    }

    fn stamp_of(rows: usize) -> Vec<SourceStamp> {
        vec![SourceStamp {
            table: "a.b".into(),
            rows,
            version: None,
            last_success: None,
        }]
    }

    fn computed_at(at: DateTime<Utc>, rows: usize) -> Computed {
        Computed {
            raw: Arc::new(QueryResult {
                schema: Arc::new(Schema::empty()),
                batches: vec![],
            }),
            published: None,
            computed_at: at,
            sources: stamp_of(rows),
        }
    }

    #[test]
    fn a_result_is_recomputed_when_its_data_changed_or_it_is_old_never_more_often() {
        let now = Utc::now();
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        let s = settings();
        // (entry, current rows, due?)
        let cases = [
            (Entry::default(), 1, true),
            (
                Entry {
                    computed: Some(computed_at(ago(5), 1)),
                    failure: None,
                },
                1,
                false,
            ),
            (
                Entry {
                    computed: Some(computed_at(ago(5), 1)),
                    failure: None,
                },
                2,
                false,
            ),
            (
                Entry {
                    computed: Some(computed_at(ago(31), 1)),
                    failure: None,
                },
                2,
                true,
            ),
            (
                Entry {
                    computed: Some(computed_at(ago(31), 1)),
                    failure: None,
                },
                1,
                false,
            ),
            (
                Entry {
                    computed: Some(computed_at(ago(601), 1)),
                    failure: None,
                },
                1,
                true,
            ),
            // A failure is retried after min_interval, not at every tick.
            (
                Entry {
                    computed: Some(computed_at(ago(700), 1)),
                    failure: Some(Failure {
                        at: ago(10),
                        error: "x".into(),
                        not_planned: false,
                    }),
                },
                2,
                false,
            ),
            (
                Entry {
                    computed: Some(computed_at(ago(40), 1)),
                    failure: Some(Failure {
                        at: ago(31),
                        error: "x".into(),
                        not_planned: false,
                    }),
                },
                1,
                true,
            ),
            (
                Entry {
                    computed: None,
                    failure: Some(Failure {
                        at: ago(10),
                        error: "x".into(),
                        not_planned: false,
                    }),
                },
                1,
                false,
            ),
            (
                Entry {
                    computed: None,
                    failure: Some(Failure {
                        at: ago(31),
                        error: "x".into(),
                        not_planned: false,
                    }),
                },
                1,
                true,
            ),
        ];
        for (i, (entry, rows, expected)) in cases.into_iter().enumerate() {
            assert_eq!(due(&entry, &stamp_of(rows), now, &s), expected, "case {i}");
        }
    }

    #[test]
    fn a_kept_result_is_used_only_for_the_same_sql_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
            "n",
            arrow::datatypes::DataType::Int64,
            true,
        )]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::Int64Array::from(vec![
                Some(7),
                None,
            ]))],
        )
        .unwrap();
        let result = Arc::new(QueryResult {
            schema,
            batches: vec![batch],
        });
        let computed = Computed {
            raw: result.clone(),
            published: Some(result),
            computed_at: Utc::now(),
            sources: stamp_of(3),
        };
        keep(dir.path(), "q", "f1", 10, &computed).unwrap();
        let back = read_kept_one(dir.path(), "q", "f1", 10).unwrap().unwrap();
        assert_eq!(back.raw.rows(), 2);
        assert!(back.published.is_some());
        assert_eq!(back.computed_at, computed.computed_at);
        assert_eq!(back.sources, stamp_of(3));
        // Other SQL, another min_count: not used.
        assert!(read_kept_one(dir.path(), "q", "f2", 10).unwrap().is_none());
        assert!(read_kept_one(dir.path(), "q", "f1", 5).unwrap().is_none());
        // A protected result whose published version is gone is not used (never served raw).
        std::fs::remove_file(kept_path(dir.path(), "q", "published")).unwrap();
        assert!(read_kept_one(dir.path(), "q", "f1", 10).is_err());
    }
}
