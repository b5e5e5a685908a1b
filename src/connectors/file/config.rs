//! Configuration of the `file` connector: one connector file lists several tables, each read from
//! one file (CSV, JSON, NDJSON, Parquet or GeoJSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_text::{Problem, is_sql_identifier, resolve};
use crate::geometry::Epsg;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnectorConfig {
    /// Always `"file"`.
    pub kind: String,
    /// What these tables are, for people reading /status.
    #[serde(default)]
    pub description: Option<String>,
    /// How often the files are read again.
    #[serde(with = "humantime_serde", default = "default_refresh")]
    pub refresh: Duration,
    /// The tables, one `[[table]]` each.
    #[serde(rename = "table", default)]
    pub tables: Vec<FileTableConfig>,
}

fn default_refresh() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Json,
    Ndjson,
    Parquet,
    Geojson,
}

impl FileFormat {
    fn from_extension(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" | "tsv" | "txt" => Some(Self::Csv),
            "json" => Some(Self::Json),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            "parquet" => Some(Self::Parquet),
            "geojson" => Some(Self::Geojson),
            _ => None,
        }
    }
}

/// How header names become column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ColumnNames {
    /// `% residenti oltre 65 anni` → `pct_residenti_oltre_65_anni`: usable in SQL without quotes.
    #[default]
    SnakeCase,
    /// Keep the names as written in the file.
    Keep,
}

/// A declared column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
}

/// Build a point geometry column from coordinates held in ordinary columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointColumns {
    /// Column with the longitude (WGS84), or the easting in a projected system: `x` says so.
    #[serde(default, alias = "x")]
    pub lon: Option<String>,
    /// Column with the latitude (WGS84), or the northing in a projected system: `y` says so.
    #[serde(default, alias = "y")]
    pub lat: Option<String>,
    /// Or one column holding "lat, lon" (as Bologna's open data writes `Geo Point`).
    #[serde(default)]
    pub lat_lon: Option<String>,
    /// Name of the geometry column produced.
    #[serde(default = "default_geometry_column")]
    pub column: String,
}

pub fn default_geometry_column() -> String {
    "geometry".to_string()
}

/// Turn a wide table (one column per year) into rows of (name, value).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpivot {
    /// The wide columns, by (normalised) name.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Or every column whose name matches this regular expression, e.g. `^[0-9]{4}$`.
    #[serde(default)]
    pub columns_matching: Option<String>,
    /// Column receiving the former column name, e.g. `anno`.
    pub name_column: String,
    /// Column receiving the value, e.g. `residenti`.
    pub value_column: String,
    /// Type of the name column: `int` when the names are years.
    #[serde(default = "default_unpivot_name_type")]
    pub name_type: ColumnType,
}

