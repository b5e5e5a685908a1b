//! Who is calling and how often: the API key (or the configured anonymous role), a token bucket
//! per key with the ModI `X-RateLimit-*` headers, and the audit trail of SQL queries and dataset
//! pulls, allowed or denied. A key header that is present is a key: one that cannot be read (not
//! ASCII) is refused like any malformed key, never taken for no key (the anonymous role).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::audit::{AuditEntry, AuditLog};
use crate::auth::{AuthError, KeyStore, Lookup, Principal, Role};
use crate::config::{AccessConfig, AnonymousRole, DashboardAccess};

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct Access {
    pub keys: KeyStore,
    pub audit: AuditLog,
    pub config: AccessConfig,
    limiter: Limiter,
}

impl Access {
    pub fn new(data_dir: &std::path::Path, config: AccessConfig) -> Self {
        let per_minute = NonZeroU32::new(config.requests_per_minute.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(config.burst.max(1)).expect("at least 1");
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        let limiter = RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>();
        Self {
            keys: KeyStore::new(data_dir),
            audit: AuditLog::open(data_dir, config.audit.clone()),
            config,
            limiter,
        }
    }

    /// The principal of a request without a key: the configured `anonymous` role, if any.
    pub fn anonymous(&self) -> Option<Principal> {
        let role = match self.config.anonymous {
            AnonymousRole::None => return None,
            AnonymousRole::Partner => Role::Partner,
            AnonymousRole::Analyst => Role::Analyst,
            AnonymousRole::Admin => Role::Admin,
        };
        Some(Principal {
            key_id: "anonymous".into(),
            role,
            datasets: Default::default(),
        })
    }
}

/// The caller of a request: `None` when there is no key and anonymous access is off.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

impl Caller {
    /// The principal, if its role is at least `role`; 401 without a key, 403 with too weak a key.
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        match &self.0 {
            None => Err(ApiError::Unauthorized(
                "this endpoint needs an API key (Authorization: Bearer ck_...)".into(),
            )),
            Some(p) if p.is_at_least(role) => Ok(p),
            Some(p) => Err(ApiError::Forbidden(format!(
                "a {} key cannot use this endpoint; it needs a {} key",
                p.role.as_str(),
                role.as_str()
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller(None)))
    }
}

/// What a handler tells the audit trail about the request it served.
#[derive(Debug, Clone)]
pub struct AuditDetail {
    pub action: &'static str,
    pub target: String,
    pub rows: u64,
}

/// Attach audit details to a response (successful or not).
pub fn with_audit(detail: AuditDetail, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(detail);
    response
}

/// Marks an answer as a refusal for the audit trail whatever its status: a partner asking for a
/// dataset outside its scope gets the same 404 as for a dataset that does not exist, so it
/// learns nothing, but the trail says `denied`.
#[derive(Debug, Clone, Copy)]
pub struct AuditDenied;

/// The key a request presents: `X-API-Key`, or an `Authorization: Bearer` token. A header that
/// is not visible ASCII is returned as it reads (lossily), so the key check refuses it as
/// malformed instead of treating the request as one without a key.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let text = |value: &HeaderValue| match value.to_str() {
        Ok(text) => text.trim().to_string(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    };
    if let Some(value) = headers.get("x-api-key") {
        return Some(text(value));
    }
    let authorization = headers.get(axum::http::header::AUTHORIZATION)?;
    if authorization.to_str().is_err() {
        return Some(text(authorization));
    }
    let authorization = text(authorization);
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn audited(path: &str) -> Option<&'static str> {
    if path.starts_with("/api/v1/sql") {
        Some("sql")
    } else if path.starts_with("/api/v1/datasets") {
        Some("dataset")
    } else {
        None
    }
}

/// Authenticate, rate-limit and audit every request.
///
/// The rate limit comes before the cost of argon2: a request whose key has not been verified
/// before (a new key, a wrong secret, an unknown or malformed key) is first charged to the client
/// address's bucket, so someone trying keys is limited like any client, and the hash runs off the
/// async workers. A key once verified is cheap (a SHA-256 of the secret) and counts against its own
/// bucket.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let access = state.access.clone();
    let path = request.uri().path().to_string();
    let action = audited(&path);
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    let client_bucket = format!("ip:{client}");

