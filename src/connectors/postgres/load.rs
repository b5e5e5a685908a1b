//! Pulling tables: each table's query runs in a read-only transaction and its rows stream into
//! Arrow batches of `batch_rows` as they arrive. With a `cursor_column` only the rows past the last
//! committed cursor are fetched, in cursor order, and handed to the store with the new cursor.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_postgres::types::{ToSql, Type};

use super::config::{PostgresConnectorConfig, PostgresTableConfig};
use super::connect::{self, describe, describe_pool};
use super::types::{self, BatchBuilder, Cell, ColumnKind, Raw};
use crate::connectors::{
    Connector, ConnectorError, LoadMode, LoadState, LoadedTable, RejectedRecord, TableLoad,
    truncate_raw,
};

pub struct PostgresConnector {
    config: PostgresConnectorConfig,
    pool: Result<Pool, String>,
    /// The URL without its password.
    source: String,
}

impl PostgresConnector {
    pub fn new(config: PostgresConnectorConfig, base_dir: &Path) -> Self {
        let pool = connect::pool(&config, base_dir);
        let source = connect::redacted_url(&config.url);
        Self {
            config,
            pool,
            source,
        }
    }

    fn error(&self, table: &str, message: impl Into<String>) -> ConnectorError {
        ConnectorError::Postgres {
            source_url: self.source.clone(),
            table: table.to_string(),
            message: message.into(),
        }
    }

