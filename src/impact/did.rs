//! Matched difference-in-differences over a monthly panel of areas, and its event-study series.
//!
//! Each covered (treated) area, from the month its intervention starts, is compared with the
//! `matches` areas of the comparison pool nearest to it on standardized indicators measured before
//! that month: the outcome's own mean over the months before, then the need indicators. For a
//! treated area i with start s and matched areas C_i, d_i(t) = y_i(t) − Σ_c w_c y_c(t) / Σ_c w_c
//! (c ∈ C_i); its effect is δ_i = mean_{t ≥ s} d_i(t) − mean_{t < s} d_i(t), and the estimate is
//! the mean of the δ_i weighted by w_i. The event-study value at e months from the start is the
//! same weighted mean of d_i(s + e) − mean_{t < s} d_i(t): the months before hover around 0 when
//! the trends were parallel, the months after show the effect.
//!
//! The weights w are each area's size in what the outcome is a share of (its requests a month for
//! the share made online, its adults for logins per adult): a share over a few hundred residents'
//! requests swings by tens of points from month to month by chance alone, and would otherwise
//! count as much as a whole neighbourhood's.

use std::collections::BTreeMap;

/// One area's monthly outcome and its need indicators.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The outcome per month of the panel; `None` where the area had nothing to measure.
    pub series: Vec<Option<f64>>,
    /// Need indicators from before any intervention; `None` where unknown (matched as average).
    pub needs: Vec<Option<f64>>,
    /// How much the area counts (see the module's documentation); positive.
    pub weight: f64,
}

/// A covered area and the month (index into the panel) from which it is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Treated {
    pub unit: usize,
    pub start: usize,
}

/// A difference-in-differences fit.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The mean effect on the treated, in the outcome's unit.
    pub att: f64,
    /// Months from the start → (estimate, treated areas observed that month).
    pub event: BTreeMap<i32, (f64, usize)>,
    /// For each treated area given (in order): the pool units it was matched to, empty when it
    /// could not be used (no month observed before or after its start, or nothing to match).
    pub matched: Vec<Vec<usize>>,
    /// Treated areas that entered the estimate.
    pub used: usize,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The weighted mean of (value, weight) pairs, `None` when the weights add up to nothing.
fn weighted_mean(pairs: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (sum, total) = pairs.fold((0.0, 0.0), |(s, t), (v, w)| (s + v * w, t + w));
    (total > 0.0).then(|| sum / total)
}

/// The mean of a series over the months before `start`.
fn pre_mean(unit: &Unit, start: usize) -> Option<f64> {
    mean(
        unit.series[..start.min(unit.series.len())]
            .iter()
            .flatten()
            .copied(),
    )
}

/// The standard deviation of the values (population), or 1 when they do not vary, so a
/// constant feature neither divides by zero nor weighs in the distance.
fn spread(values: &[f64]) -> (f64, f64) {
    let Some(m) = mean(values.iter().copied()) else {
        return (0.0, 1.0);
    };
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / values.len() as f64;
    let sd = var.sqrt();
    (m, if sd > 1e-12 { sd } else { 1.0 })
}

/// The `k` pool units nearest to `treated` on standardized pre-period features (the outcome's
/// mean before `start`, then each need indicator), standardized over the treated and pool units
/// given. Ties go to the unit listed first; a pool unit listed twice (a bootstrap draw) can be
/// chosen twice.
pub fn nearest(
    units: &[Unit],
    treated: Treated,
    all_treated: &[Treated],
    pool: &[usize],
    k: usize,
) -> Vec<usize> {
    let start = treated.start;
    let features = |u: usize| -> Vec<Option<f64>> {
        let mut f = vec![pre_mean(&units[u], start)];
        f.extend(units[u].needs.iter().copied());
        f
    };
    let involved: Vec<usize> = all_treated
        .iter()
        .map(|t| t.unit)
        .chain(pool.iter().copied())
        .collect();
    let dims = features(treated.unit).len();
    let table: Vec<Vec<Option<f64>>> = involved.iter().map(|&u| features(u)).collect();
    let scales: Vec<(f64, f64)> = (0..dims)
        .map(|d| spread(&table.iter().filter_map(|f| f[d]).collect::<Vec<_>>()))
        .collect();
    // A missing value counts as the average (z = 0).
    let z = |f: &[Option<f64>]| -> Vec<f64> {
        f.iter()
            .zip(&scales)
            .map(|(v, (m, sd))| v.map_or(0.0, |v| (v - m) / sd))
            .collect()
    };
    let target = z(&features(treated.unit));
    let mut candidates: Vec<(f64, usize, usize)> = pool
        .iter()
        .enumerate()
        .filter(|&(_, &u)| pre_mean(&units[u], start).is_some())
        .map(|(order, &u)| {
            let d: f64 = z(&features(u))
                .iter()
                .zip(&target)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            (d, order, u)
        })
        .collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    candidates.into_iter().take(k).map(|(_, _, u)| u).collect()
}

