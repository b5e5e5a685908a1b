//! Scenarios are configuration: `plans/<name>.toml` beside cruscotto.toml says where demand,
//! candidate sites and open sites come from (saved queries or tables, and their columns), and the
//! defaults (radius, k). A request picks a scenario and may change the demand indicator, the
//! radius, k and the capacity; its inputs are then read with SQL over the current tables.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use geo::Centroid;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::problem::{DemandPoint, Instance, PlanError, Site};
use crate::query::QueryResult;
use crate::results::SourceStamp;
use crate::service::Service;

/// The folder of scenarios, beside the configuration file.
pub const PLANS_DIR: &str = "plans";

/// A scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario decides, in Italian.
    pub title: String,
    pub title_en: Option<String>,
    pub description: Option<String>,
    pub description_en: Option<String>,
    /// The dashboard whose map areas are the demand points (their ids the same): the
    /// dashboard's "Pianifica" view draws the plan over them.
    pub dashboard: Option<String>,
    /// New sites to choose, unless a request says otherwise.
    pub k: usize,
    /// Coverage radius in metres (great-circle distance), unless a request says otherwise.
    pub radius_m: f64,
    /// Radii the dashboard offers.
    #[serde(default)]
    pub radius_options_m: Vec<f64>,
    /// Persons per week every site can serve (capacitated variant); none: unlimited.
    pub capacity: Option<f64>,
    pub demand: DemandSource,
    /// Candidate sites, read in this order; a point already read (identical coordinates) is
    /// not read again.
    pub candidates: Vec<SiteSource>,
    /// Sites already open (kept, and compared with).
    #[serde(default)]
    pub open: Vec<SiteSource>,
}

/// Where demand comes from: one row per demand point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSource {
    /// A saved query (`anziani_per_area`) or a table (`bologna.aree_statistiche`).
    pub query: String,
    /// The column identifying a demand point.
    pub id: String,
    /// The column naming it [default: the id].
    pub name: Option<String>,
    /// The geometry column: a point, or an area whose planar centroid is used.
    #[serde(default = "default_geometry")]
    pub geometry: String,
    /// The weights a request can choose between (the first is the default).
    pub weights: Vec<Weight>,
}

/// A demand indicator: a column of the demand query. Rows where it is empty weigh 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    /// Its name in requests (`over_80`).
    pub name: String,
    pub column: String,
    pub title: String,
    pub title_en: Option<String>,
    #[serde(default = "default_unit")]
    pub unit: String,
    pub unit_en: Option<String>,
}

/// Where sites come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSource {
    pub query: String,
    /// The column naming a site.
    pub name: String,
    /// The column identifying a site [default: derived from its coordinates].
    pub id: Option<String>,
    #[serde(default = "default_geometry")]
    pub geometry: String,
    /// What kind of place these are, in Italian (`biblioteca`).
    pub kind: String,
    pub kind_en: Option<String>,
    /// A column of persons per week each site can serve (capacitated variant).
    pub capacity: Option<String>,
}

fn default_geometry() -> String {
    "geometry".into()
}

fn default_unit() -> String {
    "persone".into()
}

/// A scenario with its name (the file's stem).
#[derive(Debug, Clone, Serialize)]
pub struct NamedScenario {
    pub name: String,
    /// Where it was read from (not sent: a path on the server).
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(flatten)]
    pub scenario: Scenario,
}

impl Scenario {
    /// The saved queries or tables it reads.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.demand.query.as_str())
            .chain(self.candidates.iter().map(|c| c.query.as_str()))
            .chain(self.open.iter().map(|c| c.query.as_str()))
    }
}

/// The scenarios in `dir`, by name. A folder that does not exist has none.
pub fn load_dir(dir: &Path) -> Result<Vec<NamedScenario>, PlanError> {
    files(dir).iter().map(|file| load_file(file)).collect()
}

/// The scenario files in `dir`, in name order; none when the folder does not exist.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

pub fn load_file(file: &Path) -> Result<NamedScenario, PlanError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| PlanError::Source(format!("{}: {e}", file.display())))?;
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| PlanError::Source(format!("{}: {e}", file.display())))?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let problem = |message: String| PlanError::Source(format!("{}: {message}", file.display()));
    if scenario.demand.weights.is_empty() {
        return Err(problem(
            "`demand.weights` is empty: name at least one demand indicator".into(),
        ));
    }
    if scenario.candidates.is_empty() {
        return Err(problem(
            "`candidates` is empty: name at least one source of candidate sites".into(),
        ));
    }
    for query in scenario.sources() {
        quoted(query).map_err(problem)?;
    }
    Ok(NamedScenario {
        name,
        file: file.to_path_buf(),
        scenario,
    })
}

