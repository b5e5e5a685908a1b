//! The certificates of `tls = { cert, key }`, read once at start-up into a rustls configuration.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ProtocolError;
use super::config::TlsConfig;

/// The certificate chain and key of `tls`, paths relative to `base_dir`; `setting` names the
/// section in errors (e.g. `protocols.pgwire.tls`).
pub fn load(
    tls: &TlsConfig,
    base_dir: &Path,
    setting: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ProtocolError> {
    let cert_path = base_dir.join(&tls.cert);
    let key_path = base_dir.join(&tls.key);
    let problem = |file: &Path, what: String| ProtocolError::Tls {
        setting: setting.to_string(),
        file: file.display().to_string(),
        message: what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| problem(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(problem(&cert_path, "holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| problem(&key_path, format!("no PEM private key read: {e}")))?;
    Ok((certs, key))
}

/// A rustls server configuration for pgwire (tokio-rustls), ring as everywhere in the service.
pub fn server_config(
    tls: &TlsConfig,
    base_dir: &Path,
    setting: &str,
) -> Result<Arc<rustls::ServerConfig>, ProtocolError> {
    let (certs, key) = load(tls, base_dir, setting)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| Ok(b.with_no_client_auth().with_single_cert(certs, key)?))
        .map_err(|e: rustls::Error| ProtocolError::Tls {
            setting: setting.to_string(),
            file: base_dir.join(&tls.cert).display().to_string(),
            message: format!("the certificate and key do not make a TLS configuration: {e}"),
        })?;
    Ok(Arc::new(config))
}

/// The certificate and key files' PEM text, once `load` has checked that they hold what they
/// should (tonic reads PEM itself).
pub fn pem(
    tls: &TlsConfig,
    base_dir: &Path,
    setting: &str,
) -> Result<(Vec<u8>, Vec<u8>), ProtocolError> {
    load(tls, base_dir, setting)?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ProtocolError::Tls {
            setting: setting.to_string(),
            file: path.display().to_string(),
            message: e.to_string(),
        })
    };
    Ok((
        read(&base_dir.join(&tls.cert))?,
        read(&base_dir.join(&tls.key))?,
    ))
}
