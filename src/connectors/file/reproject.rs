//! Reprojection of a table's geometry columns (a GeoParquet file's WKB) from the table's `crs`
//! to WGS84, the system every stored geometry is in.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, BinaryBuilder, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

use super::reshape::{row_text, transform_error};
use crate::connectors::{ConnectorError, RejectedRecord};
use crate::geometry::{Epsg, Reprojection, geo_to_wkb, is_geometry, wkb_field, wkb_to_geo};

/// Reproject every geometry column of a batch read in `crs` (a GeoParquet file's WKB columns) to
/// WGS84. A row with a geometry that does not transform, or lands outside the system's extent, is
/// left out and returned as a rejected record with its reason.
pub fn reproject(
    source: &str,
    batch: RecordBatch,
    crs: &'static Epsg,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    if crs.is_geographic() {
        return Ok((batch, Vec::new()));
    }
    let reprojection = Reprojection::for_loading(crs);
    let schema = batch.schema();
    let mut refused: Vec<Option<String>> = vec![None; batch.num_rows()];
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !is_geometry(field) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let wkb = column
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("geometry columns are Binary");
        let mut out = BinaryBuilder::new();
        for (row, value) in wkb.iter().enumerate() {
            let moved = value.map(|bytes| {
                wkb_to_geo(bytes)
                    .and_then(|g| reprojection.geometry(&g))
                    .and_then(|g| geo_to_wkb(&g))
            });
            match moved {
                Some(Ok(bytes)) => out.append_value(bytes),
                Some(Err(why)) => {
                    refused[row].get_or_insert(format!("`{}`: {why}", field.name()));
                    out.append_null();
                }
                None => out.append_null(),
            }
        }
        fields.push(wkb_field(field.name()));
        columns.push(Arc::new(out.finish()) as ArrayRef);
    }
    let rejected: Vec<RejectedRecord> = refused
        .iter()
        .enumerate()
        .filter_map(|(row, why)| why.as_ref().map(|why| (row, why)))
        .map(|(row, why)| RejectedRecord {
            source: source.to_string(),
            line: None,
            reason: format!("not reprojected from {crs}: {why}"),
            raw: row_text(&batch, row),
            time: None,
        })
        .collect();
    let reprojected = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| transform_error(source, e.to_string()))?;
    if rejected.is_empty() {
        return Ok((reprojected, rejected));
    }
    let keep = BooleanArray::from(refused.iter().map(Option::is_none).collect::<Vec<_>>());
    let kept = filter_record_batch(&reprojected, &keep)
        .map_err(|e| transform_error(source, e.to_string()))?;
    Ok((kept, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::{DataType, Field};

    /// Piazza Maggiore in EPSG:32632, from PROJ 9.1.1:
    /// `echo 44.4939 11.3426 | cs2cs -d 4 EPSG:4326 EPSG:32632` → 686251.8399 4929400.8223.
    const UTM_32N: (f64, f64) = (686_251.839_9, 4_929_400.822_3);
    const BOLOGNA: (f64, f64) = (11.3426, 44.4939);

    fn lon_lat(geometry: &ArrayRef, row: usize) -> (f64, f64) {
        let wkb = geometry.as_any().downcast_ref::<BinaryArray>().unwrap();
        match wkb_to_geo(wkb.value(row)).unwrap() {
            geo_types::Geometry::Point(p) => (p.x(), p.y()),
            other => panic!("not a point: {other:?}"),
        }
    }

    #[test]
    fn geometry_columns_are_reprojected_and_the_rows_that_fail_rejected() {
        let geometry = crate::geometry::points_to_wkb(
            [Some(UTM_32N), None, Some((UTM_32N.1, UTM_32N.0))].into_iter(),
        );
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Float64, false),
                crate::geometry::wkb_field("geometry"),
            ])),
            vec![Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])), geometry],
        )
        .unwrap();
        let crs = Epsg::from_code(32632).unwrap();
        let (loaded, rejected) = reproject("t.parquet", rows, crs).unwrap();
        assert_eq!(loaded.num_rows(), 2, "row 2 has no geometry and stays");
        let (lon, lat) = lon_lat(loaded.column_by_name("geometry").unwrap(), 0);
        assert!(
            (lon - BOLOGNA.0).abs() < 1e-7 && (lat - BOLOGNA.1).abs() < 1e-7,
            "{lon} {lat}"
        );
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].raw.starts_with("id=3"), "{}", rejected[0].raw);
        assert!(
            rejected[0]
                .reason
                .starts_with("not reprojected from EPSG:32632: `geometry`:"),
            "{}",
            rejected[0].reason
        );
    }
}
