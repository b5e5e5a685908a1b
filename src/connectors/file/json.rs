//! JSON documents, NDJSON and GeoJSON: objects become rows through arrow-json (schema inferred
//! from every object), GeoJSON features add their geometry as a WKB column.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};
use crate::geometry::{geo_to_wkb, wkb_field};

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
        if line.trim().is_empty() {
            continue;
        }
        let reason = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => {
                objects.push(object);
                continue;
            }
            Ok(_) => "not a JSON object".to_string(),
            Err(e) => format!("invalid JSON: {e}"),
        };
        rejected.push(RejectedRecord {
            time: None,
            source: path.display().to_string(),
            line: Some(i as u64 + 1),
            reason,
            raw: truncate_raw(line),
        });
    }
    (objects, rejected)
}

/// GeoJSON features: their properties, plus the geometry as WKB in `geometry_column`.
pub fn read_geojson(
    path: &Path,
    text: &str,
    geometry_column: &str,
) -> Result<(Vec<Object>, ArrayRef, Vec<RejectedRecord>), ConnectorError> {
    let geojson: geojson::GeoJson = text
        .parse()
        .map_err(|e| parse_error(path, format!("invalid GeoJSON: {e}")))?;
    let features = match geojson {
        geojson::GeoJson::FeatureCollection(collection) => collection.features,
        geojson::GeoJson::Feature(feature) => vec![feature],
        geojson::GeoJson::Geometry(_) => {
            return Err(parse_error(
                path,
                "a bare geometry, not a Feature or FeatureCollection",
            ));
        }
    };
    let mut objects = Vec::with_capacity(features.len());
    let mut geometries = BinaryBuilder::new();
    let mut rejected = Vec::new();
    for (i, feature) in features.into_iter().enumerate() {
        let wkb = match &feature.geometry {
            None => Ok(None),
            Some(geometry) => geo_types::Geometry::<f64>::try_from(&geometry.value)
                .map_err(|e| e.to_string())
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

/// Objects to one record batch. Keys are renamed first (`rename` maps a key to its column name),
/// so the schema is inferred on the final names; values of mixed types become text.
pub fn objects_to_batch(
    path: &Path,
    objects: Vec<Object>,
    rename: impl Fn(&str) -> String,
) -> Result<RecordBatch, ConnectorError> {
    let objects: Vec<Value> = objects
        .into_iter()
        .map(|object| Value::Object(object.into_iter().map(|(k, v)| (rename(&k), v)).collect()))
        .collect();
    let schema = arrow::json::reader::infer_json_schema_from_iterator(objects.iter().map(Ok))
        .map_err(|e| parse_error(path, format!("cannot infer a schema: {e}")))?;
    let schema = Arc::new(schema);
    if objects.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(objects.len())
        .build_decoder()
        .map_err(|e| parse_error(path, e.to_string()))?;
    decoder
        .serialize(&objects)
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
