//! The e-service: checks the voucher as a provider must (PDND's signature, audience, issuer,
//! expiry, purpose), then ModI INTEGRITY_REST_02 and AUDIT_REST_02 when required, and serves
//! residents page by page, with faults injected on demand.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::super::{FakeApi, Reply, Seen, fixture};
use super::*;

/// The `aud` of the tracking evidence this e-service expects.
pub const AUDIT_AUDIENCE: &str = "https://anagrafe.fake/eservice/v1/residenti";

/// A fault the e-service injects on a page.
#[derive(Debug, Clone)]
pub enum Fault {
    TooManyRequests {
        retry_after_seconds: u64,
    },
    Problem {
        status: u16,
        title: String,
        detail: String,
    },
    /// A body cut in the middle of the JSON.
    Malformed,
}

#[derive(Debug, Clone)]
pub struct EServiceRequest {
    pub page: u64,
    pub voucher_jti: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct EServiceState {
    pub residents: Vec<Value>,
    /// Faults answered once each, in order, per page.
    pub faults_once: HashMap<u64, VecDeque<Fault>>,
    /// Faults answered every time, per page.
    pub faults_always: HashMap<u64, Fault>,
    /// Vouchers this e-service already considers expired (its clock runs ahead of the platform's).
    pub expired_early: HashSet<String>,
    pub requests: Vec<EServiceRequest>,
    pub integrity_jti: HashSet<String>,
    /// Why each refused request was refused.
    pub refusals: Vec<String>,
    /// Require ModI AUDIT_REST_02: an `Agid-JWT-TrackingEvidence` whose hash is the voucher's
    /// digest.
    pub audit: bool,
    /// The claims of every tracking evidence accepted.
    pub tracking_evidence: Vec<Map<String, Value>>,
    /// Refuse every voucher (401) with this reason, as for a purpose suspended by the provider.
    pub refuse_vouchers: Option<String>,
}

/// The e-service: `GET /anagrafe/residenti?page=N&size=M`, records at `/residenti`, total at
/// `/totale`. With `integrity`, every request must carry INTEGRITY_REST_02 headers.
pub struct EService {
    pub api: FakeApi,
    pub state: Arc<Mutex<EServiceState>>,
}

pub const INTEGRITY_AUDIENCE: &str = "https://anagrafe.fake/eservice/v1/residenti";

impl EService {
    pub fn start(residents: Vec<Value>, integrity: bool) -> Self {
        let state = Arc::new(Mutex::new(EServiceState {
            residents,
            ..Default::default()
        }));
        let platform_key =
            DecodingKey::from_rsa_pem(&fixture("authorization_server.pub.pem")).unwrap();
        let client_key = DecodingKey::from_rsa_pem(&fixture("client.pub.pem")).unwrap();
        let shared = state.clone();
        let api = FakeApi::start(move |seen| {
            let (reply, page, voucher_jti) = serve(
                seen,
                &platform_key,
                integrity.then_some(&client_key),
                &shared,
            );
            let mut state = shared.lock().unwrap();
            if reply.status >= 400 && reply.status != 429 && reply.status != 500 {
                state
                    .refusals
                    .push(String::from_utf8_lossy(&reply.body).into_owned());
            }
            state.requests.push(EServiceRequest {
                page,
                voucher_jti,
                status: reply.status,
                at: Instant::now(),
            });
            reply
        });
        Self { api, state }
    }

    pub fn url(&self) -> String {
        format!("{}/anagrafe/residenti", self.api.url)
    }

