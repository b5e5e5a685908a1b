//! Operations: /healthz (alive), /readyz (initial load done), /status (per table and view),
//! /metrics (Prometheus text format).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::store::TableState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(status))
        .routes(routes!(metrics_text))
}

/// The process-wide Prometheus recorder, installed once however many apps a process builds.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Alive: answers as long as the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = serde_json::Value, content_type = "application/json")))]
async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// Ready once every table has a version to serve: loaded, or restored from disk.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Every table has a version to serve", body = serde_json::Value, content_type = "application/json"),
    (status = 503, description = "Some tables are still loading, some have no version to serve (their only load failed), or the query pool does not answer: a problem (`urn:cruscotto:problem:not-ready`) with `ready`, `initial_load_done`, `loading`, `failed`, `query_pool` and `running_queries` as for 200", body = serde_json::Value, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let service = &state.service;
    let statuses = service.store.statuses();
    let loading: Vec<String> = statuses
        .iter()
        .filter(|s| s.state == TableState::Loading)
        .map(|s| format!("{}.{}", s.schema, s.table))
        .collect();
    let failed: Vec<String> = statuses
        .iter()
        .filter(|s| s.state == TableState::Failed)
        .map(|s| format!("{}.{}", s.schema, s.table))
        .collect();
    // Loaded data is of no use if no query can run: a saturated query pool makes the instance
    // unready, so a load balancer sends requests elsewhere.
    let query_pool = service.engine.pool_health().await;
    let running_queries = service.engine.running_queries();
    // A failed table has no version at all (a stale one still serves its last good version):
    // an instance that would answer "table not found" is not ready.
    let initial_load_done = service.initial_load_done();
    let ready = initial_load_done && loading.is_empty() && failed.is_empty() && query_pool.is_ok();
    if ready {
        let body = json!({"ready": true, "initial_load_done": true, "loading": loading,
            "failed": failed, "query_pool": "ok", "running_queries": running_queries});
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    // Not ready is an error answer like any other (RFC 9457), with the status fields as members.
    let detail = if let Err(pool) = &query_pool {
        format!("the query pool does not answer: {pool}")
    } else if !loading.is_empty() {
        format!("still loading: {}", loading.join(", "))
    } else if !failed.is_empty() {
        format!(
            "no version to serve (the load failed; see /status): {}",
            failed.join(", ")
        )
    } else {
        "the first load of the sources is not finished".to_string()
    };
    let body = json!({
        "type": "urn:cruscotto:problem:not-ready",
        "title": "Not ready",
        "status": 503,
        "detail": detail,
        "ready": false,
        "initial_load_done": initial_load_done,
        "loading": loading,
        "failed": failed,
        "query_pool": query_pool.err().unwrap_or_else(|| "ok".into()),
        "running_queries": running_queries,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, super::error::PROBLEM_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// Per table: state (`fresh`, `stale`, `failed`, `loading`), rows, rejected records, last success,
/// last error; per saved query: whether it plans. Public.
#[utoipa::path(get, path = "/status", tag = "operations",
    responses((status = 200, description = "The state of every table and saved query", body = serde_json::Value, content_type = "application/json")))]
async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let service = &state.service;
    let now = Utc::now();
    let tables: Vec<serde_json::Value> = service
        .store
        .statuses()
        .into_iter()
        .map(|s| {
            let effective = s.effective_state(now);
            let mut value = serde_json::to_value(&s).unwrap_or_default();
            value["state"] = serde_json::to_value(effective).unwrap_or_default();
            value["stale"] = json!(matches!(effective, TableState::Stale | TableState::Failed));
            value["name"] = json!(format!("{}.{}", s.schema, s.table));
            value
        })
        .collect();
    let degraded = tables.iter().any(|t| t["stale"] == json!(true))
        || service.engine.views().iter().any(|v| !v.ok);
    axum::Json(json!({
        "service": "cruscotto",
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": service.started_at(),
        "status": if degraded { "degraded" } else { "ok" },
        "tables": tables,
        "views": service.engine.views(),
    }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let now = Utc::now();
    for s in state.service.store.statuses() {
        let labels = [("schema", s.schema.clone()), ("table", s.table.clone())];
        metrics::gauge!("cruscotto_table_rows", &labels).set(s.rows as f64);
        metrics::gauge!("cruscotto_table_rejected_records", &labels).set(s.rejected as f64);
        let stale = matches!(
            s.effective_state(now),
            TableState::Stale | TableState::Failed
        );
        metrics::gauge!("cruscotto_table_stale", &labels).set(if stale { 1.0 } else { 0.0 });
        if let Some(success) = s.last_success {
            metrics::gauge!("cruscotto_table_last_success_timestamp_seconds", &labels)
                .set(success.timestamp() as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
