//! Dashboards as data: `dashboards/<name>.toml` declares a page (a map of areas with indicators and
//! point layers, and panels), each part naming a saved query, so a new dashboard needs no code.
//! Also the `[index]` section of `cruscotto.toml`: the weights of the composite digital-divide
//! index, turned here into the saved query that computes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config_text::{Problem, is_sql_identifier};
use crate::query::saved::SavedQuery;

/// One dashboard page.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Title, in Italian.
    pub title: String,
    /// Title in English.
    #[serde(default)]
    pub title_en: Option<String>,
    /// A sentence under the title, in Italian.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub description_en: Option<String>,
    /// Position in the dashboard menu (lowest first, then by name); the first is the home page.
    #[serde(default)]
    pub order: i32,
    /// The map, if the page has one.
    #[serde(default)]
    pub map: Option<MapConfig>,
    /// Panels under the map.
    #[serde(default)]
    pub panels: Vec<Panel>,
    /// A series (a query with `period_column`) whose last value is older than this is flagged as
    /// dated ("dati datati"). Default one year.
    #[serde(
        default = "default_max_age",
        deserialize_with = "humantime_serde::deserialize",
        skip_serializing
    )]
    pub max_age: std::time::Duration,
}

fn default_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(365 * 86_400)
}

/// A map of areas (statistical areas, comuni, …) coloured by an indicator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Saved query with one row per area: its id, its name and its polygon.
    pub areas: AreaLayer,
    /// A raster tile URL template (`https://…/{z}/{x}/{y}.png`) drawn under the areas. Without it the
    /// map draws the areas on a plain background and nothing is fetched from elsewhere.
    #[serde(default)]
    pub basemap: Option<Basemap>,
    /// What the choropleth can show; the first with `default = true` (else the first) is shown first.
    pub indicators: Vec<Indicator>,
    /// Point layers the user can switch on and off.
    #[serde(default)]
    pub points: Vec<PointLayer>,
    /// Time series shown in the side panel of the selected area.
    #[serde(default)]
    pub series: Vec<AreaSeries>,
    /// An absolute number shown beside each indicator in the table of the top areas (e.g. the
    /// expected offline adults: how many people a share stands for).
    #[serde(default)]
    pub top: Option<TopCount>,
}

