//! JSON documents, NDJSON and GeoJSON: objects become rows through arrow-json (schema inferred
//! from every object), GeoJSON features add their geometry as a WKB column, reprojected to WGS84
//! when the source is in another system.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};
use crate::geometry::{Epsg, Reprojection, WGS84, geo_to_wkb, wkb_field};

type Object = Map<String, Value>;

fn parse_error(path: &Path, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Parse {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Records of a JSON document: the array at `pointer` (or the whole document if it is an array).
pub fn read_json(
    path: &Path,
    text: &str,
    pointer: Option<&str>,
) -> Result<(Vec<Object>, Vec<RejectedRecord>), ConnectorError> {
    let document: Value =
        serde_json::from_str(text).map_err(|e| parse_error(path, format!("invalid JSON: {e}")))?;
    let records = match pointer {
        Some(pointer) => document
            .pointer(pointer)
            .ok_or_else(|| parse_error(path, format!("nothing at JSON pointer `{pointer}`")))?,
        None => &document,
    };
    let Value::Array(items) = records else {
        return Err(parse_error(
            path,
            "the records are not a JSON array (set `json_pointer` to where they are)",
        ));
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(object) => objects.push(object.clone()),
            other => rejected.push(RejectedRecord {
                time: None,
                source: path.display().to_string(),
                line: None,
                reason: format!("record {} is not a JSON object", i + 1),
                raw: truncate_raw(&other.to_string()),
            }),
        }
    }
    Ok((objects, rejected))
}

/// One object per line; a bad line is rejected with its number, the others load.
pub fn read_ndjson(path: &Path, text: &str) -> (Vec<Object>, Vec<RejectedRecord>) {
    let mut objects = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match ndjson_line(path, i as u64 + 1, line) {
            Ok(Some(object)) => objects.push(object),
            Ok(None) => {}
            Err(record) => rejected.push(record),
        }
    }
    (objects, rejected)
}

/// The object on line `number` of an NDJSON text: nothing on a blank line, a rejected record
/// saying why on a line that is not a JSON object.
pub fn ndjson_line(path: &Path, number: u64, line: &str) -> Result<Option<Object>, RejectedRecord> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let reason = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => return Ok(Some(object)),
        Ok(_) => "not a JSON object".to_string(),
        Err(e) => format!("invalid JSON: {e}"),
    };
    Err(RejectedRecord {
        time: None,
        source: path.display().to_string(),
        line: Some(number),
        reason,
        raw: truncate_raw(line),
    })
}

/// GeoJSON features: their properties, plus the geometry as WKB in `geometry_column`, in WGS84.
/// The coordinates are in `declared` (the table's `crs`), or in the system the file's `crs`
/// member names (GeoJSON 2008, as QGIS and ogr2ogr still write it), or else WGS84; they are
/// reprojected to WGS84, and a feature with a coordinate that does not transform, or lands
/// outside the system's extent, is rejected with the reason.
pub fn read_geojson(
    path: &Path,
    text: &str,
    geometry_column: &str,
    declared: Option<&'static Epsg>,
) -> Result<(Vec<Object>, ArrayRef, Vec<RejectedRecord>), ConnectorError> {
    let geojson: geojson::GeoJson = text
        .parse()
        .map_err(|e| parse_error(path, format!("invalid GeoJSON: {e}")))?;
    let (features, members) = match geojson {
        geojson::GeoJson::FeatureCollection(collection) => {
            (collection.features, collection.foreign_members)
        }
        geojson::GeoJson::Feature(feature) => {
            let members = feature.foreign_members.clone();
            (vec![feature], members)
        }
        geojson::GeoJson::Geometry(_) => {
            return Err(parse_error(
                path,
                "a bare geometry, not a Feature or FeatureCollection",
            ));
        }
    };
    let crs = source_crs(path, members.as_ref(), declared)?;
    let reprojection = (!crs.is_geographic()).then(|| Reprojection::for_loading(crs));
    let mut objects = Vec::with_capacity(features.len());
    let mut geometries = BinaryBuilder::new();
    let mut rejected = Vec::new();
    for (i, feature) in features.into_iter().enumerate() {
        let wkb = match &feature.geometry {
            None => Ok(None),
            Some(geometry) => geo_types::Geometry::<f64>::try_from(&geometry.value)
                .map_err(|e| e.to_string())
                .and_then(|g| match &reprojection {
                    Some(reprojection) => reprojection.geometry(&g),
                    None => Ok(g),
                })
                .and_then(|g| geo_to_wkb(&g))
                .map(Some),
        };
        match wkb {
            Ok(wkb) => {
                geometries.append_option(wkb);
                objects.push(feature.properties.unwrap_or_default());
            }
            Err(reason) => rejected.push(RejectedRecord {
                time: None,
                source: path.display().to_string(),
                line: None,
                reason: format!("feature {}: {reason}", i + 1),
                raw: truncate_raw(&serde_json::to_string(&feature.properties).unwrap_or_default()),
            }),
        }
    }
    if objects.iter().any(|o| o.contains_key(geometry_column)) {
        return Err(parse_error(
            path,
            format!("a property is named `{geometry_column}`, which is the geometry column"),
        ));
    }
    Ok((objects, Arc::new(geometries.finish()), rejected))
}

