//! `cruscotto init <folder>`: a first configuration for a folder of data files. Each file becomes
//! a table of one file connector, with what a person would otherwise work out by hand: the CSV
//! dialect (encoding, delimiter, header, decimal comma, thousands separator), the JSON envelope,
//! the geometry (GeoJSON, coordinate columns, "lat, lon" text) and its CRS, and the types of
//! every column, declared so a later file cannot change them silently. The polygons become the
//! map's areas in a saved query and a dashboard; point tables become point layers. What could not
//! be decided is said, with the option that settles it.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::Array;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::connectors::file::{self, FileTableConfig, names, reshape};
use crate::geometry::is_geometry;

/// What `init` wrote and what it could not decide.
#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<PathBuf>,
    /// One line per table: its name, file and columns.
    pub tables: Vec<String>,
    /// Each choice made on a guess, or left to the user, with the option to set.
    pub undecided: Vec<String>,
    /// Files in the folder that are not data files.
    pub skipped: Vec<String>,
}

/// One table as `init` understood it.
struct Table {
    name: String,
    file: String,
    /// The `[[table]]` body, TOML.
    toml: String,
    schema: SchemaRef,
    batch: RecordBatch,
    geometry: Option<GeometryKind>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GeometryKind {
    Areas,
    Points,
}

/// Write `cruscotto.toml`, `connectors/dati.toml`, the saved queries and a dashboard for the data
/// files of `folder`. Nothing that exists is overwritten.
pub async fn init(folder: &Path, city: Option<&str>) -> Result<Report, String> {
    let mut report = Report::default();
    let config_path = folder.join("cruscotto.toml");
    for existing in ["cruscotto.toml", "connectors", "queries", "dashboards"] {
        if folder.join(existing).exists() {
            return Err(format!(
                "{} already exists: init writes a new configuration only, into a folder that has none",
                folder.join(existing).display()
            ));
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| format!("cannot read the folder {}: {e}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut tables: Vec<Table> = Vec::new();
    let mut used = BTreeSet::new();
    for path in files {
        let (file_name, extension) = name_and_extension(&path);
        let known = [
            "csv", "tsv", "txt", "json", "geojson", "ndjson", "jsonl", "parquet",
        ];
        if !known.contains(&extension.as_str()) {
            report.skipped.push(file_name);
            continue;
        }
        let name = table_name(&path, &mut used);
        match understand(folder, &path, &name, &mut report.undecided).await {
            Ok(table) => tables.push(table),
            Err(reason) => report
                .undecided
                .push(format!("{file_name}: not added ({reason})")),
        }
    }
    if tables.is_empty() {
        let reasons = report
            .undecided
            .iter()
            .map(|r| format!("\n  {r}"))
            .collect::<String>();
        return Err(format!(
            "no data file (CSV, JSON, GeoJSON, NDJSON, Parquet) that could be read in {}{reasons}",
            folder.display()
        ));
    }

    let city_name = city.map(str::to_string).unwrap_or_else(|| {
        folder
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "La mia città".into())
    });
    let mut connector = format!(
        "# Written by `cruscotto init` from the files of this folder: check each choice, then\n\
         # `cruscotto --config cruscotto.toml check`. Tables are `dati.<name>` in SQL.\n\
         kind = \"file\"\n\
         description = \"Open data of {}\"\n\
         refresh = \"24h\"\n",
        toml_text(&city_name)
    );
    for table in &tables {
        connector.push('\n');
        connector.push_str(&table.toml);
        report.tables.push(format!(
            "dati.{} ({}): {}",
            table.name,
            table.file,
            describe_columns(&table.schema)
        ));
    }

    let mut queries: Vec<(String, String)> = Vec::new();
    let areas = choose_areas(&tables, &mut report.undecided);
    let mut points = Vec::new();
    for table in tables
        .iter()
        .filter(|t| t.geometry == Some(GeometryKind::Points))
    {
        let label = choose_column(
            table,
            &NAME_HINTS,
            false,
            &format!("points of `{}`", table.name),
            &mut report.undecided,
        );
        if let Some(label) = label {
            let query = format!("mappa_{}", table.name);
            queries.push((query.clone(), point_query(table, &label)));
            points.push((query, label, table.name.clone()));
        }
    }
    let dashboard = match &areas {
        Some((table, id, name)) => {
            let query = format!("{}_mappa", table.name);
            queries.push((query.clone(), area_query(table, id, name)));
            Some(dashboard_toml(&city_name, &query, id, name, &points))
        }
        None => {
            report.undecided.push(
                "no file has polygons: no map was written; add the areas (GeoJSON polygons) and run init again in a new folder, or write dashboards/ by hand (README: Dashboards)".into(),
            );
            None
        }
    };
    let center = areas
        .as_ref()
        .and_then(|(t, _, _)| bounding_box(&t.batch))
        .map(|(min_x, min_y, max_x, max_y)| {
            let span = (max_x - min_x).max(max_y - min_y).max(1e-3);
            let zoom = ((360.0 / span).log2() - 0.5).clamp(3.0, 16.0);
            (
                ((min_x + max_x) / 2.0),
                ((min_y + max_y) / 2.0),
                zoom.round(),
            )
        });

    let write = |relative: &str, text: &str, report: &mut Report| -> Result<(), String> {
        let path = folder.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report.written.push(path);
        Ok(())
    };
    write(
        "cruscotto.toml",
        &main_config(&city_name, center),
        &mut report,
    )?;
    write("connectors/dati.toml", &connector, &mut report)?;
    for (name, sql) in &queries {
        write(&format!("queries/{name}.sql"), sql, &mut report)?;
    }
    match &dashboard {
        Some(text) => write("dashboards/mappa.toml", text, &mut report)?,
        None => std::fs::create_dir_all(folder.join("dashboards"))
            .map_err(|e| format!("cannot create dashboards/: {e}"))?,
    }
    let _ = config_path;
    Ok(report)
}

/// A file's name, and its extension in lower case.
fn name_and_extension(path: &Path) -> (String, String) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    (name.to_string(), extension.to_ascii_lowercase())
}

/// A unique SQL name for a file's table, from its name.
fn table_name(path: &Path, used: &mut BTreeSet<String>) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let mut name = names::snake_case(&stem, 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name = format!("t_{name}");
    }
    let base = name.clone();
    let mut n = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Read one file the way its table will be read, deciding the options on the way.
async fn understand(
    folder: &Path,
    path: &Path,
    name: &str,
    undecided: &mut Vec<String>,
) -> Result<Table, String> {
    let (file_name, extension) = name_and_extension(path);
    let mut options: Vec<String> = Vec::new();
    match extension.as_str() {
        "csv" | "tsv" | "txt" => {
            let dialect = sniff_csv(path)?;
            if extension == "txt" {
                options.push("format = \"csv\"".into());
            }
            if dialect.encoding != "utf-8" {
                options.push(format!("encoding = \"{}\"", dialect.encoding));
                undecided.push(format!(
                    "{file_name}: not UTF-8; read as {} (set `encoding` if accents look wrong)",
                    dialect.encoding
                ));
            }
            options.push(format!(
                "delimiter = \"{}\"",
                escape_char(dialect.delimiter)
            ));
            if !dialect.header {
                options.push("header = false".into());
                undecided.push(format!(
                    "{file_name}: the first row holds values, not names: columns are column_1…column_{}; name them with `columns = [...]`",
                    dialect.width
                ));
            }
            if dialect.decimal_comma {
                options.push("decimal = \",\"".into());
            }
            if dialect.thousands_dot {
                options.push("thousands = \".\"".into());
            }
        }
        "json" => {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
            let candidates = record_arrays(&value, "");
            match candidates.as_slice() {
                [] => return Err("no array of records in the document".into()),
                [(pointer, _)] if pointer.is_empty() => {}
                [(pointer, _)] => options.push(format!("json_pointer = \"{pointer}\"")),
                [(pointer, _), ..] => {
                    options.push(format!("json_pointer = \"{pointer}\""));
                    let others: Vec<&str> =
                        candidates[1..].iter().map(|(p, _)| p.as_str()).collect();
                    undecided.push(format!(
                        "{file_name}: several arrays of records; took the largest, `{pointer}` (others: {}); set `json_pointer`",
                        others.join(", ")
                    ));
                }
            }
        }
        "geojson" => {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
            let mut xs = Vec::new();
            collect_coordinates(&value["features"], &mut xs);
            if let Some(crs) = guess_crs(&xs, &file_name, undecided) {
                options.push(format!("crs = \"{crs}\""));
            }
        }
        _ => {}
    }

    let relative = path.strip_prefix(folder).unwrap_or(path);
    // The table's keys; written under `[[table]]`, parsed here on their own.
    let head = format!(
        "name = \"{name}\"\npath = \"{}\"\n{}",
        toml_text(&relative.to_string_lossy()),
        options.iter().map(|o| format!("{o}\n")).collect::<String>()
    );
    let mut config: FileTableConfig = toml::from_str(&head)
        .map_err(|e| format!("internal: the table options do not parse: {e}"))?;
    let loaded = file::load_table(config.clone(), path.to_path_buf())
        .await
        .map_err(|e| e.to_string())?;
    let mut batch = arrow::compute::concat_batches(&loaded.schema, &loaded.batches)
        .map_err(|e| e.to_string())?;
    let mut extra: Vec<String> = Vec::new();
    let mut geometry = geometry_kind(&batch);

    // Coordinates in ordinary columns.
    if geometry.is_none() {
        if let Some((point, crs)) = find_point(&batch, &file_name, undecided) {
            extra.push(point);
            if let Some(crs) = crs {
                extra.push(format!("crs = \"{crs}\""));
            }
        }
    }
    // Every column's inferred type, declared so that a later file cannot change it silently
    // (codes with leading zeros are already text).
    let mut schema_entries = Vec::new();
    for field in batch.schema().fields() {
        if is_geometry(field) {
            continue;
        }
        if let Some(kind) = column_type(field.data_type()) {
            schema_entries.push(format!("{} = \"{kind}\"", field.name()));
        }
    }
    if !schema_entries.is_empty() {
        extra.push(format!("schema = {{ {} }}", schema_entries.join(", ")));
    }
    let body = format!(
        "{head}{}",
        extra.iter().map(|o| format!("{o}\n")).collect::<String>()
    );
    if !extra.is_empty() {
        config = toml::from_str(&body)
            .map_err(|e| format!("internal: the table options do not parse: {e}"))?;
        let loaded = file::load_table(config, path.to_path_buf())
            .await
            .map_err(|e| e.to_string())?;
        batch = arrow::compute::concat_batches(&loaded.schema, &loaded.batches)
            .map_err(|e| e.to_string())?;
        geometry = geometry_kind(&batch);
        if !loaded.rejected.is_empty() {
            undecided.push(format!(
                "{file_name}: {} record(s) rejected on load (see /status once served)",
                loaded.rejected.len()
            ));
        }
    }
    Ok(Table {
        name: name.to_string(),
        file: file_name,
        toml: format!("[[table]]\n{body}"),
        schema: batch.schema(),
        batch,
        geometry,
    })
}

struct Dialect {
    encoding: &'static str,
    delimiter: char,
    header: bool,
    width: usize,
    decimal_comma: bool,
    thousands_dot: bool,
}

/// Records sampled to decide a CSV's dialect.
const SAMPLE_RECORDS: usize = 2_000;

fn sniff_csv(path: &Path) -> Result<Dialect, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let (text, encoding) = match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (
            encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
            "windows-1252",
        ),
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(50)
        .collect();
    if lines.is_empty() {
        return Err("the file is empty".into());
    }
    // The delimiter splitting every sampled line into the same number (>1) of fields.
    let delimiter = [';', ',', '\t', '|']
        .into_iter()
        .filter_map(|d| {
            let counts: Vec<usize> = lines.iter().map(|l| fields(l, d).len()).collect();
            let consistent = counts.iter().all(|&c| c == counts[0]);
            (counts[0] > 1 && consistent).then_some((d, counts[0]))
        })
        .max_by_key(|&(_, n)| n)
        .map(|(d, _)| d)
        .unwrap_or(',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter as u8)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let rows: Vec<Vec<String>> = reader
        .records()
        .take(SAMPLE_RECORDS + 1)
        .filter_map(Result::ok)
        .map(|r| r.iter().map(|f| f.trim().to_string()).collect())
        .collect();
    let width = rows.first().map_or(0, Vec::len);
    let number = regex::Regex::new(r"^-?[0-9][0-9.,]*$").expect("valid");
    // No header when some column holds numbers below and a number in the first row too.
    let header = !(0..width).any(|i| {
        let first = rows[0].get(i).is_some_and(|v| number.is_match(v));
        let below = rows[1..]
            .iter()
            .filter_map(|r| r.get(i))
            .filter(|v| !v.is_empty())
            .all(|v| number.is_match(v));
        first && below && rows.len() > 1
    });
    let body = if header { &rows[1..] } else { &rows[..] };
    let decimal_re = regex::Regex::new(r"^-?[0-9]+,[0-9]+$").expect("valid");
    let thousands_re = regex::Regex::new(r"^-?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?$").expect("valid");
    let values = || body.iter().flatten();
    let decimal_comma = delimiter != ',' && values().any(|v| decimal_re.is_match(v));
    let thousands_dot = decimal_comma && values().any(|v| thousands_re.is_match(v));
    Ok(Dialect {
        encoding,
        delimiter,
        header,
        width,
        decimal_comma,
        thousands_dot,
    })
}

/// A line's fields, splitting on `delimiter` outside double quotes.
fn fields(line: &str, delimiter: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == delimiter && !quoted {
            out.push(&line[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&line[start..]);
    out
}

/// Every array of objects in a JSON document with its JSON pointer, the largest first.
fn record_arrays(value: &serde_json::Value, at: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    match value {
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            out.push((at.to_string(), items.len()));
        }
        serde_json::Value::Object(map) if at.matches('/').count() < 3 => {
            for (key, child) in map {
                let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.extend(record_arrays(child, &pointer));
            }
        }
        _ => {}
    }
    out.sort_by(|a, b| b.1.cmp(&a.1));
    out
}

/// Up to a few thousand coordinate pairs of a GeoJSON feature array.
fn collect_coordinates(value: &serde_json::Value, out: &mut Vec<(f64, f64)>) {
    if out.len() >= 5_000 {
        return;
    }
    match value {
        serde_json::Value::Array(items) => {
            if let [
                serde_json::Value::Number(x),
                serde_json::Value::Number(y),
                ..,
            ] = items.as_slice()
            {
                if let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) {
                    out.push((x, y));
                }
                return;
            }
            for item in items {
                collect_coordinates(item, out);
            }
        }
        serde_json::Value::Object(map) => {
            if let Some(geometry) = map.get("geometry") {
                collect_coordinates(geometry, out);
            } else if let Some(coordinates) = map.get("coordinates") {
                collect_coordinates(coordinates, out);
            }
        }
        _ => {}
    }
}

/// The CRS coordinates are probably in, from their ranges: `None` for longitude/latitude. The
/// CRSs Italian data come in are told apart by their false eastings; UTM 32N and 33N are not.
fn guess_crs(points: &[(f64, f64)], file: &str, undecided: &mut Vec<String>) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let within = |x: std::ops::Range<f64>, y: std::ops::Range<f64>| {
        points.iter().all(|(a, b)| x.contains(a) && y.contains(b))
    };
    if within(-180.0..180.0, -90.0..90.0) {
        return None;
    }
    let (x, y) = points[0];
    let guess = if within(1_200_000.0..1_900_000.0, 4_000_000.0..5_300_000.0) {
        ("EPSG:3003", "Gauss-Boaga Monte Mario, fuso Ovest")
    } else if within(2_200_000.0..2_900_000.0, 4_000_000.0..5_300_000.0) {
        ("EPSG:3004", "Gauss-Boaga Monte Mario, fuso Est")
    } else if within(100_000.0..1_000_000.0, 4_000_000.0..5_300_000.0) {
        undecided.push(format!(
            "{file}: coordinates are UTM metres (e.g. {x:.0}, {y:.0}); zone 32 or 33 cannot be told from them: guessed EPSG:32632 (UTM 32N, most of Italy west of 12°E); set `crs = \"EPSG:32633\"` for the east (or the ETRF2000 codes 6707/6708, 7791/7792)"
        ));
        return Some("EPSG:32632".into());
    } else {
        undecided.push(format!(
            "{file}: coordinates (e.g. {x:.1}, {y:.1}) are neither longitude/latitude nor a CRS of Italian data that init knows: set `crs`"
        ));
        return None;
    };
    undecided.push(format!(
        "{file}: coordinates are projected (e.g. {x:.0}, {y:.0}): guessed {} ({}); set `crs` if wrong",
        guess.0, guess.1
    ));
    Some(guess.0.to_string())
}

const LAT_NAMES: [&str; 6] = [
    "lat",
    "latitudine",
    "latitude",
    "y_lat",
    "lat_y",
    "latitudine_y",
];
const LON_NAMES: [&str; 8] = [
    "lon",
    "lng",
    "long",
    "longitudine",
    "longitude",
    "x_lon",
    "lon_x",
    "longitudine_x",
];
const X_NAMES: [&str; 5] = ["x", "coord_x", "coordinata_x", "est", "easting"];
const Y_NAMES: [&str; 5] = ["y", "coord_y", "coordinata_y", "nord", "northing"];

/// A `point = {...}` option from coordinate columns, with the CRS when they are projected.
fn find_point(
    batch: &RecordBatch,
    file: &str,
    undecided: &mut Vec<String>,
) -> Option<(String, Option<String>)> {
    let schema = batch.schema();
    let named = |names: &[&str]| {
        schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .find(|n| names.contains(&n.as_str()))
    };
    let numbers = |column: &str| -> Vec<f64> {
        let Some(array) = batch.column_by_name(column) else {
            return Vec::new();
        };
        let Ok(cast) = arrow::compute::cast(array, &DataType::Float64) else {
            return Vec::new();
        };
        let cast = cast
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .cloned();
        cast.map(|a| a.iter().flatten().take(5_000).collect())
            .unwrap_or_default()
    };
    if let (Some(lat), Some(lon)) = (named(&LAT_NAMES), named(&LON_NAMES)) {
        let pairs: Vec<(f64, f64)> = numbers(&lon).into_iter().zip(numbers(&lat)).collect();
        let crs = guess_crs(&pairs, file, undecided);
        return Some((
            format!("point = {{ lon = \"{lon}\", lat = \"{lat}\" }}"),
            crs,
        ));
    }
    if let (Some(x), Some(y)) = (named(&X_NAMES), named(&Y_NAMES)) {
        let pairs: Vec<(f64, f64)> = numbers(&x).into_iter().zip(numbers(&y)).collect();
        let crs = guess_crs(&pairs, file, undecided);
        return Some((format!("point = {{ lon = \"{x}\", lat = \"{y}\" }}"), crs));
    }
    // One text column whose values are points: "lat, lon", "(lat, lon)", WKT POINT(lon lat).
    for field in schema.fields() {
        if field.data_type() != &DataType::Utf8 {
            continue;
        }
        let Some(values) = batch
            .column_by_name(field.name())
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
        else {
            continue;
        };
        let present: Vec<&str> = values
            .iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .take(5_000)
            .collect();
        if present.is_empty() {
            continue;
        }
        let parsed = present
            .iter()
            .filter(|v| reshape::parse_lat_lon(v).is_ok())
            .count();
        if parsed * 10 >= present.len() * 9 {
            if parsed < present.len() {
                undecided.push(format!(
                    "{file}: {} of {} values of `{}` are not points: those records will be rejected",
                    present.len() - parsed,
                    present.len(),
                    field.name()
                ));
            }
            return Some((
                format!("point = {{ lat_lon = \"{}\" }}", field.name()),
                None,
            ));
        }
    }
    None
}

/// The table's geometry column (WKB), if it has one.
fn geometry_column(batch: &RecordBatch) -> Option<&arrow::array::BinaryArray> {
    let index = batch
        .schema()
        .fields()
        .iter()
        .position(|f| is_geometry(f))?;
    batch.column(index).as_any().downcast_ref()
}

fn geometry_kind(batch: &RecordBatch) -> Option<GeometryKind> {
    let column = geometry_column(batch)?;
    let mut polygons = 0;
    let mut others = 0;
    for value in column.iter().flatten().take(1_000) {
        match crate::geometry::wkb_to_geo(value) {
            Ok(geo_types::Geometry::Polygon(_) | geo_types::Geometry::MultiPolygon(_)) => {
                polygons += 1
            }
            Ok(_) => others += 1,
            Err(_) => {}
        }
    }
    if polygons > 0 && polygons >= others {
        Some(GeometryKind::Areas)
    } else if others > 0 {
        Some(GeometryKind::Points)
    } else {
        None
    }
}

fn bounding_box(batch: &RecordBatch) -> Option<(f64, f64, f64, f64)> {
    use geo::BoundingRect;
    let column = geometry_column(batch)?;
    let mut bounds: Option<(f64, f64, f64, f64)> = None;
    for value in column.iter().flatten() {
        let Some(rect) = crate::geometry::wkb_to_geo(value)
            .ok()
            .and_then(|g| g.bounding_rect())
        else {
            continue;
        };
        let (a, b) = (rect.min(), rect.max());
        bounds = Some(match bounds {
            None => (a.x, a.y, b.x, b.y),
            Some((x0, y0, x1, y1)) => (x0.min(a.x), y0.min(a.y), x1.max(b.x), y1.max(b.y)),
        });
    }
    bounds
}

const ID_HINTS: [&str; 8] = [
    "istat", "pro_com", "codice", "cod", "code", "sigla", "id", "numero",
];
const NAME_HINTS: [&str; 8] = [
    "nome",
    "name",
    "denominazione",
    "comune",
    "den_",
    "descrizione",
    "titolo",
    "label",
];

/// The table of polygons, with its id and name columns.
fn choose_areas<'a>(
    tables: &'a [Table],
    undecided: &mut Vec<String>,
) -> Option<(&'a Table, String, String)> {
    let candidates: Vec<&Table> = tables
        .iter()
        .filter(|t| t.geometry == Some(GeometryKind::Areas))
        .collect();
    let table = *candidates.first()?;
    if candidates.len() > 1 {
        let others: Vec<&str> = candidates[1..].iter().map(|t| t.name.as_str()).collect();
        undecided.push(format!(
            "several files have polygons: the map's areas are `{}`; the others ({}) are tables you can join (dashboards/mappa.toml, [map.areas])",
            table.name,
            others.join(", ")
        ));
    }
    let what = format!("areas of `{}`", table.name);
    let id = choose_column(table, &ID_HINTS, true, &what, undecided)?;
    let name = choose_column(table, &NAME_HINTS, false, &what, undecided).unwrap_or(id.clone());
    Some((table, id, name))
}

