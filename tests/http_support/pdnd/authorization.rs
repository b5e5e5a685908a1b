//! The PDND authorization server: the client assertion is checked as PDND does (only the
//! allowed claims, with their types; a registered key by `kid`; `jti` once; the clock; the
//! purpose's state), and the voucher carries the assertion's `digest` (AUDIT_REST_02).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

use super::super::{FakeApi, Reply, Seen, fixture};
use super::*;

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
    /// The client's public keys (PEM) by `kid`, as uploaded in the back office.
    pub keys: HashMap<String, Vec<u8>>,
    /// Added to this server's clock, to play a client whose clock is off.
    pub clock_offset: i64,
    /// The purpose's state; anything but `ACTIVE` refuses vouchers.
    pub purpose_state: String,
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
            keys: HashMap::from([(KID.to_string(), fixture("client.pub.pem"))]),
            purpose_state: "ACTIVE".into(),
            ..Default::default()
        }));
        let signing_key =
            EncodingKey::from_rsa_pem(&fixture("authorization_server.key.pem")).unwrap();
        let shared = state.clone();
        let api = FakeApi::start(move |seen| {
            let reply = token(seen, &signing_key, &shared);
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

    /// Upload a public key to the client, as the back office does when a key is rotated.
    pub fn register_key(&self, kid: &str, public_pem: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(kid.to_string(), public_pem);
    }

    /// Delete a key from the client: assertions signed with it are refused from now on.
    pub fn revoke_key(&self, kid: &str) {
        self.state.lock().unwrap().keys.remove(kid);
    }

    /// The header and claims of the last assertion accepted.
    pub fn last_assertion(&self) -> (Map<String, Value>, Map<String, Value>) {
        self.state
            .lock()
            .unwrap()
            .assertions
            .last()
            .unwrap()
            .clone()
    }
}

fn token(seen: &Seen, signing_key: &EncodingKey, state: &Mutex<AuthState>) -> Reply {
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
    let kid = header["kid"].as_str().unwrap_or_default().to_string();
    let Some(public_pem) = state.lock().unwrap().keys.get(&kid).cloned() else {
        return oauth_error(
            401,
            "invalid_client",
            &format!("no key `{kid}` is registered for this client"),
        );
    };
    let client_key = DecodingKey::from_rsa_pem(&public_pem).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Map<String, Value>>(
        assertion,
        &client_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            return oauth_error(
                401,
                "invalid_client",
                &format!(
                    "the client assertion's signature does not match the public key registered as `{kid}`"
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
    // PDND's `digest` (AUDIT_REST_02): exactly `alg` = "SHA256" and a hex `value`.
    if let Some(digest) = claims.get("digest") {
        let shape_ok = digest.as_object().is_some_and(|d| {
            d.len() == 2
                && d.get("alg") == Some(&json!("SHA256"))
                && d.get("value").and_then(Value::as_str).is_some_and(|v| {
                    v.len() == 64
                        && v.bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
        });
        if !shape_ok {
            return oauth_error(
                400,
                "invalid_request",
                &format!(
                    "claim `digest` must be {{\"alg\": \"SHA256\", \"value\": <64 hex digits>}}, not {digest}"
                ),
            );
        }
    }
    let (clock_offset, purpose_state) = {
        let state = state.lock().unwrap();
        (state.clock_offset, state.purpose_state.clone())
    };
    if purpose_state != "ACTIVE" {
        return oauth_error(
            400,
            "invalid_grant",
            &format!("the purpose `{PURPOSE_ID}` is {purpose_state}, not ACTIVE"),
        );
    }
    let now = now() + clock_offset;
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
    let digest = claims.get("digest").cloned();
    let now = now - clock_offset;
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
    let mut claims = json!({
        "iss": VOUCHER_ISSUER, "sub": CLIENT_ID, "aud": VOUCHER_AUDIENCE, "client_id": CLIENT_ID,
        "purposeId": PURPOSE_ID, "jti": voucher.jti, "iat": voucher.iat, "nbf": voucher.iat, "exp": voucher.exp,
    });
    // As PDND does, the voucher carries the assertion's digest, for the e-service to match
    // against the tracking evidence.
    if let Some(digest) = digest {
        claims["digest"] = digest;
    }
    let access_token = jsonwebtoken::encode(&header, &claims, signing_key).unwrap();
    let expires_in = state.expires_in;
    state.vouchers.push(voucher);
    Reply::json(
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}),
    )
}
