//! `cruscotto check` against the database itself: every query is prepared (never run), so syntax
//! errors, missing tables or columns, unsupported column types and identifying output columns
//! (through their lineage, also behind `*` and aliases) are found before the service starts.

use std::path::Path;
use std::time::Duration;

use super::config::PostgresConnectorConfig;
use super::connect::{self, describe, describe_pool};
use super::cursor::{cursor_type, retention_type};
use super::load::{columns, user_query};
use super::privacy;
use crate::config_text::Problem;

/// Longest wait for the database during a check: a check should answer quickly either way.
const CHECK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check_source(
    config: &PostgresConnectorConfig,
    file: &Path,
    base_dir: &Path,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut quick = config.clone();
    quick.connect_timeout = config.connect_timeout.min(CHECK_CONNECT_TIMEOUT);
    quick.pool_size = 1;
    let source = connect::redacted_url(&config.url);
    let not_checked = |reason: String| {
        Problem::warning(
            file,
            Some("url".into()),
            format!(
                "could not connect to PostgreSQL at {source} ({reason}): the queries' syntax and column types were not checked"
            ),
        )
    };
    let pool = match connect::pool(&quick, base_dir) {
        Ok(pool) => pool,
        Err(reason) => return vec![not_checked(reason)],
    };
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            problems.push(not_checked(describe_pool(&e)));
            // Without the database, at least say when a query does not even parse as SQL, and
            // what its lineage shows from the names of the base columns alone.
            for (i, table) in config.tables.iter().enumerate() {
                let at = Some(format!("table[{i}].query"));
                match privacy::offline_findings(user_query(&table.query)) {
                    Err(error) => problems.push(Problem::warning(
                        file,
                        at,
                        format!("does not parse as SQL (checked offline, PostgreSQL may still accept it): {error}"),
                    )),
                    Ok(findings) if !findings.is_empty() => problems.push(Problem::warning(
                        file,
                        at,
                        format!("{} (checked offline)", privacy::identifying_message(&findings)),
                    )),
                    Ok(_) => {}
                }
            }
            return problems;
        }
    };
    for (i, table) in config.tables.iter().enumerate() {
        let at = |key: &str| Some(format!("table[{i}].{key}"));
        let query = user_query(&table.query);
        // Preparing plans nothing and runs nothing; outside a transaction one failure does not
        // hide the problems of the next tables.
        let statement = match client.prepare(query).await {
            Ok(statement) => statement,
            Err(e) => {
                problems.push(Problem::new(file, at("query"), describe(&e, Some(query))));
                continue;
            }
        };
        if let Err(message) = columns(&statement) {
            problems.push(Problem::new(file, at("query"), message));
        }
        if let Some(column) = &table.cursor_column {
            match statement.columns().iter().find(|c| c.name() == column) {
                None => problems.push(Problem::new(
                    file,
                    at("cursor_column"),
                    format!(
                        "`{column}` is not a column of the query (columns: {})",
                        statement
                            .columns()
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                Some(c) => {
                    if let Err(message) = cursor_type(c.type_()) {
                        problems.push(Problem::new(file, at("cursor_column"), message));
                    }
                }
            }
        }
        if let Some(column) = table.retention_column() {
            let key = match &table.retention_column {
                Some(_) => "retention_column",
                None => "retention",
            };
            match statement.columns().iter().find(|c| c.name() == column) {
                None => problems.push(Problem::new(
                    file,
                    at(key),
                    format!("retention column `{column}` is not a column of the query"),
                )),
                Some(c) => {
                    if let Err(message) = retention_type(c.type_()) {
                        problems.push(Problem::new(
                            file,
                            at(key),
                            format!("retention column `{column}`: {message}"),
                        ));
                    }
                }
            }
        }
        // What leaves the database, through the lineage of every output column.
        let names: Vec<String> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        match privacy::findings(&**client, query, &names).await {
            Ok(findings) if !findings.is_empty() => problems.push(Problem::new(
                file,
                at("query"),
                privacy::identifying_message(&findings),
            )),
            Ok(_) => {}
            Err(message) => problems.push(Problem::new(file, at("query"), message)),
        }
    }
    problems
}

/// The schema of each table as a load would make it, from the database's own description of the
/// prepared query (nothing is run): `cruscotto check` plans the saved queries against them.
pub async fn describe_tables(
    config: &PostgresConnectorConfig,
    base_dir: &Path,
) -> Vec<(String, Result<arrow::datatypes::SchemaRef, String>)> {
    let mut quick = config.clone();
    quick.connect_timeout = config.connect_timeout.min(CHECK_CONNECT_TIMEOUT);
    quick.pool_size = 1;
    let unknown = |reason: String| {
        config
            .tables
            .iter()
            .map(|t| (t.name.clone(), Err(reason.clone())))
            .collect()
    };
    let pool = match connect::pool(&quick, base_dir) {
        Ok(pool) => pool,
        Err(reason) => return unknown(reason),
    };
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unknown(format!("cannot connect: {}", describe_pool(&e))),
    };
    let mut out = Vec::with_capacity(config.tables.len());
    for table in &config.tables {
        let schema = match client.prepare(user_query(&table.query)).await {
            Ok(statement) => columns(&statement)
                .map(|(names, kinds)| super::types::BatchBuilder::new(&names, &kinds, 0).schema()),
            Err(e) => Err(describe(&e, Some(user_query(&table.query)))),
        };
        out.push((table.name.clone(), schema));
    }
    out
}
