//! PDND Interoperabilità: the client assertion exchanged for a voucher, the ModI AUDIT_REST_02
//! tracking evidence bound to it, and the INTEGRITY_REST_02 headers (`Digest` and
//! `Agid-JWT-Signature`), for e-services that require them.
//!
//! The client assertion is a JWT signed RS256 with the client's private key: header `kid`, `alg`,
//! `typ`; claims `iss` = `sub` = client id, `aud`, `purposeId`, `jti`, `iat`, `exp`, and no `nbf`
//! (PDND refuses claims it does not expect). Each assertion gets a new `jti`: the authorization
//! server refuses a replayed one, so a retried request is signed again, never resent.
//!
//! AUDIT_REST_02 (ModI): the e-service wants to know who the data is for. The client signs a
//! tracking evidence (`iss`, `aud`, `purposeId`, `dnonce`, `jti`, `iat`, `exp`, `userID`,
//! `userLocation`, `LoA`), puts its SHA-256 in the client assertion's `digest` claim (PDND copies
//! it into the voucher), and sends the evidence in `Agid-JWT-TrackingEvidence` with the voucher:
//! the e-service checks the signature and that the evidence's hash is the voucher's digest.

use std::path::{Path, PathBuf};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngExt;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::PdndConfig;
use super::jwk;
use crate::config_text::resolve;
use crate::connectors::ConnectorError;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The header of ModI AUDIT_REST_02.
pub const TRACKING_EVIDENCE: HeaderName = HeaderName::from_static("agid-jwt-trackingevidence");

pub struct Pdnd {
    pub config: PdndConfig,
    key_path: PathBuf,
    kid_path: Option<PathBuf>,
}

/// The client's key and its id, as read for one voucher request.
struct Credentials {
    key: EncodingKey,
    kid: String,
}

/// A client assertion, and the tracking evidence its `digest` binds to the voucher (when the
/// e-service requires AUDIT_REST_02).
pub struct SignedAssertion {
    pub assertion: String,
    pub tracking_evidence: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<AssertionDigest>,
}

/// PDND's `digest` claim: the SHA-256 of the tracking evidence JWS, in lowercase hex.
#[derive(Serialize)]
struct AssertionDigest {
    alg: &'static str,
    value: String,
}

