//! A placement problem as the solvers see it: demand points with weights, candidate sites, sites
//! already open, a radius and a number of new sites; checked, then reduced to who covers whom.

use serde::{Deserialize, Serialize};

/// The mean Earth radius (IUGG), the sphere the README's `ST_DistanceSphere` uses too.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A place where demand is: an area's centroid or a point, with how many persons it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemandPoint {
    pub id: String,
    pub name: String,
    pub lon: f64,
    pub lat: f64,
    pub weight: f64,
}

/// A place where a facilitation point can be (a candidate) or already is (an open site).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// What kind of place it is (the source it came from): `biblioteca`, `risorsa sociale`…
    pub kind: String,
    pub lon: f64,
    pub lat: f64,
    /// Persons it can serve (per week), for the capacitated variant; `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
}

/// Everything a solve needs.
#[derive(Debug, Clone)]
pub struct Instance {
    pub demand: Vec<DemandPoint>,
    pub candidates: Vec<Site>,
    pub open: Vec<Site>,
    pub radius_m: f64,
    pub k: usize,
    /// Whether sites serve at most their capacity (persons may be split between sites).
    pub capacitated: bool,
}

/// What is wrong with a problem's input, naming the field and, for a row, which one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    /// A scenario's input could not be read (its query fails, a column is missing).
    #[error("{0}")]
    Source(String),
    /// No such scenario file or saved plan.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Solver(String),
}

impl PlanError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        PlanError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The input field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PlanError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Great-circle distance in metres (haversine on the mean-radius sphere).
pub fn distance_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let h = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

fn check_point(field: &str, index: usize, id: &str, lon: f64, lat: f64) -> Result<(), PlanError> {
    let at = format!("{field}[{index}]");
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(PlanError::invalid(
            format!("{at}.lon"),
            format!("`{id}` has longitude {lon}; it must be a number between -180 and 180"),
        ));
    }
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(PlanError::invalid(
            format!("{at}.lat"),
            format!("`{id}` has latitude {lat}; it must be a number between -90 and 90"),
        ));
    }
    Ok(())
}

fn check_capacity(field: &str, index: usize, site: &Site) -> Result<(), PlanError> {
    if let Some(capacity) = site.capacity
        && (!capacity.is_finite() || capacity < 0.0)
    {
        return Err(PlanError::invalid(
            format!("{field}[{index}].capacity"),
            format!(
                "`{}` has capacity {capacity}; it must be a number of persons, 0 or more",
                site.id
            ),
        ));
    }
    Ok(())
}

impl Instance {
    /// Check every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), PlanError> {
        if !self.radius_m.is_finite() || self.radius_m <= 0.0 {
            return Err(PlanError::invalid(
                "radius_m",
                format!(
                    "{} is not a radius; give the coverage radius in metres, more than 0",
                    self.radius_m
                ),
            ));
        }
        if self.radius_m > 100_000.0 {
            return Err(PlanError::invalid(
                "radius_m",
                format!(
                    "{} m is over the 100 km this planner is meant for (walking distance to a facilitation point)",
                    self.radius_m
                ),
            ));
        }
        if self.demand.is_empty() {
            return Err(PlanError::invalid(
                "demand",
                "there are no demand points: nothing to cover",
            ));
        }
        if self.candidates.is_empty() {
            return Err(PlanError::invalid(
                "candidates",
                "there are no candidate sites to choose from",
            ));
        }
        if self.k == 0 {
            return Err(PlanError::invalid("k", "choose at least 1 new site"));
        }
        if self.k > self.candidates.len() {
            return Err(PlanError::invalid(
                "k",
                format!(
                    "{} new sites asked for, but there are only {} candidate sites",
                    self.k,
                    self.candidates.len()
                ),
            ));
        }
        for (i, point) in self.demand.iter().enumerate() {
            check_point("demand", i, &point.id, point.lon, point.lat)?;
            if !point.weight.is_finite() || point.weight < 0.0 {
                return Err(PlanError::invalid(
                    format!("demand[{i}].weight"),
                    format!(
                        "`{}` has weight {}; it must be a number of persons, 0 or more",
                        point.id, point.weight
                    ),
                ));
            }
        }
        for (i, site) in self.candidates.iter().enumerate() {
            check_point("candidates", i, &site.id, site.lon, site.lat)?;
            check_capacity("candidates", i, site)?;
        }
        for (i, site) in self.open.iter().enumerate() {
            check_point("open", i, &site.id, site.lon, site.lat)?;
            check_capacity("open", i, site)?;
        }
        Ok(())
    }

    /// Who covers whom.
    pub fn coverage(&self) -> Coverage {
        let covers = |site: &Site| -> Vec<usize> {
            self.demand
                .iter()
                .enumerate()
                .filter(|(_, d)| distance_m(site.lon, site.lat, d.lon, d.lat) <= self.radius_m)
                .map(|(i, _)| i)
                .collect()
        };
        let by_candidate: Vec<Vec<usize>> = self.candidates.iter().map(covers).collect();
        let by_open: Vec<Vec<usize>> = self.open.iter().map(covers).collect();
        let mut coverable = vec![false; self.demand.len()];
        for &i in by_candidate.iter().flatten() {
            coverable[i] = true;
        }
        Coverage {
            weights: self.demand.iter().map(|d| d.weight).collect(),
            by_candidate,
            by_open,
            coverable,
            candidate_capacity: self.candidates.iter().map(|s| s.capacity).collect(),
            open_capacity: self.open.iter().map(|s| s.capacity).collect(),
        }
    }
}