    let caller = match presented_key(request.headers()) {
        Some(key) => match check_key(&access, key, &client_bucket).await {
            Ok(principal) => Some(principal),
            Err(refusal) => {
                let outcome = refusal.outcome;
                let who = Who::refused(refusal.key.clone());
                let response = refusal.into_response();
                if let Some(action) = action {
                    record(
                        &access.audit,
                        who,
                        action,
                        &path,
                        &response,
                        started,
                        outcome,
                    );
                }
                return response;
            }
        },
        None => access.anonymous(),
    };

    let dashboard_route =
        path == "/" || path.starts_with("/assets") || path.starts_with("/api/v1/dashboards");
    if dashboard_route && access.config.dashboard == DashboardAccess::Key && caller.is_none() {
        return ApiError::Unauthorized(
            "the dashboard needs an API key in this installation".into(),
        )
        .into_response();
    }

    let mut rate_headers = HeaderMap::new();
    if path.starts_with("/api/") {
        let bucket = caller
            .as_ref()
            .filter(|p| p.key_id != "anonymous")
            .map(|p| format!("key:{}", p.key_id))
            .unwrap_or(client_bucket);
        match access.take(&bucket) {
            Ok(headers) => rate_headers = headers,
            Err(response) => {
                if let Some(action) = action {
                    record(
                        &access.audit,
                        Who::of(caller.as_ref()),
                        action,
                        &path,
                        &response,
                        started,
                        "rate_limited",
                    );
                }
                return response;
            }
        }
    }

    let mut request = request;
    request.extensions_mut().insert(Caller(caller.clone()));
    let mut response = next.run(request).await;
    response.headers_mut().extend(rate_headers);
    if let Some(action) = action {
        let outcome = if response.extensions().get::<AuditDenied>().is_some() {
            "denied"
        } else {
            outcome(response.status())
        };
        record(
            &access.audit,
            Who::of(caller.as_ref()),
            action,
            &path,
            &response,
            started,
            outcome,
        );
    }
    response
}

/// A presented key that was not accepted: the error to answer (401, 429, 500) with its rate-limit
/// headers, its audit outcome, and, for a revoked key, the key's id and role (its use is audited
/// under them). The same for every protocol: HTTP answers it as problem+json, pgwire and Flight
/// SQL with their own error codes and the same message.
pub struct KeyRefusal {
    pub error: ApiError,
    pub headers: HeaderMap,
    pub outcome: &'static str,
    pub key: Option<(String, Role)>,
}

impl KeyRefusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

/// The principal of a presented key, or why not: the rate limit of the client's address before
/// argon2 (see [`middleware`]), then the key store. Every protocol checks keys through here.
pub async fn check_key(
    access: &Arc<Access>,
    key: String,
    client_bucket: &str,
) -> Result<Principal, KeyRefusal> {
    let refused = |error: AuthError, headers: HeaderMap| {
        let revoked = (error == AuthError::Revoked)
            .then(|| access.keys.named_key(&key))
            .flatten();
        let error = match error {
            AuthError::Store { path, message } => {
                ApiError::Internal(format!("key store {path}: {message}"))
            }
            other => ApiError::Unauthorized(other.to_string()),
        };
        KeyRefusal {
            error,
            headers,
            outcome: "denied",
            key: revoked,
        }
    };
    let needs_hashing = match access.keys.lookup(&key) {
        Ok(Lookup::Verified(principal)) => return Ok(principal),
        Ok(Lookup::NeedsHashing) => true,
        Err(_) => false,
    };
    let headers = access
        .take_token(client_bucket)
        .map_err(|(error, headers)| KeyRefusal {
            error,
            headers,
            outcome: "rate_limited",
            key: None,
        })?;
    if !needs_hashing {
        // Checked again for the error to report; still cheap.
        let error = access.keys.lookup(&key).err().unwrap_or(AuthError::Unknown);
        return Err(refused(error, headers));
    }
    let keys = access.clone();
    let presented = key.clone();
    match tokio::task::spawn_blocking(move || keys.keys.verify(&presented)).await {
        Ok(Ok(principal)) => Ok(principal),
        Ok(Err(error)) => Err(refused(error, headers)),
        Err(e) => Err(KeyRefusal {
            error: ApiError::Internal(format!("key verification: {e}")),
            headers: HeaderMap::new(),
            outcome: "error",
            key: None,
        }),
    }
}

