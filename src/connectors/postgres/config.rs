//! Configuration of the `postgres` connector: one connection (a URL, a pool, optional TLS) and one
//! SQL query per table. Checks that need no connection live here; those that need the database
//! are in `check.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_text::{Problem, is_sql_identifier, resolve};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnectorConfig {
    /// Always `"postgres"`.
    pub kind: String,
    /// What these tables are, for people reading /status.
    #[serde(default)]
    pub description: Option<String>,
    /// Connection URL (`postgres://user:password@host:5432/db`) or libpq key=value string.
    /// Keep the secret out of the file: `url = "${REGISTRY_URL}"`.
    pub url: String,
    /// How often every table is pulled again (snapshots are replaced, logs get what is new).
    #[serde(with = "humantime_serde", default = "default_refresh")]
    pub refresh: Duration,
    /// Connections kept open; tables are pulled concurrently up to this number.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long to wait for a connection before the pull fails (and is retried with backoff).
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Longest time one table's query may run (PostgreSQL's `statement_timeout`, set per pull).
    #[serde(with = "humantime_serde", default = "default_query_timeout")]
    pub query_timeout: Duration,
    /// `disable` (the default: plain TCP, e.g. inside docker compose) or `require` (TLS, with the
    /// server certificate verified against `ca_file`, or the Mozilla roots when it is not set).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file with the certificate authority that signed the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Rows per Arrow record batch: memory while pulling is bounded by this, not by the table.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Tables or views holding one row per person (`schema.table`, or `table` in any schema), e.g.
    /// `["anagrafe.residenti"]`. A query that reads one must aggregate: it fails to load when it
    /// returns more than `max_rows_per_person` rows per person it reads.
    #[serde(default)]
    pub person_tables: Vec<String>,
    /// Rows a query may return per person it reads from `person_tables` (default 0.05: a registry
    /// of 400,000 residents allows 20,000 rows, e.g. counts by 90 areas × 2 sexes × 100 ages).
    #[serde(default = "default_max_rows_per_person")]
    pub max_rows_per_person: f64,
    /// The tables, one `[[table]]` each.
    #[serde(rename = "table", default)]
    pub tables: Vec<PostgresTableConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Disable,
    Require,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTableConfig {
    /// Table name in SQL: `city.<connector>.<name>`.
    pub name: String,
    /// What the table holds, shown in /status and the catalog.
    #[serde(default)]
    pub description: Option<String>,
    /// One read-only statement; its result columns are the table's columns. For personal data,
    /// aggregate here (GROUP BY) so individual records never leave the database.
    pub query: String,
    /// For append-only logs: a column that only grows (event id, timestamp). Each pull fetches
    /// the rows whose value is past the last committed one and appends them; without it every
    /// pull replaces the table.
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// For append tables: how long rows are kept, by the time in `retention_column`. Older rows
    /// are not pulled, and those the table holds are dropped when it is compacted.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// The date or timestamp column `retention` is measured on; default `cursor_column` (which
    /// must then be a date or a timestamp).
    #[serde(default)]
    pub retention_column: Option<String>,
    /// Columns the table's stored versions are sorted by, e.g. `["metric", "area"]`: a query
    /// filtering on the leading ones reads only the row groups that can match. Rows stay in the
    /// source's order without it.
    #[serde(default)]
    pub sort_by: Vec<String>,
}

