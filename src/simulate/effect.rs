//! A known effect injected into simulated service logs, so that the impact estimator
//! (`crate::impact`) can be checked against the truth: from the month an intervention starts, the
//! share of requests made online in the statistical areas it covers (planar centroid within
//! `radius` metres of its site, great-circle distance on the sphere of radius 6,371,008.8 m) is
//! raised by `points` percentage points. SPID/CIE logins are not requests and are left as they are.
//!
//! The effect is drawn from its own random stream after the events are generated, so logs simulated
//! with and without it have the same events, times and requesters; only channels change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use geo::Centroid;
use serde::Deserialize;

use super::SimulateError;
use super::events::{Event, LOGIN_SERVICE, online_probability};
use super::rng::Rng;
use crate::impact::great_circle_m;

/// `effect = { interventions = "data/bologna/interventi.csv", areas = "data/bologna/bologna_aree_statistiche.geojson", points = 5.0 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedEffect {
    /// The interventions (CSV with at least `id`, `lon`, `lat`, `inizio` as YYYY-MM-DD): every row
    /// raises the online share around its site from the month of `inizio`.
    pub interventions: PathBuf,
    /// The statistical areas (GeoJSON polygons with `codice_area_statistica`).
    pub areas: PathBuf,
    /// Percentage points added to the share of requests made online (0–100; e.g. 5.0).
    pub points: f64,
    /// Metres from a site to an area's centroid within which the area is covered.
    #[serde(default = "default_radius")]
    pub radius: f64,
}

fn default_radius() -> f64 {
    800.0
}

/// Which areas get the effect, and from which month (the first of that month).
#[derive(Debug, Clone)]
pub struct EffectPlan {
    pub points: f64,
    pub area_start: HashMap<i32, NaiveDate>,
}

impl EffectPlan {
    /// Read the interventions and the areas, and find the areas each site covers.
    pub fn read(effect: &SimulatedEffect) -> Result<Self, SimulateError> {
        if !(0.0..=100.0).contains(&effect.points) {
            return Err(SimulateError::Data {
                path: effect.interventions.clone(),
                message: format!(
                    "the effect's `points` must be between 0 and 100 percentage points, not {}",
                    effect.points
                ),
            });
        }
        let sites = read_sites(&effect.interventions)?;
        let centroids = read_centroids(&effect.areas)?;
        let mut area_start: HashMap<i32, NaiveDate> = HashMap::new();
        for (lon, lat, start) in sites {
            for (&code, &(x, y)) in &centroids {
                if great_circle_m((lon, lat), (x, y)) <= effect.radius {
                    let first = start.with_day(1).expect("day 1 exists");
                    area_start
                        .entry(code)
                        .and_modify(|d| *d = (*d).min(first))
                        .or_insert(first);
                }
            }
        }
        Ok(Self {
            points: effect.points,
            area_start,
        })
    }

    /// Turn requests that were not made online into online ones, each with the probability that
    /// raises its chance of being online by exactly `points` / 100: p + (1 − p) · q = p + e.
    pub fn apply(&self, events: &mut [Event], year: i32, seed: u64) {
        let effect = self.points / 100.0;
        if effect <= 0.0 || self.area_start.is_empty() {
            return;
        }
        let mut rng = Rng::fork(seed, 0xEFFE_C7);
        let year_start = NaiveDate::from_ymd_opt(year, 1, 1).expect("a year");
        for event in events.iter_mut() {
            if event.service == LOGIN_SERVICE || event.channel == 0 {
                continue;
            }
            let Some(start) = self.area_start.get(&event.area) else {
                continue;
            };
            let day = year_start + chrono::Duration::days((event.second_of_year / 86_400) as i64);
            if day < *start {
                continue;
            }
            let p = online_probability(event.service, event.age);
            let q = (effect / (1.0 - p)).min(1.0);
            if rng.chance(q) {
                event.channel = 0;
            }
        }
    }
}

#[derive(Deserialize)]
struct SiteRow {
    id: String,
    lon: f64,
    lat: f64,
    inizio: String,
}

fn read_sites(path: &Path) -> Result<Vec<(f64, f64, NaiveDate)>, SimulateError> {
    let error = |message: String| SimulateError::Data {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(e.to_string()))?;
    let mut sites = Vec::new();
    for (i, row) in reader.deserialize::<SiteRow>().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| error(format!("line {line}: {e}")))?;
        let start = NaiveDate::parse_from_str(row.inizio.trim(), "%Y-%m-%d").map_err(|e| {
            error(format!(
                "line {line} (intervention `{}`): `inizio` = `{}` is not a date YYYY-MM-DD: {e}",
                row.id, row.inizio
            ))
        })?;
        sites.push((row.lon, row.lat, start));
    }
    Ok(sites)
}