/// A column for a role: an id (unique, non-null values) or a name (text), preferring the names
/// hinting at it; the choice is reported when it is a guess.
fn choose_column(
    table: &Table,
    hints: &[&str],
    unique: bool,
    what: &str,
    undecided: &mut Vec<String>,
) -> Option<String> {
    let batch = &table.batch;
    let schema = batch.schema();
    let qualifies = |i: usize| -> bool {
        let field = schema.field(i);
        if is_geometry(field) {
            return false;
        }
        let column = batch.column(i);
        if unique {
            if column.null_count() > 0 {
                return false;
            }
            let Ok(text) = arrow::compute::cast(column, &DataType::Utf8) else {
                return false;
            };
            let Some(text) = text.as_any().downcast_ref::<arrow::array::StringArray>() else {
                return false;
            };
            let distinct: HashSet<&str> = text.iter().flatten().collect();
            distinct.len() == batch.num_rows()
        } else {
            field.data_type() == &DataType::Utf8
        }
    };
    let qualifying: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| qualifies(i))
        .collect();
    // The hints in their order of preference, each against the columns in the file's order.
    let hinted = hints.iter().find_map(|h| {
        qualifying
            .iter()
            .copied()
            .find(|&i| schema.field(i).name().contains(h))
    });
    let role = if unique { "id" } else { "name" };
    match (hinted, qualifying.first()) {
        (Some(i), _) => Some(schema.field(i).name().clone()),
        (None, Some(&i)) => {
            let chosen = schema.field(i).name().clone();
            undecided.push(format!(
                "{what}: no column is named like a{} {role}; chose `{chosen}`",
                if unique { "n" } else { "" }
            ));
            Some(chosen)
        }
        (None, None) => {
            undecided.push(format!(
                "{what}: no column can serve as the {role} ({}): left out",
                if unique {
                    "none has a distinct value on every row"
                } else {
                    "none is text"
                }
            ));
            None
        }
    }
}

