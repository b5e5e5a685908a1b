//! `cruscotto check` beyond the configuration's own syntax: every saved query is planned, and every
//! column a dashboard or a partner dataset reads is looked up, against the schemas of the declared
//! tables as their sources describe them (a Parquet footer, a text file's inferred types, the
//! database's description of a prepared query, an MQTT connector's fixed tables). Nothing is
//! loaded into the service's store and nothing is served: the tables are registered empty in a
//! scratch store that is removed afterwards, and the saved queries are planned by the same code
//! that plans them at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use crate::config::Config;
use crate::config_text::Problem;
use crate::connectors::{ConnectorConfig, LoadedTable};
use crate::plan::scenario::{NamedScenario, Scenario};
use crate::query::{QUERIES_SCHEMA, QueryEngine};
use crate::store::Store;

/// Plan every saved query, dashboard and dataset of `config` and return what would break at run
/// time. A table whose schema cannot be read (its source is unreachable) is a warning, and the
/// queries reading it are reported as not checked rather than wrong.
pub async fn plan_everything(config: &Config) -> Vec<Problem> {
    let scratch = Scratch::new();
    let mut problems = Vec::new();
    let store = Store::open(
        &scratch.0.join("store"),
        1,
        config.service.storage.memory_cache.as_u64(),
    );
    // Objects are downloaded to the scratch folder, not to the service's data_dir.
    let objects = crate::objects::ObjectSources {
        scratch: scratch.0.join("objects"),
        ..config.object_sources()
    };
    // Qualified table name → why its schema is not known.
    let mut unknown: BTreeMap<String, String> = BTreeMap::new();
    for connector in &config.connectors {
        let source = connector.file.display().to_string();
        let Some(tables) = connector
            .config
            .describe(&config.base_dir, &scratch.0, &objects)
            .await
        else {
            if let ConnectorConfig::Mqtt(mqtt) = &connector.config {
                for table in connector.config.table_names() {
                    store.declare(&connector.name, &table, &source, connector.config.refresh());
                }
                if let Err(e) =
                    crate::connectors::mqtt::open_tables(&store, &connector.name, mqtt, &source)
                {
                    problems.push(Problem::new(&connector.file, None, e));
                }
            }
            continue;
        };
        for (table, schema) in tables {
            let qualified = format!("{}.{table}", connector.name);
            store.declare(&connector.name, &table, &source, connector.config.refresh());
            let committed = match schema {
                Ok((schema, rejected)) => {
                    if let Some(first) = rejected.first() {
                        let at = first
                            .line
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default();
                        problems.push(Problem::warning(
                            &connector.file,
                            Some(format!("table `{table}`")),
                            format!(
                                "{} record(s) of {} would be rejected on load; the first{at}: {}",
                                rejected.len(),
                                first.source,
                                first.reason
                            ),
                        ));
                    }
                    register_empty(&store, &connector.name, &table, &source, schema).await
                }
                Err(reason) => Err(reason),
            };
            if let Err(reason) = committed {
                // Said where a saved query reads the table (below), not for every such table.
                unknown.insert(qualified, reason);
            }
        }
    }

    let engine = QueryEngine::new(&store, config.queries.clone(), config.service.query.clone());
    // Planned as before a first load: failures are reported below, not logged as warnings.
    engine.rebuild_views_before_load().await;
    for view in engine.views() {
        let Some(error) = &view.error else { continue };
        let Some(query) = config.queries.iter().find(|q| q.name == view.name) else {
            continue;
        };
        let location = locate_in_sql(&query.file, error);
        if let Some((table, reason)) = unknown.iter().find(|(t, _)| mentions(error, t)) {
            problems.push(Problem::warning(
                &query.file,
                location,
                format!("not checked: it reads `{table}`, whose schema is not known: {reason}"),
            ));
        } else if let Some(fallback) = &view.fallback {
            problems.push(Problem::warning(
                &query.file,
                location,
                format!(
                    "does not plan, so its fallback `{fallback}` answers in its place: {error}"
                ),
            ));
        } else {
            problems.push(Problem::new(&query.file, location, error.clone()));
        }
    }

    let views = store.schema_provider(QUERIES_SCHEMA);
    let mut schemas: BTreeMap<String, Option<SchemaRef>> = BTreeMap::new();
    for query in &config.queries {
        let schema = views.table(&query.name).await.ok().flatten();
        schemas.insert(query.name.clone(), schema.map(|t| t.schema()));
    }
    // Placement scenarios read saved queries or tables (`schema.table`).
    let scenarios = scenarios(&config.base_dir, &mut problems);
    for scenario in &scenarios {
        let Some(dashboard) = &scenario.scenario.dashboard else {
            continue;
        };
        if !config.dashboards.iter().any(|d| &d.name == dashboard) {
            problems.push(Problem::new(
                &scenario.file,
                Some(locate_in_toml(&scenario.file, "dashboard", dashboard)),
                format!("`{dashboard}` is not a dashboard of dashboards/"),
            ));
        }
    }
    for (scenario, reference) in scenarios
        .iter()
        .flat_map(|s| s.scenario.sources().map(move |r| (s, r)))
    {
        if schemas.contains_key(reference) {
            continue;
        }
        let table = match reference.split_once('.') {
            Some((schema, table)) => store
                .schema_provider(schema)
                .table(table)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        match table {
            Some(table) => {
                schemas.insert(reference.to_string(), Some(table.schema()));
            }
            None if unknown.contains_key(reference) => {}
            None => problems.push(Problem::new(
                &scenario.file,
                Some(locate_in_toml(&scenario.file, "query", reference)),
                format!("`{reference}` is neither a saved query nor a table"),
            )),
        }
    }
    let mut missing_column = |file: &Path, key: &str, query: &str, column: &str| {
        // A query that does not plan has been reported already.
        let Some(Some(schema)) = schemas.get(query) else {
            return;
        };
        if schema.index_of(column).is_ok() {
            return;
        }
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        problems.push(Problem::new(
            file,
            Some(locate_in_toml(file, key, column)),
            format!(
                "`{column}` is not a column of the saved query `{query}`; its columns are: {}",
                columns.join(", ")
            ),
        ));
    };
    for dashboard in &config.dashboards {
        for (key, query, column) in dashboard.dashboard.column_references() {
            missing_column(&dashboard.file, &key, query, column);
        }
    }
    for dataset in &config.datasets {
        let c = &dataset.config;
        let mut columns = vec![("key".to_string(), c.key.as_str())];
        columns.extend(
            c.filters
                .iter()
                .map(|f| ("filters".to_string(), f.as_str())),
        );
        if let Some(persons) = &c.persons {
            columns.extend(
                persons
                    .counts
                    .iter()
                    .map(|n| ("persons.counts".into(), n.as_str())),
            );
            columns.extend(
                persons
                    .groups
                    .iter()
                    .map(|n| ("persons.groups".into(), n.as_str())),
            );
            for derived in persons.derived.values() {
                columns.extend(
                    derived
                        .iter()
                        .map(|n| ("persons.derived".into(), n.as_str())),
                );
            }
        }
        for (key, column) in columns {
            missing_column(&dataset.file, &key, &c.query, column);
        }
    }
    for scenario in &scenarios {
        for (key, query, column) in scenario_columns(&scenario.scenario) {
            missing_column(&scenario.file, key, query, column);
        }
    }
    problems
}

/// The placement scenarios of `plans/`, each file on its own: one that does not read is a
/// problem, the others are still checked.
fn scenarios(base_dir: &Path, problems: &mut Vec<Problem>) -> Vec<NamedScenario> {
    let mut loaded = Vec::new();
    for file in crate::plan::scenario::files(&base_dir.join(crate::plan::scenario::PLANS_DIR)) {
        match crate::plan::scenario::load_file(&file) {
            Ok(scenario) => loaded.push(scenario),
            Err(e) => {
                let message = e.to_string();
                let prefix = format!("{}: ", file.display());
                let message = message.strip_prefix(&prefix).unwrap_or(&message);
                problems.push(Problem::new(&file, None, message));
            }
        }
    }
    loaded
}

/// Every (key, source, column) a scenario names.
fn scenario_columns(s: &Scenario) -> Vec<(&'static str, &str, &str)> {
    let d = &s.demand;
    let mut columns = vec![
        ("demand.id", d.query.as_str(), d.id.as_str()),
        ("demand.geometry", &d.query, &d.geometry),
    ];
    columns.extend(
        d.name
            .iter()
            .map(|n| ("demand.name", d.query.as_str(), n.as_str())),
    );
    columns.extend(
        d.weights
            .iter()
            .map(|w| ("demand.weights", d.query.as_str(), w.column.as_str())),
    );
    for (key, sites) in [("candidates", &s.candidates), ("open", &s.open)] {
        for site in sites {
            let q = site.query.as_str();
            columns.push((key, q, site.name.as_str()));
            columns.push((key, q, site.geometry.as_str()));
            columns.extend(site.id.iter().map(|c| (key, q, c.as_str())));
            columns.extend(site.capacity.iter().map(|c| (key, q, c.as_str())));
        }
    }
    columns
}

async fn register_empty(
    store: &Store,
    schema_name: &str,
    table: &str,
    source: &str,
    schema: SchemaRef,
) -> Result<(), String> {
    let empty = LoadedTable::replace(schema, Vec::new(), Vec::new());
    store
        .commit(schema_name, table, source, empty)
        .await
        .map_err(|e| e.to_string())
}

/// Whether an error names this table (`schema.table`, maybe inside a catalog-qualified name).
fn mentions(error: &str, qualified: &str) -> bool {
    error.contains(&format!("{qualified}'")) || error.contains(&format!("{qualified}`"))
}

/// The line of a saved query's file where the name an error is about first appears in the SQL
/// (not in the metadata comments), as `line N`.
fn locate_in_sql(file: &Path, error: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let name = named_in_error(error)?;
    let word =
        regex::Regex::new(&format!(r"(?i)(^|[^\w]){}([^\w]|$)", regex::escape(&name))).ok()?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("--"))
        .find(|(_, line)| word.is_match(line))
        .map(|(i, _)| format!("line {}", i + 1))
}