/// The demand points each site covers, and the weights: all the solvers read.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub weights: Vec<f64>,
    pub by_candidate: Vec<Vec<usize>>,
    pub by_open: Vec<Vec<usize>>,
    /// Whether some candidate covers the point.
    pub coverable: Vec<bool>,
    pub candidate_capacity: Vec<Option<f64>>,
    pub open_capacity: Vec<Option<f64>>,
}

impl Coverage {
    /// The weight covered by the open sites and the `chosen` candidates, each point counted once
    /// (uncapacitated).
    pub fn covered(&self, chosen: &[usize]) -> f64 {
        let mut covered = vec![false; self.weights.len()];
        for list in self
            .by_open
            .iter()
            .chain(chosen.iter().map(|&j| &self.by_candidate[j]))
        {
            for &i in list {
                covered[i] = true;
            }
        }
        covered
            .iter()
            .zip(&self.weights)
            .filter(|(c, _)| **c)
            .map(|(_, w)| w)
            .sum()
    }

    /// Which points the open sites cover.
    pub fn covered_by_open(&self) -> Vec<bool> {
        let mut covered = vec![false; self.weights.len()];
        for &i in self.by_open.iter().flatten() {
            covered[i] = true;
        }
        covered
    }

    pub fn total(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// The weight that the open sites and all candidates together could cover.
    pub fn coverable_weight(&self) -> f64 {
        let open = self.covered_by_open();
        self.weights
            .iter()
            .enumerate()
            .filter(|(i, _)| open[*i] || self.coverable[*i])
            .map(|(_, w)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, lon: f64, lat: f64) -> Site {
        Site {
            id: id.into(),
            name: id.into(),
            kind: "test".into(),
            lon,
            lat,
            capacity: None,
        }
    }

    fn instance() -> Instance {
        Instance {
            demand: vec![DemandPoint {
                id: "a".into(),
                name: "a".into(),
                lon: 11.34,
                lat: 44.49,
                weight: 10.0,
            }],
            candidates: vec![site("c1", 11.34, 44.49), site("c2", 11.35, 44.5)],
            open: vec![],
            radius_m: 800.0,
            k: 1,
            capacitated: false,
        }
    }

    #[test]
    fn a_degree_of_latitude_is_about_111_km() {
        let d = distance_m(11.0, 44.0, 11.0, 45.0);
        assert!((d - 111_195.08).abs() < 0.5, "{d}");
        assert_eq!(distance_m(11.3, 44.5, 11.3, 44.5), 0.0);
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut bad = instance();
        bad.radius_m = -5.0;
        assert_eq!(bad.validate().unwrap_err().field(), Some("radius_m"));
        bad.radius_m = f64::NAN;
        assert_eq!(bad.validate().unwrap_err().field(), Some("radius_m"));

        let mut bad = instance();
        bad.k = 3;
        let error = bad.validate().unwrap_err();
        assert_eq!(error.field(), Some("k"));
        assert!(
            error.to_string().contains("only 2 candidate sites"),
            "{error}"
        );
        bad.k = 0;
        assert_eq!(bad.validate().unwrap_err().field(), Some("k"));

        let mut bad = instance();
        bad.demand.clear();
        assert_eq!(bad.validate().unwrap_err().field(), Some("demand"));

        let mut bad = instance();
        bad.demand[0].lat = f64::NAN;
        let error = bad.validate().unwrap_err();
        assert_eq!(error.field(), Some("demand[0].lat"));
        assert!(error.to_string().contains("`a`"), "{error}");

        let mut bad = instance();
        bad.candidates[1].lon = f64::NAN;
        assert_eq!(
            bad.validate().unwrap_err().field(),
            Some("candidates[1].lon")
        );

        let mut bad = instance();
        bad.demand[0].weight = -1.0;
        assert_eq!(
            bad.validate().unwrap_err().field(),
            Some("demand[0].weight")
        );

        let mut bad = instance();
        bad.candidates[0].capacity = Some(f64::INFINITY);
        assert_eq!(
            bad.validate().unwrap_err().field(),
            Some("candidates[0].capacity")
        );
        assert!(instance().validate().is_ok());
    }
}
