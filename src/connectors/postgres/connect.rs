//! Connections: the URL parsed once, a deadpool pool over it (plain or TLS), and the URL as it may
//! be shown to people (no password, ever).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;

use super::config::{PostgresConnectorConfig, TlsMode};
use crate::config_text::resolve;

/// The connection as it may appear in /status and logs: `postgres://user@host:port/db`.
pub fn redacted(config: &tokio_postgres::Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let database = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{database}", hosts.join(","))
}

/// The URL without its password, even when it does not parse (for error messages).
pub fn redacted_url(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => redacted(&config),
        Err(_) => "(an invalid PostgreSQL URL)".into(),
    }
}

/// A pool, or the reason there cannot be one (reported on every pull until the config is fixed).
pub fn pool(config: &PostgresConnectorConfig, base_dir: &Path) -> Result<Pool, String> {
    let mut pg = config
        .url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    pg.connect_timeout(config.connect_timeout);
    pg.application_name("cruscotto");
    // Dead peers are noticed by the kernel instead of hanging a pull until the query timeout.
    pg.keepalives_idle(Duration::from_secs(30));
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match config.tls {
        TlsMode::Disable => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
        TlsMode::Require => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls_connector(
                config
                    .ca_file
                    .as_ref()
                    .map(|f| resolve(base_dir, f))
                    .as_deref(),
            )?;
            Manager::from_config(pg, tls, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(config.connect_timeout))
        .wait_timeout(Some(config.connect_timeout + config.query_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// TLS with the server's certificate verified against `ca_file`, or the Mozilla roots.
fn tls_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A PostgreSQL error as a person should read it: the server's message, detail and hint, and
/// where in the query it points.
pub fn describe(error: &tokio_postgres::Error, query: Option<&str>) -> String {
    let Some(db) = error.as_db_error() else {
        // Connection-level errors: "error connecting to server: Connection refused (os error 111)".
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        return message;
    };
    let mut message = db.message().to_string();
    if let (Some(tokio_postgres::error::ErrorPosition::Original(position)), Some(query)) =
        (db.position(), query)
    {
        let offset = query
            .char_indices()
            .nth((*position as usize).saturating_sub(1))
            .map_or(query.len(), |(i, _)| i);
        let (line, column) = crate::config_text::line_and_column(query, offset);
        message.push_str(&format!(" (line {line}, column {column} of the query)"));
    }
    if let Some(detail) = db.detail() {
        message.push_str(&format!("; {detail}"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    message
}

/// A pool error (no connection in time, or the connection failed) as a sentence.
pub fn describe_pool(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => describe(e, None),
        deadpool_postgres::PoolError::Timeout(_) => "timed out waiting for a connection".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = "postgres://cruscotto:s3greto@db.comune.example:6543/anagrafe?sslmode=disable";
        assert_eq!(
            redacted_url(url),
            "postgres://cruscotto@db.comune.example:6543/anagrafe"
        );
        let keywords = "host=10.0.0.5 user=ro password=s3greto dbname=servizi";
        assert_eq!(
            redacted_url(keywords),
            "postgres://ro@10.0.0.5:5432/servizi"
        );
        assert!(!redacted_url("postgres://a:s3greto@[bad").contains("s3greto"));
    }
}
