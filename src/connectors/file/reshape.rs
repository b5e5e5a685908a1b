//! Declared transformations applied after reading: point geometry from coordinate columns (in
//! WGS84 or reprojected to it), unpivot of wide tables, and a row filter written in SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray, new_null_array};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::config::{ColumnType, PointColumns, Unpivot};
use crate::connectors::{ConnectorError, RejectedRecord, truncate_raw};
use crate::geometry::{Epsg, Reprojection, WGS84, points_to_wkb};

pub(super) fn transform_error(source: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Transform {
        path: source.into(),
        message: message.into(),
    }
}

fn column<'a>(
    source: &str,
    batch: &'a RecordBatch,
    name: &str,
    key: &str,
) -> Result<&'a ArrayRef, ConnectorError> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        transform_error(
            source,
            format!("`{key}` names column `{name}`, which does not exist; columns are {names:?}"),
        )
    })
}

fn as_f64(source: &str, array: &ArrayRef, name: &str) -> Result<Float64Array, ConnectorError> {
    let values = cast(array, &DataType::Float64)
        .map_err(|e| transform_error(source, format!("column `{name}` is not numeric: {e}")))?;
    Ok(values
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64")
        .clone())
}

/// Add a point geometry column built from longitude/latitude columns, or from one text column
/// holding both ("lat, lon", "(lat, lon)", WKT `POINT(lon lat)`, with either decimal separator).
/// A row whose coordinates are there but do not parse, or fall outside longitude −180…180 and
/// latitude −90…90, is left out and returned as a rejected record with its reason; a row without
/// coordinates keeps a NULL geometry.
pub fn add_point(
    source: &str,
    batch: RecordBatch,
    point: &PointColumns,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    add_point_in(source, batch, point, WGS84)
}

/// `add_point` for coordinates in `crs`. In a projected system `lon`/`lat` (or `x`/`y`) name the
/// easting and northing columns, and "lat, lon" text reads as "northing, easting"; the point is
/// reprojected to WGS84, and a row whose coordinate does not transform or lands outside the
/// system's extent is rejected with the reason.
pub fn add_point_in(
    source: &str,
    batch: RecordBatch,
    point: &PointColumns,
    crs: &'static Epsg,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let reprojection = (!crs.is_geographic()).then(|| Reprojection::for_loading(crs));
    let place = |x: f64, y: f64| match &reprojection {
        Some(reprojection) => reprojection.point(x, y),
        None => within_bounds(x, y),
    };
    if batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.name() == &point.column)
    {
        return Err(transform_error(
            source,
            format!(
                "column `{}` already exists; set `point.column` to another name",
                point.column
            ),
        ));
    }
    // Per row: the point, no point (no coordinates), or why its coordinates were refused.
    let points: Vec<Result<Option<(f64, f64)>, String>> = if let (Some(lon), Some(lat)) =
        (&point.lon, &point.lat)
    {
        let lon_column = column(source, &batch, lon, "point.lon")?;
        let lat_column = column(source, &batch, lat, "point.lat")?;
        let (lon_text, lons) = (
            as_text(source, lon_column)?,
            as_f64(source, lon_column, lon)?,
        );
        let (lat_text, lats) = (
            as_text(source, lat_column)?,
            as_f64(source, lat_column, lat)?,
        );
        (0..batch.num_rows())
            .map(|row| {
                let given =
                    |text: &StringArray| text.is_valid(row) && !text.value(row).trim().is_empty();
                let number = |values: &Float64Array, text: &StringArray, name: &str| {
                    if values.is_valid(row) {
                        Ok(Some(values.value(row)))
                    } else if given(text) {
                        Err(format!("`{name}`: {:?} is not a number", text.value(row)))
                    } else {
                        Ok(None)
                    }
                };
                match (
                    number(&lons, &lon_text, lon)?,
                    number(&lats, &lat_text, lat)?,
                ) {
                    (Some(x), Some(y)) => place(x, y).map(Some),
                    (None, None) => Ok(None),
                    _ => Err(format!("`{lon}` and `{lat}`: only one of the two is given")),
                }
            })
            .collect()
    } else {
        let name = point.lat_lon.as_deref().unwrap_or_default();
        let text = as_text(source, column(source, &batch, name, "point.lat_lon")?)?;
        text.iter()
            .map(|cell| match cell.map(str::trim).filter(|c| !c.is_empty()) {
                None => Ok(None),
                Some(cell) => parse_lat_lon(cell)
                    .and_then(|(x, y)| place(x, y))
                    .map(Some)
                    .map_err(|why| format!("`{name}`: {cell:?} {why}")),
            })
            .collect()
    };
    let keep = BooleanArray::from(points.iter().map(Result::is_ok).collect::<Vec<_>>());
    let rejected: Vec<RejectedRecord> = points
        .iter()
        .enumerate()
        .filter_map(|(row, point)| point.as_ref().err().map(|why| (row, why)))
        .map(|(row, why)| RejectedRecord {
            source: source.to_string(),
            line: None,
            reason: format!("no point: {why}"),
            raw: row_text(&batch, row),
            time: None,
        })
        .collect();
    let batch = if rejected.is_empty() {
        batch
    } else {
        filter_record_batch(&batch, &keep).map_err(|e| transform_error(source, e.to_string()))?
    };
    let geometry = points_to_wkb(points.into_iter().filter_map(Result::ok));
    let batch =
        super::json::with_geometry(std::path::Path::new(source), batch, &point.column, geometry)?;
    Ok((batch, rejected))
}

