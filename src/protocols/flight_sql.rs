//! Arrow Flight SQL: ADBC (Python, R, Go), the Flight SQL JDBC driver and DBeaver through it get
//! results as Arrow record batches. A bearer token (or the handshake's password) is an API key,
//! checked by the gate on every call; statements, prepared statements and the catalogue listings
//! (`GetTables`, `GetDbSchemas`) run through the gate, as over HTTP. A statement starts when its
//! `FlightInfo` is asked for, which is answered as soon as the statement is planned; it goes on
//! running while the client asks for the ticket, and its result waits under the ticket (one
//! fetch, for a minute at most). So the second call overlaps the execution instead of following
//! it, and the statement is planned once. Dropping the fetch, or a result never fetched, aborts
//! the query. A prepared statement runs when its ticket is fetched: its schema is known from when
//! it was prepared.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::ProtocolError;
use super::gate::{Gate, Protocol, Session, client_message};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::query::{AbortOnDrop, Described, Execution, QueryError, QueryResult};

/// Prepared statements one server keeps at once; the oldest go first past it.
const MAX_PREPARED: usize = 4096;
/// Results waiting for their ticket to be fetched, at most, and for how long.
const MAX_WAITING: usize = 64;
const WAITING_FOR: Duration = Duration::from_secs(60);

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

pub struct FlightSql {
    gate: Gate,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    waiting: Mutex<HashMap<Vec<u8>, Waiting>>,
    next_handle: AtomicU64,
    sql_info: SqlInfoData,
}

/// A prepared statement: its SQL, what it returns, the parameters bound last, and whose it is.
#[derive(Clone)]
struct Prepared {
    key_id: String,
    sql: String,
    described: Described,
    params: Option<ParamValues>,
    number: u64,
}

/// A statement started when its `FlightInfo` was asked for, until its ticket is fetched.
struct Waiting {
    key_id: String,
    outcome: Outcome,
    since: Instant,
}

/// A statement's result, or the statement still running (aborted if dropped unfetched).
enum Outcome {
    Done(QueryResult),
    Running(AbortOnDrop<Result<QueryResult, ApiError>>),
}

impl Outcome {
    /// A statement that ended before its `FlightInfo` was answered: its schema, its row count
    /// and its result.
    fn ended(result: QueryResult) -> (SchemaRef, i64, Outcome) {
        (
            result.schema.clone(),
            result.rows() as i64,
            Outcome::Done(result),
        )
    }

    async fn result(self) -> Result<QueryResult, Status> {
        match self {
            Outcome::Done(result) => Ok(result),
            Outcome::Running(task) => joined(task.await),
        }
    }
}

/// A statement's task as it ended: its result, or its error as the client's status.
fn joined(
    ended: Result<Result<QueryResult, ApiError>, tokio::task::JoinError>,
) -> Result<QueryResult, Status> {
    match ended {
        Ok(result) => result.map_err(|e| status(&e)),
        Err(e) => Err(Status::internal(format!(
            "the statement's task failed: {e}"
        ))),
    }
}

/// Below `cap` entries, so that one more fits: the oldest (by `age`) go first.
fn make_room<V, A: Ord>(map: &mut HashMap<Vec<u8>, V>, cap: usize, age: impl Fn(&V) -> A) {
    while map.len() >= cap {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| age(v))
            .map(|(h, _)| h.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Serve Flight SQL on `listener` (with TLS when `tls` holds a PEM certificate and key).
pub fn spawn(
    listener: tokio::net::TcpListener,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    state: AppState,
) -> Result<(), ProtocolError> {
    let service = FlightServiceServer::new(FlightSql::new(Gate::new(state, Protocol::FlightSql)))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(usize::MAX);
    let address = listener.local_addr().ok();
    let mut server = Server::builder();
    if let Some((cert, key)) = tls {
        server = server
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(|e| ProtocolError::Tls {
                setting: "protocols.flight_sql.tls".into(),
                file: "cert, key".into(),
                message: e.to_string(),
            })?;
    }
    // Nagle's algorithm off, as on the pgwire port: with it, a small answer's last segment waits
    // for the client's delayed ACK (~40 ms a call; tonic sets it only on listeners it binds).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |socket| {
            if let Ok(socket) = &socket {
                let _ = socket.set_nodelay(true);
            }
            socket
        },
    );
    tokio::spawn(async move {
        if let Err(e) = server
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(protocol = "flight-sql", address = ?address, error = %e, "the Flight SQL server stopped");
        }
    });
    Ok(())
}

