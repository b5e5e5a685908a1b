//! A PDND authorization server and an e-service that behave strictly like the real parties:
//! every signature is verified against the registered key, every claim is checked, a `jti` is
//! accepted once, vouchers expire, and the e-service checks ModI INTEGRITY_REST_02 when asked to.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::{FakeApi, Reply, Seen, fixture};

pub const CLIENT_ID: &str = "b2a6c1e4-1111-4c1a-9d0e-5f1f0c0ffee1";
pub const KID: &str = "kid-cruscotto-test";
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

#[derive(Debug, Clone)]
pub struct Voucher {
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Default)]
pub struct AuthState {
    /// Lifetime of the vouchers issued.
    pub expires_in: i64,
    pub seen_jti: HashSet<String>,
    pub vouchers: Vec<Voucher>,
    /// Why each refused request was refused.
    pub refusals: Vec<String>,
    /// Answer 503 this many times after accepting (and consuming) an assertion, as a server that
    /// fails after recording the `jti`.
    pub fail_after_accepting: u32,
    /// Every assertion accepted, decoded: header and claims.
    pub assertions: Vec<(Map<String, Value>, Map<String, Value>)>,
}

/// The PDND authorization server: `POST /token.oauth2`.
pub struct AuthorizationServer {
    pub api: FakeApi,
    pub state: Arc<Mutex<AuthState>>,
}

impl AuthorizationServer {
    /// Registered: the client `CLIENT_ID` with the public key of `client.key.pem` under `KID`,
    /// for purpose `PURPOSE_ID`.
    pub fn start(expires_in: i64) -> Self {
        let state = Arc::new(Mutex::new(AuthState {
            expires_in,
            ..Default::default()
        }));
        let client_key = DecodingKey::from_rsa_pem(&fixture("client.pub.pem")).unwrap();
        let signing_key =
            EncodingKey::from_rsa_pem(&fixture("authorization_server.key.pem")).unwrap();
        let shared = state.clone();
        let api = FakeApi::start(move |seen| {
            let reply = token(seen, &client_key, &signing_key, &shared);
            if (400..500).contains(&reply.status) {
                let why: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                shared.lock().unwrap().refusals.push(format!(
                    "{}: {}",
                    why["error"].as_str().unwrap_or("?"),
                    why["error_description"].as_str().unwrap_or("?")
                ));
            }
            reply
        });
        Self { api, state }
    }

    pub fn token_url(&self) -> String {
        format!("{}/token.oauth2", self.api.url)
    }

    pub fn vouchers(&self) -> Vec<Voucher> {
        self.state.lock().unwrap().vouchers.clone()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }
}

