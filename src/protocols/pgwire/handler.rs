//! Statements over the simple and the extended query protocol. The SQL is read by `reader`
//! (catalogue questions through `datafusion-pg-catalog`'s rewrites, analysts' own statements as
//! HTTP reads them); each statement then runs through the gate (`protocols::gate`), as over
//! HTTP. Session commands and cursors are answered by `session`.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Sink, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::copy::{self, CopyOut};
use super::errors::{protocol_error, statement_error};
use super::session::{self, Command, Cursor, Cursors};
use super::text;
use crate::api::error::ApiError;
use crate::protocols::gate::{Gate, Session};
use crate::query::{Described, QueryResult};

/// A statement as Parse left it.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// For the engine: the SQL as DataFusion reads it, its columns and placeholders.
    Query {
        sql: String,
        described: Arc<Described>,
    },
    /// Answered by the session.
    Session(Command),
    /// `DECLARE name CURSOR FOR <query>`.
    Declare {
        name: String,
        sql: String,
        described: Arc<Described>,
    },
    /// `COPY (query) TO STDOUT`: the query and COPY's format.
    Copy {
        copy: CopyOut,
        described: Arc<Described>,
    },
    /// `FETCH count FROM name`, with the cursor's columns.
    Fetch {
        name: String,
        count: Option<usize>,
        schema: SchemaRef,
    },
}

pub struct QueryHandler {
    gate: Gate,
    parser: Arc<Parser>,
}

impl QueryHandler {
    pub fn new(gate: Gate) -> Self {
        let parser = Arc::new(Parser {
            gate: gate.clone(),
            sql: super::reader::SqlReader::default(),
        });
        Self { gate, parser }
    }
}

pub struct Parser {
    gate: Gate,
    sql: super::reader::SqlReader,
}

impl Parser {
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        self.sql.parse(sql).map_err(|e| {
            statement_error(&ApiError::Query(crate::query::QueryError::Refused(
                crate::query::guard::GuardError::Syntax(e.to_string()),
            )))
        })
    }
}

/// The session a connection logged in as (set by the startup handler).
fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| protocol_error("08P01", "the connection has not logged in"))
}

fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// A result as PostgreSQL rows, in the formats the client asked for.
fn rows(
    schema: &Schema,
    batches: Vec<RecordBatch>,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fast = text::writes_for(&options);
    let fields = Arc::new(arrow_schema_to_pg_fields(schema, format, Some(options))?);
    let encoding = fields.clone();
    let all_text = fields.iter().all(|f| f.format() == FieldFormat::Text);
    let data = stream::iter(batches.into_iter().flat_map(move |batch| {
        if fast && all_text {
            // Written a column type at a time, as PostgreSQL would write the values.
            match text::data_rows(&batch, &encoding) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            }
        } else {
            encode_recordbatch(encoding.clone(), batch).collect::<Vec<_>>()
        }
    }));
    Ok(QueryResponse::new(fields, data))
}

fn result_rows(
    result: QueryResult,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    Ok(Response::Query(rows(
        &result.schema,
        result.batches,
        format,
        options,
    )?))
}

/// The answer to a session command.
fn answer<C: ClientInfo>(client: &mut C, command: &Command) -> PgWireResult<Response> {
    Ok(match command {
        Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        Command::Set { name, value } => {
            client
                .metadata_mut()
                .insert(session::set_key(name), value.clone());
            Response::Execution(Tag::new("SET"))
        }
        Command::Reset(name) => {
            if name == "all" {
                client.metadata_mut().retain(|k, _| !k.starts_with("set:"));
            } else {
                client.metadata_mut().remove(&session::set_key(name));
            }
            Response::Execution(Tag::new("RESET"))
        }
        Command::Show(name) => {
            let value = session::setting(name, client.metadata());
            let fields = Arc::new(show_fields(name, &Format::UnifiedText));
            let mut encoder = DataRowEncoder::new(fields.clone());
            encoder.encode_field(&Some(value))?;
            let row = encoder.take_row();
            let mut response = QueryResponse::new(fields, stream::iter(vec![Ok(row)]));
            response.command_tag = "SHOW".into();
            Response::Query(response)
        }
        Command::Close(name) => {
            let cursors = Cursors::of(client.session_extensions());
            let mut cursors = cursors.0.lock().expect("cursors lock");
            match name {
                None => cursors.clear(),
                Some(name) => {
                    if cursors.remove(name).is_none() {
                        return Err(unknown_cursor(name));
                    }
                }
            }
            Response::Execution(Tag::new(command.tag()))
        }
        Command::Discard | Command::Deallocate | Command::Savepoint(_) => {
            Response::Execution(Tag::new(command.tag()))
        }
    })
}

