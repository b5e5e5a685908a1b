//! The solvers: the maximal covering location problem as a mixed-integer programme (good_lp over
//! microlp, pure Rust), and the greedy heuristic that stands in when the programme is not solved
//! within the time limit. Both choose `k` new sites beside the open ones; the capacitated variant
//! lets each site serve at most its capacity, persons split between sites as a flow.
//!
//! Only what the new sites can change goes into the programme: points already covered by an open
//! site, points no candidate reaches, points of weight 0 and candidates that reach none of the
//! rest are left out (uncapacitated). The bound is the programme's own (its best bound when the
//! time ran out) or, for greedy alone, greedy's guarantee: a monotone submodular coverage, so
//! greedy has at least (1 − 1/e) of the best gain over the open sites.

use std::time::Duration;

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution as _, SolutionStatus, SolverModel,
    Variable, WithTimeLimit, microlp, variable,
};
use serde::{Deserialize, Serialize};

use super::problem::{Coverage, PlanError};

/// How a solution was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The mixed-integer programme, solved to proven optimality or stopped at the time limit.
    Exact,
    /// The greedy heuristic (the programme found nothing better within the time limit).
    Greedy,
}

/// A set of new sites and what it covers, open sites included.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Indices into the candidates, in the order they were chosen (greedy) or by index (exact).
    pub chosen: Vec<usize>,
    /// Weight covered by the open and the chosen sites.
    pub covered: f64,
    /// A proven upper bound on the weight any `k` new sites could cover (with the open ones).
    pub bound: f64,
    pub method: Method,
    pub optimal: bool,
    /// Persons of each demand point served (capacitated), or its weight when covered.
    pub served: Vec<f64>,
    /// Branch-and-bound nodes of the programme (0 when it was not needed).
    pub nodes: u64,
}

impl Solution {
    /// Relative optimality gap: (bound − covered) / bound; 0 when proven optimal.
    pub fn gap(&self) -> f64 {
        if self.optimal || self.bound <= 0.0 {
            0.0
        } else {
            ((self.bound - self.covered) / self.bound).max(0.0)
        }
    }
}

/// Relative tolerance under which two covered weights are the same.
const TOLERANCE: f64 = 1e-9;

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// The value of a set of new sites: the covered weight (uncapacitated) or the persons served
/// (capacitated, a maximum flow), and the persons served per point.
pub fn evaluate(coverage: &Coverage, chosen: &[usize], capacitated: bool) -> (f64, Vec<f64>) {
    if capacitated {
        return max_flow_served(coverage, chosen);
    }
    let mut covered = coverage.covered_by_open();
    for &j in chosen {
        for &i in &coverage.by_candidate[j] {
            covered[i] = true;
        }
    }
    let served: Vec<f64> = covered
        .iter()
        .zip(&coverage.weights)
        .map(|(c, w)| if *c { *w } else { 0.0 })
        .collect();
    (served.iter().sum(), served)
}

/// The greedy heuristic: `k` times, the candidate that adds the most (ties: the lower index).
pub fn greedy(coverage: &Coverage, k: usize, capacitated: bool) -> Solution {
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let (mut value, _) = evaluate(coverage, &chosen, capacitated);
    let base = value;
    let candidates = coverage.by_candidate.len();
    for _ in 0..k.min(candidates) {
        let mut best: Option<(usize, f64)> = None;
        let rest: Vec<usize> = (0..candidates).filter(|j| !chosen.contains(j)).collect();
        for j in rest {
            chosen.push(j);
            let (with, _) = evaluate(coverage, &chosen, capacitated);
            chosen.pop();
            if best.is_none_or(|(_, b)| with > b && !same(with, b)) {
                best = Some((j, with));
            }
        }
        let (j, with) = best.expect("fewer chosen than candidates");
        chosen.push(j);
        value = with;
    }
    let (covered, served) = evaluate(coverage, &chosen, capacitated);
    debug_assert!(same(covered, value));
    // Greedy's guarantee on the gain over the open sites, and no more than what is coverable.
    let gain_bound = (covered - base) / (1.0 - (-1.0f64).exp());
    let bound = (base + gain_bound).min(upper_limit(coverage, capacitated));
    let optimal = same(covered, bound) || covered >= bound;
    Solution {
        chosen,
        covered,
        bound: bound.max(covered),
        method: Method::Greedy,
        optimal,
        served,
        nodes: 0,
    }
}

