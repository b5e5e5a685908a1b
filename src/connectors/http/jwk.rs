//! An RSA private key given as a JWK (RFC 7517/7518 §6.3), turned into the PKCS#1 DER that
//! `jsonwebtoken` signs with. PDND's back office works with JWKs, and a JWK carries its own
//! `kid`, so a key and its id rotate together in one file.

use base64::Engine;
use serde_json::Value;

/// The key as PKCS#1 `RSAPrivateKey` DER, and the JWK's `kid` if it has one.
pub fn rsa_private_key(bytes: &[u8]) -> Result<(Vec<u8>, Option<String>), String> {
    let jwk: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWK (invalid JSON: {e})"))?;
    if jwk["kty"] != "RSA" {
        return Err(format!("the JWK's `kty` is {}, not \"RSA\"", jwk["kty"]));
    }
    let kid = match &jwk["kid"] {
        Value::Null => None,
        Value::String(kid) if !kid.trim().is_empty() => Some(kid.trim().to_string()),
        other => {
            return Err(format!(
                "the JWK's `kid` is not a non-empty string: {other}"
            ));
        }
    };
    let mut integers = vec![vec![0u8]];
    for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
        let text = jwk[name].as_str().ok_or_else(|| {
            format!("the JWK has no `{name}`: a private RSA key needs n, e, d, p, q, dp, dq and qi")
        })?;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| format!("the JWK's `{name}` is not base64url: {e}"))?;
        integers.push(value);
    }
    let body: Vec<u8> = integers.iter().flat_map(|i| der_integer(i)).collect();
    let mut der = vec![0x30];
    der.extend(der_length(body.len()));
    der.extend(body);
    Ok((der, kid))
}

/// A DER INTEGER from unsigned big-endian bytes: leading zeros dropped, one added when the top
/// bit is set (so it stays positive).
fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let mut content = bytes[start..].to_vec();
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    let mut out = vec![0x02];
    out.extend(der_length(content.len()));
    out.extend(content);
    out
}

fn der_length(length: usize) -> Vec<u8> {
    if length < 0x80 {
        return vec![length as u8];
    }
    let bytes: Vec<u8> = length
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_lengths_are_der() {
        assert_eq!(der_integer(&[0]), [0x02, 0x01, 0x00]);
        assert_eq!(der_integer(&[0, 0, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(der_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_length(0x7f), [0x7f]);
        assert_eq!(der_length(0x80), [0x81, 0x80]);
        assert_eq!(der_length(0x1234), [0x82, 0x12, 0x34]);
    }

    #[test]
    fn a_public_or_broken_jwk_is_refused_by_name() {
        let public = br#"{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}"#;
        assert!(rsa_private_key(public).unwrap_err().contains("no `d`"));
        let ec = br#"{"kty": "EC", "kid": "k"}"#;
        assert!(rsa_private_key(ec).unwrap_err().contains("not \"RSA\""));
    }
}
