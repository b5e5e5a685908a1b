//! Impact monitoring: did the interventions (facilitation points opened, courses, volunteers)
//! change the uptake of online services in the areas they cover? A matched
//! difference-in-differences over the monthly service logs (`did.rs`), with a block bootstrap
//! over areas for its 95% interval (`bootstrap.rs`), read through SQL (`panel.rs`).
//!
//! An area is covered by an intervention when its planar centroid is within `radius` metres of
//! the intervention's site (great-circle distance on the sphere of mean radius 6,371,008.8 m),
//! from the month the intervention started; the comparison pool is every area that no
//! intervention of the table covers, at any time.

pub mod bootstrap;
pub mod did;
pub mod panel;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::query::{QueryEngine, QueryError};
use bootstrap::bootstrap;
use did::{Treated, Unit};
pub use panel::{INTERVENTIONS, Intervention, Panel};

/// The mean Earth radius (IUGG), as PostGIS's sphere and the saved queries use it.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Metres between two (lon, lat) points along the sphere (haversine).
pub fn great_circle_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.1.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.0 - a.0).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

#[derive(Debug, thiserror::Error)]
pub enum ImpactError {
    #[error("reading {what}: {source}")]
    Query {
        what: String,
        #[source]
        source: QueryError,
    },
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    UnknownIntervention(String),
    #[error("{0}")]
    NotEstimable(String),
}

/// What is measured in each area and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Metric {
    /// Share of requests (certificates, PagoPA payments, canteen top-ups, changes of residence)
    /// made online, in per cent; the effect is in percentage points.
    #[default]
    #[serde(rename = "quota_online")]
    OnlineShare,
    /// SPID/CIE logins per 1,000 adults in the month.
    #[serde(rename = "accessi_spid_cie")]
    LoginsPerAdult,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::OnlineShare => "share of requests made online",
            Metric::LoginsPerAdult => "SPID/CIE logins per 1,000 adults",
        }
    }

    fn unit(self) -> (&'static str, &'static str) {
        match self {
            Metric::OnlineShare => ("punti percentuali", "percentage points"),
            Metric::LoginsPerAdult => (
                "accessi ogni 1.000 adulti al mese",
                "logins per 1,000 adults a month",
            ),
        }
    }
}

/// What to estimate.
#[derive(Debug, Clone)]
pub struct ImpactRequest {
    /// The interventions taken together; `None`: every `apertura_punto` (facilitation point
    /// opened), or every intervention when there is none.
    pub interventions: Option<Vec<String>>,
    pub radius: f64,
    pub metric: Metric,
    /// Comparison areas matched to each covered area.
    pub matches: usize,
    pub replications: usize,
    pub seed: u64,
}

impl Default for ImpactRequest {
    fn default() -> Self {
        Self {
            interventions: None,
            radius: 800.0,
            metric: Metric::OnlineShare,
            matches: 3,
            replications: 999,
            seed: 1,
        }
    }
}

/// An estimate and its 95% interval.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Estimate {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// One month of the event study.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventMonth {
    /// Months from the start (0: the month it started; negative: before).
    pub month: i32,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Covered areas observed that month.
    #[schema(value_type = i32)]
    pub areas: usize,
}

/// An area's part in the estimate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AreaRole {
    pub codice_area_statistica: i64,
    pub area_statistica: String,
    /// `covered` (by a selected intervention), `comparison` (matched to a covered one),
    /// `pool` (not covered, not matched) or `other` (covered by an intervention not selected).
    pub role: String,
    /// For a covered area: the month (YYYY-MM) it is covered from.
    pub from: Option<String>,
    /// For a comparison area: how many times it was matched.
    #[schema(value_type = i32)]
    pub matched: usize,
}