/// AUDIT_REST_02's tracking evidence: who the data is for, signed by the client.
#[derive(Serialize)]
struct TrackingEvidence<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(rename = "purposeId")]
    purpose_id: &'a str,
    /// A 13-digit random number.
    dnonce: u64,
    jti: String,
    iat: i64,
    exp: i64,
    #[serde(rename = "userID")]
    user_id: &'a str,
    #[serde(rename = "userLocation")]
    user_location: &'a str,
    #[serde(rename = "LoA")]
    loa: &'a str,
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
    pub fn new(config: PdndConfig, base_dir: &Path) -> Self {
        let key_path = resolve(base_dir, &config.private_key);
        let kid_path = config.kid_file.as_ref().map(|f| resolve(base_dir, f));
        Self {
            config,
            key_path,
            kid_path,
        }
    }

    /// Who we are, for error messages: the identifiers, never the key.
    pub fn identity(&self) -> String {
        let kid = self
            .credentials()
            .map(|c| c.kid)
            .unwrap_or_else(|_| "?".into());
        format!(
            "client_id `{}`, kid `{kid}`, purposeId `{}`",
            self.config.client_id, self.config.purpose_id
        )
    }

    /// The private key and its `kid`, both read at each use, so a rotated key (and its id)
    /// is picked up without a restart: from `kid`, else `kid_file`, else the JWK's own `kid`.
    fn credentials(&self) -> Result<Credentials, ConnectorError> {
        let failed = |path: &Path, why: String| ConnectorError::Authentication {
            message: format!("cannot use the PDND key {}: {why}", path.display()),
        };
        let bytes =
            std::fs::read(&self.key_path).map_err(|e| failed(&self.key_path, e.to_string()))?;
        let (key, jwk_kid) = if bytes.trim_ascii_start().starts_with(b"{") {
            let (der, kid) = jwk::rsa_private_key(&bytes).map_err(|e| failed(&self.key_path, e))?;
            (EncodingKey::from_rsa_der(&der), kid)
        } else {
            let key = EncodingKey::from_rsa_pem(&bytes).map_err(|e| {
                failed(
                    &self.key_path,
                    format!("not an RSA private key in PEM or JWK ({e})"),
                )
            })?;
            (key, None)
        };
        let kid = if let Some(kid) = &self.config.kid {
            kid.clone()
        } else if let Some(path) = &self.kid_path {
            let text = std::fs::read_to_string(path).map_err(|e| failed(path, e.to_string()))?;
            let kid = text.trim();
            if kid.is_empty() || kid.contains(char::is_whitespace) {
                return Err(failed(
                    path,
                    "it must hold the `kid` alone, on one line".into(),
                ));
            }
            kid.to_string()
        } else {
            jwk_kid.clone().ok_or_else(|| {
                failed(
                    &self.key_path,
                    "no `kid`: set `kid` or `kid_file`, or give the JWK its `kid`".into(),
                )
            })?
        };
        if let Some(own) = jwk_kid.filter(|own| *own != kid) {
            return Err(failed(
                &self.key_path,
                format!(
                    "the JWK's `kid` is `{own}`, the configured one `{kid}`: which key is this?"
                ),
            ));
        }
        Ok(Credentials { key, kid })
    }

    fn sign<T: Serialize>(
        &self,
        credentials: &Credentials,
        claims: &T,
    ) -> Result<String, ConnectorError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(credentials.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &credentials.key).map_err(|e| {
            ConnectorError::Authentication {
                message: format!(
                    "cannot sign with the PDND private key {}: {e}",
                    self.key_path.display()
                ),
            }
        })
    }

    /// A new client assertion, valid for `assertion_lifetime`, with the tracking evidence its
    /// `digest` covers when the e-service requires AUDIT_REST_02.
    pub fn client_assertion(&self) -> Result<SignedAssertion, ConnectorError> {
        let credentials = self.credentials()?;
        let iat = chrono::Utc::now().timestamp();
        let config = &self.config;
        let exp = iat + config.assertion_lifetime.as_secs().max(1) as i64;
        let tracking_evidence = match &config.audit {
            Some(audit) => Some(self.sign(
                &credentials,
                &TrackingEvidence {
                    iss: &config.client_id,
                    aud: &audit.audience,
                    purpose_id: &config.purpose_id,
                    dnonce: rand::rng().random_range(1_000_000_000_000..10_000_000_000_000),
                    jti: uuid::Uuid::new_v4().to_string(),
                    iat,
                    exp,
                    user_id: &audit.user_id,
                    user_location: &audit.user_location,
                    loa: &audit.loa,
                },
            )?),
            None => None,
        };
        let digest = tracking_evidence.as_ref().map(|evidence| AssertionDigest {
            alg: "SHA256",
            value: Sha256::digest(evidence.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        });
        let assertion = self.sign(
            &credentials,
            &ClientAssertion {
                iss: &config.client_id,
                sub: &config.client_id,
                aud: &config.audience,
                purpose_id: &config.purpose_id,
                jti: uuid::Uuid::new_v4().to_string(),
                iat,
                exp,
                digest,
            },
        )?;
        Ok(SignedAssertion {
            assertion,
            tracking_evidence,
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
        let credentials = self.credentials()?;
        let iat = chrono::Utc::now().timestamp();
        let config = &self.config;
        let signature = self.sign(
            &credentials,
            &IntegrityClaims {
                iss: &config.client_id,
                sub: &config.client_id,
                aud: &integrity.audience,
                iat,
                nbf: iat,
                exp: iat + config.assertion_lifetime.as_secs().max(1) as i64,
                jti: uuid::Uuid::new_v4().to_string(),
                signed_headers,
            },
        )?;
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
