//! PDND Interoperabilità: the client assertion exchanged for a voucher, and the ModI
//! INTEGRITY_REST_02 headers (`Digest` and `Agid-JWT-Signature`) for e-services that require them.
//!
//! The client assertion is a JWT signed RS256 with the client's private key: header `kid`, `alg`,
//! `typ`; claims `iss` = `sub` = client id, `aud`, `purposeId`, `jti`, `iat`, `exp`, and no `nbf`
//! (PDND refuses claims it does not expect). Each assertion gets a new `jti`: the authorization
//! server refuses a replayed one, so a retried request is signed again, never resent.

use std::path::PathBuf;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::PdndConfig;
use crate::connectors::ConnectorError;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub struct Pdnd {
    pub config: PdndConfig,
    key_path: PathBuf,
}

#[derive(Serialize)]
struct ClientAssertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    #[serde(rename = "purposeId")]
    purpose_id: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

#[derive(Serialize)]
struct IntegrityClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    signed_headers: Vec<serde_json::Value>,
}

impl Pdnd {
    pub fn new(config: PdndConfig, key_path: PathBuf) -> Self {
        Self { config, key_path }
    }

    /// Who we are, for error messages: the identifiers, never the key.
    pub fn identity(&self) -> String {
        format!(
            "client_id `{}`, kid `{}`, purposeId `{}`",
            self.config.client_id, self.config.kid, self.config.purpose_id
        )
    }

    /// The private key, read at each use so a rotated key file is picked up without a restart.
    fn key(&self) -> Result<EncodingKey, ConnectorError> {
        let failed = |why: String| ConnectorError::Authentication {
            message: format!(
                "cannot use the PDND private key {}: {why}",
                self.key_path.display()
            ),
        };
        let pem = std::fs::read(&self.key_path).map_err(|e| failed(e.to_string()))?;
        EncodingKey::from_rsa_pem(&pem)
            .map_err(|e| failed(format!("not an RSA private key in PEM ({e})")))
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.config.kid.clone());
        header.typ = Some("JWT".into());
        header
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, ConnectorError> {
        jsonwebtoken::encode(&self.header(), claims, &self.key()?).map_err(|e| {
            ConnectorError::Authentication {
                message: format!(
                    "cannot sign with the PDND private key {}: {e}",
                    self.key_path.display()
                ),
            }
        })
    }

    /// A new client assertion, valid for `assertion_lifetime`.
    pub fn client_assertion(&self) -> Result<String, ConnectorError> {
        let iat = chrono::Utc::now().timestamp();
        let config = &self.config;
        self.sign(&ClientAssertion {
            iss: &config.client_id,
            sub: &config.client_id,
            aud: &config.audience,
            purpose_id: &config.purpose_id,
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            exp: iat + config.assertion_lifetime.as_secs().max(1) as i64,
        })
    }

    /// INTEGRITY_REST_02: `Digest: SHA-256=<base64>` of the body as sent (empty for a GET), and
    /// an `Agid-JWT-Signature` JWS whose `signed_headers` carry that digest (and the content type
    /// when there is a body). `None` when the e-service does not require it.
    pub fn integrity_headers(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ConnectorError> {
        let Some(integrity) = &self.config.integrity else {
            return Ok(Vec::new());
        };
        let digest = format!(
            "SHA-256={}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
        );
        let mut signed_headers = vec![serde_json::json!({ "digest": digest })];
        if let Some(content_type) = content_type {
            signed_headers.push(serde_json::json!({ "content-type": content_type }));
        }
        let iat = chrono::Utc::now().timestamp();
        let config = &self.config;
        let signature = self.sign(&IntegrityClaims {
            iss: &config.client_id,
            sub: &config.client_id,
            aud: &integrity.audience,
            iat,
            nbf: iat,
            exp: iat + config.assertion_lifetime.as_secs().max(1) as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            signed_headers,
        })?;
        let value = |text: String| {
            HeaderValue::from_str(&text).map_err(|e| ConnectorError::Authentication {
                message: format!("cannot build the INTEGRITY_REST_02 headers: {e}"),
            })
        };
        let mut signature = value(signature)?;
        signature.set_sensitive(true);
        Ok(vec![
            (HeaderName::from_static("digest"), value(digest)?),
            (HeaderName::from_static("agid-jwt-signature"), signature),
        ])
    }
}