/// The answer: the estimate, the event study, the areas and a reading in Italian and English.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImpactReport {
    pub metric: Metric,
    /// The unit of the estimate, in Italian and English.
    pub unit: BTreeMap<String, String>,
    pub radius_m: f64,
    /// Every intervention in the table; `selected` says which were estimated together.
    pub interventions: Vec<InterventionEntry>,
    pub estimate: Estimate,
    pub event_study: Vec<EventMonth>,
    pub areas: Vec<AreaRole>,
    /// Covered areas in the estimate (with months observed before and after their start).
    #[schema(value_type = i32)]
    pub covered_areas: usize,
    #[schema(value_type = i32)]
    pub comparison_areas: usize,
    /// First and last month of the service logs (YYYY-MM).
    pub months: Vec<String>,
    #[schema(value_type = i32)]
    pub matches: usize,
    #[schema(value_type = i32)]
    pub replications: usize,
    pub seed: u64,
    /// Whether the service logs come from the built-in simulator (set by the caller).
    pub simulated: bool,
    /// A plain-language reading, `it` and `en`.
    pub reading: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InterventionEntry {
    #[serde(flatten)]
    pub intervention: Intervention,
    pub selected: bool,
    /// Codes of the areas whose centroid is within the radius of its site.
    pub covers: Vec<i64>,
}

fn month_label(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists")
}

/// Estimate the effect of the requested interventions over the service's tables.
pub async fn estimate(
    engine: &Arc<QueryEngine>,
    request: &ImpactRequest,
) -> Result<ImpactReport, ImpactError> {
    if !(50.0..=5_000.0).contains(&request.radius) {
        return Err(ImpactError::Request(format!(
            "radius {} m is out of range: give 50 to 5000 metres",
            request.radius
        )));
    }
    if !(1..=10).contains(&request.matches) {
        return Err(ImpactError::Request(format!(
            "matches = {} is out of range: give 1 to 10 comparison areas per covered area",
            request.matches
        )));
    }
    if !(99..=9_999).contains(&request.replications) {
        return Err(ImpactError::Request(format!(
            "replications = {} is out of range: give 99 to 9999",
            request.replications
        )));
    }
    let interventions = panel::interventions(engine).await?;
    let panel = panel::panel(engine, request.metric).await?;
    let request = request.clone();
    tokio::task::spawn_blocking(move || analyse(interventions, panel, &request))
        .await
        .map_err(|e| ImpactError::Data(format!("the estimate's task failed: {e}")))?
}

