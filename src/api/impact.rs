//! `/api/v1/impact`: did the interventions make a difference? The matched difference-in-differences
//! of `crate::impact` over the service logs, with its 95% interval, event study, the covered and
//! comparison areas, and a reading in Italian and English. Open like the dashboard it feeds: a key
//! is needed only where `[access] dashboard = "key"`. What it returns are differences of shares
//! averaged over several areas, never a count of persons.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use super::extract::Query;
use crate::config::DashboardAccess;
use crate::impact::{ImpactError, ImpactReport, ImpactRequest, Metric};
use crate::query::QueryError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(impact))
}

/// The query string of `GET /api/v1/impact`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImpactParams {
    /// Intervention ids, comma-separated, estimated together (default: every `apertura_punto`).
    #[param(example = "casa-khaoula-2023,villa-spada-2023")]
    interventions: Option<String>,
    /// Metres from a site to an area's centroid for the area to be covered (50–5000; default 800).
    #[param(example = 800)]
    radius: Option<f64>,
    /// `quota_online` (share of requests made online, default) or `accessi_spid_cie` (SPID/CIE
    /// logins per 1,000 adults a month).
    metric: Option<Metric>,
    /// Comparison areas matched to each covered area (1–10; default 3).
    #[param(minimum = 1, maximum = 10, value_type = Option<i32>)]
    matches: Option<usize>,
    /// Bootstrap replications (99–9999; default 999).
    #[param(minimum = 99, maximum = 9999, value_type = Option<i32>)]
    replications: Option<usize>,
    /// The bootstrap's seed (default 1): the same seed gives the same interval.
    seed: Option<u64>,
}

/// The estimated effect of interventions on the uptake of online services.
#[utoipa::path(get, path = "/api/v1/impact", tag = "dashboards",
    params(ImpactParams),
    responses(
        (status = 200, description = "The estimate with its 95% interval, the event study, the areas and a reading", body = ImpactReport),
        (status = 400, description = "A parameter out of range; the tables it reads do not run; or nothing to estimate (no area covered, no month before or after the start)"),
        (status = 404, description = "No such intervention"),
        (status = 422, description = "A query limit was reached while reading the tables"),
    ))]
async fn impact(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ImpactParams>,
) -> Result<axum::response::Response, ApiError> {
    if state.access.config.dashboard == DashboardAccess::Key && caller.0.is_none() {
        return Err(ApiError::Unauthorized(
            "the dashboard needs an API key in this installation".into(),
        ));
    }
    let defaults = ImpactRequest::default();
    let interventions = params.interventions.map(|list| {
        list.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    let request = ImpactRequest {
        interventions: interventions.filter(|l| !l.is_empty()),
        radius: params.radius.unwrap_or(defaults.radius),
        metric: params.metric.unwrap_or(defaults.metric),
        matches: params.matches.unwrap_or(defaults.matches),
        replications: params.replications.unwrap_or(defaults.replications),
        seed: params.seed.unwrap_or(defaults.seed),
    };
    let mut report = crate::impact::estimate(&state.service.engine, &request)
        .await
        .map_err(|e| match e {
            ImpactError::Query {
                what,
                source: source @ (QueryError::Invalid(_) | QueryError::Refused(_)),
            } => ApiError::BadRequest(format!("reading {what}: {source}")),
            ImpactError::Query { source, .. } => ApiError::Query(source),
            ImpactError::Request(m) => ApiError::BadRequest(m),
            ImpactError::UnknownIntervention(m) => ApiError::NotFound(m),
            ImpactError::NotEstimable(m) => ApiError::BadRequest(m),
            ImpactError::Data(m) => ApiError::Configuration(m),
        })?;
    report.simulated = state
        .service
        .store
        .statuses()
        .iter()
        .any(|s| s.simulated && s.schema == "service_logs");
    Ok(axum::Json(report).into_response())
}
