//! Plans kept under `<data_dir>/plans/<id>.json`: the request with every default filled in, the
//! inputs' counts and the versions of the tables they were read from, and the result, so a plan
//! can be reproduced (same request over the same versions) and compared with later ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::problem::PlanError;
use super::scenario::{self, Inputs, PlanRequest, ResolvedRequest};
use super::{PlanResult, plan};
use crate::service::Service;

/// A plan as kept and as answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub request: ResolvedRequest,
    pub inputs: Inputs,
    pub result: PlanResult,
}

/// What a list of plans shows of each.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanSummary {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub scenario: String,
    pub demand: String,
    pub radius_m: f64,
    #[schema(format = Int32)]
    pub k: usize,
    pub covered_persons: f64,
    pub covered_share: f64,
    pub method: String,
    pub optimal: bool,
}

impl SavedPlan {
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            id: self.id.clone(),
            created_at: self.created_at,
            scenario: self.request.scenario.clone(),
            demand: self.request.demand.clone(),
            radius_m: self.request.radius_m,
            k: self.request.k,
            covered_persons: self.result.covered.persons,
            covered_share: self.result.covered.share_of_total,
            method: format!("{:?}", self.result.solver.method).to_lowercase(),
            optimal: self.result.solver.optimal,
        }
    }
}

/// The folder of kept plans.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("plans")
}

/// Resolve a request against the configured scenarios, read its inputs, solve, and keep the plan.
pub async fn run(service: &Arc<Service>, request: &PlanRequest) -> Result<SavedPlan, PlanError> {
    let scenarios = scenario::load_dir(&service.config.base_dir.join(scenario::PLANS_DIR))?;
    let (named, resolved) = request.resolve(&scenarios)?;
    let (instance, inputs) = scenario::instance(service, &named, &resolved).await?;
    let curve_max = resolved.curve_max;
    let time_limit = Duration::from_millis(resolved.time_limit_ms);
    let result = tokio::task::spawn_blocking(move || plan(&instance, curve_max, time_limit))
        .await
        .map_err(|e| PlanError::Solver(format!("the solver stopped: {e}")))??;
    let created_at = Utc::now();
    let id = format!(
        "{}-{}",
        created_at.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let saved = SavedPlan {
        id,
        created_at,
        request: resolved,
        inputs,
        result,
    };
    save(&service.config.data_dir(), &saved)?;
    Ok(saved)
}

/// Write a plan (a temporary file, then renamed: a plan is complete or absent).
pub fn save(data_dir: &Path, plan: &SavedPlan) -> Result<(), PlanError> {
    let dir = dir(data_dir);
    let failed = |e: std::io::Error| {
        PlanError::Solver(format!("cannot keep the plan in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let path = dir.join(format!("{}.json", plan.id));
    let temporary = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(plan)
        .map_err(|e| PlanError::Solver(format!("cannot encode the plan: {e}")))?;
    std::fs::write(&temporary, body).map_err(failed)?;
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(())
}

/// A kept plan by id.
pub fn read(data_dir: &Path, id: &str) -> Result<SavedPlan, PlanError> {
    let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let path = dir(data_dir).join(format!("{id}.json"));
    if !valid || !path.is_file() {
        return Err(PlanError::NotFound(format!(
            "no plan `{id}`; GET /api/v1/plans lists them"
        )));
    }
    let text =
        std::fs::read(&path).map_err(|e| PlanError::Solver(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| PlanError::Solver(format!("{}: {e}", path.display())))
}

/// Every kept plan, newest first; a file that cannot be read is skipped with a warning.
pub fn list(data_dir: &Path) -> Vec<PlanSummary> {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return Vec::new();
    };
    let mut plans: Vec<PlanSummary> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|path| {
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_slice::<SavedPlan>(&t).map_err(|e| e.to_string()));
            match read {
                Ok(plan) => Some(plan.summary()),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "cannot read a kept plan");
                    None
                }
            }
        })
        .collect();
    plans.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    plans
}