/// A service error as a gRPC status, with the HTTP API's message.
fn status(error: &ApiError) -> Status {
    let message = client_message(error, Protocol::FlightSql);
    match error {
        ApiError::Query(QueryError::Timeout(_)) => Status::deadline_exceeded(message),
        ApiError::Query(
            QueryError::Memory { .. } | QueryError::Rows(_) | QueryError::TooLarge { .. },
        )
        | ApiError::RateLimited(_)
        | ApiError::PayloadTooLarge(_) => Status::resource_exhausted(message),
        ApiError::Unauthorized(_) => Status::unauthenticated(message),
        ApiError::Forbidden(_) | ApiError::Query(QueryError::Forbidden(_)) => {
            Status::permission_denied(message)
        }
        ApiError::NotFound(_) => Status::not_found(message),
        ApiError::Unavailable(_) => Status::unavailable(message),
        other if other.status().is_server_error() => Status::internal(message),
        _ => Status::invalid_argument(message),
    }
}

fn encode_schema(schema: &Schema) -> Result<Vec<u8>, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?;
    Ok(message.0.to_vec())
}

/// The batches as a Flight data stream.
fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn result_stream(result: QueryResult) -> Response<DoGetStream> {
    batches(result.schema, result.batches)
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The placeholders' schema a client binds parameters to: `$1`, `$2`, ... with the planner's
/// types (text where it cannot tell).
fn parameter_schema(described: &Described) -> Schema {
    Schema::new(
        described
            .parameters
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Field::new(
                    format!("${}", i + 1),
                    t.clone().unwrap_or(DataType::Utf8),
                    true,
                )
            })
            .collect::<Vec<_>>(),
    )
}

impl FlightSql {
    fn new(gate: Gate) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "cruscotto");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        Self {
            gate,
            prepared: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            sql_info: info.build().expect("static SQL info"),
        }
    }

    /// The session of a call: its bearer token (or basic password) as the key. The request is
    /// read before the future starts, so that a streaming request (not `Sync`) is not held.
    fn session<T>(
        &self,
        request: &Request<T>,
    ) -> impl std::future::Future<Output = Result<Session, Status>> + Send + '_ {
        let client = request
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let key = presented_key(request.metadata());
        async move { self.gate.login(key?, client).await.map_err(|e| status(&e)) }
    }

    async fn run(&self, session: &Session, sql: &str) -> Result<QueryResult, Status> {
        self.gate
            .run(session, sql, None)
            .await
            .map_err(|e| status(&e))
    }

    /// Keep `outcome` for its ticket; the handle is new, and results past their minute (or the
    /// oldest, past the cap) go.
    fn keep(&self, session: &Session, outcome: Outcome) -> Vec<u8> {
        let handle = format!(
            "result-{}-{:016x}",
            self.next_handle.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        )
        .into_bytes();
        let mut waiting = self.waiting.lock().expect("waiting results lock");
        waiting.retain(|_, w| w.since.elapsed() < WAITING_FOR);
        make_room(&mut waiting, MAX_WAITING, |w| w.since);
        waiting.insert(
            handle.clone(),
            Waiting {
                key_id: session.principal.key_id.clone(),
                outcome,
                since: Instant::now(),
            },
        );
        handle
    }

    /// The result waiting under a ticket, taken: a ticket is fetched once.
    fn take(&self, handle: &[u8], session: &Session) -> Result<Outcome, Status> {
        let mut waiting = self.waiting.lock().expect("waiting results lock");
        match waiting.get(handle) {
            Some(w) if w.key_id == session.principal.key_id && w.since.elapsed() < WAITING_FOR => {
                Ok(waiting.remove(handle).expect("just seen").outcome)
            }
            _ => Err(Status::not_found(
                "no result waits under this ticket: it was fetched already, it expired (a \
                 minute after the statement ran), or it was made with another key; run the \
                 statement again",
            )),
        }
    }

    fn prepared(&self, handle: &[u8], session: &Session) -> Result<Prepared, Status> {
        let prepared = self.prepared.lock().expect("prepared statements lock");
        match prepared.get(handle) {
            Some(p) if p.key_id == session.principal.key_id => Ok(p.clone()),
            _ => Err(Status::not_found(
                "no such prepared statement: it was closed, or made with another key",
            )),
        }
    }
}