fn default_unpivot_name_type() -> ColumnType {
    ColumnType::Text
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// Table name in SQL: `city.<connector>.<name>`.
    pub name: String,
    /// File to read, relative to `cruscotto.toml`; or an object on S3-compatible storage,
    /// `s3://bucket/key`, reached with `[object_store]` in `cruscotto.toml`.
    pub path: PathBuf,
    /// Format; by default from the extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// What the table holds, shown in /status and the catalog.
    #[serde(default)]
    pub description: Option<String>,
    /// Field separator (CSV).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Quote character (CSV).
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Text encoding: `utf-8`, `latin1`, `windows-1252`, or any WHATWG label. A UTF-8 BOM is stripped.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Whether the first row holds the column names (CSV).
    #[serde(default = "default_true")]
    pub header: bool,
    /// The column names of a file without a header row (`header = false`), in order (CSV).
    /// Without them such columns are named `column_1`, `column_2`, …
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Lines to skip before the header (CSV).
    #[serde(default)]
    pub skip_lines: usize,
    /// Decimal separator: `.` or `,` (CSV).
    #[serde(default = "default_decimal")]
    pub decimal: char,
    /// Thousands separator, removed from numbers (CSV), e.g. `.` in Italian files.
    #[serde(default)]
    pub thousands: Option<char>,
    /// Values read as NULL (CSV). The empty string always is.
    #[serde(default)]
    pub null_values: Vec<String>,
    /// How header names become column names.
    #[serde(default)]
    pub column_names: ColumnNames,
    /// Renames applied after normalisation: `{ cod_area_statistica = "codice_area_statistica" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Declared types by (final) column name; other columns are inferred from every value.
    #[serde(default)]
    pub schema: BTreeMap<String, ColumnType>,
    /// Where the records are in a JSON document, as a JSON pointer (`/data/items`).
    #[serde(default)]
    pub json_pointer: Option<String>,
    /// Build a point geometry from coordinate columns.
    #[serde(default)]
    pub point: Option<PointColumns>,
    /// The coordinate system of the source's geometries and point columns, e.g. `EPSG:3003`
    /// (Gauss-Boaga) or `EPSG:32632` (UTM 32N): they are reprojected to WGS84 as they are read,
    /// and a record whose coordinates do not transform, or land outside the system's area, is
    /// rejected. WGS84 longitude/latitude by default.
    #[serde(default)]
    pub crs: Option<String>,
    /// Reshape a wide table into rows.
    #[serde(default)]
    pub unpivot: Option<Unpivot>,
    /// Keep only rows matching this SQL predicate, e.g. `anno = 2021`.
    #[serde(default)]
    pub filter: Option<String>,
    /// The file is written by a built-in simulator when it is missing, and the table is
    /// labelled as simulated data wherever it shows (the demo's service logs).
    #[serde(default)]
    pub simulate: Option<SimulatedFile>,
    /// Columns the table's stored versions are sorted by, e.g. `["metric", "area"]`: a query
    /// filtering on the leading ones reads only the row groups that can match. Rows stay in the
    /// source's order without it.
    #[serde(default)]
    pub sort_by: Vec<String>,
}

/// `simulate = { kind = "service_logs", areas = "data/...csv", events = 200000, seed = 1, year = 2023 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedFile {
    /// What to simulate: `service_logs` (the columns of `servizi.eventi`).
    pub kind: SimulatedKind,
    /// The fragility file giving each area's population and share over 80, relative to
    /// `cruscotto.toml`.
    pub areas: PathBuf,
    /// Events over the year.
    #[serde(default = "default_simulated_events")]
    pub events: u64,
    /// The same seed writes the same file.
    #[serde(default = "default_simulated_seed")]
    pub seed: u64,
    #[serde(default = "default_simulated_year")]
    pub year: i32,
    /// A known effect of interventions injected into the simulated logs (paths relative to
    /// `cruscotto.toml`), so the impact view has a truth to find: `effect = { interventions =
    /// "...csv", areas = "...geojson", points = 5.0 }`.
    #[serde(default)]
    pub effect: Option<crate::simulate::SimulatedEffect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimulatedKind {
    ServiceLogs,
}

fn default_simulated_events() -> u64 {
    200_000
}
fn default_simulated_seed() -> u64 {
    1
}
fn default_simulated_year() -> i32 {
    2023
}

fn default_delimiter() -> char {
    ','
}
fn default_quote() -> char {
    '"'
}
fn default_encoding() -> String {
    "utf-8".to_string()
}
fn default_true() -> bool {
    true
}
fn default_decimal() -> char {
    '.'
}

impl FileTableConfig {
    pub fn format(&self) -> Option<FileFormat> {
        self.format
            .or_else(|| FileFormat::from_extension(&self.path))
    }

    /// The system declared with `crs`, if any.
    pub fn declared_crs(&self) -> Result<Option<&'static Epsg>, String> {
        self.crs.as_deref().map(Epsg::parse).transpose()
    }
}

