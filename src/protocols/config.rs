//! `[protocols]` in `cruscotto.toml`: the PostgreSQL wire protocol and Arrow Flight SQL, each off
//! unless its section is present.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsConfig {
    /// `[protocols.pgwire]`: serve the PostgreSQL wire protocol (psql, DBeaver, QGIS, Grafana,
    /// psycopg, SQLAlchemy, JDBC/ODBC drivers).
    #[serde(default)]
    pub pgwire: Option<PgwireConfig>,
    /// `[protocols.flight_sql]`: serve Arrow Flight SQL (ADBC, the Flight SQL JDBC driver).
    #[serde(default)]
    pub flight_sql: Option<FlightSqlConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgwireConfig {
    /// Address to listen on, e.g. "127.0.0.1:5433" (5432 is left to a real PostgreSQL).
    pub listen: SocketAddr,
    /// TLS with this certificate and key; clients then connect with `sslmode=require` (or
    /// stricter). Without it, connections are in clear text: keep `listen` on a trusted network.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connections open at once; more are refused at once with SQLSTATE 53300.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// Address to listen on, e.g. "127.0.0.1:32010".
    pub listen: SocketAddr,
    /// TLS with this certificate and key (clients then use `grpc+tls://`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, server certificate first; relative to `cruscotto.toml`.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1); relative to `cruscotto.toml`.
    pub key: PathBuf,
}

fn default_max_connections() -> usize {
    256
}