/// A plan request: a scenario and what to change in it. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The scenario (a file `plans/<name>.toml`) [default: the first by name].
    #[schema(example = "punti_facilitazione")]
    pub scenario: Option<String>,
    /// The demand indicator, one of the scenario's weights [default: its first].
    #[schema(example = "over_80")]
    pub demand: Option<String>,
    /// Coverage radius in metres, great-circle distance [default: the scenario's].
    #[schema(example = 800.0)]
    pub radius_m: Option<f64>,
    /// New sites to choose [default: the scenario's].
    #[schema(example = 20)]
    pub k: Option<usize>,
    /// The coverage curve is computed for 1..=curve_max new sites [default: k].
    pub curve_max: Option<usize>,
    /// Persons per week each site can serve: the capacitated variant [default: the scenario's,
    /// usually none: unlimited].
    pub capacity: Option<f64>,
    /// Milliseconds the exact programme gets for each number of sites before greedy answers
    /// [default: 5000; at most 60000].
    pub time_limit_ms: Option<u64>,
}

/// A request with every default filled in: what a saved plan records.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolvedRequest {
    pub scenario: String,
    pub demand: String,
    pub radius_m: f64,
    pub k: usize,
    pub curve_max: usize,
    pub capacity: Option<f64>,
    pub time_limit_ms: u64,
}

/// What the inputs were: counts and the data versions they were read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    pub scenario_title: String,
    pub scenario_title_en: Option<String>,
    pub demand_title: String,
    pub demand_title_en: Option<String>,
    pub demand_unit: String,
    pub demand_points: usize,
    /// Demand points whose indicator is empty (they weigh 0).
    pub demand_without_weight: usize,
    /// Candidate sites after removing duplicates and open sites.
    pub candidates: usize,
    /// Candidate rows not used: same coordinates as one read before.
    pub candidates_duplicate: usize,
    /// Candidate rows not used: at the coordinates of a site already open.
    pub candidates_already_open: usize,
    /// Site rows (candidate or open) without a location.
    pub sites_without_location: usize,
    pub open_sites: usize,
    /// The queries read and the versions of the store tables under them.
    pub queries: Vec<String>,
    pub sources: Vec<SourceStamp>,
}

const MAX_TIME_LIMIT_MS: u64 = 60_000;
const MAX_CURVE: usize = 100;