impl PostgresTableConfig {
    /// The column retention is measured on, when the table has a retention.
    pub fn retention_column(&self) -> Option<&str> {
        self.retention?;
        self.retention_column
            .as_deref()
            .or(self.cursor_column.as_deref())
    }
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_pool_size() -> usize {
    2
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_batch_rows() -> usize {
    64 * 1024
}
fn default_max_rows_per_person() -> f64 {
    0.05
}

/// Column names that identify a person. A query whose output is one of them, or is computed from
/// one, moves individual records out of the registry, which data minimisation asks us not to do
/// (see `privacy.rs`).
const IDENTIFYING_COLUMNS: &[&str] = &[
    "codice_fiscale",
    "cod_fiscale",
    "codfisc",
    "cf",
    "fiscal_code",
    "tax_code",
    "nome",
    "cognome",
    "nominativo",
    "first_name",
    "last_name",
    "given_name",
    "family_name",
    "surname",
    "full_name",
    "data_nascita",
    "data_di_nascita",
    "birth_date",
    "birthdate",
    "date_of_birth",
    "dob",
];

pub fn is_identifying(column: &str) -> bool {
    IDENTIFYING_COLUMNS.contains(&column.to_ascii_lowercase().as_str())
}

impl PostgresConnectorConfig {
    pub fn validate(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let at = |i: usize, key: &str| Some(format!("table[{i}].{key}"));
        if self.tables.is_empty() {
            problems.push(Problem::new(
                file,
                None,
                "no `[[table]]`: a postgres connector needs at least one table",
            ));
        }
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            // The parser's message never repeats the URL, so no password can leak here.
            problems.push(Problem::new(
                file,
                Some("url".into()),
                format!("not a PostgreSQL connection URL: {e}"),
            ));
        }
        if self.pool_size == 0 {
            problems.push(Problem::new(
                file,
                Some("pool_size".into()),
                "pool_size must be at least 1",
            ));
        }
        if self.batch_rows == 0 {
            problems.push(Problem::new(
                file,
                Some("batch_rows".into()),
                "batch_rows must be at least 1",
            ));
        }
        if !(self.max_rows_per_person > 0.0 && self.max_rows_per_person.is_finite()) {
            problems.push(Problem::new(
                file,
                Some("max_rows_per_person".into()),
                format!(
                    "max_rows_per_person must be a positive number, not {}",
                    self.max_rows_per_person
                ),
            ));
        }
        for (i, name) in self.person_tables.iter().enumerate() {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty()) {
                problems.push(Problem::new(
                    file,
                    Some(format!("person_tables[{i}]")),
                    format!("`{name}` is not a table name: write `schema.table` or `table`"),
                ));
            }
        }
        if let Some(ca_file) = &self.ca_file {
            if self.tls == TlsMode::Disable {
                problems.push(Problem::warning(
                    file,
                    Some("ca_file".into()),
                    "ca_file is ignored while tls = \"disable\"",
                ));
            }
            let path = resolve(base_dir, ca_file);
            if !path.is_file() {
                problems.push(Problem::new(
                    file,
                    Some("ca_file".into()),
                    format!("`{}` does not exist or is not a file", path.display()),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, table) in self.tables.iter().enumerate() {
            if !is_sql_identifier(&table.name) {
                problems.push(Problem::new(
                    file,
                    at(i, "name"),
                    format!(
                        "`{}` is not a valid table name: use lowercase letters, digits and `_`",
                        table.name
                    ),
                ));
            }
            if !names.insert(table.name.clone()) {
                problems.push(Problem::new(
                    file,
                    at(i, "name"),
                    format!("table `{}` is declared twice", table.name),
                ));
            }
            if table.query.trim().trim_end_matches(';').trim().is_empty() {
                problems.push(Problem::new(file, at(i, "query"), "the query is empty"));
                continue;
            }
            if let Some(column) = &table.cursor_column {
                if column.is_empty() || column.contains('"') {
                    problems.push(Problem::new(
                        file,
                        at(i, "cursor_column"),
                        format!("`{column}` is not a column name"),
                    ));
                }
            }
            if let Some(column) = &table.retention_column {
                if column.is_empty() || column.contains('"') {
                    problems.push(Problem::new(
                        file,
                        at(i, "retention_column"),
                        format!("`{column}` is not a column name"),
                    ));
                }
                if table.retention.is_none() {
                    problems.push(Problem::warning(
                        file,
                        at(i, "retention_column"),
                        "retention_column is ignored without `retention`",
                    ));
                }
            }
            match table.retention {
                Some(_) if table.cursor_column.is_none() => problems.push(Problem::new(
                    file,
                    at(i, "retention"),
                    "retention applies to append tables: set `cursor_column` too (a table \
                     without one is replaced on each pull and holds what its query returns)",
                )),
                Some(retention) if retention.is_zero() => problems.push(Problem::new(
                    file,
                    at(i, "retention"),
                    "retention must be longer than zero",
                )),
                _ => {}
            }
        }
        problems
    }
}