/// The key of a call: `authorization: Bearer <key>`, or `Basic` with the key as the password.
fn presented_key(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not ASCII"))?
        .trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(credentials.trim().to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .map_err(|_| Status::unauthenticated("the Basic credentials are not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| Status::unauthenticated("the Basic credentials are not UTF-8"))?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        return Ok(Some(password.to_string()));
    }
    Err(Status::unauthenticated(format!(
        "authorization scheme `{scheme}` is not supported: send `Bearer <API key>`"
    )))
}

/// One row of bound parameters as values for the placeholders.
fn parameters(batches: &[RecordBatch]) -> Result<Option<ParamValues>, Status> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() > 1 {
        return Err(Status::invalid_argument(
            "bind one row of parameters per execution (statements here only read)",
        ));
    }
    let values = batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0).map(Into::into))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("reading a bound parameter: {e}")))?;
    Ok(Some(ParamValues::List(values)))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let key = presented_key(request.metadata())?;
        let session = self.session(&request).await?;
        let token = key.unwrap_or_default();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let bearer = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::unauthenticated("the key is not ASCII"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        tracing::debug!(key_id = %session.principal.key_id, "Flight SQL handshake");
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request).await?;
        let (planned, schema) = tokio::sync::oneshot::channel();
        let (gate, running_as, sql) = (self.gate.clone(), session.clone(), query.query);
        let mut task = AbortOnDrop(tokio::spawn(async move {
            let execution = Execution {
                params: None,
                planned: Some(planned),
            };
            gate.run_with(&running_as, &sql, execution).await
        }));
        // Answered once the statement is planned (its rows unknown yet), or once it has ended
        // if that comes first: a refused or failing statement answers here with its error.
        let planned = tokio::select! {
            biased;
            ended = &mut task => Err(ended),
            schema = schema => Ok(schema),
        };
        let (schema, rows, outcome) = match planned {
            Ok(Ok(schema)) => (schema, -1, Outcome::Running(task)),
            Ok(Err(_not_planned)) => Outcome::ended(joined(task.await)?),
            Err(ended) => Outcome::ended(joined(ended)?),
        };
        let ticket = TicketStatementQuery {
            statement_handle: self.keep(&session, outcome).into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
        .map(|mut info| {
            info.get_mut().total_records = rows;
            info
        })
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let outcome = self.take(&ticket.statement_handle, &session)?;
        Ok(result_stream(outcome.result().await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(&request).await?;
        let described = self
            .gate
            .describe(&session, &query.query)
            .await
            .map_err(|e| status(&e))?;
        let number = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = format!("prepared-{number}").into_bytes();
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.clone().into(),
            dataset_schema: encode_schema(&described.schema)?.into(),
            parameter_schema: encode_schema(&parameter_schema(&described))?.into(),
        };
        let mut prepared = self.prepared.lock().expect("prepared statements lock");
        make_room(&mut prepared, MAX_PREPARED, |p| p.number);
        prepared.insert(
            handle,
            Prepared {
                key_id: session.principal.key_id.clone(),
                sql: query.query,
                described,
                params: None,
                number,
            },
        );
        Ok(result)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(&request).await?;
        let handle = query.prepared_statement_handle.to_vec();
        self.prepared(&handle, &session)?;
        let stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(Into::into),
        );
        let bound: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
        let params = parameters(&bound)?;
        if let Some(p) = self
            .prepared
            .lock()
            .expect("prepared statements lock")
            .get_mut(&handle)
        {
            p.params = params;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request).await?;
        let prepared = self.prepared(&query.prepared_statement_handle, &session)?;
        flight_info(
            &prepared.described.schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let prepared = self.prepared(&query.prepared_statement_handle, &session)?;
        let result = self
            .gate
            .run(&session, &prepared.sql, prepared.params)
            .await
            .map_err(|e| status(&e))?;
        Ok(result_stream(result))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let session = self.session(&request).await?;
        self.prepared(&query.prepared_statement_handle, &session)?;
        self.prepared
            .lock()
            .expect("prepared statements lock")
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let mut builder = query.into_builder();
        builder.append(crate::store::CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(batches(schema, vec![batch]))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let result = self
            .run(
                &session,
                "SELECT DISTINCT table_catalog, table_schema FROM information_schema.tables \
                 ORDER BY table_catalog, table_schema",
            )
            .await?;
        let mut builder = query.into_builder();
        for (catalog, schema) in string_rows(&result, 0, 1) {
            builder.append(catalog, schema);
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(batches(schema, vec![batch]))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let result = self
            .run(
                &session,
                "SELECT table_catalog, table_schema, table_name, table_type \
                 FROM information_schema.tables ORDER BY 1, 2, 3",
            )
            .await?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let catalogs = string_column(&result, 0);
        let types = string_column(&result, 3);
        for (row, (schema_name, table)) in string_rows(&result, 1, 2).into_iter().enumerate() {
            let catalog = &catalogs[row];
            let table_schema = if include_schema {
                let sql = format!(
                    "SELECT * FROM \"{}\".\"{}\".\"{}\"",
                    catalog.replace('"', "\"\""),
                    schema_name.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                );
                match self.gate.describe(&session, &sql).await {
                    Ok(described) => described.schema,
                    // A table only admins read (system.audit): listed without columns.
                    Err(_) => std::sync::Arc::new(Schema::empty()),
                }
            } else {
                std::sync::Arc::new(Schema::empty())
            };
            builder
                .append(catalog, schema_name, table, &types[row], &table_schema)
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(batches(schema, vec![batch]))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        flight_info(
            &table_types_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let schema = std::sync::Arc::new(table_types_schema());
        let types: ArrayRef = std::sync::Arc::new(StringArray::from(vec!["BASE TABLE", "VIEW"]));
        let batch = RecordBatch::try_new(schema.clone(), vec![types])
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(batches(schema, vec![batch]))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(batches(schema, vec![batch]))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}

/// A text column of a result (values as text whatever the string type).
fn string_column(result: &QueryResult, column: usize) -> Vec<String> {
    result
        .batches
        .iter()
        .flat_map(|batch| {
            let array = arrow::compute::cast(batch.column(column), &DataType::Utf8)
                .expect("text columns cast to Utf8");
            array
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("a Utf8 array")
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn string_rows(result: &QueryResult, a: usize, b: usize) -> Vec<(String, String)> {
    string_column(result, a)
        .into_iter()
        .zip(string_column(result, b))
        .collect()
}

impl std::fmt::Debug for FlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSql").finish()
    }
}

/// The FlightService the trait's blanket implementation gives, named for `FlightServiceServer`.
#[allow(dead_code)]
fn _is_flight_service(service: FlightSql) -> impl FlightService {
    service
}