impl FileConnectorConfig {
    pub fn validate(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let at = |i: usize, key: &str| Some(format!("table[{i}].{key}"));
        if self.tables.is_empty() {
            problems.push(Problem::new(
                file,
                None,
                "no `[[table]]`: a file connector needs at least one table",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, table) in self.tables.iter().enumerate() {
            if !is_sql_identifier(&table.name) {
                problems.push(Problem::new(
                    file,
                    at(i, "name"),
                    format!(
                        "`{}` is not a valid table name: use lowercase letters, digits and `_`",
                        table.name
                    ),
                ));
            }
            if !names.insert(table.name.clone()) {
                problems.push(Problem::new(
                    file,
                    at(i, "name"),
                    format!("table `{}` is declared twice", table.name),
                ));
            }
            if table.format().is_none() {
                problems.push(Problem::new(
                    file,
                    at(i, "format"),
                    format!(
                        "cannot tell the format of `{}` from its extension: set format = \"csv\" | \"json\" | \"ndjson\" | \"parquet\" | \"geojson\"",
                        table.path.display()
                    ),
                ));
            }
            let path = resolve(base_dir, &table.path);
            let object = crate::objects::ObjectUrl::from_path(&table.path);
            if let Some(Err(why)) = &object {
                problems.push(Problem::new(file, at(i, "path"), why.clone()));
            }
            if object.is_some() {
                // Whether the object is there is for the load (or `check`'s reading) to say.
                if table.simulate.is_some() {
                    problems.push(Problem::new(
                        file,
                        at(i, "simulate"),
                        "a simulated table's file is written on disk: give it a local path",
                    ));
                }
            } else if let Some(simulate) = &table.simulate {
                let areas = resolve(base_dir, &simulate.areas);
                if !areas.is_file() {
                    problems.push(Problem::new(
                        file,
                        at(i, "simulate.areas"),
                        format!("`{}` does not exist or is not a file", areas.display()),
                    ));
                }
                if table.format() != Some(FileFormat::Parquet) {
                    problems.push(Problem::new(
                        file,
                        at(i, "path"),
                        "a simulated table is written as Parquet: give the path a .parquet extension",
                    ));
                }
            } else if !path.is_file() {
                problems.push(Problem::warning(
                    file,
                    at(i, "path"),
                    format!("`{}` does not exist or is not a file; the table will be marked failed until it appears", path.display()),
                ));
            }
            if encoding_rs::Encoding::for_label(table.encoding.as_bytes()).is_none() {
                problems.push(Problem::new(
                    file,
                    at(i, "encoding"),
                    format!("unknown encoding `{}`", table.encoding),
                ));
            }
            if !matches!(table.decimal, '.' | ',') {
                problems.push(Problem::new(
                    file,
                    at(i, "decimal"),
                    "the decimal separator must be `.` or `,`",
                ));
            }
            if table.thousands == Some(table.decimal) {
                problems.push(Problem::new(
                    file,
                    at(i, "thousands"),
                    "the thousands separator must differ from the decimal separator",
                ));
            }
            if !table.delimiter.is_ascii() || !table.quote.is_ascii() {
                problems.push(Problem::new(
                    file,
                    at(i, "delimiter"),
                    "the delimiter and quote must be ASCII characters",
                ));
            }
            if let Some(columns) = &table.columns {
                if table.header {
                    problems.push(Problem::new(
                        file,
                        at(i, "columns"),
                        "`columns` names the columns of a file without a header row: set `header = false`, or remove `columns` and use `rename`",
                    ));
                }
                if columns.is_empty() {
                    problems.push(Problem::new(file, at(i, "columns"), "`columns` is empty"));
                }
            }
            if let Some(point) = &table.point {
                let pair = point.lon.is_some() && point.lat.is_some();
                if pair == point.lat_lon.is_some() {
                    problems.push(Problem::new(
                        file,
                        at(i, "point"),
                        "set either `lon` and `lat`, or `lat_lon`",
                    ));
                }
            }
            if let Err(why) = table.declared_crs() {
                problems.push(Problem::new(
                    file,
                    at(i, "crs"),
                    format!("table `{}`: {why}", table.name),
                ));
            }
            if let Some(unpivot) = &table.unpivot {
                if unpivot.columns.is_empty() == unpivot.columns_matching.is_none() {
                    problems.push(Problem::new(
                        file,
                        at(i, "unpivot"),
                        "set either `columns` or `columns_matching`",
                    ));
                }
                if let Some(pattern) = &unpivot.columns_matching
                    && let Err(e) = regex_lite_check(pattern)
                {
                    problems.push(Problem::new(file, at(i, "unpivot.columns_matching"), e));
                }
            }
            if let Some(filter) = &table.filter
                && let Err(e) = datafusion::sql::parser::DFParser::parse_sql_into_expr(filter)
            {
                problems.push(Problem::new(
                    file,
                    at(i, "filter"),
                    format!("not a SQL predicate: {e}"),
                ));
            }
        }
        problems
    }
}

fn regex_lite_check(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("not a regular expression: {e}"))
}