    /// A row that could not be decoded, kept with the column and the reason.
    fn rejected(
        &self,
        table: &PostgresTableConfig,
        row: u64,
        names: &[String],
        cells: &[Cell<'_>],
        column: usize,
        reason: String,
    ) -> RejectedRecord {
        let raw = names
            .iter()
            .zip(cells)
            .enumerate()
            .map(|(i, (name, cell))| {
                if i == column {
                    format!("{name}=?")
                } else {
                    format!("{name}={}", types::cell_text(cell))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        RejectedRecord {
            source: format!("{} ({})", self.source, table.name),
            line: Some(row),
            reason: format!("column `{}`: {reason}", names[column]),
            raw: truncate_raw(&raw),
        }
    }

    async fn load_table(
        &self,
        table: &PostgresTableConfig,
        cursor: Option<&str>,
    ) -> Result<LoadedTable, ConnectorError> {
        // A hung network must not hold the refresh loop forever: the server's statement_timeout
        // bounds the query, this bounds everything including a peer that vanished.
        let limit =
            self.config.connect_timeout + self.config.query_timeout + Duration::from_secs(5);
        match tokio::time::timeout(limit, self.pull(table, cursor)).await {
            Ok(result) => result,
            Err(_) => Err(self.error(
                &table.name,
                format!("no answer within {}", humantime::format_duration(limit)),
            )),
        }
    }

    async fn pull(
        &self,
        table: &PostgresTableConfig,
        cursor: Option<&str>,
    ) -> Result<LoadedTable, ConnectorError> {
        let pool = self
            .pool
            .as_ref()
            .map_err(|e| self.error(&table.name, e.clone()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| self.error(&table.name, describe_pool(&e)))?;
        let transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.error(&table.name, describe(&e, None)))?;
        let timeout_ms = self.config.query_timeout.as_millis().max(1);
        transaction
            .batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .await
            .map_err(|e| self.error(&table.name, describe(&e, None)))?;

        let query = user_query(&table.query);
        let sql = match (&table.cursor_column, cursor) {
            (None, _) => query.to_string(),
            (Some(column), None) => format!(
                "SELECT * FROM (\n{query}\n) AS cruscotto_source WHERE {c} IS NOT NULL ORDER BY {c}",
                c = quote_identifier(column)
            ),
            (Some(column), Some(_)) => format!(
                "SELECT * FROM (\n{query}\n) AS cruscotto_source WHERE {c} > $1 ORDER BY {c}",
                c = quote_identifier(column)
            ),
        };
        let statement = match transaction.prepare(&sql).await {
            Ok(statement) => statement,
            Err(e) => {
                // Say what is wrong with the user's query in its own terms (line and column of
                // the configured text), or that the cursor column is missing.
                let message = match transaction.prepare(query).await {
                    Err(e) => describe(&e, Some(query)),
                    Ok(plain) => match &table.cursor_column {
                        Some(column) if !plain.columns().iter().any(|c| c.name() == column) => {
                            format!(
                                "cursor_column `{column}` is not a column of the query (columns: {})",
                                plain
                                    .columns()
                                    .iter()
                                    .map(|c| c.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                        _ => describe(&e, None),
                    },
                };
                return Err(self.error(&table.name, message));
            }
        };
        let (names, kinds) = columns(&statement).map_err(|m| self.error(&table.name, m))?;

        let cursor_index = match &table.cursor_column {
            Some(column) => {
                let index = names.iter().position(|n| n == column).ok_or_else(|| {
                    self.error(
                        &table.name,
                        format!("cursor_column `{column}` is not a column of the query"),
                    )
                })?;
                Some((
                    index,
                    cursor_type(statement.columns()[index].type_()).map_err(|m| {
                        self.error(&table.name, format!("cursor_column `{column}`: {m}"))
                    })?,
                ))
            }
            None => None,
        };
        let parameter: Option<Box<dyn ToSql + Sync + Send>> = match (cursor_index, cursor) {
            (Some((_, kind)), Some(cursor)) => Some(kind.parameter(cursor).map_err(|m| {
                self.error(
                    &table.name,
                    format!(
                        "the committed cursor `{cursor}` does not fit column `{}`: {m}",
                        table.cursor_column.as_deref().unwrap_or_default()
                    ),
                )
            })?),
            _ => None,
        };
        let parameters: Vec<&(dyn ToSql + Sync)> = parameter
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();

        let batch_rows = self.config.batch_rows.max(1);
        let mut builder = BatchBuilder::new(&names, &kinds, batch_rows);
        let mut batches = Vec::new();
        let mut rejected = Vec::new();
        let mut last_cursor = None;
        {
            let rows = transaction
                .query_raw(&statement, parameters.iter().copied())
                .await
                .map_err(|e| self.error(&table.name, describe(&e, None)))?;
            futures::pin_mut!(rows);
            let mut row_number: u64 = 0;
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| self.error(&table.name, describe(&e, None)))?;
                row_number += 1;
                let mut cells: Vec<Cell<'_>> = Vec::with_capacity(kinds.len());
                let mut problem = None;
                for (i, kind) in kinds.iter().enumerate() {
                    let raw = row
                        .try_get::<_, Option<Raw<'_>>>(i)
                        .map_err(|e| self.error(&table.name, e.to_string()))?;
                    match types::decode(*kind, raw.map(|r| r.0)) {
                        Ok(cell) => cells.push(cell),
                        Err(reason) => {
                            problem.get_or_insert((i, reason));
                            cells.push(Cell::Null);
                        }
                    }
                }
                if let Some((index, kind)) = cursor_index {
                    if let Some(value) = kind.text(&cells[index]) {
                        last_cursor = Some(value);
                    }
                }
                match problem {
                    None => builder.append(&cells),
                    Some((column, reason)) => rejected
                        .push(self.rejected(table, row_number, &names, &cells, column, reason)),
                }
                if builder.rows() >= batch_rows {
                    batches.push(
                        builder
                            .finish()
                            .map_err(|e| self.error(&table.name, e.to_string()))?,
                    );
                }
            }
        }
        // No empty batches: an incremental pull that found nothing adds nothing to the table.
        if builder.rows() > 0 {
            batches.push(
                builder
                    .finish()
                    .map_err(|e| self.error(&table.name, e.to_string()))?,
            );
        }
        // Read-only: nothing to keep; ending it returns the connection to the pool cleanly.
        let _ = transaction.rollback().await;

        let schema = builder.schema();
        Ok(match &table.cursor_column {
            None => LoadedTable::replace(schema, batches, rejected),
            Some(_) => LoadedTable {
                schema,
                batches,
                rejected,
                mode: LoadMode::Append,
                cursor: last_cursor.or_else(|| cursor.map(str::to_string)),
            },
        })
    }
}

impl Connector for PostgresConnector {
    fn load<'a>(&'a self, state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        async move {
            // Tables are pulled concurrently; the pool bounds how many at once.
            let pulls = self.config.tables.iter().map(|table| async move {
                let result = self.load_table(table, state.cursor(&table.name)).await;
                TableLoad {
                    table: table.name.clone(),
                    source: self.source.clone(),
                    result,
                }
            });
            futures::future::join_all(pulls).await
        }
        .boxed()
    }
}

/// The configured query without a trailing `;`, so it can be wrapped.
pub fn user_query(query: &str) -> &str {
    query.trim().trim_end_matches(';').trim_end()
}

pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns of a prepared statement, or an error naming every column that cannot load.
pub fn columns(
    statement: &tokio_postgres::Statement,
) -> Result<(Vec<String>, Vec<ColumnKind>), String> {
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    let mut unsupported = Vec::new();
    for column in statement.columns() {
        match types::column_kind(column.type_(), column.type_modifier()) {
            Ok(kind) => kinds.push(kind),
            Err(reason) => unsupported.push(format!("column `{}`: {reason}", column.name())),
        }
        names.push(column.name().to_string());
    }
    if !unsupported.is_empty() {
        return Err(format!(
            "{}; cast it in the query to a supported type (e.g. `::text`, `::numeric(12,2)`, `::float8`)",
            unsupported.join("; ")
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(duplicate) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!(
            "the query returns two columns named `{duplicate}`: give them distinct aliases"
        ));
    }
    Ok((names, kinds))
}

/// The types a cursor can have: they order rows and are compared exactly.
#[derive(Debug, Clone, Copy)]
pub enum CursorType {
    Int16,
    Int32,
    Int64,
    Date,
    Timestamp,
    TimestampTz,
}

pub fn cursor_type(ty: &Type) -> Result<CursorType, String> {
    Ok(match *ty {
        Type::INT2 => CursorType::Int16,
        Type::INT4 => CursorType::Int32,
        Type::INT8 => CursorType::Int64,
        Type::DATE => CursorType::Date,
        Type::TIMESTAMP => CursorType::Timestamp,
        Type::TIMESTAMPTZ => CursorType::TimestampTz,
        _ => {
            return Err(format!(
                "type `{}` cannot be a cursor: use an integer id, a date or a timestamp",
                ty.name()
            ));
        }
    })
}

impl CursorType {
    /// The committed text of a cursor value.
    fn text(self, cell: &Cell<'_>) -> Option<String> {
        match cell {
            Cell::Int16(v) => Some(v.to_string()),
            Cell::Int32(v) => Some(v.to_string()),
            Cell::Int64(v) => Some(v.to_string()),
            Cell::Date(days) => DateTime::from_timestamp(*days as i64 * 86_400, 0)
                .map(|d| d.date_naive().format("%Y-%m-%d").to_string()),
            Cell::Micros(micros) => DateTime::from_timestamp_micros(*micros).map(|d| match self {
                CursorType::TimestampTz => d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                _ => d.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            }),
            _ => None,
        }
    }

    /// The committed cursor as a query parameter of the column's type.
    fn parameter(self, text: &str) -> Result<Box<dyn ToSql + Sync + Send>, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match self {
            CursorType::Int16 => Box::new(text.parse::<i16>().map_err(|x| e(&x))?),
            CursorType::Int32 => Box::new(text.parse::<i32>().map_err(|x| e(&x))?),
            CursorType::Int64 => Box::new(text.parse::<i64>().map_err(|x| e(&x))?),
            CursorType::Date => {
                Box::new(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|x| e(&x))?)
            }
            CursorType::Timestamp => Box::new(
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map_err(|x| e(&x))?,
            ),
            CursorType::TimestampTz => Box::new(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|x| e(&x))?
                    .with_timezone(&Utc),
            ),
        })
    }
}
