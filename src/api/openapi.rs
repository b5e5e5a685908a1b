//! The OpenAPI 3.1 document at `/api/v1/openapi.json`. Each handler declares its path, parameters
//! and answers with `#[utoipa::path]`, and is registered with `routes!`, so the router and the
//! document come from the same declaration. What every operation shares is added here, once: the
//! API-key security schemes, the problem+json error answers, the `X-RateLimit-*` headers and the
//! 429 with `Retry-After` of the rate-limited paths. The document passes the Italian API
//! guidelines' Spectral ruleset (Full profile, 0 errors, as PDND publication requires); its
//! contact is the operator's, from `[catalogue]` in cruscotto.toml.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{PROBLEM_JSON, Problem};
use crate::config::CatalogueConfig;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cruscotto",
        description = "A city's data-integration service: read-only SQL for analysts, published datasets for partner agencies \
                       (with statistical disclosure control), the map dashboard's data, and operations. Follows the Italian \
                       interoperability guidelines (ModI): problem+json errors (RFC 9457), `X-RateLimit-*` headers, cursor paging.",
    ),
    components(schemas(Problem)),
    tags(
        (name = "datasets", description = "Published datasets for partner agencies (DCAT-AP_IT)"),
        (name = "sql", description = "Read-only SQL for analysts and administrators"),
        (name = "dashboards", description = "What the map dashboard reads"),
        (name = "plans", description = "The placement planner: where to put new facilitation points"),
        (name = "operations", description = "Health, readiness, status, metrics and this document"),
    )
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(openapi_json))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value, content_type = "application/json"))
)]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    let mut document = DOCUMENT.get_or_init(super::openapi).clone();
    document["info"]["contact"] = contact(&state.service.config.service.catalogue);
    if let Some(city) = state.service.config.service.city.name.as_deref() {
        document["info"]["title"] = Value::from(format!("cruscotto — {city}"));
    }
    let body = serde_json::to_vec(&document).expect("the OpenAPI document serialises");
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// Who answers for this API: the configured contact, else the publisher, else this service.
fn contact(catalogue: &CatalogueConfig) -> Value {
    let name = catalogue
        .contact_name
        .as_deref()
        .or(catalogue.publisher.as_deref())
        .unwrap_or("cruscotto");
    match &catalogue.contact_email {
        Some(email) => json!({"name": name, "email": email}),
        None => json!({"name": name}),
    }
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Add what every operation shares to the document the handlers declared.
pub fn complete(api: utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    // The one-line summary catalogues show under the title (`summary` in 3.1, `x-summary` for the
    // guidelines' checker).
    let summary =
        "Read-only SQL, published datasets and dashboard data of a city's data-integration service";
    document["info"]["summary"] = json!(summary);
    document["info"]["x-summary"] = json!(summary);
    document["info"]["contact"] = contact(&CatalogueConfig::default());
    let components = document["components"]
        .as_object_mut()
        .expect("components: the Problem schema is declared");
    components.insert(
        "securitySchemes".into(),
        json!({
            "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                        "description": "A key made with `cruscotto keys create`: `ck_<id>_<secret>`. Roles: partner, analyst, admin."},
            "bearer": {"type": "http", "scheme": "bearer", "description": "The same key as `Authorization: Bearer ck_<id>_<secret>`."}
        }),
    );
    let paths = document["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        let limited = path.starts_with("/api/");
        for (method, operation) in item.as_object_mut().expect("a path item").iter_mut() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            complete_operation(operation, limited);
        }
    }
    document
}

fn complete_operation(operation: &mut Value, limited: bool) {
    // Without a key a request acts as the configured anonymous role (none by default); a key, when
    // sent, must be valid whatever the endpoint.
    operation["security"] = if limited {
        json!([{"api_key": []}, {"bearer": []}, {}])
    } else {
        json!([{}, {"api_key": []}, {"bearer": []}])
    };
    let responses = operation["responses"].as_object_mut().expect("responses");
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error
            && response
                .get("content")
                .is_none_or(|c| c.as_object().is_none_or(Map::is_empty))
        {
            response["content"] = problem_content();
        }
        if limited && status != "429" {
            let headers = response
                .as_object_mut()
                .expect("a response")
                .entry("headers")
                .or_insert_with(|| json!({}));
            headers
                .as_object_mut()
                .expect("headers")
                .extend(rate_limit_headers());
        }
    }
    responses.entry("401").or_insert_with(|| {
        json!({"description": "The API key is missing (and this endpoint needs one) or not valid: malformed, unknown or revoked", "content": problem_content()})
    });
    if limited {
        let mut headers = rate_limit_headers();
        headers.insert("Retry-After".into(), json!({"description": "Seconds to wait before the next request", "schema": {"type": "integer", "format": "int32", "minimum": 1}}));
        responses.entry("429").or_insert_with(|| json!({"description": "The key (or, without a key, the client address) is over its rate limit", "headers": headers, "content": problem_content()}));
    }
    responses
        .entry("default")
        .or_insert_with(|| json!({"description": "Any other error", "content": problem_content()}));
}

fn problem_content() -> Value {
    json!({PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}})
}

/// The ModI rate-limit headers, on every answer of a rate-limited path.
fn rate_limit_headers() -> Map<String, Value> {
    let header = |description: &str| json!({"description": description, "schema": {"type": "integer", "format": "int32", "minimum": 0}});
    let mut headers = Map::new();
    headers.insert(
        "X-RateLimit-Limit".into(),
        header("Requests allowed per minute, sustained"),
    );
    headers.insert(
        "X-RateLimit-Remaining".into(),
        header("Requests left in the current burst"),
    );
    headers.insert(
        "X-RateLimit-Reset".into(),
        header("Seconds until one more request is allowed"),
    );
    headers
}