/// What no choice can exceed: all the weight the open sites and every candidate could reach
/// (capacitated: what every site together could serve).
fn upper_limit(coverage: &Coverage, capacitated: bool) -> f64 {
    if capacitated {
        let all: Vec<usize> = (0..coverage.by_candidate.len()).collect();
        max_flow_served(coverage, &all).0
    } else {
        coverage.coverable_weight()
    }
}

/// The exact solve, with the greedy heuristic when the programme finds nothing better within
/// `time_limit`.
pub fn solve(
    coverage: &Coverage,
    k: usize,
    capacitated: bool,
    time_limit: Duration,
) -> Result<Solution, PlanError> {
    let greedy = greedy(coverage, k, capacitated);
    let exact = if capacitated {
        mip_capacitated(coverage, k, time_limit)?
    } else {
        mip(coverage, k, time_limit)?
    };
    let Some(exact) = exact else {
        return Ok(greedy);
    };
    if exact.optimal {
        return Ok(exact);
    }
    // Stopped by the time limit: the better of the two, under the tighter bound. Greedy may
    // still be proven optimal by reaching the bound (everything coverable covered).
    let bound = exact.bound.min(greedy.bound);
    let better = if greedy.covered > exact.covered && !same(greedy.covered, exact.covered) {
        greedy
    } else {
        exact
    };
    let optimal = better.covered >= bound || same(better.covered, bound);
    Ok(Solution {
        bound: bound.max(better.covered),
        optimal,
        ..better
    })
}

/// What the programme answered: a solution (proven optimal or not), or nothing in time.
fn mip(coverage: &Coverage, k: usize, time_limit: Duration) -> Result<Option<Solution>, PlanError> {
    let open = coverage.covered_by_open();
    // The points the new sites can still add, and the candidates that reach any of them.
    let points: Vec<usize> = (0..coverage.weights.len())
        .filter(|&i| !open[i] && coverage.coverable[i] && coverage.weights[i] > 0.0)
        .collect();
    let mut index_of_point = vec![usize::MAX; coverage.weights.len()];
    for (n, &i) in points.iter().enumerate() {
        index_of_point[i] = n;
    }
    let useful: Vec<usize> = (0..coverage.by_candidate.len())
        .filter(|&j| {
            coverage.by_candidate[j]
                .iter()
                .any(|&i| index_of_point[i] != usize::MAX)
        })
        .collect();
    if useful.len() <= k {
        let (covered, served) = evaluate(coverage, &useful, false);
        return Ok(Some(Solution {
            chosen: useful,
            covered,
            bound: covered,
            method: Method::Exact,
            optimal: true,
            served,
            nodes: 0,
        }));
    }
    let mut variables = ProblemVariables::new();
    let x: Vec<Variable> = useful
        .iter()
        .map(|_| variables.add(variable().binary()))
        .collect();
    let y: Vec<Variable> = points
        .iter()
        .map(|_| variables.add(variable().min(0.0).max(1.0)))
        .collect();
    let objective: Expression = points
        .iter()
        .zip(&y)
        .map(|(&i, &y)| coverage.weights[i] * y)
        .sum();
    let mut model = variables
        .maximise(objective)
        .using(microlp)
        .with_time_limit(time_limit.as_secs_f64());
    let mut reaching: Vec<Expression> = vec![Expression::from(0.0); points.len()];
    for (&j, &x) in useful.iter().zip(&x) {
        for &i in &coverage.by_candidate[j] {
            if index_of_point[i] != usize::MAX {
                reaching[index_of_point[i]] += x;
            }
        }
    }
    for (reach, &y) in reaching.into_iter().zip(&y) {
        model.add_constraint(Expression::from(y).leq(reach));
    }
    let count: Expression = x.iter().copied().map(Expression::from).sum();
    model.add_constraint(count.leq(k as f64));
    let answer = match model.solve() {
        Ok(answer) => answer,
        Err(ResolutionError::Other(message)) if message.contains("Time limit") => return Ok(None),
        Err(e) => {
            return Err(PlanError::Solver(format!(
                "the mixed-integer programme ({} candidates, {} demand points) failed: {e}",
                useful.len(),
                points.len()
            )));
        }
    };
    let optimal = matches!(answer.status(), SolutionStatus::Optimal);
    let chosen: Vec<usize> = useful
        .iter()
        .zip(&x)
        .filter(|&(_, &x)| answer.value(x) > 0.5)
        .map(|(&j, _)| j)
        .collect();
    let stats = answer.into_inner().stats();
    let (covered, served) = evaluate(coverage, &chosen, false);
    let base = coverage.covered(&[]);
    let bound = match (optimal, stats.best_bound) {
        (true, _) => covered,
        (false, Some(gain)) => base + gain,
        (false, None) => coverage.coverable_weight(),
    };
    Ok(Some(Solution {
        chosen,
        covered,
        bound: bound.max(covered),
        method: Method::Exact,
        optimal,
        served,
        nodes: stats.nodes_solved,
    }))
}

