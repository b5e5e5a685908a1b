//! The placement planner: where to put `k` new facilitation points so that as much demand as
//! possible lies within a radius of one (the maximal covering location problem), beside the sites
//! already open. Solved exactly as a mixed-integer programme, with greedy as the fallback.
//!
//! - `problem.rs`: the inputs, their checks, great-circle coverage;
//! - `solve.rs`: the programme, greedy, the capacitated variant;
//! - `scenario.rs`: scenarios as configuration (`plans/*.toml`), their inputs read by SQL;
//! - `saved.rs`: plans kept under `<data_dir>/plans/` with their inputs and data versions;
//! - `output.rs`: a plan as JSON, GeoJSON or CSV.

pub mod output;
pub mod problem;
pub mod saved;
pub mod scenario;
pub mod solve;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use problem::{DemandPoint, Instance, PlanError, Site};
pub use solve::Method;

/// Time the programme gets for one number of sites before greedy answers instead.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);

/// A chosen site, with what it adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChosenSite {
    /// 1 for the site that adds the most, then each next one given those before it.
    pub rank: usize,
    #[serde(flatten)]
    pub site: Site,
    /// Persons it adds to the coverage, given the open sites and the chosen sites ranked before it.
    pub adds: f64,
    /// Persons within the radius of it (covered by others too or not).
    pub within_radius: f64,
    /// The demand points within the radius.
    pub covers: Vec<String>,
}

/// A demand point and whether it is covered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemandOutcome {
    #[serde(flatten)]
    pub point: DemandPoint,
    /// `open` (by a site already open), `new` (only by a chosen site) or `none`.
    pub covered_by: String,
    /// Persons served: the weight when covered; in the capacitated variant, what the sites'
    /// capacities allow.
    pub served: f64,
}

/// Demand covered, in persons and shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Covered {
    pub persons: f64,
    /// Of the whole demand.
    pub share_of_total: f64,
    /// Of the demand that the open sites and all candidates together could cover.
    pub share_of_coverable: f64,
}

/// One point of the coverage curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub k: usize,
    pub persons: f64,
    pub share_of_total: f64,
    pub method: Method,
    pub optimal: bool,
    pub gap: f64,
}

/// How the solution was found and how good it is known to be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SolverReport {
    pub method: Method,
    /// Proven optimal: no `k` sites cover more.
    pub optimal: bool,
    /// (bound − covered) / bound; 0 when optimal.
    pub gap: f64,
    /// Persons no `k` new sites could exceed (with the open ones).
    pub bound: f64,
    /// Solver used for the programme.
    pub solver: String,
    /// Branch-and-bound nodes of the programme for `k`.
    pub nodes: u64,
    /// Time to solve `k` and the whole curve, milliseconds.
    pub solve_ms: f64,
    pub curve_ms: f64,
    pub time_limit_ms: u64,
}

/// What the planner answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResult {
    pub k: usize,
    pub radius_m: f64,
    pub capacitated: bool,
    pub total_demand: f64,
    pub coverable_demand: f64,
    pub covered: Covered,
    /// What the open sites alone cover, to compare.
    pub open_covered: Covered,
    pub chosen: Vec<ChosenSite>,
    pub open: Vec<Site>,
    pub demand: Vec<DemandOutcome>,
    /// Demand points of positive weight not (fully) served, most persons first.
    pub uncovered: Vec<DemandOutcome>,
    pub curve: Vec<CurvePoint>,
    pub solver: SolverReport,
}