/// The estimate from what was read: pure, for the tests.
pub fn analyse(
    interventions: Vec<Intervention>,
    panel: Panel,
    request: &ImpactRequest,
) -> Result<ImpactReport, ImpactError> {
    if interventions.is_empty() {
        return Err(ImpactError::NotEstimable(format!(
            "{INTERVENTIONS} has no interventions: nothing to estimate"
        )));
    }
    let selected: Vec<String> = match &request.interventions {
        Some(ids) => {
            for id in ids {
                if !interventions.iter().any(|i| &i.id == id) {
                    let known: Vec<&str> = interventions.iter().map(|i| i.id.as_str()).collect();
                    return Err(ImpactError::UnknownIntervention(format!(
                        "no intervention `{id}` in {INTERVENTIONS}; known: {}",
                        known.join(", ")
                    )));
                }
            }
            ids.clone()
        }
        None => {
            let openings: Vec<String> = interventions
                .iter()
                .filter(|i| i.tipo == "apertura_punto")
                .map(|i| i.id.clone())
                .collect();
            if openings.is_empty() {
                interventions.iter().map(|i| i.id.clone()).collect()
            } else {
                openings
            }
        }
    };
    let covers = |i: &Intervention| -> Vec<usize> {
        (0..panel.areas.len())
            .filter(|&a| great_circle_m((i.lon, i.lat), panel.areas[a].centroid) <= request.radius)
            .collect()
    };
    let mut start_of: BTreeMap<usize, NaiveDate> = BTreeMap::new();
    let mut covered_by_any = vec![false; panel.areas.len()];
    let mut entries = Vec::new();
    for i in &interventions {
        let areas = covers(i);
        let is_selected = selected.contains(&i.id);
        for &a in &areas {
            covered_by_any[a] = true;
            if is_selected {
                let month = first_of_month(i.inizio);
                start_of
                    .entry(a)
                    .and_modify(|m| *m = (*m).min(month))
                    .or_insert(month);
            }
        }
        entries.push(InterventionEntry {
            intervention: i.clone(),
            selected: is_selected,
            covers: areas.iter().map(|&a| panel.areas[a].code).collect(),
        });
    }
    if start_of.is_empty() {
        return Err(ImpactError::NotEstimable(format!(
            "no statistical area has its centroid within {} m of the selected interventions ({})",
            request.radius,
            selected.join(", ")
        )));
    }
    let first = panel.months[0];
    let last = *panel.months.last().expect("at least one month");
    let treated: Vec<Treated> = start_of
        .iter()
        .filter_map(|(&unit, &month)| {
            let index = panel.months.iter().position(|m| *m == month)?;
            Some(Treated { unit, start: index })
        })
        .collect();
    let pool: Vec<usize> = (0..panel.areas.len())
        .filter(|&a| !covered_by_any[a])
        .collect();
    let units: Vec<Unit> = (0..panel.areas.len())
        .map(|a| Unit {
            series: panel.values[a].clone(),
            needs: panel.areas[a].needs.clone(),
            weight: panel.weights[a],
        })
        .collect();
    let outside = || {
        ImpactError::NotEstimable(format!(
            "the selected interventions ({}) started outside the months of the service logs or \
             their first month ({} to {}): an estimate needs months before and after the start",
            selected.join(", "),
            month_label(first),
            month_label(last)
        ))
    };
    if treated.is_empty() {
        return Err(outside());
    }
    if pool.is_empty() {
        return Err(ImpactError::NotEstimable(format!(
            "every area is within {} m of an intervention: no area is left to compare with",
            request.radius
        )));
    }
    let b = bootstrap(
        &units,
        &treated,
        &pool,
        request.matches,
        request.replications,
        request.seed,
        0.95,
    )
    .ok_or_else(outside)?;

    let mut matched_count = vec![0usize; panel.areas.len()];
    for m in b.fit.matched.iter().flatten() {
        matched_count[*m] += 1;
    }
    let used: Vec<bool> = b.fit.matched.iter().map(|m| !m.is_empty()).collect();
    let areas: Vec<AreaRole> = panel
        .areas
        .iter()
        .enumerate()
        .map(|(a, area)| {
            let covered = treated
                .iter()
                .zip(&used)
                .find(|(t, _)| t.unit == a)
                .filter(|(_, u)| **u);
            let role = if covered.is_some() {
                "covered"
            } else if start_of.contains_key(&a) || covered_by_any[a] {
                "other"
            } else if matched_count[a] > 0 {
                "comparison"
            } else {
                "pool"
            };
            AreaRole {
                codice_area_statistica: area.code,
                area_statistica: area.name.clone(),
                role: role.to_string(),
                from: covered.map(|(t, _)| month_label(panel.months[t.start])),
                matched: matched_count[a],
            }
        })
        .collect();
    let estimate = Estimate {
        estimate: b.att.estimate,
        low: b.att.low,
        high: b.att.high,
    };
    let event_study = b
        .event
        .iter()
        .map(|(&month, (i, n))| EventMonth {
            month,
            estimate: i.estimate,
            low: i.low,
            high: i.high,
            areas: *n,
        })
        .collect();
    let comparison_areas = matched_count.iter().filter(|&&c| c > 0).count();
    let (unit_it, unit_en) = request.metric.unit();
    let reading = reading(&estimate, request, b.fit.used, comparison_areas);
    Ok(ImpactReport {
        metric: request.metric,
        unit: BTreeMap::from([("it".into(), unit_it.into()), ("en".into(), unit_en.into())]),
        radius_m: request.radius,
        interventions: entries,
        estimate,
        event_study,
        areas,
        covered_areas: b.fit.used,
        comparison_areas,
        months: vec![month_label(first), month_label(last)],
        matches: request.matches,
        replications: b.replications,
        seed: request.seed,
        simulated: false,
        reading,
    })
}