/// The matched difference-in-differences of `treated` against `pool`, or `None` when no treated
/// area can be used.
pub fn fit(units: &[Unit], treated: &[Treated], pool: &[usize], k: usize) -> Option<Fit> {
    let mut effects = Vec::new();
    let mut by_event: BTreeMap<i32, (f64, f64, usize)> = BTreeMap::new();
    let mut matched_all = Vec::with_capacity(treated.len());
    for &t in treated {
        let matched = nearest(units, t, treated, pool, k);
        let months = units[t.unit].series.len();
        let gap: Vec<Option<f64>> = (0..months)
            .map(|m| {
                let own = units[t.unit].series[m]?;
                let control = weighted_mean(
                    matched
                        .iter()
                        .filter_map(|&c| Some((units[c].series[m]?, units[c].weight))),
                )?;
                Some(own - control)
            })
            .collect();
        let before = mean(gap[..t.start.min(months)].iter().flatten().copied());
        let after = mean(gap[t.start.min(months)..].iter().flatten().copied());
        let (Some(before), Some(after)) = (before, after) else {
            matched_all.push(Vec::new());
            continue;
        };
        if matched.is_empty() {
            matched_all.push(Vec::new());
            continue;
        }
        let w = units[t.unit].weight;
        effects.push((after - before, w));
        for (m, g) in gap.iter().enumerate() {
            if let Some(g) = g {
                let entry = by_event
                    .entry(m as i32 - t.start as i32)
                    .or_insert((0.0, 0.0, 0));
                entry.0 += (g - before) * w;
                entry.1 += w;
                entry.2 += 1;
            }
        }
        matched_all.push(matched);
    }
    let att = weighted_mean(effects.iter().copied())?;
    let event = by_event
        .into_iter()
        .filter(|(_, (_, w, _))| *w > 0.0)
        .map(|(e, (sum, w, n))| (e, (sum / w, n)))
        .collect();
    Some(Fit {
        att,
        event,
        matched: matched_all,
        used: effects.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(series: &[f64], needs: &[f64]) -> Unit {
        Unit {
            series: series.iter().map(|&v| Some(v)).collect(),
            needs: needs.iter().map(|&v| Some(v)).collect(),
            weight: 1.0,
        }
    }

    #[test]
    fn larger_areas_weigh_more() {
        // Area 0 (weight 3) gains 4, area 1 (weight 1) gains 12: (3·4 + 1·12)/4 = 6. The control
        // is the weighted mean of areas 2 (weight 1, flat at 0) and 3 (weight 3, flat at 8): 6.
        let mut units = vec![
            unit(&[6.0, 10.0], &[]),
            unit(&[6.0, 18.0], &[]),
            unit(&[0.0, 0.0], &[]),
            unit(&[8.0, 8.0], &[]),
        ];
        units[0].weight = 3.0;
        units[3].weight = 3.0;
        let treated = [Treated { unit: 0, start: 1 }, Treated { unit: 1, start: 1 }];
        let fit = fit(&units, &treated, &[2, 3], 2).unwrap();
        assert_eq!(fit.att, 6.0);
        assert_eq!(fit.event[&0], (6.0, 2));
        assert_eq!(fit.event[&-1], (0.0, 2));
    }

    #[test]
    fn difference_in_differences_by_hand() {
        // Treated from month 2: gaps 0, 1 before and 8, 9 after → (8 + 9)/2 − (0 + 1)/2 = 8.
        let units = vec![
            unit(&[10.0, 12.0, 20.0, 22.0], &[]),
            unit(&[10.0, 11.0, 12.0, 13.0], &[]),
        ];
        let fit = fit(&units, &[Treated { unit: 0, start: 2 }], &[1], 1).unwrap();
        assert_eq!(fit.att, 8.0);
        assert_eq!(fit.used, 1);
        assert_eq!(fit.matched, vec![vec![1]]);
        let event: Vec<(i32, f64)> = fit.event.iter().map(|(&e, &(v, _))| (e, v)).collect();
        assert_eq!(event, vec![(-2, -0.5), (-1, 0.5), (0, 7.5), (1, 8.5)]);
    }

    #[test]
    fn two_treated_areas_with_staggered_starts_average_their_effects() {
        // Area 0 gains 4 from month 1, area 1 gains 10 from month 3; the control is flat at 5.
        let units = vec![
            unit(&[5.0, 9.0, 9.0, 9.0], &[]),
            unit(&[5.0, 5.0, 5.0, 15.0], &[]),
            unit(&[5.0, 5.0, 5.0, 5.0], &[]),
        ];
        let treated = [Treated { unit: 0, start: 1 }, Treated { unit: 1, start: 3 }];
        let fit = fit(&units, &treated, &[2], 1).unwrap();
        assert_eq!(fit.att, 7.0);
        assert_eq!(fit.event[&0], (7.0, 2));
        assert_eq!(fit.event[&-1], (0.0, 2));
        assert_eq!(fit.event[&-3], (0.0, 1));
        assert_eq!(fit.event[&2], (4.0, 1));
    }

    #[test]
    fn matching_picks_the_nearest_on_standardized_pre_period_indicators() {
        // Same outcome history; the need indicator decides: 1.0 is nearest to 1.1, then 3.0.
        let units = vec![
            unit(&[50.0, 50.0, 60.0], &[1.1]),
            unit(&[50.0, 50.0, 50.0], &[9.0]),
            unit(&[50.0, 50.0, 51.0], &[1.0]),
            unit(&[50.0, 50.0, 53.0], &[3.0]),
        ];
        let t = Treated { unit: 0, start: 2 };
        assert_eq!(nearest(&units, t, &[t], &[1, 2, 3], 2), vec![2, 3]);
        let fit = fit(&units, &[t], &[1, 2, 3], 2).unwrap();
        assert_eq!(fit.att, 8.0); // 60 − (51 + 53)/2 − 0
        // The outcome's level before the start matters too: a pool unit far below is not chosen.
        let units = vec![
            unit(&[80.0, 80.0, 90.0], &[1.0]),
            unit(&[20.0, 20.0, 20.0], &[1.0]),
            unit(&[79.0, 81.0, 80.0], &[1.0]),
        ];
        let t = Treated { unit: 0, start: 2 };
        assert_eq!(nearest(&units, t, &[t], &[1, 2], 1), vec![2]);
    }

    #[test]
    fn missing_months_and_unusable_areas() {
        let mut units = vec![
            unit(&[1.0, 1.0, 4.0, 4.0], &[]),
            unit(&[1.0, 1.0, 1.0, 1.0], &[]),
            unit(&[1.0, 1.0, 1.0, 1.0], &[]),
        ];
        units[0].series[3] = None;
        // Area 2 starts at month 0: nothing before it, so it cannot be used.
        let treated = [Treated { unit: 0, start: 2 }, Treated { unit: 2, start: 0 }];
        let fit = fit(&units, &treated, &[1], 1).unwrap();
        assert_eq!((fit.att, fit.used), (3.0, 1));
        assert!(fit.matched[1].is_empty());
        assert!(!fit.event.contains_key(&1));
        assert!(super::fit(&units, &[Treated { unit: 2, start: 0 }], &[1], 1).is_none());
    }
}