fn show_fields(name: &str, format: &Format) -> Vec<FieldInfo> {
    vec![FieldInfo::new(
        name.into(),
        None,
        None,
        Type::TEXT,
        format.format_for(0),
    )]
}

fn unknown_cursor(name: &str) -> PgWireError {
    protocol_error("34000", format!("cursor \"{name}\" does not exist"))
}

/// The query of `DECLARE name CURSOR FOR <query>`.
fn declared(statement: &Statement) -> Option<PgWireResult<(String, String)>> {
    let Statement::Declare { stmts } = statement else {
        return None;
    };
    let declare = stmts.first()?;
    let name = declare.names.first()?.value.clone();
    Some(match &declare.for_query {
        Some(query) => Ok((name, query.to_string())),
        None => Err(protocol_error(
            "0A000",
            format!(
                "DECLARE \"{name}\": only cursors over a query (DECLARE name CURSOR FOR SELECT ...) are supported"
            ),
        )),
    })
}

/// The cursor and row count of a `FETCH`.
fn fetched(statement: &Statement) -> Option<PgWireResult<(String, Option<usize>)>> {
    let Statement::Fetch {
        name, direction, ..
    } = statement
    else {
        return None;
    };
    Some(
        session::fetch_count(direction)
            .map(|count| (name.value.clone(), count))
            .map_err(|message| protocol_error("0A000", message)),
    )
}

/// The next rows of a cursor.
fn fetch<C: ClientInfo>(
    client: &C,
    name: &str,
    count: Option<usize>,
    format: &Format,
) -> PgWireResult<Response> {
    let cursors = Cursors::of(client.session_extensions());
    let mut cursors = cursors.0.lock().expect("cursors lock");
    let cursor = cursors.get_mut(name).ok_or_else(|| unknown_cursor(name))?;
    let batches = cursor.take(count);
    let mut response = rows(&cursor.schema, batches, format, format_options(client))?;
    response.command_tag = "FETCH".into();
    Ok(Response::Query(response))
}

fn cursor_schema<C: ClientInfo>(client: &C, name: &str) -> PgWireResult<SchemaRef> {
    let cursors = Cursors::of(client.session_extensions());
    let cursors = cursors.0.lock().expect("cursors lock");
    cursors
        .get(name)
        .map(|c| c.schema.clone())
        .ok_or_else(|| unknown_cursor(name))
}

