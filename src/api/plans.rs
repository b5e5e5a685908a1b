//! `/api/v1/plans`: the placement planner (see `crate::plan`). A POST solves a scenario and keeps
//! the plan; GETs list and read kept plans. JSON, GeoJSON or CSV by `?format=` or `Accept`.
//! Plans are computed from raw counts of persons, so they need an analyst (or admin) key, as SQL
//! does; the demo's anonymous role is analyst.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::auth::Role;
use crate::plan::PlanError;
use crate::plan::output::{PlanFormat, encode};
use crate::plan::saved::{self, PlanSummary, SavedPlan};
use crate::plan::scenario::{self, PlanRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_plan, list_plans))
        .routes(routes!(read_plan))
        .routes(routes!(plan_scenarios))
}

/// The formats of a plan, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Never built: it only names the values in the OpenAPI document.
pub enum PlanFormatName {
    Json,
    Geojson,
    Csv,
}

#[derive(Debug, Deserialize)]
struct FormatParams {
    /// `json` (default), `geojson` or `csv`.
    format: Option<String>,
}

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Invalid { .. } => ApiError::BadRequest(error.to_string()),
            PlanError::NotFound(detail) => ApiError::NotFound(detail),
            PlanError::Source(detail) => ApiError::Configuration(detail),
            PlanError::Solver(detail) => ApiError::Internal(detail),
        }
    }
}

/// `?format=` wins; else the first media type of `Accept` (by q-value) a plan can be given in.
fn negotiate(format: Option<&str>, headers: &HeaderMap) -> Result<PlanFormat, ApiError> {
    if let Some(name) = format {
        return PlanFormat::from_name(name).ok_or_else(|| {
            ApiError::NotAcceptable(format!(
                "format `{name}` is not available for a plan; use one of {}",
                PlanFormat::NAMES
            ))
        });
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(PlanFormat::Json);
    };
    let mut ranges: Vec<(f32, String)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (!media.is_empty()).then_some((q, media))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .iter()
        .filter(|(q, _)| *q > 0.0)
        .find_map(|(_, media)| PlanFormat::from_media_type(media))
        .ok_or_else(|| {
            ApiError::NotAcceptable(format!(
                "cannot answer `Accept: {accept}` with a plan; available: application/json, application/geo+json, text/csv (or ?format=json|geojson|csv)"
            ))
        })
}

fn respond(plan: &SavedPlan, format: PlanFormat, status: StatusCode) -> Result<Response, ApiError> {
    let body = encode(plan, format).map_err(ApiError::Internal)?;
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let location = format!("/api/v1/plans/{}", plan.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    if format != PlanFormat::Json {
        let disposition = format!(
            "attachment; filename=\"piano-{}.{}\"",
            plan.id,
            format.extension()
        );
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(response)
}

/// Solve a placement scenario and keep the plan: the chosen sites, the demand they cover, the
/// coverage curve for 1..k sites, the coverage of the sites already open, and how the solution
/// was found (exact programme, proven optimal, or greedy with its gap).
#[utoipa::path(post, path = "/api/v1/plans", tag = "plans",
    request_body(content = PlanRequest, description = "The scenario and what to change in it; `{}` solves the default scenario", content_type = "application/json"),
    params(("format" = inline(Option<PlanFormatName>), Query, description = "`json` (default), `geojson` or `csv`; or an `Accept` header")),
    responses(
        (status = 201, description = "The plan, kept; `Location` names it", headers(("Location" = String, description = "The kept plan")),
         content((serde_json::Value = "application/json"), (serde_json::Value = "application/geo+json"), (String = "text/csv"))),
        (status = 400, description = "A field of the request is wrong; the detail names it"),
        (status = 403, description = "A partner key: plans need an analyst or admin key"),
        (status = 404, description = "No scenario is configured"),
        (status = 406, description = "A format other than json, geojson or csv"),
    ))]
async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<FormatParams>,
    headers: HeaderMap,
    body: Result<axum::Json<PlanRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    let format = negotiate(params.format.as_deref(), &headers)?;
    let axum::Json(request) = body.map_err(|rejection| match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the plan request as JSON (Content-Type: application/json)".into(),
        ),
        other => ApiError::BadRequest(format!("the plan request: {}", other.body_text())),
    })?;
    let plan = saved::run(&state.service, &request).await?;
    tracing::info!(plan = %plan.id, scenario = %plan.request.scenario, k = plan.request.k,
        covered = plan.result.covered.persons, optimal = plan.result.solver.optimal, "plan solved");
    respond(&plan, format, StatusCode::CREATED)
}

/// The kept plans, newest first.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans",
    responses(
        (status = 200, description = "A summary of each kept plan", body = Vec<PlanSummary>),
        (status = 403, description = "A partner key: plans need an analyst or admin key"),
    ))]
async fn list_plans(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    let data_dir = state.service.config.data_dir();
    let plans = tokio::task::spawn_blocking(move || saved::list(&data_dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(axum::Json(plans).into_response())
}

/// A kept plan, as it was answered when it was made, with its inputs and data versions.
#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "plans",
    params(
        ("id" = String, Path, description = "The plan's id, as POST answered it"),
        ("format" = inline(Option<PlanFormatName>), Query, description = "`json` (default), `geojson` or `csv`; or an `Accept` header"),
    ),
    responses(
        (status = 200, description = "The plan",
         content((serde_json::Value = "application/json"), (serde_json::Value = "application/geo+json"), (String = "text/csv"))),
        (status = 403, description = "A partner key: plans need an analyst or admin key"),
        (status = 404, description = "No such plan"),
        (status = 406, description = "A format other than json, geojson or csv"),
    ))]
async fn read_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<FormatParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    let format = negotiate(params.format.as_deref(), &headers)?;
    let data_dir = state.service.config.data_dir();
    let plan = tokio::task::spawn_blocking(move || saved::read(&data_dir, &id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    respond(&plan, format, StatusCode::OK)
}

/// The configured scenarios: their defaults, demand indicators and radii, for the dashboard's
/// "Pianifica" view.
#[utoipa::path(get, path = "/api/v1/plans/scenarios", tag = "plans",
    responses(
        (status = 200, description = "Each scenario (plans/*.toml): name, title, k, radius_m, radius_options_m, demand weights", body = Vec<serde_json::Value>),
        (status = 403, description = "A partner key: plans need an analyst or admin key"),
    ))]
async fn plan_scenarios(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    let dir = state.service.config.base_dir.join(scenario::PLANS_DIR);
    let scenarios = scenario::load_dir(&dir)?;
    Ok(axum::Json(scenarios).into_response())
}