/// The column or table a planning error is about, as the SQL would write it.
fn named_in_error(error: &str) -> Option<String> {
    static PATTERNS: std::sync::LazyLock<[regex::Regex; 4]> = std::sync::LazyLock::new(|| {
        [
            // "No field named c.nome." / "No field named \"Nome\"."
            regex::Regex::new(r#"No field named "?([\w.]+?)"?(\.\s|\.$|\s|$)"#).unwrap(),
            // "table 'cruscotto.bologna.areee' not found"
            regex::Regex::new(r"table '([\w.]+)' not found").unwrap(),
            // "needs `residenti`, which does not plan"
            regex::Regex::new(r"needs `(\w+)`").unwrap(),
            // "No function matches the given name and argument types 'sum(Utf8)'"
            regex::Regex::new(r"argument types '(\w+)\(").unwrap(),
        ]
    });
    for (i, pattern) in PATTERNS.iter().enumerate() {
        if let Some(found) = pattern.captures(error).and_then(|c| c.get(1)) {
            let name = found.as_str();
            let parts: Vec<&str> = name.split('.').collect();
            return Some(match i {
                // A column: its own name, without the table alias.
                0 => parts.last()?.to_string(),
                // A table: `schema.table` as the queries write it.
                1 => parts[parts.len().saturating_sub(2)..].join("."),
                _ => name.to_string(),
            });
        }
    }
    None
}

/// Where a dashboard or dataset file names `column` for `key`: `line N (key)`, or the key alone.
fn locate_in_toml(file: &Path, key: &str, column: &str) -> String {
    let quoted = format!("\"{column}\"");
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .position(|line| !line.trim_start().starts_with('#') && line.contains(&quoted))
        })
        .map_or_else(|| key.to_string(), |i| format!("line {} ({key})", i + 1))
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("cruscotto-check-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::create_dir_all(&path);
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_planning_errors_are_found() {
        let cases = [
            (
                "Schema error: No field named a.nome_area. Valid fields are a.codice, a.geometry.",
                "nome_area",
            ),
            (
                "Error during planning: table 'cruscotto.bologna.areee' not found",
                "bologna.areee",
            ),
            (
                "needs `residenti_per_area`, which does not plan: x",
                "residenti_per_area",
            ),
            (
                "Error during planning: No function matches the given name and argument types 'sum(Utf8)'.",
                "sum",
            ),
        ];
        for (error, name) in cases {
            assert_eq!(named_in_error(error).as_deref(), Some(name), "{error}");
        }
        assert_eq!(named_in_error("Internal error"), None);
    }

    #[test]
    fn a_name_is_located_in_the_sql_not_in_the_metadata() {
        let dir = std::env::temp_dir().join(format!("cruscotto-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("q.sql");
        std::fs::write(
            &file,
            "-- title: nome_area per area\n-- columns: nome_area = Nome\nSELECT\n  a.codice,\n  a.nome_area\nFROM bologna.aree AS a\n",
        )
        .unwrap();
        let error = "Schema error: No field named a.nome_area. Valid fields are a.codice.";
        assert_eq!(locate_in_sql(&file, error).as_deref(), Some("line 5"));
        let error = "Error during planning: table 'cruscotto.bologna.aree' not found";
        assert_eq!(locate_in_sql(&file, error).as_deref(), Some("line 6"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