impl PlanRequest {
    /// The scenario and every default filled in; the error names the field.
    pub fn resolve(
        &self,
        scenarios: &[NamedScenario],
    ) -> Result<(NamedScenario, ResolvedRequest), PlanError> {
        let names = || {
            scenarios
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let scenario = match &self.scenario {
            Some(name) => scenarios.iter().find(|s| &s.name == name).ok_or_else(|| {
                PlanError::invalid(
                    "scenario",
                    format!(
                        "no scenario `{name}` (plans/{name}.toml); there are: {}",
                        names()
                    ),
                )
            })?,
            None => scenarios.first().ok_or_else(|| {
                PlanError::NotFound(format!(
                    "no scenario is configured: add a file to {PLANS_DIR}/ beside the configuration"
                ))
            })?,
        };
        let weights = &scenario.scenario.demand.weights;
        let demand = match &self.demand {
            Some(name) => weights.iter().find(|w| &w.name == name).ok_or_else(|| {
                let known: Vec<String> = weights.iter().map(|w| format!("`{}`", w.name)).collect();
                PlanError::invalid(
                    "demand",
                    format!(
                        "no demand indicator `{name}` in scenario `{}`; use one of {}",
                        scenario.name,
                        known.join(", ")
                    ),
                )
            })?,
            None => &weights[0],
        };
        let k = self.k.unwrap_or(scenario.scenario.k);
        if k == 0 {
            return Err(PlanError::invalid("k", "choose at least 1 new site"));
        }
        let curve_max = self.curve_max.unwrap_or(k.min(MAX_CURVE));
        if curve_max == 0 || curve_max > MAX_CURVE {
            return Err(PlanError::invalid(
                "curve_max",
                format!("{curve_max}: the curve goes from 1 to between 1 and {MAX_CURVE} sites"),
            ));
        }
        if let Some(capacity) = self.capacity
            && (!capacity.is_finite() || capacity <= 0.0)
        {
            return Err(PlanError::invalid(
                "capacity",
                format!("{capacity} is not a capacity: give persons per site, more than 0"),
            ));
        }
        let time_limit_ms = self
            .time_limit_ms
            .unwrap_or(super::DEFAULT_TIME_LIMIT.as_millis() as u64);
        if time_limit_ms > MAX_TIME_LIMIT_MS {
            return Err(PlanError::invalid(
                "time_limit_ms",
                format!("{time_limit_ms} ms is over the {MAX_TIME_LIMIT_MS} ms allowed"),
            ));
        }
        Ok((
            scenario.clone(),
            ResolvedRequest {
                scenario: scenario.name.clone(),
                demand: demand.name.clone(),
                radius_m: self.radius_m.unwrap_or(scenario.scenario.radius_m),
                k,
                curve_max,
                capacity: self.capacity.or(scenario.scenario.capacity),
                time_limit_ms,
            },
        ))
    }
}

/// `name` or `schema.name` as a quoted SQL identifier; letters, digits and `_` only.
fn quoted(reference: &str) -> Result<String, String> {
    let parts: Vec<&str> = reference.split('.').collect();
    let valid =
        |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.len() > 2 || !parts.iter().all(valid) {
        return Err(format!(
            "`{reference}` is not a saved query or a table (`name` or `schema.name`)"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// The rows of a saved query or table, with the column names the scenario gives checked.
async fn read(
    service: &Arc<Service>,
    query: &str,
    columns: &[&str],
) -> Result<QueryResult, PlanError> {
    let sql = format!(
        "SELECT * FROM {}",
        quoted(query).map_err(PlanError::Source)?
    );
    let result = service
        .engine
        .execute(&sql)
        .await
        .map_err(|e| PlanError::Source(format!("reading `{query}`: {e}")))?;
    for column in columns {
        if result.schema.index_of(column).is_err() {
            let present: Vec<&str> = result
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            return Err(PlanError::Source(format!(
                "`{query}` has no column `{column}`; its columns are {present:?}"
            )));
        }
    }
    Ok(result)
}

fn texts(result: &QueryResult, column: &str) -> Result<Vec<Option<String>>, PlanError> {
    let mut out = Vec::with_capacity(result.rows());
    for batch in &result.batches {
        let array = batch.column_by_name(column).expect("checked");
        let text = arrow::compute::cast(array, &DataType::Utf8)
            .map_err(|e| PlanError::Source(format!("column `{column}`: {e}")))?;
        let text = text.as_string::<i32>();
        out.extend((0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_string())));
    }
    Ok(out)
}

fn numbers(result: &QueryResult, column: &str) -> Result<Vec<Option<f64>>, PlanError> {
    let mut out = Vec::with_capacity(result.rows());
    for batch in &result.batches {
        let array = batch.column_by_name(column).expect("checked");
        let numbers = arrow::compute::cast(array, &DataType::Float64)
            .map_err(|e| PlanError::Source(format!("column `{column}` is not a number: {e}")))?;
        let numbers = numbers.as_primitive::<Float64Type>();
        out.extend((0..numbers.len()).map(|i| numbers.is_valid(i).then(|| numbers.value(i))));
    }
    Ok(out)
}

/// Each row's point: the point itself, or the planar centroid of an area; `None` when empty.
fn points(result: &QueryResult, column: &str) -> Result<Vec<Option<(f64, f64)>>, PlanError> {
    let mut out = Vec::with_capacity(result.rows());
    for batch in &result.batches {
        let array = batch.column_by_name(column).expect("checked");
        let binary = arrow::compute::cast(array, &DataType::Binary).map_err(|e| {
            PlanError::Source(format!("column `{column}` is not a geometry (WKB): {e}"))
        })?;
        let binary = binary.as_binary::<i32>();
        for i in 0..binary.len() {
            if binary.is_null(i) {
                out.push(None);
                continue;
            }
            let geometry = crate::geometry::wkb_to_geo(binary.value(i))
                .map_err(|e| PlanError::Source(format!("column `{column}`: {e}")))?;
            out.push(geometry.centroid().map(|p| (p.x(), p.y())));
        }
    }
    Ok(out)
}

/// A site's id from its coordinates: the same place has the same id in every data version.
fn point_id(lon: f64, lat: f64) -> String {
    let digest = sha2::Sha256::digest(format!("{lon},{lat}").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("p{hex}")
}

/// Read the sites of some sources, in order, skipping rows at coordinates already seen.
async fn read_sites(
    service: &Arc<Service>,
    sources: &[SiteSource],
    seen: &mut HashSet<(u64, u64)>,
    excluded: &HashSet<(u64, u64)>,
    counts: &mut Inputs,
) -> Result<Vec<Site>, PlanError> {
    let mut sites = Vec::new();
    for source in sources {
        let mut columns = vec![source.name.as_str(), source.geometry.as_str()];
        columns.extend(source.id.as_deref());
        columns.extend(source.capacity.as_deref());
        let result = read(service, &source.query, &columns).await?;
        counts.queries.push(source.query.clone());
        let names = texts(&result, &source.name)?;
        let located = points(&result, &source.geometry)?;
        let ids = match &source.id {
            Some(column) => Some(texts(&result, column)?),
            None => None,
        };
        let capacities = match &source.capacity {
            Some(column) => Some(numbers(&result, column)?),
            None => None,
        };
        // Rows in a stable order, whatever order the engine returned them in.
        let mut rows: Vec<usize> = (0..names.len()).collect();
        let key = |i: usize| {
            (
                located[i].map(|(x, y)| (x.to_bits(), y.to_bits())),
                names[i].clone(),
            )
        };
        rows.sort_by_key(|&i| key(i));
        for i in rows {
            let Some((lon, lat)) = located[i] else {
                counts.sites_without_location += 1;
                continue;
            };
            let bits = (lon.to_bits(), lat.to_bits());
            if excluded.contains(&bits) {
                counts.candidates_already_open += 1;
                continue;
            }
            if !seen.insert(bits) {
                counts.candidates_duplicate += 1;
                continue;
            }
            let name = names[i].clone().unwrap_or_default();
            sites.push(Site {
                id: ids
                    .as_ref()
                    .and_then(|ids| ids[i].clone())
                    .unwrap_or_else(|| point_id(lon, lat)),
                name,
                kind: source.kind.clone(),
                lon,
                lat,
                capacity: capacities.as_ref().and_then(|c| c[i]),
            });
        }
    }
    Ok(sites)
}

/// Read a scenario's inputs for a resolved request.
pub async fn instance(
    service: &Arc<Service>,
    scenario: &NamedScenario,
    request: &ResolvedRequest,
) -> Result<(Instance, Inputs), PlanError> {
    let s = &scenario.scenario;
    let weight = s
        .demand
        .weights
        .iter()
        .find(|w| w.name == request.demand)
        .expect("resolved");
    let mut inputs = Inputs {
        scenario_title: s.title.clone(),
        scenario_title_en: s.title_en.clone(),
        demand_title: weight.title.clone(),
        demand_title_en: weight.title_en.clone(),
        demand_unit: weight.unit.clone(),
        demand_points: 0,
        demand_without_weight: 0,
        candidates: 0,
        candidates_duplicate: 0,
        candidates_already_open: 0,
        sites_without_location: 0,
        open_sites: 0,
        queries: vec![s.demand.query.clone()],
        sources: Vec::new(),
    };
    let name_column = s.demand.name.as_deref().unwrap_or(&s.demand.id);
    let result = read(
        service,
        &s.demand.query,
        &[
            &s.demand.id,
            name_column,
            &s.demand.geometry,
            &weight.column,
        ],
    )
    .await?;
    let ids = texts(&result, &s.demand.id)?;
    let names = texts(&result, name_column)?;
    let located = points(&result, &s.demand.geometry)?;
    let weights = numbers(&result, &weight.column)?;
    let mut demand = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let id = ids[i].clone().ok_or_else(|| {
            PlanError::Source(format!(
                "`{}` row {}: the id column `{}` is empty",
                s.demand.query,
                i + 1,
                s.demand.id
            ))
        })?;
        let (lon, lat) = located[i].ok_or_else(|| {
            PlanError::Source(format!(
                "`{}`: demand point `{id}` has no geometry in `{}`",
                s.demand.query, s.demand.geometry
            ))
        })?;
        if weights[i].is_none() {
            inputs.demand_without_weight += 1;
        }
        demand.push(DemandPoint {
            name: names[i].clone().unwrap_or_else(|| id.clone()),
            id,
            lon,
            lat,
            weight: weights[i].unwrap_or(0.0),
        });
    }
    demand.sort_by(|a, b| a.id.cmp(&b.id));

    let mut seen = HashSet::new();
    let open = read_sites(service, &s.open, &mut seen, &HashSet::new(), &mut inputs).await?;
    // Open sites are not candidates: a new site where one is open adds nothing.
    let open_points: HashSet<(u64, u64)> = std::mem::take(&mut seen);
    inputs.candidates_duplicate = 0;
    let mut candidates =
        read_sites(service, &s.candidates, &mut seen, &open_points, &mut inputs).await?;
    if let Some(capacity) = request.capacity {
        for site in &mut candidates {
            site.capacity.get_or_insert(capacity);
        }
    }
    let mut open = open;
    if let Some(capacity) = request.capacity {
        for site in &mut open {
            site.capacity.get_or_insert(capacity);
        }
    }
    let capacitated = candidates
        .iter()
        .chain(&open)
        .any(|site| site.capacity.is_some());
    inputs.demand_points = demand.len();
    inputs.candidates = candidates.len();
    inputs.open_sites = open.len();
    inputs.sources = stamps(service, &inputs.queries);
    Ok((
        Instance {
            demand,
            candidates,
            open,
            radius_m: request.radius_m,
            k: request.k,
            capacitated,
        },
        inputs,
    ))
}

/// The store tables under the queries read, with the versions they serve now.
fn stamps(service: &Service, queries: &[String]) -> Vec<SourceStamp> {
    let statuses = service.store.statuses();
    let views = service.engine.views();
    let mut tables = std::collections::BTreeSet::new();
    for query in queries {
        if query.contains('.') {
            tables.insert(query.clone());
        } else {
            tables.extend(crate::dashboards::source_tables(
                query,
                service.engine.saved(),
                &views,
            ));
        }
    }
    tables
        .into_iter()
        .map(|table| {
            let status = statuses
                .iter()
                .find(|s| format!("{}.{}", s.schema, s.table) == table);
            let version = status.and_then(|s| s.version);
            SourceStamp {
                rows: status.map_or(0, |s| s.rows),
                last_success: status
                    .filter(|_| version.is_none())
                    .and_then(|s| s.last_success),
                version,
                table,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<NamedScenario> {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(PLANS_DIR)).unwrap()
    }

    #[test]
    fn every_shipped_scenario_loads_and_names_saved_queries_that_exist() {
        let scenarios = shipped();
        assert!(!scenarios.is_empty());
        let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        for named in &scenarios {
            let s = &named.scenario;
            for query in std::iter::once(&s.demand.query)
                .chain(s.candidates.iter().map(|c| &c.query))
                .chain(s.open.iter().map(|c| &c.query))
            {
                assert!(
                    query.contains('.') || queries.join(format!("{query}.sql")).exists(),
                    "{}: no saved query `{query}`",
                    named.file.display()
                );
            }
        }
    }

    #[test]
    fn a_request_is_resolved_against_its_scenario_or_names_the_wrong_field() {
        let scenarios = shipped();
        let (scenario, resolved) = PlanRequest::default().resolve(&scenarios).unwrap();
        assert_eq!(resolved.scenario, scenario.name);
        assert_eq!(resolved.k, scenario.scenario.k);
        assert_eq!(resolved.curve_max, resolved.k);
        let wrong = |request: PlanRequest| request.resolve(&scenarios).unwrap_err();
        let error = wrong(PlanRequest {
            scenario: Some("nessuno".into()),
            ..Default::default()
        });
        assert_eq!(error.field(), Some("scenario"));
        let error = wrong(PlanRequest {
            demand: Some("gatti".into()),
            ..Default::default()
        });
        assert_eq!(error.field(), Some("demand"));
        assert!(error.to_string().contains("over_80"), "{error}");
        let error = wrong(PlanRequest {
            capacity: Some(-3.0),
            ..Default::default()
        });
        assert_eq!(error.field(), Some("capacity"));
        let error = wrong(PlanRequest {
            curve_max: Some(0),
            ..Default::default()
        });
        assert_eq!(error.field(), Some("curve_max"));
        let error = wrong(PlanRequest {
            time_limit_ms: Some(3_600_000),
            ..Default::default()
        });
        assert_eq!(error.field(), Some("time_limit_ms"));
    }

    #[test]
    fn only_plain_names_are_read() {
        assert_eq!(
            quoted("bologna.biblioteche").unwrap(),
            "\"bologna\".\"biblioteche\""
        );
        assert!(quoted("x; DROP TABLE y").is_err());
        assert!(quoted("a.b.c").is_err());
    }
}