/// The capacitated programme: binary sites, and persons of point i served by site j (a flow)
/// within each site's capacity, which is 0 unless the site is chosen.
fn mip_capacitated(
    coverage: &Coverage,
    k: usize,
    time_limit: Duration,
) -> Result<Option<Solution>, PlanError> {
    let points = coverage.weights.len();
    let mut variables = ProblemVariables::new();
    let x: Vec<Variable> = (0..coverage.by_candidate.len())
        .map(|_| variables.add(variable().binary()))
        .collect();
    // (site's own reach, its capacity, Some(x) for a candidate) for every site.
    let sites: Vec<(&Vec<usize>, Option<f64>, Option<Variable>)> = coverage
        .by_open
        .iter()
        .zip(&coverage.open_capacity)
        .map(|(reach, cap)| (reach, *cap, None))
        .chain(
            coverage
                .by_candidate
                .iter()
                .zip(&coverage.candidate_capacity)
                .zip(&x)
                .map(|((reach, cap), &x)| (reach, *cap, Some(x))),
        )
        .collect();
    let mut served_by_point: Vec<Expression> = vec![Expression::from(0.0); points];
    let mut objective = Expression::from(0.0);
    let mut site_rows: Vec<(Expression, f64, Option<Variable>)> = Vec::new();
    for (reach, capacity, x) in &sites {
        let reachable: f64 = reach.iter().map(|&i| coverage.weights[i]).sum();
        let limit = capacity.map_or(reachable, |c| c.min(reachable));
        let mut total = Expression::from(0.0);
        for &i in reach.iter() {
            if coverage.weights[i] <= 0.0 {
                continue;
            }
            let z = variables.add(variable().min(0.0).max(coverage.weights[i]));
            served_by_point[i] += z;
            objective += z;
            total += z;
        }
        site_rows.push((total, limit, *x));
    }
    let mut model = variables
        .maximise(objective)
        .using(microlp)
        .with_time_limit(time_limit.as_secs_f64());
    for (i, served) in served_by_point.into_iter().enumerate() {
        model.add_constraint(served.leq(coverage.weights[i]));
    }
    for (total, limit, x) in site_rows {
        match x {
            Some(x) => model.add_constraint(total.leq(limit * x)),
            None => model.add_constraint(total.leq(limit)),
        };
    }
    let count: Expression = x.iter().copied().map(Expression::from).sum();
    model.add_constraint(count.leq(k as f64));
    let answer = match model.solve() {
        Ok(answer) => answer,
        Err(ResolutionError::Other(message)) if message.contains("Time limit") => return Ok(None),
        Err(e) => {
            return Err(PlanError::Solver(format!(
                "the capacitated mixed-integer programme ({} candidates, {points} demand points) failed: {e}",
                x.len()
            )));
        }
    };
    let optimal = matches!(answer.status(), SolutionStatus::Optimal);
    let chosen: Vec<usize> = x
        .iter()
        .enumerate()
        .filter(|&(_, &x)| answer.value(x) > 0.5)
        .map(|(j, _)| j)
        .collect();
    let stats = answer.into_inner().stats();
    // The flow of the chosen sites, computed again exactly rather than read from the LP.
    let (covered, served) = max_flow_served(coverage, &chosen);
    let bound = match (optimal, stats.best_bound) {
        (true, _) => covered,
        (false, Some(bound)) => bound,
        (false, None) => upper_limit(coverage, true),
    };
    Ok(Some(Solution {
        chosen,
        covered,
        bound: bound.max(covered),
        method: Method::Exact,
        optimal,
        served,
        nodes: stats.nodes_solved,
    }))
}

