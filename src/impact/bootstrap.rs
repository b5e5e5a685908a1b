//! Confidence intervals by a block bootstrap over areas: each area's whole monthly series is one
//! block, so the correlation of an area's months with each other is kept. A replication draws the
//! covered areas with replacement among the covered ones and the comparison pool with replacement
//! among the pool (stratified: as many of each as there are), matches again and fits again; the
//! interval is the 2.5th–97.5th percentile of the replications. Seeded: the same data and seed
//! give the same interval on every machine.

use std::collections::BTreeMap;

use super::did::{Fit, Treated, Unit, fit};
use crate::simulate::rng::Rng;

/// An estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// The fit on the data and the bootstrap intervals of its estimate and event-study series.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub fit: Fit,
    pub att: Interval,
    /// Months from the start → (interval, treated areas observed that month).
    pub event: BTreeMap<i32, (Interval, usize)>,
    /// Replications that could be fitted (a draw may leave no usable treated area).
    pub replications: usize,
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics (R's
/// type 7, NumPy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of nothing");
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

fn percentile_interval(estimate: f64, mut draws: Vec<f64>, level: f64) -> Interval {
    if draws.is_empty() {
        return Interval {
            estimate,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    draws.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Interval {
        estimate,
        low: quantile(&draws, tail),
        high: quantile(&draws, 1.0 - tail),
    }
}

/// Fit, then bootstrap `replications` times with `seed`, for intervals at `level` (e.g. 0.95).
pub fn bootstrap(
    units: &[Unit],
    treated: &[Treated],
    pool: &[usize],
    k: usize,
    replications: usize,
    seed: u64,
    level: f64,
) -> Option<Bootstrapped> {
    let point = fit(units, treated, pool, k)?;
    let mut rng = Rng::fork(seed, 0xB007);
    let mut atts = Vec::with_capacity(replications);
    let mut events: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    for _ in 0..replications {
        let drawn_treated: Vec<Treated> = (0..treated.len())
            .map(|_| treated[rng.below(treated.len() as u64) as usize])
            .collect();
        let drawn_pool: Vec<usize> = (0..pool.len())
            .map(|_| pool[rng.below(pool.len() as u64) as usize])
            .collect();
        let Some(replicate) = fit(units, &drawn_treated, &drawn_pool, k) else {
            continue;
        };
        atts.push(replicate.att);
        for (e, (value, _)) in replicate.event {
            events.entry(e).or_default().push(value);
        }
    }
    let fitted = atts.len();
    let att = percentile_interval(point.att, atts, level);
    let event = point
        .event
        .iter()
        .map(|(&e, &(value, n))| {
            let draws = events.remove(&e).unwrap_or_default();
            (e, (percentile_interval(value, draws, level), n))
        })
        .collect();
    Some(Bootstrapped {
        fit: point,
        att,
        event,
        replications: fitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(series: &[f64]) -> Unit {
        Unit {
            series: series.iter().map(|&v| Some(v)).collect(),
            needs: Vec::new(),
            weight: 1.0,
        }
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.25), 2.0);
        assert_eq!(quantile(&v, 0.1), 1.4);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile(&[7.0], 0.975), 7.0);
    }

    #[test]
    fn identical_blocks_give_an_interval_of_zero_width() {
        // Every covered area gains exactly 3 against a flat comparison: no draw can differ.
        let units = vec![
            unit(&[1.0, 1.0, 4.0]),
            unit(&[2.0, 2.0, 5.0]),
            unit(&[1.0, 1.0, 1.0]),
            unit(&[2.0, 2.0, 2.0]),
        ];
        let treated = [Treated { unit: 0, start: 2 }, Treated { unit: 1, start: 2 }];
        let b = bootstrap(&units, &treated, &[2, 3], 1, 200, 1, 0.95).unwrap();
        assert_eq!(
            b.att,
            Interval {
                estimate: 3.0,
                low: 3.0,
                high: 3.0
            }
        );
        assert_eq!(b.replications, 200);
        assert_eq!(b.event[&0].0.low, 3.0);
    }

    #[test]
    fn the_interval_spans_the_resampled_means() {
        // Two covered areas with effects 0 and 10, one flat comparison area: a draw of two areas
        // averages 0 (¼), 5 (½) or 10 (¼), so the 2.5th and 97.5th percentiles of 999 draws are
        // 0 and 10, and the estimate is 5.
        let units = vec![unit(&[5.0, 5.0]), unit(&[5.0, 15.0]), unit(&[5.0, 5.0])];
        let treated = [Treated { unit: 0, start: 1 }, Treated { unit: 1, start: 1 }];
        let b = bootstrap(&units, &treated, &[2], 1, 999, 7, 0.95).unwrap();
        assert_eq!(
            b.att,
            Interval {
                estimate: 5.0,
                low: 0.0,
                high: 10.0
            }
        );
        assert!(b.att.contains(5.0) && !b.att.contains(10.5));
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let units: Vec<Unit> = (0..12)
            .map(|i| {
                let noise = |m: usize| ((i * 7 + m * 13) as f64 * 0.37).sin() * 2.0;
                let gain = if i < 4 { 3.0 } else { 0.0 };
                unit(&[
                    10.0 + noise(0),
                    10.0 + noise(1),
                    10.0 + gain + noise(2),
                    10.0 + gain + noise(3),
                ])
            })
            .collect();
        let treated: Vec<Treated> = (0..4).map(|unit| Treated { unit, start: 2 }).collect();
        let pool: Vec<usize> = (4..12).collect();
        let a = bootstrap(&units, &treated, &pool, 2, 300, 11, 0.95).unwrap();
        let b = bootstrap(&units, &treated, &pool, 2, 300, 11, 0.95).unwrap();
        let c = bootstrap(&units, &treated, &pool, 2, 300, 12, 0.95).unwrap();
        assert_eq!(a.att, b.att);
        assert_ne!(a.att, c.att);
        assert!(a.att.low < a.att.estimate && a.att.estimate < a.att.high);
    }
}
