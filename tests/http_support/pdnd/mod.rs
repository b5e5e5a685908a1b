//! A PDND authorization server and an e-service that behave strictly like the real parties:
//! every signature is verified against the registered key, every claim is checked, a `jti` is
//! accepted once, vouchers expire, and the e-service checks ModI INTEGRITY_REST_02 and
//! AUDIT_REST_02 when asked to. `authorization.rs` is the token endpoint, `eservice.rs` the API.

mod authorization;
mod eservice;

use base64::Engine;
use serde_json::{Map, Value, json};

#[allow(unused_imports)] // not every test binary uses every party
pub use authorization::*;
#[allow(unused_imports)]
pub use eservice::*;

use super::Reply;

pub const CLIENT_ID: &str = "b2a6c1e4-1111-4c1a-9d0e-5f1f0c0ffee1";
pub const KID: &str = "kid-cruscotto-test";
/// The id the second client key (`wrong_client.*`) is registered under when a test rotates to it.
pub const ROTATED_KID: &str = "kid-cruscotto-rotated";
pub const PURPOSE_ID: &str = "7f3c9a10-2222-4b7e-8a55-0b5e6f1d2c3a";
pub const ASSERTION_AUDIENCE: &str = "auth.interop.fake/client-assertion";
pub const VOUCHER_AUDIENCE: &str = "https://anagrafe.fake/eservice/v1";
pub const VOUCHER_ISSUER: &str = "auth.interop.fake";
pub const VOUCHER_KID: &str = "fake-pdnd-signing-key";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn decode_segment(segment: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An OAuth 2.0 error (RFC 6749 §5.2), as the authorization server answers.
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::status_json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// SHA-256 in lowercase hex, as PDND's `digest` claim carries it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