fn as_text(source: &str, array: &ArrayRef) -> Result<StringArray, ConnectorError> {
    let text = cast(array, &DataType::Utf8).map_err(|e| transform_error(source, e.to_string()))?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}

/// A row as `column=value` pairs, for a rejected record (bounded as every record's `raw`).
pub(super) fn row_text(batch: &RecordBatch, row: usize) -> String {
    let schema = batch.schema();
    let text: Vec<String> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let value =
                arrow::util::display::array_value_to_string(column, row).unwrap_or_default();
            format!("{}={value}", field.name())
        })
        .collect();
    truncate_raw(&text.join(", "))
}

fn within_bounds(lon: f64, lat: f64) -> Result<(f64, f64), String> {
    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok((lon, lat))
    } else {
        Err(format!(
            "is outside WGS84's bounds (longitude {lon} must be within −180…180, latitude {lat} within −90…90)"
        ))
    }
}

/// A point written as text: "lat, lon", "(lat, lon)", "lat lon" or "lat; lon" (either decimal
/// separator: "45,47; 9,19" and "45,47, 9,19" too), or WKT `POINT(lon lat)` (optionally with an
/// EWKT `SRID=4326;` prefix). Returns (longitude, latitude).
pub fn parse_lat_lon(text: &str) -> Result<(f64, f64), String> {
    const FORMS: &str =
        "is not a point: expected \"lat, lon\", \"(lat, lon)\" or WKT POINT(lon lat)";
    let number = |part: &str| {
        part.trim()
            .replace(',', ".")
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    };
    let upper = text.to_ascii_uppercase();
    let wkt = upper
        .strip_prefix("SRID=4326;")
        .unwrap_or(&upper)
        .trim()
        .strip_prefix("POINT");
    if let Some(rest) = wkt {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or(FORMS)?;
        let parts: Vec<&str> = inner.split_whitespace().collect();
        return match parts[..] {
            [lon, lat] => Ok((number(lon).ok_or(FORMS)?, number(lat).ok_or(FORMS)?)),
            _ => Err(FORMS.into()),
        };
    }
    let inner = text.trim();
    let inner = match (inner.strip_prefix('('), inner.strip_prefix('[')) {
        (Some(rest), _) => rest.strip_suffix(')').ok_or(FORMS)?,
        (_, Some(rest)) => rest.strip_suffix(']').ok_or(FORMS)?,
        _ => inner,
    };
    let commas = inner.matches(',').count();
    let parts: Vec<&str> = if inner.contains(';') {
        inner.split(';').collect()
    } else if commas == 1 {
        inner.split(',').collect()
    } else if commas == 3 || (commas == 2 && inner.contains(", ")) {
        // Decimal commas: the pair is separated by ", ".
        inner.split(", ").collect()
    } else if commas == 0 {
        inner.split_whitespace().collect()
    } else {
        return Err(FORMS.into());
    };
    match parts[..] {
        [lat, lon] => Ok((number(lon).ok_or(FORMS)?, number(lat).ok_or(FORMS)?)),
        _ => Err(FORMS.into()),
    }
}

#[cfg(test)]
mod point_tests {
    use super::*;

