//! The solvers against brute force on small random instances (seeded), and greedy within its
//! guarantee.

use super::*;
use crate::plan::problem::{DemandPoint, Instance, Site};

/// SplitMix64: the same instances on every machine.
struct Seeded(u64);

impl Seeded {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n - 1)
    }
}

/// Points scattered over a few km around Bologna, so that an 800 m radius covers some, not all.
fn random_instance(seed: u64, capacitated: bool) -> Instance {
    let mut rng = Seeded(seed);
    let point = |rng: &mut Seeded| (11.30 + rng.unit() * 0.08, 44.47 + rng.unit() * 0.05);
    let demand = (0..6 + rng.below(10))
        .map(|i| {
            let (lon, lat) = point(&mut rng);
            // Some weights 0, as areas without data weigh.
            let weight = if rng.unit() < 0.15 {
                0.0
            } else {
                (rng.unit() * 500.0).round()
            };
            DemandPoint {
                id: format!("d{i}"),
                name: format!("d{i}"),
                lon,
                lat,
                weight,
            }
        })
        .collect();
    let site = |rng: &mut Seeded, id: String| {
        let (lon, lat) = point(rng);
        // Some sites unlimited, the others with capacities that often bind.
        let capacity =
            (capacitated && rng.unit() < 0.6).then(|| (100.0 + rng.unit() * 500.0).round());
        Site {
            id: id.clone(),
            name: id,
            kind: "test".into(),
            lon,
            lat,
            capacity,
        }
    };
    let candidates: Vec<Site> = (0..4 + rng.below(7))
        .map(|j| site(&mut rng, format!("c{j}")))
        .collect();
    let open = (0..rng.below(3))
        .map(|j| site(&mut rng, format!("o{j}")))
        .collect();
    let k = 1 + rng.below(candidates.len().min(4));
    Instance {
        demand,
        candidates,
        open,
        radius_m: 1500.0 + rng.unit() * 1500.0,
        k,
        capacitated,
    }
}

/// Every subset of exactly `k` candidates: the best value.
fn brute_force(coverage: &Coverage, k: usize, capacitated: bool) -> f64 {
    let n = coverage.by_candidate.len();
    let mut best: f64 = 0.0;
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let chosen: Vec<usize> = (0..n).filter(|j| mask & (1 << j) != 0).collect();
        best = best.max(evaluate(coverage, &chosen, capacitated).0);
    }
    best
}

fn check_against_brute_force(capacitated: bool) {
    let mut nontrivial = 0;
    let mut binding = 0;
    for seed in 0..150 {
        let instance = random_instance(seed, capacitated);
        instance.validate().unwrap();
        let coverage = instance.coverage();
        let best = brute_force(&coverage, instance.k, capacitated);
        let solution = solve(&coverage, instance.k, capacitated, Duration::from_secs(30)).unwrap();
        assert!(solution.optimal, "seed {seed}: not proven optimal");
        assert!(
            same(solution.covered, best),
            "seed {seed}: solver {} ≠ brute force {best} (chosen {:?})",
            solution.covered,
            solution.chosen
        );
        assert!(solution.chosen.len() <= instance.k, "seed {seed}");
        let (recomputed, _) = evaluate(&coverage, &solution.chosen, capacitated);
        assert!(same(recomputed, solution.covered), "seed {seed}");
        assert_eq!(solution.gap(), 0.0);

        let greedy = greedy(&coverage, instance.k, capacitated);
        let base = evaluate(&coverage, &[], capacitated).0;
        let guarantee = 1.0 - (-1.0f64).exp();
        assert!(
            greedy.covered - base >= guarantee * (best - base) - 1e-6,
            "seed {seed}: greedy gains {} over the open sites, less than (1 − 1/e) of the best gain {}",
            greedy.covered - base,
            best - base
        );
        assert!(greedy.covered <= best + 1e-6, "seed {seed}");
        assert!(
            greedy.bound >= best - 1e-6,
            "seed {seed}: greedy's bound {} is below the optimum {best}",
            greedy.bound
        );
        if greedy.covered < best - 1e-6 {
            nontrivial += 1;
        }
        if capacitated && evaluate(&coverage, &solution.chosen, false).0 > solution.covered + 1e-6 {
            binding += 1;
        }
    }
    // Some instances must be ones where greedy is not optimal (and, capacitated, where the
    // capacities bind), or the test proves little.
    assert!(nontrivial > 0, "greedy was optimal on every instance");
    assert!(!capacitated || binding > 0, "no capacity was binding");
}

#[test]
fn exact_solver_equals_brute_force_and_greedy_is_within_its_guarantee() {
    check_against_brute_force(false);
}

#[test]
fn capacitated_solver_equals_brute_force_and_greedy_is_within_its_guarantee() {
    check_against_brute_force(true);
}

#[test]
fn max_flow_splits_persons_between_sites_within_capacities() {
    // Two points of 100 persons each; site 0 reaches both (capacity 120), site 1 only the
    // second (capacity 50): 120 + 50 = 170 can be served.
    let coverage = Coverage {
        weights: vec![100.0, 100.0],
        by_candidate: vec![vec![0, 1], vec![1]],
        by_open: vec![],
        coverable: vec![true, true],
        candidate_capacity: vec![Some(120.0), Some(50.0)],
        open_capacity: vec![],
    };
    let (total, served) = max_flow_served(&coverage, &[0, 1]);
    assert!(same(total, 170.0), "{total}");
    assert!(same(served[0] + served[1], 170.0));
    assert!(served[0] <= 100.0 + 1e-9 && served[1] <= 100.0 + 1e-9);
    let (alone, _) = max_flow_served(&coverage, &[1]);
    assert!(same(alone, 50.0));
}

#[test]
fn a_programme_stopped_by_its_time_limit_falls_back_to_greedy_with_a_bound() {
    // A larger instance and no time at all: the programme cannot answer, greedy does.
    let mut rng = Seeded(7);
    let demand: Vec<DemandPoint> = (0..200)
        .map(|i| DemandPoint {
            id: format!("d{i}"),
            name: format!("d{i}"),
            lon: 11.30 + rng.unit() * 0.1,
            lat: 44.45 + rng.unit() * 0.08,
            weight: 1.0 + (rng.unit() * 100.0).round(),
        })
        .collect();
    let candidates: Vec<Site> = (0..120)
        .map(|j| Site {
            id: format!("c{j}"),
            name: format!("c{j}"),
            kind: "test".into(),
            lon: 11.30 + rng.unit() * 0.1,
            lat: 44.45 + rng.unit() * 0.08,
            capacity: None,
        })
        .collect();
    let instance = Instance {
        demand,
        candidates,
        open: vec![],
        radius_m: 700.0,
        k: 10,
        capacitated: false,
    };
    let coverage = instance.coverage();
    let solution = solve(&coverage, 10, false, Duration::ZERO).unwrap();
    let greedy = greedy(&coverage, 10, false);
    assert!(!solution.chosen.is_empty() && solution.chosen.len() <= 10);
    assert!(solution.covered >= greedy.covered - 1e-9);
    if solution.method == Method::Greedy {
        assert!(!solution.optimal);
        assert!(solution.gap() > 0.0 && solution.gap() < 1.0 / std::f64::consts::E + 1e-9);
    }
    assert!(solution.bound >= solution.covered);
}
