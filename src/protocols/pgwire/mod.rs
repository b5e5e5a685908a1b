//! The PostgreSQL wire protocol (pgwire): psql, pgcli, DBeaver, QGIS, Grafana, Superset,
//! psycopg, SQLAlchemy and the JDBC/ODBC drivers connect to the city's tables as to a read-only
//! PostgreSQL. The password is an API key; every statement goes through the gate, as over HTTP.
//! The catalogue (`pg_catalog`, with `information_schema` from DataFusion) comes from
//! `datafusion-pg-catalog`, installed into the engine's session when pgwire is on.

mod copy;
mod errors;
mod functions;
mod handler;
mod reader;
mod regproc;
mod session;
mod startup;
mod text;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::ProtocolError;
use super::gate::{Gate, Protocol};
use crate::api::AppState;
use handler::QueryHandler;
use startup::Startup;

/// The version clients are told: PostgreSQL 16's catalogue is what `pg_catalog` imitates.
pub const SERVER_VERSION: &str = "16.6";
pub const SERVER_VERSION_NUM: &str = "160006";
/// Unqualified names resolve in the saved queries' schema, as over HTTP.
pub const SEARCH_PATH: &str = "queries";

struct Handlers {
    startup: Arc<Startup>,
    query: Arc<QueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Install the PostgreSQL catalogue in the engine's session: `pg_catalog` in catalog `city` and
/// the functions clients call (`current_schema()`, `pg_get_userbyid()`, `format_type()`, ...).
pub fn install_catalog(state: &AppState) -> Result<(), ProtocolError> {
    state.service.engine.extend_session(|context| {
        datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            context,
            crate::store::CATALOG,
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| ProtocolError::Catalog(e.to_string()))?;
        for function in functions::all() {
            context.register_udf(function);
        }
        Ok(())
    })
}

/// Serve connections from `listener` until the process ends.
pub fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
    max_connections: usize,
) {
    let connections = Arc::new(ConnectionManager::new());
    let gate = Gate::new(state, Protocol::Pgwire);
    let handlers = Arc::new(Handlers {
        startup: Arc::new(Startup::new(
            gate.clone(),
            connections.clone(),
            tls.is_some(),
        )),
        query: Arc::new(QueryHandler::new(gate)),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    let tls = tls.map(pgwire::tokio::TlsAcceptor::from);
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let (mut socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(protocol = "pgwire", error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                // Answered before the start-up exchange: libpq shows the message and gives up.
                let message = format!(
                    "too many connections: at most {max_connections} at once (`max_connections` in [protocols.pgwire])"
                );
                tokio::spawn(async move {
                    let _ = socket.write_all(&fatal_message("53300", &message)).await;
                });
                continue;
            };
            let _ = socket.set_nodelay(true);
            let handlers = handlers.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    info!(protocol = "pgwire", client = %peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
    });
}

/// A raw `ErrorResponse` with severity FATAL, for a connection refused before its start-up.
fn fatal_message(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Bind the listener now, so that an address in use is an error at start-up.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ProtocolError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| ProtocolError::Listen {
            setting: "protocols.pgwire.listen".into(),
            address,
            message: e.to_string(),
        })
}