    #[test]
    fn the_common_text_forms_of_a_point_parse() {
        for text in [
            "45.47, 9.19",
            "(45.47, 9.19)",
            "45.47,9.19",
            "45,47; 9,19",
            "45,47, 9,19",
            "(45,47, 9,19)",
            "45.47 9.19",
            "[45.47, 9.19]",
            "POINT(9.19 45.47)",
            "POINT (9.19 45.47)",
            "point(9,19 45,47)",
            "SRID=4326;POINT(9.19 45.47)",
        ] {
            assert_eq!(parse_lat_lon(text), Ok((9.19, 45.47)), "{text}");
        }
        for text in [
            "45.47",
            "abc, def",
            "POINT(9.19)",
            "(45.47, 9.19",
            "1, 2, 3, 4, 5",
            "POINT(a b)",
        ] {
            assert!(parse_lat_lon(text).is_err(), "{text}");
        }
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn unparsable_or_out_of_bounds_points_are_rejected_with_their_reason() {
        let rows = batch(vec![
            (
                "id",
                Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
            ),
            (
                "location",
                Arc::new(StringArray::from(vec![
                    Some("(45.47, 9.19)"),
                    Some("somewhere"),
                    None,
                    Some("95.0, 9.19"),
                    Some("POINT(9.2 45.5)"),
                ])),
            ),
        ]);
        let point = PointColumns {
            lon: None,
            lat: None,
            lat_lon: Some("location".into()),
            column: "geometry".into(),
        };
        let (loaded, rejected) = add_point("t.csv", rows, &point).unwrap();
        assert_eq!(
            loaded.num_rows(),
            3,
            "rows 1, 3 (no coordinates: NULL geometry) and 5"
        );
        let geometry = loaded.column_by_name("geometry").unwrap();
        assert_eq!(geometry.null_count(), 1);
        assert_eq!(rejected.len(), 2);
        assert!(
            rejected[0].reason.contains("\"somewhere\" is not a point"),
            "{}",
            rejected[0].reason
        );
        assert!(rejected[0].raw.contains("id=2"), "{}", rejected[0].raw);
        assert!(
            rejected[1].reason.contains("outside WGS84's bounds"),
            "{}",
            rejected[1].reason
        );
    }

    #[test]
    fn coordinate_columns_that_are_not_numbers_are_rejected() {
        let rows = batch(vec![
            (
                "x",
                Arc::new(StringArray::from(vec!["11.3", "n.d.", "", "200"])) as ArrayRef,
            ),
            (
                "y",
                Arc::new(StringArray::from(vec!["44.5", "44.5", "", "44.5"])),
            ),
        ]);
        let point = PointColumns {
            lon: Some("x".into()),
            lat: Some("y".into()),
            lat_lon: None,
            column: "geometry".into(),
        };
        let (loaded, rejected) = add_point("t.csv", rows, &point).unwrap();
        assert_eq!(loaded.num_rows(), 2);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("`x`: \"n.d.\" is not a number"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("outside WGS84's bounds"), "{reasons:?}");
    }
}

/// One output row per input row and wide column: the other columns repeated, the wide column's
/// name in `name_column`, its value in `value_column` (values cast to their common type).
pub fn unpivot(
    source: &str,
    batch: RecordBatch,
    spec: &Unpivot,
) -> Result<RecordBatch, ConnectorError> {
    let schema = batch.schema();
    let matcher = match &spec.columns_matching {
        Some(pattern) => Some(
            regex::Regex::new(pattern)
                .map_err(|e| transform_error(source, format!("unpivot.columns_matching: {e}")))?,
        ),
        None => None,
    };
    let wide: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            spec.columns.contains(f.name())
                || matcher.as_ref().is_some_and(|m| m.is_match(f.name()))
        })
        .map(|(i, _)| i)
        .collect();
    for name in &spec.columns {
        if schema.index_of(name).is_err() {
            return Err(transform_error(
                source,
                format!("unpivot names column `{name}`, which does not exist"),
            ));
        }
    }
    if wide.is_empty() {
        return Err(transform_error(source, "unpivot matched no column"));
    }
    let kept: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !wide.contains(i))
        .collect();
    let value_type = wide
        .iter()
        .map(|i| schema.field(*i).data_type().clone())
        .reduce(common_type)
        .unwrap_or(DataType::Utf8);
    let name_type = match spec.name_type {
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        _ => DataType::Utf8,
    };

    let mut fields: Vec<Field> = kept.iter().map(|i| schema.field(*i).clone()).collect();
    fields.push(Field::new(&spec.name_column, name_type.clone(), false));
    fields.push(Field::new(&spec.value_column, value_type.clone(), true));
    let out_schema = Arc::new(Schema::new(fields));

    let mut parts = Vec::with_capacity(wide.len());
    for i in &wide {
        let name = schema.field(*i).name();
        let names: ArrayRef = Arc::new(StringArray::from(vec![name.as_str(); batch.num_rows()]));
        let names = cast(&names, &name_type).map_err(|e| transform_error(source, e.to_string()))?;
        if names.null_count() > 0 {
            return Err(transform_error(
                source,
                format!("unpivot: column name `{name}` is not a {name_type}"),
            ));
        }
        let values = if batch.column(*i).data_type() == &DataType::Null {
            new_null_array(&value_type, batch.num_rows())
        } else {
            cast(batch.column(*i), &value_type)
                .map_err(|e| transform_error(source, e.to_string()))?
        };
        let mut columns: Vec<ArrayRef> = kept.iter().map(|k| batch.column(*k).clone()).collect();
        columns.push(names);
        columns.push(values);
        parts.push(
            RecordBatch::try_new(out_schema.clone(), columns)
                .map_err(|e| transform_error(source, e.to_string()))?,
        );
    }
    concat_batches(&out_schema, &parts).map_err(|e| transform_error(source, e.to_string()))
}

