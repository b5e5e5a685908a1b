//! Wiring: the store, the query engine over it, and one refresh loop per connector. A connector
//! that fails leaves the last good snapshot in place and is retried with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::RngExt;
use tracing::{error, info, warn};

use crate::config::{Config, NamedConnector};
use crate::connectors::{Connector, ConnectorConfig};
use crate::query::QueryEngine;
use crate::store::Store;

/// First retry delay after a failure; it doubles up to the refresh interval (at most `MAX_BACKOFF`).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Service {
    pub config: Config,
    pub store: Arc<Store>,
    pub engine: Arc<QueryEngine>,
    /// What the dashboards serve, kept up to date in the background.
    pub results: crate::results::DashboardResults,
    initial_load_done: AtomicBool,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl Service {
    /// Build the store and engine, restoring the snapshots persisted by an earlier run so that
    /// data is served at once, even when a source is gone.
    pub async fn new(config: Config) -> Arc<Self> {
        let store = Store::open(
            &config.data_dir(),
            crate::query::partitions(&config.service.query),
            config.service.storage.memory_cache.as_u64(),
        );
        store.set_sort_memory(config.service.storage.sort_memory.as_u64() as usize);
        crate::objects::clear_scratch(&config.data_dir());
        for connector in &config.connectors {
            if let ConnectorConfig::Mqtt(mqtt) = &connector.config {
                // Log tables recover their WAL here, before anything is served.
                let source = connector.file.display().to_string();
                for table in connector.config.table_names() {
                    store.declare(
                        &connector.name,
                        &table,
                        &mqtt.source(),
                        connector.config.refresh(),
                    );
                    if connector.config.is_simulated(&table) {
                        store.mark_simulated(&connector.name, &table);
                    }
                }
                if let Err(e) = crate::connectors::mqtt::open_tables(
                    &store,
                    &connector.name,
                    mqtt,
                    &mqtt.source(),
                ) {
                    error!(schema = %connector.name, file = %source, error = %e, "cannot open the log tables");
                    for table in connector.config.table_names() {
                        store.record_failure(&connector.name, &table, &mqtt.source(), &e);
                    }
                }
                continue;
            }
            for table in connector.config.table_names() {
                store.declare(
                    &connector.name,
                    &table,
                    &connector.file.display().to_string(),
                    connector.config.refresh(),
                );
                if connector.config.is_simulated(&table) {
                    store.mark_simulated(&connector.name, &table);
                }
                store.set_sort_order(&connector.name, &table, connector.config.sort_by(&table));
                if let Err(e) = store.restore(&connector.name, &table) {
                    warn!(schema = %connector.name, table = %table, error = %e, "cannot restore snapshot");
                }
            }
        }
        let engine = QueryEngine::new(&store, config.queries.clone(), config.service.query.clone());
        engine.rebuild_views_before_load().await;
        let results = crate::results::DashboardResults::open(
            &config.data_dir(),
            &config.queries,
            config.service.results.clone(),
            config.service.access.min_count,
        );
        Arc::new(Self {
            config,
            store,
            engine,
            results,
            initial_load_done: AtomicBool::new(false),
            started_at: chrono::Utc::now(),
        })
    }

    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
    }

    /// Whether every connector has been loaded once since start-up.
    pub fn initial_load_done(&self) -> bool {
        self.initial_load_done.load(Ordering::Acquire)
    }

    /// Load every connector once, then re-plan the views. Returns whether every table loaded.
    pub async fn load_all_once(&self) -> bool {
        self.load_each_once().await.is_empty()
    }

    /// Load every connector once, then re-plan the views. Returns the connectors that failed.
    async fn load_each_once(&self) -> std::collections::HashSet<String> {
        let mut failed = std::collections::HashSet::new();
        for connector in self
            .config
            .connectors
            .iter()
            .filter(|c| !c.config.is_stream())
        {
            let runner = connector
                .config
                .build_with(&self.config.base_dir, &self.config.object_sources());
            if !load_connector(&self.store, connector, runner.as_ref()).await {
                failed.insert(connector.name.clone());
            }
        }
        self.engine.rebuild_views().await;
        self.initial_load_done.store(true, Ordering::Release);
        failed
    }

    /// Start the background work of a running server: the first load, then one refresh loop per
    /// connector, and a task re-planning the views whenever a table changes.
    pub fn spawn_background(self: &Arc<Self>) {
        let service = self.clone();
        tokio::spawn(async move {
            let failed = service.load_each_once().await;
            info!("initial load done");
            for connector in service.config.connectors.clone() {
                let store = service.store.clone();
                let base_dir = service.config.base_dir.clone();
                let objects = service.config.object_sources();
                match connector.config {
                    ConnectorConfig::Mqtt(config) => {
                        tokio::spawn(crate::connectors::mqtt::run(
                            store,
                            connector.name,
                            *config,
                            base_dir,
                        ));
                    }
                    _ => {
                        // A source down at start is retried with backoff like any failed
                        // refresh, not a whole refresh interval later.
                        let failures = u32::from(failed.contains(&connector.name));
                        tokio::spawn(async move {
                            refresh_loop(store, connector, base_dir, objects, failures).await
                        });
                    }
                }
            }
        });
        let service = self.clone();
        let mut changes = self.store.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                // Several tables of a connector commit together: let them land, then plan once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                changes.borrow_and_update();
                // During the first load, tables still to come are missing: the load warns once,
                // at its end, about the views that still do not plan.
                if service.initial_load_done() {
                    service.engine.rebuild_views().await;
                } else {
                    service.engine.rebuild_views_before_load().await;
                }
            }
        });
    }
}

