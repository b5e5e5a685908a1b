//! The HTTP API: requests become queries, results become responses. One router per audience.

pub mod access;
pub mod dashboards;
mod datasets;
pub mod error;
mod extract;
pub mod format;
mod impact;
mod json;
mod openapi;
mod ops;
mod plans;
pub mod serve;
pub(crate) mod sql;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::service::Service;
pub use error::ApiError;
pub use ops::prometheus;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub access: Arc<access::Access>,
    pub datasets: Arc<datasets::DatasetCache>,
    /// The pages that name the city, rendered from `[city]`.
    pub pages: Arc<web::Pages>,
}

impl AppState {
    /// The API's state over a service: keys, rate limits and the audit log from its configuration.
    /// The audit log becomes the admin-only table `city.system.audit`.
    pub fn new(service: Arc<Service>) -> Self {
        let access = Arc::new(access::Access::new(
            &service.config.data_dir(),
            service.config.service.access.clone(),
        ));
        let _ = service
            .store
            .schema_provider("system")
            .register_table("audit".to_string(), access.audit.table());
        let pages = Arc::new(web::Pages::new(
            &service.config.service.city,
            &service.config.base_dir,
        ));
        Self {
            service,
            access,
            datasets: Default::default(),
            pages,
        }
    }
}

/// Every route but the browser front end's: the router and its OpenAPI document come from the
/// same `#[utoipa::path]` declarations.
fn documented() -> OpenApiRouter<AppState> {
    openapi::router()
        .merge(sql::router())
        .merge(ops::router())
        .merge(datasets::router())
        .merge(dashboards::router())
        .merge(plans::router())
        .merge(impact::router())
}

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
pub fn openapi() -> serde_json::Value {
    openapi::complete(documented().into_openapi())
}

pub fn app(state: AppState) -> Router {
    prometheus();
    // The SQL endpoint reads its body itself; the default limit guards any other extractor.
    let body_limit = sql::body_limit(state.service.engine.limits().max_sql_bytes);
    let (api, _) = documented().split_for_parts();
    Router::new()
        .merge(web::router())
        .merge(api)
        .fallback(|method: Method, uri: Uri| async move { ApiError::NotFound(format!("no such endpoint: {method} {}", uri.path())) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::MethodNotAllowed(format!("{method} is not allowed on {}; the OpenAPI document at /api/v1/openapi.json lists what is", uri.path()))
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), access::middleware))
        .layer(middleware::from_fn(error::errors_as_problems))
        .layer(middleware::from_fn(count_requests))
        // Server errors are logged where they are answered (`error.rs`), once, with their
        // detail; a 503 of /readyz while loading is an answer, not a failure to log.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

async fn count_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    metrics::counter!("cruscotto_http_requests_total", "status" => response.status().as_u16().to_string()).increment(1);
    response
}