fn common_type(a: DataType, b: DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Null, other) | (other, Null) => other,
        (Int64, Float64) | (Float64, Int64) => Float64,
        _ => Utf8,
    }
}

/// Keep the rows matching a SQL predicate, evaluated by DataFusion over the loaded batch.
pub async fn filter(
    source: &str,
    batch: RecordBatch,
    predicate: &str,
) -> Result<RecordBatch, ConnectorError> {
    let schema = batch.schema();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema.clone(), vec![vec![batch]])
        .map_err(|e| transform_error(source, e.to_string()))?;
    ctx.register_table("t", Arc::new(table))
        .map_err(|e| transform_error(source, e.to_string()))?;
    let failed = |e: datafusion::error::DataFusionError| {
        transform_error(source, format!("filter `{predicate}`: {e}"))
    };
    let frame = ctx
        .sql(&format!("SELECT * FROM t WHERE {predicate}"))
        .await
        .map_err(failed)?;
    let batches = frame.collect().await.map_err(failed)?;
    // Keep the original schema (its field metadata tags geometry columns).
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| transform_error(source, e.to_string()))?;
    concat_batches(&schema, &batches).map_err(|e| transform_error(source, e.to_string()))
}

#[cfg(test)]
mod reprojection_tests {
    use super::*;
    use crate::geometry::wkb_to_geo;
    use arrow::array::BinaryArray;

    /// Piazza Maggiore, at 686251.8399 4929400.8223 in EPSG:32632 (PROJ 9.1.1:
    /// `echo 44.4939 11.3426 | cs2cs -d 4 EPSG:4326 EPSG:32632`).
    const BOLOGNA: (f64, f64) = (11.3426, 44.4939);

    fn lon_lat(geometry: &ArrayRef, row: usize) -> (f64, f64) {
        let wkb = geometry.as_any().downcast_ref::<BinaryArray>().unwrap();
        match wkb_to_geo(wkb.value(row)).unwrap() {
            geo_types::Geometry::Point(p) => (p.x(), p.y()),
            other => panic!("not a point: {other:?}"),
        }
    }

    #[test]
    fn easting_and_northing_columns_become_wgs84_points_and_swapped_ones_are_rejected() {
        let rows = RecordBatch::try_from_iter(vec![
            (
                "est",
                Arc::new(StringArray::from(vec!["686251.8399", "4929400.8223"])) as ArrayRef,
            ),
            (
                "nord",
                Arc::new(StringArray::from(vec!["4929400.8223", "686251.8399"])),
            ),
        ])
        .unwrap();
        let point: PointColumns = toml::from_str("x = \"est\"\ny = \"nord\"").unwrap();
        let crs = Epsg::from_code(32632).unwrap();
        let (loaded, rejected) = add_point_in("t.csv", rows, &point, crs).unwrap();
        assert_eq!(loaded.num_rows(), 1);
        let (lon, lat) = lon_lat(loaded.column_by_name("geometry").unwrap(), 0);
        // 1e-7° is about a centimetre.
        assert!(
            (lon - BOLOGNA.0).abs() < 1e-7 && (lat - BOLOGNA.1).abs() < 1e-7,
            "{lon} {lat}"
        );
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].reason.contains("EPSG:32632"),
            "{}",
            rejected[0].reason
        );
        assert!(
            rejected[0].raw.contains("est=4929400.8223"),
            "{}",
            rejected[0].raw
        );
    }
}
