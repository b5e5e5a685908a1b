//! The one way in for the protocols beside HTTP. A key becomes a principal through
//! `api::access::check_key` (the HTTP API's own key store, cache and rate limit), a statement runs
//! through `api::sql::run_statement` (the role check, then the engine's read-only guard and
//! limits), and each is written to the audit trail like an HTTP request, with an action naming the
//! protocol (`sql:pgwire`, `sql:flight-sql`) and the HTTP status the same answer has over HTTP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use datafusion::common::ParamValues;

use crate::api::AppState;
use crate::api::access::{Caller, Who, check_key, outcome, record_request};
use crate::api::error::ApiError;
use crate::auth::{Principal, Role};
use crate::query::{Described, Execution, QueryEngine, QueryResult};

/// What a refused login was audited as: the target is not SQL.
const LOGIN: &str = "login";
/// The status an audit entry gets when the client cancelled (or went away) mid-statement: nginx's
/// "client closed request", as no HTTP status says it.
const CANCELLED: u16 = 499;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pgwire,
    FlightSql,
}

impl Protocol {
    /// The audit trail's `action` for this protocol's statements.
    pub fn action(self) -> &'static str {
        match self {
            Protocol::Pgwire => "sql:pgwire",
            Protocol::FlightSql => "sql:flight-sql",
        }
    }

    fn key_needed(self) -> &'static str {
        match self {
            Protocol::Pgwire => {
                "this installation needs an API key: give it as the password (user name: anything)"
            }
            Protocol::FlightSql => {
                "this installation needs an API key: send it as a bearer token (authorization: Bearer ck_...) or as the handshake's password"
            }
        }
    }
}

/// Who is connected, from where: what every statement of a session runs as.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub client: IpAddr,
}

#[derive(Clone)]
pub struct Gate {
    state: AppState,
    protocol: Protocol,
}

impl Gate {
    pub fn new(state: AppState, protocol: Protocol) -> Self {
        Self { state, protocol }
    }

    pub fn engine(&self) -> &Arc<QueryEngine> {
        &self.state.service.engine
    }

    /// Log in with `key` (`None`: without a key, the configured anonymous role if any). A key
    /// that does not authenticate and a partner key (SQL is for analysts and admins) are refused
    /// with the HTTP API's messages, and audited.
    pub async fn login(&self, key: Option<String>, client: IpAddr) -> Result<Session, ApiError> {
        let started = Instant::now();
        let access = &self.state.access;
        let principal = match key {
            Some(key) => match check_key(access, key, &format!("ip:{client}")).await {
                Ok(principal) => principal,
                Err(refusal) => {
                    self.audit(
                        Who::refused(refusal.key.clone()),
                        LOGIN,
                        0,
                        refusal.error.status(),
                        started,
                        refusal.outcome,
                    );
                    return Err(refusal.error);
                }
            },
            None => match access.anonymous() {
                Some(principal) => principal,
                None => {
                    let error = ApiError::Unauthorized(self.protocol.key_needed().into());
                    self.audit(Who::of(None), LOGIN, 0, error.status(), started, "denied");
                    return Err(error);
                }
            },
        };
        if let Err(error) = Caller(Some(principal.clone())).require(Role::Analyst) {
            self.audit(
                Who::of(Some(&principal)),
                LOGIN,
                0,
                error.status(),
                started,
                "denied",
            );
            return Err(error);
        }
        Ok(Session { principal, client })
    }

    /// Run one statement for `session` (parameters bound to its placeholders, if any): the rate
    /// limit of its key, then the HTTP SQL path; audited with its rows and outcome, and as
    /// cancelled when the future is dropped before it ends (a cancel request, a closed connection).
    pub async fn run(
        &self,
        session: &Session,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<QueryResult, ApiError> {
        let execution = Execution {
            params,
            planned: None,
        };
        self.run_with(session, sql, execution).await
    }

    /// `run`, telling `execution.planned` the result's schema once the statement is planned.
    pub async fn run_with(
        &self,
        session: &Session,
        sql: &str,
        execution: Execution,
    ) -> Result<QueryResult, ApiError> {
        let target = match &execution.params {
            Some(ParamValues::List(values)) if !values.is_empty() => {
                let values: Vec<String> = values.iter().map(|v| v.value().to_string()).collect();
                format!("{sql} /* parameters: {} */", values.join(", "))
            }
            _ => sql.to_string(),
        };
        let mut entry = PendingEntry {
            gate: self,
            who: Some(Who::of(Some(&session.principal))),
            target,
            started: Instant::now(),
        };
        if let Err((error, _)) = self.state.access.take_token(&bucket(session)) {
            entry.finish(0, error.status(), "rate_limited");
            return Err(error);
        }
        let caller = Caller(Some(session.principal.clone()));
        let result = crate::api::sql::run_statement(&self.state, &caller, sql, execution).await;
        match &result {
            Ok(result) => entry.finish(result.rows() as u64, StatusCode::OK, "ok"),
            Err(error) => entry.finish(0, error.status(), outcome(error.status())),
        }
        result
    }

    /// The columns and placeholder types of a statement, without running it (the guard and the
    /// role check apply). A refusal is audited as it would be over HTTP; a statement that plans
    /// is audited when it runs.
    pub async fn describe(&self, session: &Session, sql: &str) -> Result<Described, ApiError> {
        let started = Instant::now();
        let described = match Caller(Some(session.principal.clone())).require(Role::Analyst) {
            Ok(principal) => self
                .engine()
                .describe_as(sql, principal.role)
                .await
                .map_err(ApiError::from),
            Err(error) => Err(error),
        };
        if let Err(error) = &described {
            self.audit(
                Who::of(Some(&session.principal)),
                sql,
                0,
                error.status(),
                started,
                outcome(error.status()),
            );
        }
        described
    }

    fn audit(
        &self,
        who: Who,
        target: &str,
        rows: u64,
        status: StatusCode,
        started: Instant,
        outcome: &str,
    ) {
        record_request(
            &self.state.access.audit,
            who,
            self.protocol.action(),
            target,
            rows,
            status,
            started,
            outcome,
        );
    }
}

/// The rate-limit bucket of a session: its key's, as over HTTP, or its address's without a key.
fn bucket(session: &Session) -> String {
    if session.principal.key_id == "anonymous" {
        format!("ip:{}", session.client)
    } else {
        format!("key:{}", session.principal.key_id)
    }
}

/// An audit entry written when the statement ends, or as cancelled if it never does.
struct PendingEntry<'a> {
    gate: &'a Gate,
    who: Option<Who>,
    target: String,
    started: Instant,
}

impl PendingEntry<'_> {
    fn finish(&mut self, rows: u64, status: StatusCode, outcome: &str) {
        if let Some(who) = self.who.take() {
            self.gate
                .audit(who, &self.target, rows, status, self.started, outcome);
        }
    }
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        let status = StatusCode::from_u16(CANCELLED).expect("a valid status code");
        self.finish(0, status, "cancelled");
    }
}

/// The text a client is shown for an error: the HTTP API's detail, except for a server error,
/// which is logged and answered with a generic text (as over HTTP).
pub fn client_message(error: &ApiError, protocol: Protocol) -> String {
    if error.status().is_server_error() && !matches!(error, ApiError::Configuration(_)) {
        tracing::error!(protocol = protocol.action(), error = %error, "statement failed");
        return "the server could not complete the request; the error has been logged".into();
    }
    error.to_string()
}
