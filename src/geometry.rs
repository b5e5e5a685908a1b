//! Geometry as the whole service holds it: WKB in a Binary column tagged `geoarrow.wkb`, the form
//! geodatafusion's functions read. Conversions to and from GeoJSON and WKT live here.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use geo_traits::to_geo::ToGeoGeometry;
use geoarrow_schema::{Crs, GeoArrowType, Metadata, WkbType};

/// A nullable WKB geometry field in WGS84 longitude/latitude.
pub fn wkb_field(name: &str) -> Field {
    let metadata = Metadata::new(Crs::from_authority_code("EPSG:4326".to_string()), None);
    GeoArrowType::Wkb(WkbType::new(Arc::new(metadata))).to_field(name, true)
}

/// Whether a field holds WKB geometry (by its extension tag).
pub fn is_geometry(field: &Field) -> bool {
    field.data_type() == &DataType::Binary
        && field
            .metadata()
            .get("ARROW:extension:name")
            .is_some_and(|n| n == "geoarrow.wkb")
}

pub fn geo_to_wkb(geometry: &geo_types::Geometry<f64>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    wkb::writer::write_geometry(&mut out, geometry, &wkb::writer::WriteOptions::default())
        .map_err(|e| format!("cannot encode the geometry as WKB: {e}"))?;
    Ok(out)
}

pub fn wkb_to_geo(bytes: &[u8]) -> Result<geo_types::Geometry<f64>, String> {
    let wkb = wkb::reader::read_wkb(bytes).map_err(|e| format!("invalid WKB: {e}"))?;
    wkb.try_to_geometry()
        .ok_or_else(|| "unsupported geometry type".to_string())
}

pub fn wkb_to_wkt(bytes: &[u8]) -> Result<String, String> {
    let wkb = wkb::reader::read_wkb(bytes).map_err(|e| format!("invalid WKB: {e}"))?;
    let mut out = String::new();
    wkt::to_wkt::write_geometry(&mut out, &wkb).map_err(|e| format!("cannot write WKT: {e}"))?;
    Ok(out)
}

pub fn wkb_to_geojson(bytes: &[u8]) -> Result<String, String> {
    let geometry = wkb_to_geo(bytes)?;
    let value = geojson::GeometryValue::from(&geometry);
    Ok(geojson::Geometry::new(value).to_string())
}

/// A WKB column rendered as text (WKT) for the text formats (JSON, CSV, terminal tables).
pub fn wkb_column_to_wkt(array: &ArrayRef) -> ArrayRef {
    let binary = array
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("geometry columns are Binary");
    let mut out = StringBuilder::with_capacity(binary.len(), binary.len() * 32);
    for value in binary.iter() {
        match value.map(wkb_to_wkt) {
            Some(Ok(text)) => out.append_value(text),
            Some(Err(reason)) => out.append_value(format!("<{reason}>")),
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// Points from longitude/latitude pairs; `None` where either is missing.
pub fn points_to_wkb(coordinates: impl Iterator<Item = Option<(f64, f64)>>) -> ArrayRef {
    let mut out = BinaryBuilder::new();
    for pair in coordinates {
        match pair {
            Some((lon, lat)) => {
                let point = geo_types::Geometry::Point(geo_types::Point::new(lon, lat));
                out.append_value(geo_to_wkb(&point).expect("a point always encodes"));
            }
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_wkb() {
        let polygon: geo_types::Geometry<f64> = geo_types::Polygon::new(
            vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)].into(),
            vec![],
        )
        .into();
        let wkb = geo_to_wkb(&polygon).unwrap();
        assert_eq!(wkb_to_geo(&wkb).unwrap(), polygon);
        assert_eq!(wkb_to_wkt(&wkb).unwrap(), "POLYGON((0 0,1 0,1 1,0 0))");
        let json: serde_json::Value = serde_json::from_str(&wkb_to_geojson(&wkb).unwrap()).unwrap();
        assert_eq!(json["type"], "Polygon");
        assert_eq!(json["coordinates"][0][1], serde_json::json!([1.0, 0.0]));
    }

    #[test]
    fn geometry_fields_are_tagged() {
        let field = wkb_field("geometry");
        assert!(is_geometry(&field));
        assert!(!is_geometry(&Field::new(
            "geometry",
            DataType::Binary,
            true
        )));
    }
}
