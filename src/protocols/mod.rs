//! Analysts' own tools beside the HTTP API: the PostgreSQL wire protocol (`pgwire`) and Arrow
//! Flight SQL (`flight_sql`), each on its own address, off unless `[protocols.*]` configures it.
//! Both take every statement through `gate`, i.e. the HTTP SQL path: the same API keys, role
//! check, read-only guard, limits and audit trail.

pub mod config;
pub mod flight_sql;
pub mod gate;
pub mod pgwire;
mod tls;

use std::net::SocketAddr;

pub use config::ProtocolsConfig;

use crate::api::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("`{setting}` = {address}: cannot listen there: {message}")]
    Listen {
        setting: String,
        address: SocketAddr,
        message: String,
    },
    #[error("`{setting}`: {file}: {message}")]
    Tls {
        setting: String,
        file: String,
        message: String,
    },
    #[error("installing the PostgreSQL catalogue (pg_catalog) for pgwire: {0}")]
    Catalog(String),
}

/// The addresses of the protocols: overrides from the command line going in (used only for a
/// protocol the configuration turns on), the addresses bound coming out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Addresses {
    pub pgwire: Option<SocketAddr>,
    pub flight_sql: Option<SocketAddr>,
}

/// Bind and start every configured protocol. A listener that cannot bind, or a certificate that
/// cannot be read, is an error naming its setting: nothing is served half-configured.
pub async fn start(state: &AppState, overrides: Addresses) -> Result<Addresses, ProtocolError> {
    let config = state.service.config.service.protocols.clone();
    let base_dir = state.service.config.base_dir.clone();
    let mut bound = Addresses::default();
    if let Some(pgwire) = &config.pgwire {
        let tls = pgwire
            .tls
            .as_ref()
            .map(|t| tls::server_config(t, &base_dir, "protocols.pgwire.tls"))
            .transpose()?;
        let listener = pgwire::bind(overrides.pgwire.unwrap_or(pgwire.listen)).await?;
        bound.pgwire = listener.local_addr().ok();
        pgwire::install_catalog(state)?;
        pgwire::spawn(listener, tls, state.clone(), pgwire.max_connections);
    }
    if let Some(flight) = &config.flight_sql {
        let tls = flight
            .tls
            .as_ref()
            .map(|t| tls::pem(t, &base_dir, "protocols.flight_sql.tls"))
            .transpose()?;
        let address = overrides.flight_sql.unwrap_or(flight.listen);
        let listener =
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| ProtocolError::Listen {
                    setting: "protocols.flight_sql.listen".into(),
                    address,
                    message: e.to_string(),
                })?;
        bound.flight_sql = listener.local_addr().ok();
        flight_sql::spawn(listener, tls, state.clone())?;
    }
    Ok(bound)
}