/// Load one connector and commit or record each table. Returns whether all succeeded.
async fn load_connector(store: &Store, connector: &NamedConnector, runner: &dyn Connector) -> bool {
    let mut all_ok = true;
    let state = store.load_state(&connector.name);
    for load in runner.load(&state).await {
        let outcome = match load.result {
            Ok(loaded) => match store
                .commit(&connector.name, &load.table, &load.source, loaded)
                .await
            {
                Ok(()) => "ok",
                Err(e) => {
                    error!(schema = %connector.name, table = %load.table, error = %e, "commit failed");
                    store.record_failure(
                        &connector.name,
                        &load.table,
                        &load.source,
                        &e.to_string(),
                    );
                    all_ok = false;
                    "error"
                }
            },
            Err(e) => {
                store.record_failure(&connector.name, &load.table, &load.source, &e.to_string());
                all_ok = false;
                "error"
            }
        };
        metrics::counter!("cruscotto_table_loads_total", "schema" => connector.name.clone(), "table" => load.table.clone(), "outcome" => outcome)
            .increment(1);
    }
    all_ok
}

/// `failures`: how many loads in a row have failed so far (the first load's outcome).
async fn refresh_loop(
    store: Arc<Store>,
    connector: NamedConnector,
    base_dir: std::path::PathBuf,
    objects: crate::objects::ObjectSources,
    mut failures: u32,
) {
    let runner = connector.config.build_with(&base_dir, &objects);
    let refresh = connector.config.refresh();
    loop {
        let delay = if failures == 0 {
            refresh
        } else {
            backoff(failures, refresh)
        };
        tokio::time::sleep(delay).await;
        if load_connector(&store, &connector, runner.as_ref()).await {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
            warn!(connector = %connector.name, failures, "refresh failed; retrying with backoff");
        }
    }
}

/// Exponential backoff with ±25% jitter, capped by the refresh interval and `MAX_BACKOFF`.
fn backoff(failures: u32, refresh: Duration) -> Duration {
    let exponential = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let capped = exponential.min(refresh).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let refresh = Duration::from_secs(60);
        let first = backoff(1, refresh);
        assert!(
            first >= Duration::from_millis(750) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        let fourth = backoff(4, refresh);
        assert!(
            fourth >= Duration::from_secs(6) && fourth <= Duration::from_secs(10),
            "{fourth:?}"
        );
        assert!(backoff(30, refresh) <= Duration::from_secs(75));
        assert!(backoff(30, Duration::from_secs(3600)) <= Duration::from_secs(375));
    }
}