/// The system of a GeoJSON source: the declared one, else the file's `crs` member
/// (`{"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3003"}}`), else WGS84. A file
/// and a declaration that disagree are an error, as is a member naming an unknown system.
fn source_crs(
    path: &Path,
    members: Option<&Object>,
    declared: Option<&'static Epsg>,
) -> Result<&'static Epsg, ConnectorError> {
    let member = members
        .and_then(|m| m.get("crs"))
        .and_then(|crs| crs.pointer("/properties/name"))
        .and_then(Value::as_str);
    let in_file = match member {
        None => None,
        Some(name) => Some(
            Epsg::parse(name)
                .map_err(|why| parse_error(path, format!("the file's `crs` member: {why}")))?,
        ),
    };
    match (declared, in_file) {
        (Some(declared), Some(in_file)) if declared != in_file => Err(parse_error(
            path,
            format!("the table's `crs` is {declared} but the file declares {in_file}"),
        )),
        (Some(crs), _) | (None, Some(crs)) => Ok(crs),
        (None, None) => Ok(WGS84),
    }
}

/// Objects to one record batch. Keys are renamed first (`rename` maps a key to its column name),
/// so the schema is inferred on the final names; values of mixed types become text.
pub fn objects_to_batch(
    path: &Path,
    objects: Vec<Object>,
    rename: impl Fn(&str) -> String,
) -> Result<RecordBatch, ConnectorError> {
    let objects: Vec<Value> = objects
        .into_iter()
        .map(|object| renamed(object, &rename))
        .collect();
    let schema = infer_schema(path, objects.iter().map(Ok))?;
    values_to_batch(path, schema, &objects)
}

/// An object with its keys renamed to column names.
pub fn renamed(object: Object, rename: impl Fn(&str) -> String) -> Value {
    Value::Object(object.into_iter().map(|(k, v)| (rename(&k), v)).collect())
}

/// The schema of objects (each a `Value::Object`), inferred from every one of them as they come:
/// none is kept.
pub fn infer_schema<V: std::borrow::Borrow<Value>>(
    path: &Path,
    objects: impl Iterator<Item = Result<V, arrow::error::ArrowError>>,
) -> Result<SchemaRef, ConnectorError> {
    let schema = arrow::json::reader::infer_json_schema_from_iterator(objects)
        .map_err(|e| parse_error(path, format!("cannot infer a schema: {e}")))?;
    Ok(Arc::new(schema))
}

/// Objects as a record batch of `schema` (primitive values coerced to the column's type).
pub fn values_to_batch(
    path: &Path,
    schema: SchemaRef,
    objects: &[Value],
) -> Result<RecordBatch, ConnectorError> {
    if objects.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(objects.len())
        .build_decoder()
        .map_err(|e| parse_error(path, e.to_string()))?;
    decoder
        .serialize(objects)
        .map_err(|e| parse_error(path, e.to_string()))?;
    let batch = decoder
        .flush()
        .map_err(|e| parse_error(path, e.to_string()))?;
    Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// Append a geometry column to a batch.
pub fn with_geometry(
    path: &Path,
    batch: RecordBatch,
    name: &str,
    geometry: ArrayRef,
) -> Result<RecordBatch, ConnectorError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(wkb_field(name));
    let mut columns = batch.columns().to_vec();
    columns.push(geometry);
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| parse_error(path, e.to_string()))
}

