//! The service's errors as PostgreSQL errors: a SQLSTATE a client can act on (psycopg raises
//! `errors.ReadOnlySqlTransaction`, `errors.QueryCanceled`, ...) and the HTTP API's own message.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::api::error::ApiError;
use crate::protocols::gate::{Protocol, client_message};
use crate::query::QueryError;
use crate::query::guard::GuardError;

/// The SQLSTATE of an error (PostgreSQL's appendix A).
pub fn sqlstate(error: &ApiError) -> &'static str {
    match error {
        ApiError::Query(query) => match query {
            QueryError::Refused(GuardError::Syntax(_) | GuardError::Empty) => "42601",
            QueryError::Refused(GuardError::TooDeep { .. }) => "54001",
            QueryError::Refused(GuardError::Several(_)) => "0A000",
            // PostgreSQL's own answer to a write in a read-only transaction.
            QueryError::Refused(GuardError::NotReadOnly(_)) => "25006",
            QueryError::Refused(GuardError::TableFunction(_)) => "42501",
            QueryError::Forbidden(_) => "42501",
            QueryError::TooLarge { .. } => "54000",
            QueryError::Invalid(message) => invalid_query_state(message),
            QueryError::Timeout(_) => "57014",
            QueryError::Memory { .. } => "53200",
            QueryError::Rows(_) => "54000",
            QueryError::Engine(_) | QueryError::Internal(_) => "XX000",
        },
        ApiError::Unauthorized(_) => "28P01",
        ApiError::Forbidden(_) => "42501",
        ApiError::RateLimited(_) => "53400",
        ApiError::PayloadTooLarge(_) => "54000",
        ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_) => "22023",
        ApiError::NotAcceptable(_) | ApiError::MethodNotAllowed(_) => "0A000",
        ApiError::NotFound(_) => "42P01",
        ApiError::Unavailable(_) => "57P03",
        ApiError::Internal(_) | ApiError::Configuration(_) => "XX000",
    }
}

/// A planning error's class, from DataFusion's wording: what psql and drivers show best.
fn invalid_query_state(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        "42P01"
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        "42703"
    } else if lower.contains("no function matches") || lower.contains("invalid function") {
        "42883"
    } else if lower.contains("cannot be cast") || lower.contains("cannot cast") {
        "42846"
    } else if lower.contains("division by zero") || lower.contains("divide by zero") {
        "22012"
    } else {
        "42000"
    }
}

/// An `ERROR` for a statement; the session goes on.
pub fn statement_error(error: &ApiError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        sqlstate(error).into(),
        client_message(error, Protocol::Pgwire),
    )))
}

/// A `FATAL` error at login: the connection ends. A partner key's refusal is 28000
/// (invalid authorization), a key that does not authenticate 28P01 (invalid password).
pub fn login_error(error: &ApiError) -> PgWireError {
    let state = match error {
        ApiError::Forbidden(_) => "28000",
        other => sqlstate(other),
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        state.into(),
        client_message(error, Protocol::Pgwire),
    )))
}

/// An error of the protocol layer itself (an unknown cursor, a value that does not decode).
pub fn protocol_error(state: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        state.into(),
        message.into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_refusal_is_a_read_only_transaction_error_with_the_http_message() {
        let error = ApiError::Query(QueryError::Refused(GuardError::NotReadOnly(
            "DROP TABLE".into(),
        )));
        assert_eq!(sqlstate(&error), "25006");
        let PgWireError::UserError(info) = statement_error(&error) else {
            panic!("a user error")
        };
        assert_eq!(info.message, error.to_string());
        assert_eq!(
            sqlstate(&ApiError::Query(QueryError::Timeout("2s".into()))),
            "57014"
        );
        assert_eq!(
            sqlstate(&ApiError::Query(QueryError::Invalid(
                "Error during planning: table 'city.queries.nope' not found".into()
            ))),
            "42P01"
        );
    }
}