/// Solve for `instance.k` and the curve for 1..=`curve_max` new sites.
pub fn plan(
    instance: &Instance,
    curve_max: usize,
    time_limit: Duration,
) -> Result<PlanResult, PlanError> {
    instance.validate()?;
    if curve_max > instance.candidates.len() {
        return Err(PlanError::invalid(
            "curve_max",
            format!(
                "a curve up to {curve_max} sites, but there are only {} candidate sites",
                instance.candidates.len()
            ),
        ));
    }
    let coverage = instance.coverage();
    let capacitated = instance.capacitated;
    let started = Instant::now();
    let solution = solve::solve(&coverage, instance.k, capacitated, time_limit)?;
    let solve_ms = started.elapsed().as_secs_f64() * 1e3;

    let total = coverage.total();
    let coverable = if capacitated {
        solve::max_flow_served(
            &coverage,
            &(0..instance.candidates.len()).collect::<Vec<_>>(),
        )
        .0
    } else {
        coverage.coverable_weight()
    };
    let shares = |persons: f64| Covered {
        persons,
        share_of_total: ratio(persons, total),
        share_of_coverable: ratio(persons, coverable),
    };

    let curve_started = Instant::now();
    let mut curve = Vec::with_capacity(curve_max);
    for k in 1..=curve_max {
        let point = if k == instance.k {
            solution.clone()
        } else {
            solve::solve(&coverage, k, capacitated, time_limit)?
        };
        curve.push(CurvePoint {
            k,
            persons: point.covered,
            share_of_total: ratio(point.covered, total),
            method: point.method,
            optimal: point.optimal,
            gap: point.gap(),
        });
    }
    let curve_ms = curve_started.elapsed().as_secs_f64() * 1e3;

    let chosen = ranked(instance, &coverage, &solution.chosen);
    let open_covered = solve::evaluate(&coverage, &[], capacitated).0;
    let by_open = coverage.covered_by_open();
    let demand: Vec<DemandOutcome> = instance
        .demand
        .iter()
        .enumerate()
        .map(|(i, point)| {
            let served = solution.served[i];
            let covered_by = if by_open[i] {
                "open"
            } else if chosen.iter().any(|c| c.covers.contains(&point.id)) {
                "new"
            } else {
                "none"
            };
            DemandOutcome {
                point: point.clone(),
                covered_by: covered_by.into(),
                served,
            }
        })
        .collect();
    let mut uncovered: Vec<DemandOutcome> = demand
        .iter()
        .filter(|d| d.point.weight > 0.0 && d.served < d.point.weight - 1e-9)
        .cloned()
        .collect();
    uncovered.sort_by(|a, b| {
        (b.point.weight - b.served)
            .total_cmp(&(a.point.weight - a.served))
            .then_with(|| a.point.id.cmp(&b.point.id))
    });
    Ok(PlanResult {
        k: instance.k,
        radius_m: instance.radius_m,
        capacitated,
        total_demand: total,
        coverable_demand: coverable,
        covered: shares(solution.covered),
        open_covered: shares(open_covered),
        chosen,
        open: instance.open.clone(),
        demand,
        uncovered,
        curve,
        solver: SolverReport {
            method: solution.method,
            optimal: solution.optimal,
            gap: solution.gap(),
            bound: solution.bound,
            solver: "good_lp + microlp (branch and bound)".into(),
            nodes: solution.nodes,
            solve_ms,
            curve_ms,
            time_limit_ms: time_limit.as_millis() as u64,
        },
    })
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// The chosen sites in the order each adds the most given those before it; when fewer than `k`
/// sites add anything, the rest are the candidates with the most persons within their radius
/// (ties: by id), so a plan always names `k` sites.
fn ranked(instance: &Instance, coverage: &problem::Coverage, chosen: &[usize]) -> Vec<ChosenSite> {
    let capacitated = instance.capacitated;
    let within = |j: usize| -> f64 {
        coverage.by_candidate[j]
            .iter()
            .map(|&i| coverage.weights[i])
            .sum()
    };
    let mut order: Vec<usize> = Vec::new();
    let mut adds: Vec<f64> = Vec::new();
    let mut rest: Vec<usize> = chosen.to_vec();
    let mut value = solve::evaluate(coverage, &[], capacitated).0;
    while !rest.is_empty() {
        let (position, with) = rest
            .iter()
            .enumerate()
            .map(|(p, &j)| {
                let mut set = order.clone();
                set.push(j);
                (p, solve::evaluate(coverage, &set, capacitated).0)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .expect("not empty");
        order.push(rest.remove(position));
        adds.push((with - value).max(0.0));
        value = with;
    }
    let mut padding: Vec<usize> = (0..instance.candidates.len())
        .filter(|j| !order.contains(j))
        .collect();
    padding.sort_by(|&a, &b| {
        within(b)
            .total_cmp(&within(a))
            .then_with(|| instance.candidates[a].id.cmp(&instance.candidates[b].id))
    });
    for j in padding
        .into_iter()
        .take(instance.k.saturating_sub(order.len()))
    {
        order.push(j);
        adds.push(0.0);
    }
    order
        .into_iter()
        .zip(adds)
        .enumerate()
        .map(|(n, (j, adds))| ChosenSite {
            rank: n + 1,
            site: instance.candidates[j].clone(),
            adds,
            within_radius: within(j),
            covers: coverage.by_candidate[j]
                .iter()
                .map(|&i| instance.demand[i].id.clone())
                .collect(),
        })
        .collect()
}