fn token(
    seen: &Seen,
    client_key: &DecodingKey,
    signing_key: &EncodingKey,
    state: &Mutex<AuthState>,
) -> Reply {
    if seen.method != "POST" || seen.path != "/token.oauth2" {
        return oauth_error(404, "invalid_request", "only POST /token.oauth2 is served");
    }
    if !seen
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return oauth_error(
            400,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let form = seen.form();
    let mut fields = HashMap::new();
    for (key, value) in &form {
        if fields.insert(key.as_str(), value.as_str()).is_some() {
            return oauth_error(
                400,
                "invalid_request",
                &format!("parameter `{key}` is repeated"),
            );
        }
    }
    let expected: BTreeSet<&str> = [
        "client_id",
        "client_assertion",
        "client_assertion_type",
        "grant_type",
    ]
    .into();
    let given: BTreeSet<&str> = fields.keys().copied().collect();
    if given != expected {
        return oauth_error(
            400,
            "invalid_request",
            &format!("expected the parameters {expected:?}, got {given:?}"),
        );
    }
    if fields["grant_type"] != "client_credentials" {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if fields["client_assertion_type"] != JWT_BEARER {
        return oauth_error(
            400,
            "invalid_request",
            "client_assertion_type must be the JWT bearer type",
        );
    }
    if fields["client_id"] != CLIENT_ID {
        return oauth_error(401, "invalid_client", "unknown client_id");
    }
    let assertion = fields["client_assertion"];
    let segments: Vec<&str> = assertion.split('.').collect();
    if segments.len() != 3 {
        return oauth_error(
            400,
            "invalid_request",
            "the client assertion is not a signed JWT",
        );
    }
    let Some(header) = decode_segment(segments[0]) else {
        return oauth_error(
            400,
            "invalid_request",
            "the client assertion's header is not JSON",
        );
    };
    let header_keys: BTreeSet<&str> = header.keys().map(String::as_str).collect();
    if header_keys != BTreeSet::from(["alg", "kid", "typ"]) {
        return oauth_error(
            400,
            "invalid_request",
            &format!("the header must hold exactly kid, alg and typ, not {header_keys:?}"),
        );
    }
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return oauth_error(
            400,
            "invalid_request",
            "the header must say alg RS256 and typ JWT",
        );
    }
    if header["kid"] != KID {
        return oauth_error(
            401,
            "invalid_client",
            &format!("no key `{}` is registered for this client", header["kid"]),
        );
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Map<String, Value>>(
        assertion,
        client_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            return oauth_error(
                401,
                "invalid_client",
                &format!(
                    "the client assertion's signature does not match the public key registered as `{KID}`"
                ),
            );
        }
        Err(e) => {
            return oauth_error(
                400,
                "invalid_request",
                &format!("unreadable client assertion: {e}"),
            );
        }
    };
    let allowed = [
        "iss",
        "sub",
        "aud",
        "jti",
        "iat",
        "exp",
        "purposeId",
        "digest",
    ];
    if let Some(extra) = claims.keys().find(|k| !allowed.contains(&k.as_str())) {
        return oauth_error(
            400,
            "invalid_request",
            &format!("claim `{extra}` is not allowed in a client assertion"),
        );
    }
    for required in ["iss", "sub", "aud", "jti", "iat", "exp", "purposeId"] {
        if !claims.contains_key(required) {
            return oauth_error(
                400,
                "invalid_request",
                &format!("claim `{required}` is missing"),
            );
        }
    }
    let text = |k: &str| claims[k].as_str().unwrap_or_default().to_string();
    for key in ["iss", "sub", "aud", "jti", "purposeId"] {
        if !claims[key].is_string() {
            return oauth_error(
                400,
                "invalid_request",
                &format!("claim `{key}` must be a string"),
            );
        }
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return oauth_error(
            400,
            "invalid_request",
            "claims `iat` and `exp` must be integers",
        );
    };
    if text("iss") != CLIENT_ID || text("sub") != CLIENT_ID {
        return oauth_error(400, "invalid_request", "iss and sub must be the client_id");
    }
    if text("aud") != ASSERTION_AUDIENCE {
        return oauth_error(
            400,
            "invalid_request",
            &format!("aud must be `{ASSERTION_AUDIENCE}`"),
        );
    }
    if text("purposeId") != PURPOSE_ID {
        return oauth_error(
            400,
            "invalid_request",
            "the purpose is not associated with this client",
        );
    }
    let now = now();
    if exp <= now {
        return oauth_error(400, "invalid_grant", "the client assertion has expired");
    }
    if iat > now + 5 || exp - iat > 600 {
        return oauth_error(
            400,
            "invalid_grant",
            "iat is in the future or the assertion lives too long",
        );
    }
    let jti = text("jti");
    let mut state = state.lock().unwrap();
    if !state.seen_jti.insert(jti.clone()) {
        return oauth_error(
            400,
            "invalid_grant",
            &format!("the client assertion's jti `{jti}` has already been used"),
        );
    }
    state.assertions.push((header, claims));
    if state.fail_after_accepting > 0 {
        state.fail_after_accepting -= 1;
        return Reply::problem(503, "Service Unavailable", "try again");
    }
    let voucher = Voucher {
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        exp: now + state.expires_in,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(VOUCHER_KID.into());
    header.typ = Some("at+jwt".into());
    let claims = json!({
        "iss": VOUCHER_ISSUER, "sub": CLIENT_ID, "aud": VOUCHER_AUDIENCE, "client_id": CLIENT_ID,
        "purposeId": PURPOSE_ID, "jti": voucher.jti, "iat": voucher.iat, "nbf": voucher.iat, "exp": voucher.exp,
    });
    let access_token = jsonwebtoken::encode(&header, &claims, signing_key).unwrap();
    let expires_in = state.expires_in;
    state.vouchers.push(voucher);
    Reply::json(
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}),
    )
}

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