impl QueryHandler {
    /// One statement of a simple query.
    async fn simple<C>(&self, client: &mut C, statement: Statement) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(command) = session::command(&statement) {
            return answer(client, &command);
        }
        let session = session_of(client)?;
        if let Some(copy) = copy::copy_out(&statement) {
            let copy = copy?;
            let result = self
                .gate
                .run(&session, &copy.sql, None)
                .await
                .map_err(|e| statement_error(&e))?;
            return Ok(Response::CopyOut(copy::response(
                &result.schema,
                result.batches,
                &copy.format,
            )?));
        }
        if let Some(declare) = declared(&statement) {
            let (name, sql) = declare?;
            let result = self
                .gate
                .run(&session, &sql, None)
                .await
                .map_err(|e| statement_error(&e))?;
            Cursors::of(client.session_extensions())
                .0
                .lock()
                .expect("cursors lock")
                .insert(name, Cursor::new(result.schema, result.batches));
            return Ok(Response::Execution(Tag::new("DECLARE CURSOR")));
        }
        if let Some(fetch_of) = fetched(&statement) {
            let (name, count) = fetch_of?;
            return fetch(client, &name, count, &Format::UnifiedText);
        }
        let sql = statement.to_string();
        let result = self
            .gate
            .run(&session, &sql, None)
            .await
            .map_err(|e| statement_error(&e))?;
        result_rows(result, &Format::UnifiedText, format_options(client))
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.parser.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        // As PostgreSQL: the statements of one query run in order until one fails.
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.simple(client, statement).await {
                Ok(response) => responses.push(response),
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.parse(sql)?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                return Err(protocol_error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
        };
        if let Some(command) = session::command(&statement) {
            return Ok(Some(Prepared::Session(command)));
        }
        if let Some(fetch_of) = fetched(&statement) {
            let (name, count) = fetch_of?;
            let schema = cursor_schema(client, &name)?;
            return Ok(Some(Prepared::Fetch {
                name,
                count,
                schema,
            }));
        }
        let session = session_of(client)?;
        if let Some(copy) = copy::copy_out(&statement) {
            let copy = copy?;
            let described = self
                .gate
                .describe(&session, &copy.sql)
                .await
                .map_err(|e| statement_error(&e))?;
            return Ok(Some(Prepared::Copy {
                copy,
                described: Arc::new(described),
            }));
        }
        if let Some(declare) = declared(&statement) {
            let (name, sql) = declare?;
            let described = self
                .gate
                .describe(&session, &sql)
                .await
                .map_err(|e| statement_error(&e))?;
            return Ok(Some(Prepared::Declare {
                name,
                sql,
                described: Arc::new(described),
            }));
        }
        let sql = statement.to_string();
        let described = self
            .gate
            .describe(&session, &sql)
            .await
            .map_err(|e| statement_error(&e))?;
        Ok(Some(Prepared::Query {
            sql,
            described: Arc::new(described),
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        match statement {
            Prepared::Query { described, .. }
            | Prepared::Declare { described, .. }
            | Prepared::Copy { described, .. } => described
                .parameters
                .iter()
                .map(|t| match t {
                    Some(t) => into_pg_type(t),
                    None => Ok(Type::UNKNOWN),
                })
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement {
            Prepared::Query { described, .. } => {
                arrow_schema_to_pg_fields(&described.schema, format, None)
            }
            Prepared::Fetch { schema, .. } => arrow_schema_to_pg_fields(schema, format, None),
            Prepared::Session(Command::Show(name)) => Ok(show_fields(name, format)),
            Prepared::Session(_) | Prepared::Declare { .. } | Prepared::Copy { .. } => {
                Ok(Vec::new())
            }
        }
    }
}

/// The values bound to a portal's placeholders, decoded as the client sent them (its declared
/// types, else the types the planner inferred).
fn bound(portal: &Portal<Prepared>, described: &Described) -> PgWireResult<Option<ParamValues>> {
    if portal.parameter_len() == 0 {
        return Ok(None);
    }
    let types: Vec<Option<&DataType>> = described.parameters.iter().map(Option::as_ref).collect();
    deserialize_parameters(portal, &types).map(Some)
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            Prepared::Session(command) => answer(client, command),
            Prepared::Fetch { name, count, .. } => {
                fetch(client, name, *count, &portal.result_column_format)
            }
            Prepared::Query { sql, described } => {
                let session = session_of(client)?;
                let params = bound(portal, described)?;
                let result = self
                    .gate
                    .run(&session, sql, params)
                    .await
                    .map_err(|e| statement_error(&e))?;
                result_rows(result, &portal.result_column_format, format_options(client))
            }
            Prepared::Copy { copy, described } => {
                let session = session_of(client)?;
                let params = bound(portal, described)?;
                let result = self
                    .gate
                    .run(&session, &copy.sql, params)
                    .await
                    .map_err(|e| statement_error(&e))?;
                Ok(Response::CopyOut(copy::response(
                    &result.schema,
                    result.batches,
                    &copy.format,
                )?))
            }
            Prepared::Declare {
                name,
                sql,
                described,
            } => {
                let session = session_of(client)?;
                let params = bound(portal, described)?;
                let result = self
                    .gate
                    .run(&session, sql, params)
                    .await
                    .map_err(|e| statement_error(&e))?;
                Cursors::of(client.session_extensions())
                    .0
                    .lock()
                    .expect("cursors lock")
                    .insert(name.clone(), Cursor::new(result.schema, result.batches));
                // A declared cursor is a portal too: psycopg describes it by name.
                let statement = StoredStatement::new(
                    name.clone(),
                    Prepared::Query {
                        sql: sql.clone(),
                        described: described.clone(),
                    },
                    Vec::new(),
                );
                client
                    .portal_store()
                    .put_portal(Arc::new(Portal::new_cursor(
                        name.clone(),
                        Arc::new(statement),
                    )));
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
        }
    }
}
