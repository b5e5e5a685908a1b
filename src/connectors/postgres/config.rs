//! Configuration of the `postgres` connector: one connection (a URL, a pool, optional TLS) and one
//! SQL query per table. Checks that need no connection live here; those that need the database
//! are in `check.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problem, is_sql_identifier, resolve};

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

/// Column names that identify a person. A query selecting one of them without GROUP BY moves
/// individual records out of the registry, which data minimisation asks us not to do.
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

/// What can be told about a query without the database: whether its outer SELECT groups, and the
/// identifying columns it names in its select list (directly or under an alias).
#[derive(Debug, Default, PartialEq)]
pub struct QueryShape {
    /// `None` when the statement could not be parsed here (PostgreSQL may still accept it).
    pub groups: Option<bool>,
    pub identifying: Vec<String>,
    pub parse_error: Option<String>,
}

pub fn query_shape(query: &str) -> QueryShape {
    use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, SelectItem, SetExpr, Statement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn column_of(expr: &Expr) -> Option<String> {
        match expr {
            Expr::Identifier(ident) => Some(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
            Expr::Cast { expr, .. } | Expr::Nested(expr) => column_of(expr),
            _ => None,
        }
    }

    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, query) {
        Ok(statements) => statements,
        Err(e) => {
            return QueryShape {
                parse_error: Some(e.to_string()),
                ..QueryShape::default()
            };
        }
    };
    let [Statement::Query(query)] = statements.as_slice() else {
        return QueryShape {
            parse_error: Some("expected exactly one SELECT statement".into()),
            ..QueryShape::default()
        };
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        // UNION and friends: leave the judgement to the columns PostgreSQL reports.
        return QueryShape::default();
    };
    let groups =
        !matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty());
    let mut identifying = Vec::new();
    for item in &select.projection {
        let names = match item {
            SelectItem::UnnamedExpr(expr) => vec![column_of(expr)],
            SelectItem::ExprWithAlias { expr, alias } => {
                vec![column_of(expr), Some(alias.value.clone())]
            }
            _ => Vec::new(),
        };
        for name in names.into_iter().flatten() {
            if is_identifying(&name) && !identifying.contains(&name) {
                identifying.push(name);
            }
        }
    }
    QueryShape {
        groups: Some(groups),
        identifying,
        parse_error: None,
    }
}

pub fn identifying_warning(columns: &[String]) -> String {
    format!(
        "the query selects identifying columns ({}) without GROUP BY: aggregate in PostgreSQL \
         (e.g. counts by area, sex and age band) so individual records never leave the registry",
        columns
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
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
            let shape = query_shape(&table.query);
            if shape.groups == Some(false) && !shape.identifying.is_empty() {
                problems.push(Problem::warning(
                    file,
                    at(i, "query"),
                    identifying_warning(&shape.identifying),
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_columns_without_group_by_are_found() {
        let shape =
            query_shape("SELECT r.codice_fiscale, cognome AS c, area FROM anagrafe.residenti r");
        assert_eq!(shape.groups, Some(false));
        assert_eq!(
            shape.identifying,
            vec!["codice_fiscale".to_string(), "cognome".to_string()]
        );

        let aliased = query_shape("SELECT x AS data_nascita FROM t");
        assert_eq!(aliased.identifying, vec!["data_nascita".to_string()]);

        let grouped = query_shape("SELECT area, count(*) FROM anagrafe.residenti GROUP BY area");
        assert_eq!(grouped.groups, Some(true));
        assert!(grouped.identifying.is_empty());

        let odd = query_shape("SELECT a FROM t WHERE a = = 1");
        assert!(odd.parse_error.is_some());
    }
}