/// The persons the open and `chosen` sites can serve within their capacities, as a maximum flow
/// (source → site, capacity; site → point it covers; point → sink, weight), and per point.
pub fn max_flow_served(coverage: &Coverage, chosen: &[usize]) -> (f64, Vec<f64>) {
    let points = coverage.weights.len();
    let sites: Vec<(&Vec<usize>, Option<f64>)> = coverage
        .by_open
        .iter()
        .zip(&coverage.open_capacity)
        .map(|(r, c)| (r, *c))
        .chain(
            chosen
                .iter()
                .map(|&j| (&coverage.by_candidate[j], coverage.candidate_capacity[j])),
        )
        .collect();
    // Nodes: 0 source, 1 sink, 2.. sites, then points.
    let mut graph = FlowGraph::new(2 + sites.len() + points);
    let point_node = |i: usize| 2 + sites.len() + i;
    for (s, (reach, capacity)) in sites.iter().enumerate() {
        let reachable: f64 = reach.iter().map(|&i| coverage.weights[i]).sum();
        graph.add_edge(0, 2 + s, capacity.map_or(reachable, |c| c.min(reachable)));
        for &i in reach.iter() {
            graph.add_edge(2 + s, point_node(i), coverage.weights[i]);
        }
    }
    let sink_edges: Vec<usize> = (0..points)
        .map(|i| graph.add_edge(point_node(i), 1, coverage.weights[i]))
        .collect();
    let total = graph.max_flow(0, 1);
    let served = sink_edges.iter().map(|&e| graph.flow(e)).collect();
    (total, served)
}

/// A small flow network with real capacities (Edmonds–Karp: shortest augmenting paths).
struct FlowGraph {
    /// (to, capacity left, index of the reverse edge) per edge.
    edges: Vec<(usize, f64, usize)>,
    original: Vec<f64>,
    adjacent: Vec<Vec<usize>>,
}

impl FlowGraph {
    fn new(nodes: usize) -> Self {
        Self {
            edges: Vec::new(),
            original: Vec::new(),
            adjacent: vec![Vec::new(); nodes],
        }
    }

    fn add_edge(&mut self, from: usize, to: usize, capacity: f64) -> usize {
        let e = self.edges.len();
        self.edges.push((to, capacity, e + 1));
        self.edges.push((from, 0.0, e));
        self.original.extend([capacity, 0.0]);
        self.adjacent[from].push(e);
        self.adjacent[to].push(e + 1);
        e
    }

    fn flow(&self, edge: usize) -> f64 {
        self.original[edge] - self.edges[edge].1
    }

    fn max_flow(&mut self, source: usize, sink: usize) -> f64 {
        const EPSILON: f64 = 1e-9;
        let mut total = 0.0;
        loop {
            let mut through = vec![usize::MAX; self.adjacent.len()];
            let mut queue = std::collections::VecDeque::from([source]);
            let mut seen = vec![false; self.adjacent.len()];
            seen[source] = true;
            while let Some(node) = queue.pop_front() {
                for &e in &self.adjacent[node] {
                    let (to, left, _) = self.edges[e];
                    if left > EPSILON && !seen[to] {
                        seen[to] = true;
                        through[to] = e;
                        queue.push_back(to);
                    }
                }
            }
            if !seen[sink] {
                return total;
            }
            let mut amount = f64::INFINITY;
            let mut node = sink;
            while node != source {
                let e = through[node];
                amount = amount.min(self.edges[e].1);
                node = self.edges[self.edges[e].2].0;
            }
            let mut node = sink;
            while node != source {
                let e = through[node];
                let reverse = self.edges[e].2;
                self.edges[e].1 -= amount;
                self.edges[reverse].1 += amount;
                node = self.edges[reverse].0;
            }
            total += amount;
        }
    }
}

#[cfg(test)]
mod tests;