/// A column of a saved query with one row per area, shown as a count in the top-areas table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopCount {
    pub query: String,
    pub value: String,
    /// Column matching the areas' id; defaults to the areas' `id` column name.
    #[serde(default)]
    pub id: Option<String>,
    pub label: String,
    #[serde(default)]
    pub label_en: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AreaLayer {
    pub query: String,
    /// Column with the area's id, which the indicators' `id` columns match.
    pub id: String,
    /// Column with the area's name, shown and searched.
    pub name: String,
    /// Column with the polygon (WKB).
    #[serde(default = "default_geometry")]
    pub geometry: String,
    /// What one area is called, e.g. "area statistica" / "statistical area".
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub label_en: Option<String>,
    /// Column with the area's residents. With `min_population`, areas with fewer residents (or
    /// none known) are not ranked and are drawn hatched: a share of a few hundred people swings
    /// too much to compare with whole neighbourhoods.
    #[serde(default)]
    pub population: Option<String>,
    #[serde(default)]
    pub min_population: u64,
    /// A column of the areas whose values name groups of areas (districts) written on the map,
    /// one label per group.
    #[serde(default)]
    pub group_labels: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Basemap {
    /// Raster tile URL template with `{z}`, `{x}` and `{y}`.
    pub tiles: String,
    /// Attribution shown on the map, as the tile provider requires.
    pub attribution: String,
}

/// One choropleth indicator: a value column of a saved query with one row per area.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    pub query: String,
    /// Column holding the value.
    pub value: String,
    /// Column matching the areas' id; defaults to the areas' `id` column name.
    #[serde(default)]
    pub id: Option<String>,
    /// Label in the picker; defaults to the saved query's title.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub label_en: Option<String>,
    /// Unit; defaults to the saved query's `unit`.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub unit_en: Option<String>,
    /// `quantile` (five classes with as many areas each) or `fixed` (the `breaks` given).
    #[serde(default)]
    pub classes: Classes,
    /// Upper bounds of every class but the last, ascending, for `classes = "fixed"`.
    #[serde(default)]
    pub breaks: Vec<f64>,
    /// Decimals shown.
    #[serde(default = "default_decimals")]
    pub decimals: u8,
    /// Shown first.
    #[serde(default)]
    pub default: bool,
    /// A column with the method version to show beside the value (the composite index has one).
    #[serde(default)]
    pub version: Option<String>,
    /// The same indicator for the whole city, shown beside each area's value: a column of a
    /// saved query with one row.
    #[serde(default)]
    pub city: Option<CityValue>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CityValue {
    pub query: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Classes {
    #[default]
    Quantile,
    Fixed,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointLayer {
    /// Short id, used in the URL.
    pub name: String,
    pub query: String,
    /// Column with each point's name, shown in its popup and searched.
    pub label: String,
    #[serde(default = "default_geometry")]
    pub geometry: String,
    /// Legend title; defaults to the saved query's title.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_en: Option<String>,
    /// Marker colour, `#rrggbb`.
    #[serde(default = "default_point_color")]
    pub color: String,
    /// Shown when the page opens.
    #[serde(default)]
    pub visible: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSeries {
    pub query: String,
    /// Column matching the areas' id.
    pub id: String,
    /// Column on the horizontal axis (a year, a date).
    pub x: String,
    /// Columns drawn as lines.
    pub y: Vec<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_en: Option<String>,
}

/// A panel under the map.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// `kpi`, `bar`, `line` or `table` (the default).
    #[serde(default)]
    pub kind: PanelKind,
    pub query: String,
    /// Defaults to the saved query's title.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_en: Option<String>,
    /// Category or time column, for `bar` and `line`.
    #[serde(default)]
    pub x: Option<String>,
    /// Value columns: bars or lines, or the figures of a `kpi` (all columns when empty).
    #[serde(default)]
    pub y: Vec<String>,
    /// Labels of the `y` columns, in Italian and English, in the same order.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub labels_en: Vec<String>,
    /// Columns of a `table` (all when empty).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Sort the rows by this column (descending with a leading `-`), as views keep no order.
    #[serde(default)]
    pub sort: Option<String>,
    /// Show at most this many rows (bars, table rows); the CSV export always has them all.
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelKind {
    Kpi,
    Bar,
    Line,
    #[default]
    Table,
}

fn default_geometry() -> String {
    "geometry".to_string()
}
fn default_decimals() -> u8 {
    1
}
fn default_point_color() -> String {
    "#0066cc".to_string()
}

impl Dashboard {
    /// Every saved query the dashboard reads, with the key that names it.
    pub fn query_references(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(map) = &self.map {
            out.push(("map.areas.query".to_string(), map.areas.query.as_str()));
            for (i, indicator) in map.indicators.iter().enumerate() {
                out.push((
                    format!("map.indicators[{i}].query"),
                    indicator.query.as_str(),
                ));
                if let Some(city) = &indicator.city {
                    out.push((
                        format!("map.indicators[{i}].city.query"),
                        city.query.as_str(),
                    ));
                }
            }
            for (i, layer) in map.points.iter().enumerate() {
                out.push((format!("map.points[{i}].query"), layer.query.as_str()));
            }
            for (i, series) in map.series.iter().enumerate() {
                out.push((format!("map.series[{i}].query"), series.query.as_str()));
            }
            if let Some(top) = &map.top {
                out.push(("map.top.query".to_string(), top.query.as_str()));
            }
        }
        for (i, panel) in self.panels.iter().enumerate() {
            out.push((format!("panels[{i}].query"), panel.query.as_str()));
        }
        out
    }

    /// Every column the dashboard reads from a saved query: (key naming it, query, column).
    /// `cruscotto check` looks each one up in the query's planned schema.
    pub fn column_references(&self) -> Vec<(String, &str, &str)> {
        let mut out: Vec<(String, &str, &str)> = Vec::new();
        if let Some(map) = &self.map {
            let a = &map.areas;
            let q = a.query.as_str();
            out.push(("map.areas.id".into(), q, &a.id));
            out.push(("map.areas.name".into(), q, &a.name));
            out.push(("map.areas.geometry".into(), q, &a.geometry));
            if let Some(c) = &a.population {
                out.push(("map.areas.population".into(), q, c));
            }
            if let Some(c) = &a.group_labels {
                out.push(("map.areas.group_labels".into(), q, c));
            }
            for (i, indicator) in map.indicators.iter().enumerate() {
                let q = indicator.query.as_str();
                out.push((format!("map.indicators[{i}].value"), q, &indicator.value));
                // The indicator's rows join the areas on `id`, by default the areas' id column.
                let id = indicator.id.as_deref().unwrap_or(&a.id);
                out.push((format!("map.indicators[{i}].id"), q, id));
                if let Some(city) = &indicator.city {
                    let key = format!("map.indicators[{i}].city.value");
                    out.push((key, &city.query, &city.value));
                }
            }
            for (i, layer) in map.points.iter().enumerate() {
                let q = layer.query.as_str();
                out.push((format!("map.points[{i}].label"), q, &layer.label));
                out.push((format!("map.points[{i}].geometry"), q, &layer.geometry));
            }
            for (i, series) in map.series.iter().enumerate() {
                let q = series.query.as_str();
                out.push((format!("map.series[{i}].id"), q, &series.id));
                out.push((format!("map.series[{i}].x"), q, &series.x));
                for y in &series.y {
                    out.push((format!("map.series[{i}].y"), q, y));
                }
            }
            if let Some(top) = &map.top {
                out.push(("map.top.value".into(), &top.query, &top.value));
                let id = top.id.as_deref().unwrap_or(&a.id);
                out.push(("map.top.id".into(), &top.query, id));
            }
        }
        for (i, panel) in self.panels.iter().enumerate() {
            let q = panel.query.as_str();
            if let Some(x) = &panel.x {
                out.push((format!("panels[{i}].x"), q, x));
            }
            for y in &panel.y {
                out.push((format!("panels[{i}].y"), q, y));
            }
            for c in &panel.columns {
                out.push((format!("panels[{i}].columns"), q, c));
            }
            if let Some(sort) = &panel.sort {
                out.push((format!("panels[{i}].sort"), q, sort.trim_start_matches('-')));
            }
        }
        out
    }

    /// Whether the dashboard reads this saved query (the API serves only those).
    pub fn reads(&self, query: &str) -> bool {
        self.query_references().iter().any(|(_, q)| *q == query)
    }

    /// Problems a parser cannot see: unknown saved queries, missing columns for a kind, bad breaks.
    pub fn validate(&self, file: &Path, queries: &[SavedQuery]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let at = |key: String, message: String| Problem::new(file, Some(key), message);
        for (key, query) in self.query_references() {
            if !queries.iter().any(|q| q.name == query) {
                problems.push(at(
                    key,
                    format!("`{query}` is not a saved query (no file queries/{query}.sql)"),
                ));
            }
        }
        if let Some(map) = &self.map {
            if map.indicators.is_empty() {
                problems.push(at(
                    "map.indicators".into(),
                    "a map needs at least one indicator".into(),
                ));
            }
            for (i, indicator) in map.indicators.iter().enumerate() {
                if indicator.classes == Classes::Fixed {
                    let ascending = indicator.breaks.windows(2).all(|w| w[0] < w[1]);
                    if indicator.breaks.is_empty() || !ascending {
                        problems.push(at(
                            format!("map.indicators[{i}].breaks"),
                            "`classes = \"fixed\"` needs `breaks`: at least one number, in ascending order".into(),
                        ));
                    }
                } else if !indicator.breaks.is_empty() {
                    problems.push(at(
                        format!("map.indicators[{i}].breaks"),
                        "`breaks` needs `classes = \"fixed\"`".into(),
                    ));
                }
            }
            let mut names = BTreeSet::new();
            for (i, layer) in map.points.iter().enumerate() {
                if !is_sql_identifier(&layer.name) || !names.insert(layer.name.as_str()) {
                    problems.push(at(
                        format!("map.points[{i}].name"),
                        format!(
                            "`{}` must be unique and use lowercase letters, digits and `_`",
                            layer.name
                        ),
                    ));
                }
                if !is_hex_color(&layer.color) {
                    problems.push(at(
                        format!("map.points[{i}].color"),
                        format!("`{}` is not a colour like #0066cc", layer.color),
                    ));
                }
            }
            if let Some(basemap) = &map.basemap {
                let template = ["{z}", "{x}", "{y}"]
                    .iter()
                    .all(|p| basemap.tiles.contains(p));
                if !basemap.tiles.starts_with("https://") || !template {
                    problems.push(at(
                        "map.basemap.tiles".into(),
                        "a tile URL template `https://…/{z}/{x}/{y}…`".into(),
                    ));
                }
            }
            for (i, series) in map.series.iter().enumerate() {
                if series.y.is_empty() {
                    problems.push(at(
                        format!("map.series[{i}].y"),
                        "name at least one column to draw".into(),
                    ));
                }
            }
        }
        for (i, panel) in self.panels.iter().enumerate() {
            if matches!(panel.kind, PanelKind::Bar | PanelKind::Line)
                && (panel.x.is_none() || panel.y.is_empty())
            {
                problems.push(at(
                    format!("panels[{i}]"),
                    "a bar or line panel needs `x` and `y`".into(),
                ));
            }
            if !panel.labels.is_empty() && panel.labels.len() != panel.y.len() {
                problems.push(at(
                    format!("panels[{i}].labels"),
                    "give one label per `y` column".into(),
                ));
            }
            if !panel.labels_en.is_empty() && panel.labels_en.len() != panel.y.len() {
                problems.push(at(
                    format!("panels[{i}].labels_en"),
                    "give one label per `y` column".into(),
                ));
            }
        }
        problems
    }
}

fn is_hex_color(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// `[index]` in `cruscotto.toml`: the composite digital-divide index is the weighted mean of the
/// pillar columns of a saved query (each 0–100, higher = more divide), computed by a generated
/// saved query so analysts can read it in SQL like any other.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Name of the generated saved query (view).
    #[serde(default = "default_index_name")]
    pub name: String,
    /// Saved query with one row per area and one 0–100 column per pillar.
    #[serde(default = "default_pillars_query")]
    pub pillars_query: String,
    /// Columns carried over from the pillars query to identify the area.
    #[serde(default = "default_index_keys")]
    pub keys: Vec<String>,
    /// Weight of each pillar column; they are divided by their sum. A weight of 0 leaves a pillar out.
    #[serde(default = "default_index_weights")]
    pub weights: BTreeMap<String, f64>,
    /// Version of the method (bounds and weights), shown with the index; change it when they change.
    #[serde(default = "default_method_version")]
    pub method_version: String,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            name: default_index_name(),
            pillars_query: default_pillars_query(),
            keys: default_index_keys(),
            weights: default_index_weights(),
            method_version: default_method_version(),
        }
    }
}

/// `columns` / `columns_en` of the generated index: the pillars query's labels of the columns
/// carried over, then the index and the weight of each pillar.
fn index_column_labels(
    pillars: &SavedQuery,
    carried: &[&str],
    used: &[(&String, f64)],
) -> [(&'static str, String); 2] {
    let languages = [
        (
            "columns",
            "Indice composito",
            "punteggio 0–100",
            "Peso effettivo del pilastro",
        ),
        (
            "columns_en",
            "Composite index",
            "score 0–100",
            "Effective weight of the pillar",
        ),
    ];
    languages.map(|(key, index, score, weight)| {
        let inherited = pillars
            .get(key)
            .and_then(|text| crate::query::saved::column_labels(text).ok())
            .unwrap_or_default();
        let mut items: Vec<String> = carried
            .iter()
            .filter_map(|column| inherited.iter().find(|l| l.column == *column))
            .map(|l| match &l.unit {
                Some(unit) => format!("{} = {} [{unit}]", l.column, l.label),
                None => format!("{} = {}", l.column, l.label),
            })
            .collect();
        items.push(format!("indice = {index} [{score}]"));
        items.extend(
            used.iter()
                .map(|(pillar, _)| format!("peso_{pillar}_pct = {weight} {pillar} [%]")),
        );
        (key, items.join("; "))
    })
}

fn default_index_name() -> String {
    "indice_divario_digitale".into()
}
fn default_pillars_query() -> String {
    "indice_divario_pilastri".into()
}
fn default_index_keys() -> Vec<String> {
    vec!["codice_area_statistica".into(), "area_statistica".into()]
}
fn default_index_weights() -> BTreeMap<String, f64> {
    ["bisogno", "connettivita", "adozione", "supporto"]
        .into_iter()
        .map(|p| (p.to_string(), 1.0))
        .collect()
}
fn default_method_version() -> String {
    "1.0".into()
}

impl IndexConfig {
    /// The saved query computing the index, or the problems with the section. `explicit` says the
    /// section was written in the file: then a missing pillars query is an error; otherwise the
    /// index is simply not generated (a configuration without the indicators).
    pub fn saved_query(
        &self,
        file: &Path,
        queries: &[SavedQuery],
        explicit: bool,
    ) -> Result<Option<SavedQuery>, Vec<Problem>> {
        let mut problems = Vec::new();
        let at =
            |key: &str, message: String| Problem::new(file, Some(format!("index.{key}")), message);
        let Some(pillars) = queries.iter().find(|q| q.name == self.pillars_query) else {
            if explicit {
                problems.push(at(
                    "pillars_query",
                    format!("`{}` is not a saved query", self.pillars_query),
                ));
                return Err(problems);
            }
            return Ok(None);
        };
        if !is_sql_identifier(&self.name) || queries.iter().any(|q| q.name == self.name) {
            problems.push(at(
                "name",
                format!(
                    "`{}` must be a new view name (lowercase letters, digits, `_`)",
                    self.name
                ),
            ));
        }
        for (pillar, weight) in &self.weights {
            if !is_sql_identifier(pillar) {
                problems.push(at(
                    &format!("weights.{pillar}"),
                    "a pillar is a column name: lowercase letters, digits and `_`".into(),
                ));
            }
            if !weight.is_finite() || *weight < 0.0 {
                problems.push(at(
                    &format!("weights.{pillar}"),
                    format!("weight {weight} must be a number ≥ 0"),
                ));
            }
        }
        for key in &self.keys {
            if !is_sql_identifier(key) {
                problems.push(at("keys", format!("`{key}` is not a column name")));
            }
        }
        let total: f64 = self
            .weights
            .values()
            .filter(|w| w.is_finite() && **w > 0.0)
            .sum();
        if total <= 0.0 {
            problems.push(at(
                "weights",
                "at least one pillar needs a weight above 0".into(),
            ));
        }
        if self.method_version.trim().is_empty() || self.method_version.contains('\'') {
            problems.push(at(
                "method_version",
                "a version such as \"1.0\", without quotes".into(),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let used: Vec<(&String, f64)> = self
            .weights
            .iter()
            .filter(|(_, w)| **w > 0.0)
            .map(|(p, w)| (p, w / total))
            .collect();
        let weights_text = used
            .iter()
            .map(|(p, w)| format!("{p} {:.1}%", w * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        // A pillar that is the same in every area (or has no data) tells the areas nothing: it
        // carries no weight, and the weights of the others are scaled up to sum to 1. The weight
        // each pillar carried is published beside the index (`peso_<pillar>_pct`).
        let effective = used
            .iter()
            .map(|(p, w)| {
                format!(
                    "CASE WHEN max({p}) OVER () > min({p}) OVER () THEN {w:.6} ELSE 0.0 END AS w_{p}"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let total_weight = used
            .iter()
            .map(|(p, _)| format!("w_{p}"))
            .collect::<Vec<_>>()
            .join(" + ");
        let weighted_sum = used
            .iter()
            .map(|(p, _)| format!("CASE WHEN w_{p} > 0 THEN {p} * w_{p} ELSE 0.0 END"))
            .collect::<Vec<_>>()
            .join(" + ");
        let shown_weights = used
            .iter()
            .map(|(p, _)| {
                format!("round(100 * w_{p} / nullif({total_weight}, 0.0), 1) AS peso_{p}_pct")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let columns: Vec<&str> = self
            .keys
            .iter()
            .chain(self.weights.keys())
            .map(String::as_str)
            .collect();
        let sql = format!(
            "WITH pesati AS (SELECT *, {effective} FROM {}.{}) \
             SELECT {}, round(({weighted_sum}) / nullif({total_weight}, 0.0), 2) AS indice, {shown_weights}, \
             '{}' AS versione_metodo FROM pesati",
            crate::query::QUERIES_SCHEMA,
            self.pillars_query,
            columns.join(", "),
            self.method_version,
        );
        let version_of_pillars = pillars.get("method_version").unwrap_or("?");
        let metadata: BTreeMap<String, String> = [
            ("title", "Indice composito del divario digitale".to_string()),
            ("title_en", "Composite digital-divide index".to_string()),
            ("description", "Media pesata dei quattro pilastri (bisogno, connettività, adozione, supporto), da 0 a 100: più alto vuol dire più divario digitale.".to_string()),
            ("description_en", "Weighted mean of the four pillars (need, connectivity, uptake, support), from 0 to 100: higher means more digital divide.".to_string()),
            ("unit", "punteggio 0–100 (più alto = più divario)".to_string()),
            ("unit_en", "score 0–100 (higher = more divide)".to_string()),
            ("polarity", "higher_is_worse".to_string()),
            ("sources", self.pillars_query.clone()),
            (
                "method",
                format!(
                    "Pesi dalla sezione [index] di cruscotto.toml, normalizzati a somma 1: {weights_text}. Un pilastro uguale in tutte le aree, o senza dati, non distingue le aree e non pesa: i pesi degli altri sono riscalati a somma 1, e il peso effettivo di ogni pilastro è nelle colonne peso_<pilastro>_pct. Pilastri da `{}` (metodo {version_of_pillars}): indicatori normalizzati min–max con limiti fissi e orientati (più alto = più divario). Vuoto dove manca un pilastro con peso.",
                    self.pillars_query
                ),
            ),
            (
                "method_en",
                format!(
                    "Weights from the [index] section of cruscotto.toml, scaled to sum to 1: {weights_text}. A pillar with the same value in every area, or without data, does not tell the areas apart and carries no weight: the weights of the others are scaled up to sum to 1, and the weight each pillar carried is in the columns peso_<pillar>_pct. Pillars from `{}` (method {version_of_pillars}): indicators min–max normalised with fixed bounds and oriented (higher = more divide). Empty where a weighted pillar is missing.",
                    self.pillars_query
                ),
            ),
            ("method_version", self.method_version.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(
            index_column_labels(pillars, &columns, &used)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        )
        // The index covers what its pillars cover, and comes from where they come from.
        .chain(
            ["period", "source", "source_en"]
                .into_iter()
                .filter_map(|k| pillars.get(k).map(|v| (k.to_string(), v.to_string()))),
        )
        .collect();
        Ok(Some(SavedQuery {
            name: self.name.clone(),
            file: file.to_path_buf(),
            title: metadata["title"].clone(),
            metadata,
            sql,
        }))
    }
}

/// The tables a statement reads, as written (`schema.table` or `table`), CTEs excluded.
pub fn table_references(sql: &str) -> Vec<String> {
    use datafusion::sql::parser::DFParser;
    let Ok(mut statements) = DFParser::parse_sql(sql) else {
        return Vec::new();
    };
    let Some(statement) = statements.pop_front() else {
        return Vec::new();
    };
    let Ok((references, _)) = datafusion::sql::resolve::resolve_table_references(&statement, true)
    else {
        return Vec::new();
    };
    references.iter().map(|r| r.to_string()).collect()
}

/// The store tables (`schema.table`) a saved query depends on, following saved queries it reads;
/// through a query's fallback instead of the query where `views` say the fallback answers.
pub fn source_tables(
    query: &str,
    queries: &[SavedQuery],
    views: &[crate::query::ViewStatus],
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut pending = vec![query.to_string()];
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let answering = views
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.fallback.as_deref())
            .unwrap_or(&name);
        let Some(saved) = queries.iter().find(|q| q.name == answering) else {
            continue;
        };
        for reference in table_references(&saved.sql) {
            let parts: Vec<&str> = reference.split('.').collect();
            let (schema, table) = match parts.as_slice() {
                [table] => (crate::query::QUERIES_SCHEMA, *table),
                [schema, table] => (*schema, *table),
                [_, schema, table] => (*schema, *table),
                _ => continue,
            };
            if schema == crate::query::QUERIES_SCHEMA {
                pending.push(table.to_string());
            } else {
                out.insert(format!("{schema}.{table}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(name: &str, sql: &str) -> SavedQuery {
        crate::query::saved::parse(
            name,
            Path::new("q.sql"),
            &format!("-- title: {name}\n-- method_version: 2.0\n{sql}"),
            1000,
        )
        .unwrap()
    }

    #[test]
    fn a_panel_with_only_a_query_is_a_table() {
        let dashboard: Dashboard =
            toml::from_str("title = \"Panoramica\"\n[[panels]]\nquery = \"q\"\n").unwrap();
        assert_eq!(dashboard.panels[0].kind, PanelKind::Table);
        let problems = dashboard.validate(Path::new("d.toml"), &[]);
        assert_eq!(
            problems[0].to_string(),
            "d.toml: panels[0].query: `q` is not a saved query (no file queries/q.sql)"
        );
    }

    #[test]
    fn unknown_keys_and_bad_layers_are_reported() {
        assert!(toml::from_str::<Dashboard>("title = \"x\"\ncolour = 1\n").is_err());
        let text = "title = \"x\"\n[map]\nindicators = [{ query = \"q\", value = \"v\", classes = \"fixed\" }]\n\
                    areas = { query = \"q\", id = \"id\", name = \"n\" }\n\
                    points = [{ name = \"Bad\", query = \"q\", label = \"n\", color = \"blue\" }]\n\
                    [[panels]]\nkind = \"bar\"\nquery = \"q\"\n";
        let dashboard: Dashboard = toml::from_str(text).unwrap();
        let problems: Vec<String> = dashboard
            .validate(Path::new("d.toml"), &[saved("q", "SELECT 1")])
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].contains("map.indicators[0].breaks"),
            "{problems:?}"
        );
        assert!(problems[1].contains("map.points[0].name"), "{problems:?}");
        assert!(problems[2].contains("map.points[0].color"), "{problems:?}");
        assert!(
            problems[3].contains("panels[0]: a bar or line panel needs"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_index_is_the_normalised_weighted_mean_of_the_pillars() {
        let queries = vec![saved("pilastri", "SELECT 1 AS codice_area_statistica")];
        let mut index = IndexConfig {
            pillars_query: "pilastri".into(),
            ..IndexConfig::default()
        };
        index.weights.insert("bisogno".into(), 2.0);
        index.weights.insert("adozione".into(), 0.0);
        let query = index
            .saved_query(Path::new("cruscotto.toml"), &queries, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            query.sql,
            "WITH pesati AS (SELECT *, \
             CASE WHEN max(bisogno) OVER () > min(bisogno) OVER () THEN 0.500000 ELSE 0.0 END AS w_bisogno, \
             CASE WHEN max(connettivita) OVER () > min(connettivita) OVER () THEN 0.250000 ELSE 0.0 END AS w_connettivita, \
             CASE WHEN max(supporto) OVER () > min(supporto) OVER () THEN 0.250000 ELSE 0.0 END AS w_supporto \
             FROM queries.pilastri) \
             SELECT codice_area_statistica, area_statistica, adozione, bisogno, connettivita, supporto, \
             round((CASE WHEN w_bisogno > 0 THEN bisogno * w_bisogno ELSE 0.0 END + \
             CASE WHEN w_connettivita > 0 THEN connettivita * w_connettivita ELSE 0.0 END + \
             CASE WHEN w_supporto > 0 THEN supporto * w_supporto ELSE 0.0 END) / nullif(w_bisogno + w_connettivita + w_supporto, 0.0), 2) AS indice, \
             round(100 * w_bisogno / nullif(w_bisogno + w_connettivita + w_supporto, 0.0), 1) AS peso_bisogno_pct, \
             round(100 * w_connettivita / nullif(w_bisogno + w_connettivita + w_supporto, 0.0), 1) AS peso_connettivita_pct, \
             round(100 * w_supporto / nullif(w_bisogno + w_connettivita + w_supporto, 0.0), 1) AS peso_supporto_pct, \
             '1.0' AS versione_metodo FROM pesati"
        );
        assert!(
            query
                .get("method")
                .unwrap()
                .contains("bisogno 50.0%, connettivita 25.0%, supporto 25.0%")
        );
        assert!(query.get("method").unwrap().contains("metodo 2.0"));

        index.weights.insert("bisogno".into(), -1.0);
        let problems = index
            .saved_query(Path::new("cruscotto.toml"), &queries, true)
            .unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "cruscotto.toml: index.weights.bisogno: weight -1 must be a number ≥ 0"
        );
        assert!(
            IndexConfig::default()
                .saved_query(Path::new("c.toml"), &[], false)
                .unwrap()
                .is_none()
        );
        assert!(
            IndexConfig::default()
                .saved_query(Path::new("c.toml"), &[], true)
                .is_err()
        );
    }

    #[test]
    fn sources_follow_saved_queries_to_the_store_tables() {
        let queries = vec![
            saved(
                "a",
                "WITH x AS (SELECT * FROM bologna.fragilita) SELECT * FROM x JOIN b ON true",
            ),
            saved(
                "b",
                "SELECT * FROM queries.c JOIN anpr.popolazione_residente ON true",
            ),
            saved("c", "SELECT * FROM city.bologna.zone"),
        ];
        let sources: Vec<String> = source_tables("a", &queries, &[]).into_iter().collect();
        assert_eq!(
            sources,
            [
                "anpr.popolazione_residente",
                "bologna.fragilita",
                "bologna.zone"
            ]
        );
    }
}
