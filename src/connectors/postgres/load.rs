//! Pulling tables: each table's query runs in a read-only transaction and its rows stream into
//! Arrow batches of `batch_rows` as they arrive. With a `cursor_column` only the rows past the last
//! committed cursor are fetched, in cursor order, and handed to the store with the new cursor.

use std::path::Path;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_postgres::types::ToSql;
use tracing::warn;

use super::config::{PostgresConnectorConfig, PostgresTableConfig};
use super::connect::{self, describe, describe_pool};
use super::cursor::{self, cursor_type};
use super::privacy;
use super::types::{self, BatchBuilder, Cell, ColumnKind, Raw};
use crate::connectors::{
    Connector, ConnectorError, LoadMode, LoadState, Loaded, LoadedTable, RejectedRecord, Retention,
    StreamedTable, TableLoad, truncate_raw,
};

/// Where a streamed pull sends each full batch, with the records rejected since the last one.
type Sink = tokio::sync::mpsc::Sender<(arrow::record_batch::RecordBatch, Vec<RejectedRecord>)>;

/// Batches a streamed pull may build ahead of the store's writing.
const STREAMED_BATCHES_IN_FLIGHT: usize = 2;

/// Cheap to clone (the pool is shared): a streamed pull runs on its own clone.
#[derive(Clone)]
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
            time: None,
            source: format!("{} ({})", self.source, table.name),
            line: Some(row),
            reason: format!("column `{}`: {reason}", names[column]),
            raw: truncate_raw(&raw),
        }
    }

    /// A table's load. An append table's rows come whole (they are what is new since the
    /// cursor); a replaced table's rows stream to the store as the query returns them.
    async fn load(
        &self,
        table: &PostgresTableConfig,
        state: &LoadState,
    ) -> Result<Loaded, ConnectorError> {
        if table.cursor_column.is_some() {
            return self.load_table(table, state, None).await.map(Loaded::from);
        }
        let schema = self.describe(table).await?;
        let (this, table, state) = (self.clone(), table.clone(), state.clone());
        // Started when the store first asks for rows, so no connection is held before.
        let batches = futures::stream::once(async move {
            let (sender, receiver) = tokio::sync::mpsc::channel(STREAMED_BATCHES_IN_FLIGHT);
            let pull =
                tokio::spawn(async move { this.load_table(&table, &state, Some(sender)).await });
            let streamed = futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|item| (Ok(item), receiver))
            });
            // Then what the pull kept (its last batch) or how it failed.
            let rest = futures::stream::once(async move {
                let rest = match pull.await {
                    Ok(Ok(loaded)) => {
                        let rejected = loaded.rejected;
                        let mut batches = loaded.batches.into_iter();
                        let first = batches.next().map(|b| Ok((b, rejected)));
                        first
                            .into_iter()
                            .chain(batches.map(|b| Ok((b, Vec::new()))))
                            .collect()
                    }
                    Ok(Err(e)) => vec![Err(e.into())],
                    Err(e) => vec![Err(format!("the pull failed: {e}").into())],
                };
                futures::stream::iter(rest)
            })
            .flatten();
            streamed.chain(rest)
        })
        .flatten()
        .boxed();
        Ok(Loaded::Streamed(StreamedTable {
            schema,
            batches,
            fingerprint: None,
        }))
    }

    /// The schema a table's query returns, from the statement prepared (not run).
    async fn describe(&self, table: &PostgresTableConfig) -> Result<SchemaRef, ConnectorError> {
        let fail = |message: String| self.error(&table.name, message);
        let pool = self.pool.as_ref().map_err(|e| fail(e.clone()))?;
        let client = tokio::time::timeout(self.config.connect_timeout, pool.get())
            .await
            .map_err(|_| fail("no connection within `connect_timeout`".into()))?
            .map_err(|e| fail(describe_pool(&e)))?;
        let query = user_query(&table.query);
        let statement = client
            .prepare(query)
            .await
            .map_err(|e| fail(describe(&e, Some(query))))?;
        let (names, kinds) = columns(&statement).map_err(fail)?;
        Ok(BatchBuilder::new(&names, &kinds, 0).schema())
    }

    /// Pull a table. With `sink`, each full batch goes there with the records rejected so far
    /// as soon as it is built (the store writes it while the next is read), and what is
    /// returned holds only the rest.
    async fn load_table(
        &self,
        table: &PostgresTableConfig,
        state: &LoadState,
        sink: Option<Sink>,
    ) -> Result<LoadedTable, ConnectorError> {
        // A hung network must not hold the refresh loop forever: the server's statement_timeout
        // bounds the query, this bounds everything including a peer that vanished.
        let limit =
            self.config.connect_timeout + self.config.query_timeout + Duration::from_secs(5);
        match tokio::time::timeout(limit, self.pull(table, state, sink)).await {
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
        state: &LoadState,
        sink: Option<Sink>,
    ) -> Result<LoadedTable, ConnectorError> {
        let fail = |message: String| self.error(&table.name, message);
        let pool = self.pool.as_ref().map_err(|e| fail(e.clone()))?;
        let mut client = pool.get().await.map_err(|e| fail(describe_pool(&e)))?;
        // One snapshot for every statement of the pull: the checks see the rows that are pulled.
        let transaction = client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(|e| fail(describe(&e, None)))?;
        let timeout_ms = self.config.query_timeout.as_millis().max(1);
        transaction
            .batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .await
            .map_err(|e| fail(describe(&e, None)))?;

        // The user's query on its own first, so its errors are told in its own terms (line and
        // column of the configured text).
        let query = user_query(&table.query);
        let plain = transaction
            .prepare(query)
            .await
            .map_err(|e| fail(describe(&e, Some(query))))?;
        let (names, kinds) = columns(&plain).map_err(fail)?;

        // Nothing identifying leaves the registry, whatever the query calls it.
        let findings = privacy::findings(&*transaction, query, &names)
            .await
            .map_err(fail)?;
        if !findings.is_empty() {
            return Err(fail(privacy::identifying_message(&findings)));
        }
        let person_limit = privacy::persons_read(&*transaction, query, &self.config.person_tables)
            .await
            .map_err(fail)?
            .map(|(relation, persons)| {
                let limit = privacy::row_limit(persons, self.config.max_rows_per_person);
                (
                    limit,
                    privacy::person_rows_message(
                        limit,
                        &relation,
                        persons,
                        self.config.max_rows_per_person,
                    ),
                )
            });

        let cursor_index = match &table.cursor_column {
            Some(column) => {
                let index = names.iter().position(|n| n == column).ok_or_else(|| {
                    fail(format!(
                        "cursor_column `{column}` is not a column of the query (columns: {})",
                        names.join(", ")
                    ))
                })?;
                Some((
                    index,
                    cursor_type(plain.columns()[index].type_())
                        .map_err(|m| fail(format!("cursor_column `{column}`: {m}")))?,
                ))
            }
            None => None,
        };
        // A retention: the time column, its type, and the cutoff this pull would start from.
        let retention = match (table.retention, table.retention_column()) {
            (Some(keep), Some(column)) => {
                let index = names.iter().position(|n| n == column).ok_or_else(|| {
                    fail(format!(
                        "retention_column `{column}` is not a column of the query (columns: {})",
                        names.join(", ")
                    ))
                })?;
                let kind = cursor::retention_type(plain.columns()[index].type_())
                    .map_err(|m| fail(format!("retention_column `{column}`: {m}")))?;
                let cutoff = Retention::from_now(column, keep).cutoff;
                Some((column, index, kind, cutoff))
            }
            _ => None,
        };
        // The window the table holds: the rows from this time on (an append continues it).
        let mut window = retention
            .and_then(|_| state.retained_from(&table.name))
            .filter(|_| state.cursor(&table.name).is_some());
        let time_parameter = |kind: cursor::CursorType, micros: i64, column: &str| {
            kind.time_parameter(micros)
                .map_err(|m| fail(format!("retention_column `{column}`: {m}")))
        };

        let mut cursor = state.cursor(&table.name);
        let mut parameter: Option<Box<dyn ToSql + Sync + Send>> = None;
        let mut reloaded = false;
        if let (Some(column), Some((_, kind)), Some(committed)) =
            (&table.cursor_column, cursor_index, cursor)
        {
            let value = kind.parameter(committed).map_err(|m| {
                fail(format!(
                    "the committed cursor `{committed}` does not fit column `{column}`: {m}"
                ))
            })?;
            let committed_rows = state.committed_rows(&table.name).unwrap_or_default();
            let from = match (retention, window) {
                (Some((time, _, kind, _)), Some(from)) => {
                    Some((time, time_parameter(kind, from, time)?))
                }
                _ => None,
            };
            let backwards = cursor::went_backwards(
                &transaction,
                query,
                column,
                committed,
                value.as_ref() as &(dyn ToSql + Sync),
                committed_rows,
                from.as_ref()
                    .map(|(time, from)| (*time, from.as_ref() as &(dyn ToSql + Sync))),
            )
            .await
            .map_err(fail)?;
            match backwards {
                Some(reason) => {
                    warn!(source = %self.source, table = %table.name, reason = %reason,
                        "the source went backwards; pulling the whole table again");
                    cursor = None;
                    reloaded = true;
                }
                None => parameter = Some(value),
            }
        }
        // A pull from the start (first, or reload) holds the rows from the cutoff on.
        if cursor.is_none() {
            window = retention.map(|(_, _, _, cutoff)| cutoff);
        }
        let mut conditions = Vec::new();
        let mut parameters: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(column) = &table.cursor_column {
            let c = quote_identifier(column);
            conditions.push(format!("{c} IS NOT NULL"));
            if let Some(value) = parameter {
                parameters.push(value);
                conditions.push(format!("{c} > ${}", parameters.len()));
            }
        }
        if let (Some((time, _, kind, _)), Some(from)) = (retention, window) {
            parameters.push(time_parameter(kind, from, time)?);
            conditions.push(format!(
                "{} >= ${}",
                quote_identifier(time),
                parameters.len()
            ));
        }
        let sql = match &table.cursor_column {
            None => query.to_string(),
            Some(column) => format!(
                "SELECT * FROM (\n{query}\n) AS cruscotto_source WHERE {} ORDER BY {}",
                conditions.join(" AND "),
                quote_identifier(column)
            ),
        };
        let statement = transaction
            .prepare(&sql)
            .await
            .map_err(|e| fail(describe(&e, None)))?;
        let parameters: Vec<&(dyn ToSql + Sync)> = parameters
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
                .map_err(|e| fail(describe(&e, None)))?;
            futures::pin_mut!(rows);
            let mut row_number: u64 = 0;
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| fail(describe(&e, None)))?;
                row_number += 1;
                // Person-level rows: stop at the first row over the limit, pulling no more.
                if let Some((limit, message)) = &person_limit {
                    if row_number > *limit {
                        return Err(fail(message.clone()));
                    }
                }
                let mut cells: Vec<Cell<'_>> = Vec::with_capacity(kinds.len());
                let mut problem = None;
                for (i, kind) in kinds.iter().enumerate() {
                    let raw = row
                        .try_get::<_, Option<Raw<'_>>>(i)
                        .map_err(|e| fail(e.to_string()))?;
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
                    Some((column, reason)) => {
                        let mut record =
                            self.rejected(table, row_number, &names, &cells, column, reason);
                        record.time = retention
                            .and_then(|(_, index, _, _)| cursor::CursorType::micros(&cells[index]));
                        rejected.push(record);
                    }
                }
                if builder.rows() >= batch_rows {
                    let batch = builder.finish().map_err(|e| fail(e.to_string()))?;
                    match &sink {
                        None => batches.push(batch),
                        Some(sink) => sink
                            .send((batch, std::mem::take(&mut rejected)))
                            .await
                            .map_err(|_| fail("the store stopped reading the rows".into()))?,
                    }
                }
            }
        }
        // No empty batches: an incremental pull that found nothing adds nothing to the table.
        if builder.rows() > 0 {
            batches.push(builder.finish().map_err(|e| fail(e.to_string()))?);
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
                mode: if reloaded {
                    LoadMode::Reload
                } else {
                    LoadMode::Append
                },
                cursor: last_cursor.or_else(|| cursor.map(str::to_string)),
                retention: retention.map(|(column, _, _, cutoff)| Retention {
                    column: column.to_string(),
                    cutoff,
                }),
                fingerprint: None,
            },
        })
    }
}

impl Connector for PostgresConnector {
    fn load<'a>(&'a self, state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        async move {
            // Tables are pulled concurrently; the pool bounds how many at once.
            let pulls = self.config.tables.iter().map(|table| async move {
                let result = self.load(table, state).await;
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