fn column_type(data_type: &DataType) -> Option<&'static str> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "int",
        DataType::Float32 | DataType::Float64 => "float",
        DataType::Boolean => "bool",
        DataType::Date32 => "date",
        DataType::Timestamp(_, _) => "timestamp",
        _ => return None,
    })
}

fn describe_columns(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let kind = if is_geometry(f) {
                "geometry"
            } else {
                column_type(f.data_type()).unwrap_or("other")
            };
            format!("{} {kind}", f.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn area_query(table: &Table, id: &str, name: &str) -> String {
    format!(
        "-- title: {title}\n\
         -- title_en: {title}\n\
         -- description: Le aree della mappa ({file}), con la loro superficie.\n\
         -- description_en: The map's areas ({file}), with their surface.\n\
         -- unit: km²\n\
         -- polarity: neutral\n\
         -- sources: dati.{table}\n\
         -- method: Superficie geodetica (ellissoide WGS84) dei poligoni, in km².\n\
         -- method_en: Geodesic area (WGS84 ellipsoid) of the polygons, in km².\n\
         -- columns: {id} = Codice; {name} = Nome; superficie_km2 = Superficie [km²]\n\
         SELECT\n    {id},\n    {name_select}geometry,\n    round(ST_Area(geometry, true) / 1e6, 2) AS superficie_km2\nFROM dati.{table}\n",
        title = table.name.replace('_', " "),
        file = table.file,
        table = table.name,
        name_select = if name == id {
            String::new()
        } else {
            format!("{name},\n    ")
        },
    )
}

fn point_query(table: &Table, label: &str) -> String {
    format!(
        "-- title: {title}\n\
         -- title_en: {title}\n\
         -- description: I punti di {file}.\n\
         -- description_en: The points of {file}.\n\
         -- polarity: neutral\n\
         -- sources: dati.{table}\n\
         SELECT {label}, geometry\nFROM dati.{table}\nWHERE geometry IS NOT NULL\n",
        title = table.name.replace('_', " "),
        file = table.file,
        table = table.name,
    )
}

fn dashboard_toml(
    city: &str,
    query: &str,
    id: &str,
    name: &str,
    points: &[(String, String, String)],
) -> String {
    let mut out = format!(
        "# Written by `cruscotto init`: the areas and their surface. Add indicators (saved queries\n\
         # joined to the areas by `{id}`) as [[map.indicators]], and panels (README: Dashboards).\n\
         title = \"{city}\"\n\
         title_en = \"{city}\"\n\
         \n\
         [map.areas]\n\
         query = \"{query}\"\n\
         id = \"{id}\"\n\
         name = \"{name}\"\n\
         \n\
         [[map.indicators]]\n\
         query = \"{query}\"\n\
         value = \"superficie_km2\"\n\
         label = \"Superficie\"\n\
         label_en = \"Area\"\n\
         default = true\n",
        city = toml_text(city),
    );
    for (query, label, table) in points {
        let _ = write!(
            out,
            "\n[[map.points]]\nname = \"{table}\"\nquery = \"{query}\"\nlabel = \"{label}\"\ntitle = \"{}\"\n",
            table.replace('_', " ")
        );
    }
    out
}

fn main_config(city: &str, center: Option<(f64, f64, f64)>) -> String {
    let mut out = format!(
        "# Written by `cruscotto init`. Relative paths are resolved against this file's folder.\n\
         listen = \"127.0.0.1:8080\"\n\
         data_dir = \"var\"\n\
         connectors_dir = \"connectors\"\n\
         queries_dir = \"queries\"\n\
         dashboards_dir = \"dashboards\"\n\
         \n\
         # Requests without a key act as an analyst, to try it on 127.0.0.1. A real installation\n\
         # sets anonymous = \"none\" and creates keys (`cruscotto keys create`).\n\
         [access]\n\
         anonymous = \"analyst\"\n\
         dashboard = \"public\"\n\
         \n\
         # The pages' name, the catalogue's publisher; add istat_code, ipa_code, logo, tagline,\n\
         # attribution (README: Configuration).\n\
         [city]\n\
         name = \"{city}\"\n",
        city = toml_text(city)
    );
    if let Some((lon, lat, zoom)) = center {
        let _ = writeln!(out, "center = [{lon:.4}, {lat:.4}]\nzoom = {zoom}");
    }
    out
}

/// Text for inside a TOML basic string.
fn toml_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn escape_char(c: char) -> String {
    match c {
        '\t' => "\\t".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crs_is_guessed_from_the_coordinates_ranges() {
        let mut undecided = Vec::new();
        assert_eq!(guess_crs(&[(11.34, 44.49)], "a", &mut undecided), None);
        assert_eq!(
            guess_crs(&[(1_686_000.0, 4_929_000.0)], "a", &mut undecided).as_deref(),
            Some("EPSG:3003")
        );
        assert_eq!(
            guess_crs(&[(2_315_000.0, 4_640_000.0)], "a", &mut undecided).as_deref(),
            Some("EPSG:3004")
        );
        assert_eq!(
            guess_crs(&[(686_000.0, 4_929_000.0)], "a", &mut undecided).as_deref(),
            Some("EPSG:32632")
        );
        assert_eq!(undecided.len(), 3, "{undecided:?}");
        assert!(undecided[2].contains("zone 32 or 33"), "{undecided:?}");
    }

    #[test]
    fn envelopes_are_found_largest_first() {
        let value = serde_json::json!({
            "meta": {"count": 2},
            "data": {"items": [{"a": 1}, {"a": 2}], "links": [{"href": "x"}]}
        });
        assert_eq!(
            record_arrays(&value, ""),
            vec![
                ("/data/items".to_string(), 2),
                ("/data/links".to_string(), 1)
            ]
        );
    }

    #[test]
    fn delimiters_split_outside_quotes() {
        assert_eq!(fields("a;\"b;c\";d", ';'), vec!["a", "\"b;c\"", "d"]);
    }
}