#[cfg(test)]
mod geojson_crs_tests {
    use super::*;
    use crate::geometry::wkb_to_geo;
    use arrow::array::{Array, BinaryArray};

    /// Piazza Maggiore in EPSG:3003, from PROJ 9.1.1:
    /// `echo 44.4939 11.3426 | cs2cs -d 4 EPSG:4326 EPSG:3003` → 1686282.6404 4929418.1426.
    const GAUSS_BOAGA: &str = r#"{
        "type": "FeatureCollection",
        "crs": { "type": "name", "properties": { "name": "urn:ogc:def:crs:EPSG::3003" } },
        "features": [
            { "type": "Feature", "properties": { "nome": "Piazza Maggiore" },
              "geometry": { "type": "Point", "coordinates": [1686282.6404, 4929418.1426] } },
            { "type": "Feature", "properties": { "nome": "assi scambiati" },
              "geometry": { "type": "Point", "coordinates": [4929418.1426, 1686282.6404] } }
        ]
    }"#;

    fn lon_lat(geometries: &ArrayRef, row: usize) -> (f64, f64) {
        let wkb = geometries.as_any().downcast_ref::<BinaryArray>().unwrap();
        match wkb_to_geo(wkb.value(row)).unwrap() {
            geo_types::Geometry::Point(p) => (p.x(), p.y()),
            other => panic!("not a point: {other:?}"),
        }
    }

    #[test]
    fn a_file_in_gauss_boaga_is_reprojected_and_its_swapped_point_rejected() {
        let (objects, geometries, rejected) =
            read_geojson(Path::new("t.geojson"), GAUSS_BOAGA, "geometry", None).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(geometries.len(), 1);
        let (lon, lat) = lon_lat(&geometries, 0);
        // 1e-6° is about 10 cm.
        assert!(
            (lon - 11.3426).abs() < 1e-6 && (lat - 44.4939).abs() < 1e-6,
            "{lon} {lat}"
        );
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].reason.starts_with("feature 2: "),
            "{}",
            rejected[0].reason
        );
        assert!(
            rejected[0].reason.contains("EPSG:3003"),
            "{}",
            rejected[0].reason
        );
        assert!(
            rejected[0].raw.contains("assi scambiati"),
            "{}",
            rejected[0].raw
        );
    }

    #[test]
    fn a_declared_system_applies_and_must_agree_with_the_file() {
        let utm = r#"{ "type": "FeatureCollection", "features": [
            { "type": "Feature", "properties": {},
              "geometry": { "type": "Point", "coordinates": [686251.8399, 4929400.8223] } } ] }"#;
        let crs = Epsg::from_code(32632).unwrap();
        let (_, geometries, rejected) =
            read_geojson(Path::new("t.geojson"), utm, "geometry", Some(crs)).unwrap();
        assert!(rejected.is_empty());
        let (lon, lat) = lon_lat(&geometries, 0);
        assert!(
            (lon - 11.3426).abs() < 1e-7 && (lat - 44.4939).abs() < 1e-7,
            "{lon} {lat}"
        );

        let disagreeing = read_geojson(Path::new("t.geojson"), GAUSS_BOAGA, "geometry", Some(crs));
        let Err(error) = disagreeing else {
            panic!("a file in 3003 read as 32632 loaded")
        };
        assert!(error.to_string().contains("declares EPSG:3003"), "{error}");
        let unknown = GAUSS_BOAGA.replace("EPSG::3003", "EPSG::3857");
        let Err(error) = read_geojson(Path::new("t.geojson"), &unknown, "geometry", None) else {
            panic!("a file in an unknown system loaded")
        };
        assert!(
            error.to_string().contains("EPSG:3857 is not supported"),
            "{error}"
        );
    }
}