    pub fn requests(&self) -> Vec<EServiceRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn unauthorized(error: &str, description: &str) -> Reply {
    Reply::problem(401, "Unauthorized", description).header(
        "www-authenticate",
        &format!(
            "Bearer realm=\"anagrafe\", error=\"{error}\", error_description=\"{description}\""
        ),
    )
}

fn serve(
    seen: &Seen,
    platform_key: &DecodingKey,
    client_key: Option<&DecodingKey>,
    state: &Mutex<EServiceState>,
) -> (Reply, u64, Option<String>) {
    let page: u64 = seen.param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    if seen.method != "GET" || seen.path != "/anagrafe/residenti" {
        return (
            Reply::problem(404, "Not Found", "no such resource"),
            page,
            None,
        );
    }
    let Some(voucher) = seen
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        return (
            unauthorized("invalid_request", "a voucher is required"),
            page,
            None,
        );
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[VOUCHER_AUDIENCE]);
    validation.set_issuer(&[VOUCHER_ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    validation.leeway = 0;
    let claims =
        match jsonwebtoken::decode::<Map<String, Value>>(voucher, platform_key, &validation) {
            Ok(data) if data.header.kid.as_deref() == Some(VOUCHER_KID) => data.claims,
            Ok(_) => {
                return (
                    unauthorized("invalid_token", "the voucher is signed with an unknown key"),
                    page,
                    None,
                );
            }
            Err(e) => {
                return (
                    unauthorized("invalid_token", &format!("the voucher is not valid: {e}")),
                    page,
                    None,
                );
            }
        };
    let jti = claims["jti"].as_str().map(str::to_string);
    if claims["purposeId"] != PURPOSE_ID {
        return (
            unauthorized("invalid_token", "the voucher is for another purpose"),
            page,
            jti,
        );
    }
    if jti
        .as_ref()
        .is_some_and(|j| state.lock().unwrap().expired_early.contains(j))
    {
        return (
            unauthorized("invalid_token", "The voucher has expired"),
            page,
            jti,
        );
    }
    let refused = state.lock().unwrap().refuse_vouchers.clone();
    if let Some(why) = refused {
        return (unauthorized("invalid_token", &why), page, jti);
    }
    let audit = state.lock().unwrap().audit;
    if audit && let Err(why) = check_tracking_evidence(seen, &claims, state) {
        return (
            Reply::problem(400, "AUDIT_REST_02 check failed", &why),
            page,
            jti,
        );
    }
    if let Some(client_key) = client_key
        && let Err(why) = check_integrity(seen, client_key, state)
    {
        return (
            Reply::problem(400, "INTEGRITY_REST_02 check failed", &why),
            page,
            jti,
        );
    }
    let size: usize = match seen.param("size").and_then(|s| s.parse().ok()) {
        Some(size) if (1..=100).contains(&size) && page >= 1 => size,
        _ => {
            return (
                Reply::problem(
                    400,
                    "Bad Request",
                    "page must be ≥ 1 and size between 1 and 100",
                ),
                page,
                jti,
            );
        }
    };
    let mut state = state.lock().unwrap();
    let fault = state
        .faults_once
        .get_mut(&page)
        .and_then(VecDeque::pop_front)
        .or_else(|| state.faults_always.get(&page).cloned());
    let start = (page as usize - 1) * size;
    let records: Vec<Value> = state
        .residents
        .iter()
        .skip(start)
        .take(size)
        .cloned()
        .collect();
    let body =
        json!({"residenti": records, "pagina": page, "totale": state.residents.len()}).to_string();
    let reply = match fault {
        Some(Fault::TooManyRequests {
            retry_after_seconds,
        }) => Reply::problem(429, "Too Many Requests", "slow down")
            .header("retry-after", &retry_after_seconds.to_string()),
        Some(Fault::Problem {
            status,
            title,
            detail,
        }) => Reply::problem(status, &title, &detail),
        Some(Fault::Malformed) => {
            Reply::new(200, "application/json", &body.as_bytes()[..body.len() / 2])
        }
        None => Reply::new(200, "application/json", body),
    };
    (reply, page, jti)
}

/// ModI INTEGRITY_REST_02: the `Digest` is the body's, and the `Agid-JWT-Signature` (signed by the
/// client's registered key) covers that digest, for this audience, once.
fn check_integrity(
    seen: &Seen,
    client_key: &DecodingKey,
    state: &Mutex<EServiceState>,
) -> Result<(), String> {
    let expected = format!(
        "SHA-256={}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&seen.body))
    );
    let digest = seen.header("digest").ok_or("no Digest header")?;
    if digest != expected {
        return Err(format!("the Digest `{digest}` is not the body's"));
    }
    let signature = seen
        .header("agid-jwt-signature")
        .ok_or("no Agid-JWT-Signature header")?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[INTEGRITY_AUDIENCE]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub", "nbf"]);
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<Map<String, Value>>(signature, client_key, &validation)
        .map_err(|e| format!("Agid-JWT-Signature: {e}"))?;
    if data.header.kid.as_deref() != Some(KID) {
        return Err("Agid-JWT-Signature: unknown kid".into());
    }
    if data.claims["sub"] != CLIENT_ID {
        return Err("Agid-JWT-Signature: sub is not the client".into());
    }
    let covered = data.claims["signed_headers"]
        .as_array()
        .is_some_and(|headers| headers.iter().any(|h| h["digest"] == expected.as_str()));
    if !covered {
        return Err("Agid-JWT-Signature: signed_headers does not hold the Digest".into());
    }
    let jti = data.claims["jti"]
        .as_str()
        .ok_or("Agid-JWT-Signature: no jti")?
        .to_string();
    if !state.lock().unwrap().integrity_jti.insert(jti) {
        return Err("Agid-JWT-Signature: jti already used".into());
    }
    Ok(())
}

/// ModI AUDIT_REST_02 as PDND describes the provider's checks: the tracking evidence is a JWS
/// signed by a key of the client (found by its `kid`), with the audit claims, for this audience,
/// and its SHA-256 is the `digest` PDND put in the voucher.
fn check_tracking_evidence(
    seen: &Seen,
    voucher: &Map<String, Value>,
    state: &Mutex<EServiceState>,
) -> Result<(), String> {
    let evidence = seen
        .header("agid-jwt-trackingevidence")
        .ok_or("no Agid-JWT-TrackingEvidence header")?;
    let digest = voucher.get("digest").ok_or(
        "the voucher has no digest: the client assertion must carry the tracking evidence's",
    )?;
    if digest["alg"] != "SHA256" {
        return Err(format!(
            "the voucher's digest alg is {}, not SHA256",
            digest["alg"]
        ));
    }
    if digest["value"] != sha256_hex(evidence.as_bytes()).as_str() {
        return Err("the tracking evidence is not the one the voucher's digest covers".into());
    }
    let header = evidence
        .split('.')
        .next()
        .and_then(decode_segment)
        .ok_or("the tracking evidence is not a JWS")?;
    let header_keys: BTreeSet<&str> = header.keys().map(String::as_str).collect();
    if header_keys != BTreeSet::from(["alg", "kid", "typ"]) || header["alg"] != "RS256" {
        return Err(format!(
            "the tracking evidence's header must be kid, alg RS256 and typ: {header:?}"
        ));
    }
    let kid = header["kid"].as_str().unwrap_or_default();
    let public = match kid {
        KID => fixture("client.pub.pem"),
        ROTATED_KID => fixture("wrong_client.pub.pem"),
        other => {
            return Err(format!(
                "the tracking evidence is signed with unknown key `{other}`"
            ));
        }
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUDIT_AUDIENCE]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "jti"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(
        evidence,
        &DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .map_err(|e| format!("Agid-JWT-TrackingEvidence: {e}"))?
    .claims;
    if claims["purposeId"] != PURPOSE_ID {
        return Err("the tracking evidence is for another purpose".into());
    }
    if !claims["dnonce"]
        .as_u64()
        .is_some_and(|n| (1_000_000_000_000..10_000_000_000_000).contains(&n))
    {
        return Err(format!(
            "dnonce must be a 13-digit number, not {}",
            claims["dnonce"]
        ));
    }
    for audit in ["userID", "userLocation", "LoA"] {
        if !claims[audit].as_str().is_some_and(|v| !v.trim().is_empty()) {
            return Err(format!("the tracking evidence has no `{audit}`"));
        }
    }
    if claims["iat"].as_i64().is_none_or(|iat| iat > now() + 5) {
        return Err("the tracking evidence's iat is missing or in the future".into());
    }
    state.lock().unwrap().tracking_evidence.push(claims);
    Ok(())
}

/// `n` residents: `{"id", "codice_fiscale", "zona", "eta", "versione"}`.
pub fn residents(n: u64, version: u64) -> Vec<Value> {
    let zones = [
        "Navile",
        "Porto-Saragozza",
        "San Donato-San Vitale",
        "Santo Stefano",
        "Savena",
        "Borgo Panigale-Reno",
    ];
    (1..=n)
        .map(|id| {
            json!({
                "id": id,
                "codiceFiscale": format!("RSSMRA{:02}A01A944{}", id % 100, id % 10),
                "zona": zones[(id as usize) % zones.len()],
                "eta": 20 + id,
                "versione": version,
            })
        })
        .collect()
}
