//! The one error type of the HTTP API, answered as `application/problem+json` (RFC 9457).
//! Details of a 5xx are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(e) => match e {
                QueryError::Refused(_) | QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
                QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
                QueryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                QueryError::Timeout(_) | QueryError::Memory { .. } | QueryError::Rows(_) => StatusCode::UNPROCESSABLE_ENTITY,
                QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short identifier of the kind of problem and its human title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Query(e) => match e {
                QueryError::Refused(crate::query::guard::GuardError::Syntax(_)) => ("sql-syntax", "The SQL does not parse"),
                QueryError::Refused(_) => ("read-only", "Statement not allowed"),
                QueryError::Invalid(_) => ("invalid-query", "The query cannot be run"),
                QueryError::Forbidden(_) => ("forbidden", "Not allowed for this key"),
                QueryError::TooLarge { .. } => ("sql-too-large", "The SQL text is over the size limit"),
                QueryError::Timeout(_) => ("time-limit", "Query time limit exceeded"),
                QueryError::Memory { .. } => ("memory-limit", "Query memory limit exceeded"),
                QueryError::Rows(_) => ("row-limit", "Query row limit exceeded"),
                QueryError::Internal(_) => ("internal", "Internal error"),
            },
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::PayloadTooLarge(_) => ("body-too-large", "Request body too large"),
            ApiError::NotAcceptable(_) => ("not-acceptable", "Format not available"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported request body type"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Unauthorized(_) => ("unauthorized", "API key missing or not valid"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed for this key"),
            ApiError::RateLimited(_) => ("rate-limited", "Too many requests"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.kind();
        let detail = if status.is_server_error() {
            error!(error = %self, "request failed");
            "the server could not complete the request; the error has been logged".to_string()
        } else {
            self.to_string()
        };
        let body = Problem { kind: format!("urn:cruscotto:problem:{slug}"), title, status: status.as_u16(), detail };
        let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