/// Each area's planar centroid, as `ST_Centroid` computes it.
fn read_centroids(path: &Path) -> Result<HashMap<i32, (f64, f64)>, SimulateError> {
    let error = |message: String| SimulateError::Data {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let collection: geojson::FeatureCollection = text
        .parse()
        .map_err(|e: geojson::Error| error(format!("not a GeoJSON FeatureCollection: {e}")))?;
    let mut centroids = HashMap::new();
    for (i, feature) in collection.features.iter().enumerate() {
        let code = feature
            .property("codice_area_statistica")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| {
                error(format!(
                    "feature {i} has no integer `codice_area_statistica`"
                ))
            })?;
        let geometry = feature
            .geometry
            .as_ref()
            .ok_or_else(|| error(format!("area {code} has no geometry")))?;
        let shape: geo_types::Geometry<f64> = geometry
            .clone()
            .try_into()
            .map_err(|e: geojson::Error| error(format!("area {code}: {e}")))?;
        let centroid = shape
            .centroid()
            .ok_or_else(|| error(format!("area {code} has an empty geometry")))?;
        centroids.insert(code as i32, (centroid.x(), centroid.y()));
    }
    Ok(centroids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(area: i32, day: u32, service: u8, channel: u8, age: i32) -> Event {
        Event {
            second_of_year: day * 86_400 + 36_000,
            service,
            channel,
            area,
            age,
        }
    }

    #[test]
    fn the_share_online_rises_by_the_points_only_where_and_when_covered() {
        let plan = EffectPlan {
            points: 5.0,
            area_start: HashMap::from([(1, NaiveDate::from_ymd_opt(2023, 7, 1).unwrap())]),
        };
        // Certificates (service 0) by 70-year-olds: p = 0.681 × 0.75; half the year each side.
        let p = online_probability(0, 70);
        let mut rng = Rng::new(9);
        let mut events: Vec<Event> = (0..400_000)
            .map(|i| {
                let area = 1 + (i % 2) as i32;
                let day = (i / 2 % 365) as u32;
                let online = rng.chance(p);
                event(area, day, 0, if online { 0 } else { 1 }, 70)
            })
            .collect();
        let logins_before = events.iter().filter(|e| e.service == LOGIN_SERVICE).count();
        plan.apply(&mut events, 2023, 1);
        let share = |area: i32, after: bool| {
            let july = 181; // 1 July 2023 is day 181 of the year (from 0)
            let picked: Vec<_> = events
                .iter()
                .filter(|e| e.area == area && (e.second_of_year / 86_400 >= july) == after)
                .collect();
            picked.iter().filter(|e| e.channel == 0).count() as f64 / picked.len() as f64
        };
        let (before, after, other) = (share(1, false), share(1, true), share(2, true));
        assert!((before - p).abs() < 0.006, "before {before} vs {p}");
        assert!(
            (after - p - 0.05).abs() < 0.006,
            "after {after} vs {}",
            p + 0.05
        );
        assert!((other - p).abs() < 0.006, "uncovered area {other} vs {p}");
        assert_eq!(
            events.iter().filter(|e| e.service == LOGIN_SERVICE).count(),
            logins_before
        );
    }

    #[test]
    fn logins_are_left_alone() {
        let plan = EffectPlan {
            points: 50.0,
            area_start: HashMap::from([(1, NaiveDate::from_ymd_opt(2023, 1, 1).unwrap())]),
        };
        let mut events = vec![event(1, 10, LOGIN_SERVICE, 2, 85); 100];
        plan.apply(&mut events, 2023, 1);
        assert!(events.iter().all(|e| e.channel == 2));
        assert_eq!(
            super::super::SERVICES[LOGIN_SERVICE as usize].name,
            "accesso_spid_cie"
        );
    }

    #[test]
    fn the_demo_sites_cover_areas_by_their_centroids() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let plan = EffectPlan::read(&SimulatedEffect {
            interventions: repo.join("data/bologna/interventi.csv"),
            areas: repo.join("data/bologna/bologna_aree_statistiche.geojson"),
            points: 5.0,
            radius: 800.0,
        })
        .unwrap();
        assert!(plan.area_start.len() >= 10, "{:?}", plan.area_start);
        assert!(plan.area_start.values().all(|d| d.day() == 1));
    }
}