/// A number with one decimal, with the decimal comma in Italian.
fn one_decimal(value: f64, italian: bool) -> String {
    let text = format!("{:.1}", value);
    let text = if text == "-0.0" {
        "0.0".to_string()
    } else {
        text
    };
    if italian {
        text.replace('.', ",")
    } else {
        text
    }
}

fn signed(value: f64, italian: bool) -> String {
    let text = one_decimal(value, italian);
    if text.starts_with('-') || text == "0.0" || text == "0,0" {
        text.replace('-', "−")
    } else {
        format!("+{text}")
    }
}

fn reading(
    e: &Estimate,
    request: &ImpactRequest,
    covered: usize,
    comparison: usize,
) -> BTreeMap<String, String> {
    let (unit_it, unit_en) = request.metric.unit();
    let (what_it, what_en) = match request.metric {
        Metric::OnlineShare => (
            "la quota di richieste fatte online",
            "the share of requests made online",
        ),
        Metric::LoginsPerAdult => ("gli accessi con SPID o CIE", "SPID/CIE logins"),
    };
    let range = |it: bool| {
        format!(
            "{}–{}",
            one_decimal(e.low, it).replace('-', "−"),
            one_decimal(e.high, it).replace('-', "−")
        )
    };
    let verdict_it = if e.low > 0.0 {
        "L'intervallo non contiene lo zero: un aumento."
    } else if e.high < 0.0 {
        "L'intervallo non contiene lo zero: una diminuzione."
    } else {
        "L'intervallo contiene lo zero: nessun effetto distinguibile dal caso."
    };
    let verdict_en = if e.low > 0.0 {
        "The interval excludes zero: an increase."
    } else if e.high < 0.0 {
        "The interval excludes zero: a decrease."
    } else {
        "The interval contains zero: no effect distinguishable from chance."
    };
    let it = format!(
        "{} {unit_it}, intervallo {}. Dal mese di avvio, nelle {covered} aree coperte (centro entro {} m) \
         {what_it} è cambiata di {} {unit_it} rispetto a {comparison} aree simili non coperte \
         (intervallo di confidenza al 95%: {}). {verdict_it}",
        signed(e.estimate, true),
        range(true),
        request.radius,
        signed(e.estimate, true),
        range(true),
    );
    let en = format!(
        "{} {unit_en}, interval {}. From the month it started, in the {covered} covered areas \
         (centre within {} m) {what_en} changed by {} {unit_en} against {comparison} similar \
         areas not covered (95% confidence interval: {}). {verdict_en}",
        signed(e.estimate, false),
        range(false),
        request.radius,
        signed(e.estimate, false),
        range(false),
    );
    BTreeMap::from([("it".into(), it), ("en".into(), en)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn great_circle_distance_on_the_mean_sphere() {
        // One degree of latitude on the sphere of radius 6,371,008.8 m.
        let d = great_circle_m((11.0, 44.0), (11.0, 45.0));
        assert!((d - 111_195.08).abs() < 0.01, "{d}");
        assert_eq!(great_circle_m((11.3, 44.5), (11.3, 44.5)), 0.0);
    }

    #[test]
    fn readings_in_italian_and_english() {
        let e = Estimate {
            estimate: 4.83,
            low: 2.91,
            high: 6.7,
        };
        let r = reading(&e, &ImpactRequest::default(), 13, 20);
        assert!(
            r["it"].starts_with("+4,8 punti percentuali, intervallo 2,9–6,7."),
            "{}",
            r["it"]
        );
        assert!(
            r["en"].starts_with("+4.8 percentage points, interval 2.9–6.7."),
            "{}",
            r["en"]
        );
        assert!(r["it"].contains("non contiene lo zero"));
        let e = Estimate {
            estimate: -0.4,
            low: -2.1,
            high: 1.3,
        };
        let r = reading(&e, &ImpactRequest::default(), 13, 20);
        assert!(
            r["en"].starts_with("−0.4 percentage points, interval −2.1–1.3."),
            "{}",
            r["en"]
        );
        assert!(r["it"].contains("contiene lo zero"));
    }
}
