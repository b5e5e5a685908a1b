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
    MethodNotAllowed(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Internal(String),
    /// The configuration does not fit the data (a dashboard names a column its query lacks): a
    /// 500 whose detail is sent, since it names only configuration, for whoever runs the service.
    #[error("{0}")]
    Configuration(String),
    /// A result that could not be computed lately (the last attempt's reason).
    #[error("{0}")]
    Unavailable(String),
}

/// An error, as RFC 9457 describes it. Every 4xx and 5xx answer of the service has this body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "urn:cruscotto:problem:not-found", "title": "Not found", "status": 404, "detail": "no dataset `x`"}))]
pub struct Problem {
    /// A URN naming the kind of problem, `urn:cruscotto:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind of problem, for a person.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong with this request, and what to do about it. Generic for 5xx: details are logged.
    pub detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(e) => match e {
                QueryError::Refused(_) | QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
                QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
                QueryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                QueryError::Timeout(_)
                | QueryError::Memory { .. }
                | QueryError::Rows(_)
                | QueryError::Engine(_) => StatusCode::UNPROCESSABLE_ENTITY,
                QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) | ApiError::Configuration(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short identifier of the kind of problem and its human title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Query(e) => match e {
                QueryError::Refused(crate::query::guard::GuardError::Syntax(_)) => {
                    ("sql-syntax", "The SQL does not parse")
                }
                QueryError::Refused(crate::query::guard::GuardError::TooDeep { .. }) => {
                    ("expression-depth", "The SQL nests too deeply")
                }
                QueryError::Refused(_) => ("read-only", "Statement not allowed"),
                QueryError::Invalid(_) => ("invalid-query", "The query cannot be run"),
                QueryError::Forbidden(_) => ("forbidden", "Not allowed for this key"),
                QueryError::TooLarge { .. } => {
                    ("sql-too-large", "The SQL text is over the size limit")
                }
                QueryError::Timeout(_) => ("time-limit", "Query time limit exceeded"),
                QueryError::Memory { .. } => ("memory-limit", "Query memory limit exceeded"),
                QueryError::Rows(_) => ("row-limit", "Query row limit exceeded"),
                QueryError::Engine(_) => {
                    ("engine-error", "The query engine could not run this query")
                }
                QueryError::Internal(_) => ("internal", "Internal error"),
            },
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::PayloadTooLarge(_) => ("body-too-large", "Request body too large"),
            ApiError::NotAcceptable(_) => ("not-acceptable", "Format not available"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported request body type")
            }
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Unauthorized(_) => ("unauthorized", "API key missing or not valid"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed for this key"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::RateLimited(_) => ("rate-limited", "Too many requests"),
            ApiError::Internal(_) => ("internal", "Internal error"),
            ApiError::Configuration(_) => {
                ("configuration", "The configuration does not fit the data")
            }
            ApiError::Unavailable(_) => (
                "result-unavailable",
                "The result could not be computed; it is tried again shortly",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.kind();
        // A result not computed lately was logged when its computation failed.
        if status.is_server_error() && !matches!(self, ApiError::Unavailable(_)) {
            error!(error = %self, "request failed");
        }
        // A configuration problem names only the configuration: its detail is sent.
        if matches!(self, ApiError::Configuration(_)) {
            return problem_with_detail(status, slug, title, self.to_string());
        }
        problem(status, slug, title, self.to_string())
    }
}

/// A problem+json response. The detail of a 5xx is replaced by a generic text: it is logged, never sent.
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    let detail = if status.is_server_error() {
        "the server could not complete the request; the error has been logged".to_string()
    } else {
        detail
    };
    problem_with_detail(status, slug, title, detail)
}

/// A problem+json response with its detail as given.
fn problem_with_detail(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    let body = Problem {
        kind: format!("urn:cruscotto:problem:{slug}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail,
    };
    let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every error leaves as problem+json, whichever layer produced it (a tower layer, an extractor of
/// axum's, a handler that answered with a bare status): a plain-text or empty body is wrapped, its
/// text kept as the detail, and the headers (`Allow`, `Retry-After`, ...) are kept.
pub async fn errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // axum's rejections and bare statuses are plain text or empty; a JSON body (the 503 of
    // /readyz) is a deliberate answer and stays as it is.
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    if status.is_server_error() {
        error!(status = status.as_u16(), detail = %text, "request failed");
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    let detail = if text.is_empty() {
        title.to_string()
    } else {
        text
    };
    let mut wrapped = problem(status, &slug, title, detail);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            wrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    wrapped
}