impl Access {
    /// Take one request from `bucket`: the `X-RateLimit-*` headers for the answer, or the 429.
    fn take(&self, bucket: &str) -> Result<HeaderMap, Response> {
        self.take_token(bucket).map_err(|(error, headers)| {
            let mut response = error.into_response();
            response.headers_mut().extend(headers);
            response
        })
    }

    /// Take one request from `bucket`: the `X-RateLimit-*` headers, or the 429's error and
    /// headers. pgwire and Flight SQL take one per statement from the key's bucket.
    pub fn take_token(&self, bucket: &str) -> Result<HeaderMap, (ApiError, HeaderMap)> {
        let limit = self.config.requests_per_minute;
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
        match self.limiter.check_key(&bucket.to_string()) {
            Ok(snapshot) => {
                headers.insert(
                    "x-ratelimit-remaining",
                    HeaderValue::from(snapshot.remaining_burst_capacity()),
                );
                headers.insert(
                    "x-ratelimit-reset",
                    HeaderValue::from(snapshot.quota().replenish_interval().as_secs().max(1)),
                );
                Ok(headers)
            }
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1);
                let error = ApiError::RateLimited(format!(
                    "too many requests: at most {limit} per minute for this key or client; retry in {wait} s"
                ));
                headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(wait));
                headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
                headers.insert("x-ratelimit-reset", HeaderValue::from(wait));
                Err((error, headers))
            }
        }
    }
}

/// Who the audit trail names: a key id (or `anonymous`, `none`, `invalid`) and a role.
pub struct Who {
    key_id: String,
    role: &'static str,
    /// A key that authenticated: accountable, and limited by its own bucket.
    authenticated: bool,
}

impl Who {
    /// A key that did not authenticate: `invalid`, or a revoked key's id and role.
    pub fn refused(key: Option<(String, Role)>) -> Self {
        let (key_id, role) = key
            .map(|(id, role)| (id, role.as_str()))
            .unwrap_or_else(|| ("invalid".into(), "none"));
        Self {
            key_id,
            role,
            authenticated: false,
        }
    }

    pub fn of(caller: Option<&Principal>) -> Self {
        match caller {
            Some(p) => Self {
                key_id: p.key_id.clone(),
                role: p.role.as_str(),
                authenticated: p.key_id != "anonymous",
            },
            None => Self {
                key_id: "none".into(),
                role: "none",
                authenticated: false,
            },
        }
    }
}

/// Write the request to the audit trail. A refused request that anyone can send over and over
/// (401; 429, which costs no token; 403 without a key) is written without its text, aggregated
/// with its repeats. A key's own 403 keeps its text: the key is accountable for it, and each one
/// took a token of its bucket.
fn record(
    audit: &AuditLog,
    who: Who,
    action: &str,
    path: &str,
    response: &Response,
    started: Instant,
    outcome: &str,
) {
    let detail = response.extensions().get::<AuditDetail>();
    record_request(
        audit,
        who,
        detail.map_or(action, |d| d.action),
        detail.map_or(path, |d| d.target.as_str()),
        detail.map_or(0, |d| d.rows),
        response.status(),
        started,
        outcome,
    );
}

/// The audit outcome of an answer with this (HTTP) status.
pub fn outcome(status: StatusCode) -> &'static str {
    match status {
        s if s.is_success() || s == StatusCode::NOT_MODIFIED => "ok",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "denied",
        s if s.is_server_error() => "error",
        _ => "invalid",
    }
}

/// [`record`] for any protocol: `status` is the HTTP status the same answer has over HTTP, so
/// the trail reads the same whichever protocol a statement came by (its `action` names it).
#[allow(clippy::too_many_arguments)]
pub fn record_request(
    audit: &AuditLog,
    who: Who,
    action: &str,
    target: &str,
    rows: u64,
    status: StatusCode,
    started: Instant,
    outcome: &str,
) {
    let refused = match status {
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::FORBIDDEN => !who.authenticated,
        _ => false,
    };
    let entry = AuditEntry {
        time: chrono::Utc::now(),
        key_id: who.key_id,
        role: who.role.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        target_bytes: 0,
        rows,
        duration_ms: started.elapsed().as_millis() as u64,
        status: status.as_u16(),
        outcome: outcome.to_string(),
        count: 1,
    };
    if refused {
        audit.record_refused(entry);
    } else {
        audit.record(entry);
    }
}
