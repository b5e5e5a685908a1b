//! The arguments of the metric and ST_Transform functions, one value per row: geometries of any
//! GeoArrow type (WKB as the service stores them, WKT text, geodatafusion's native arrays) as
//! `geo` geometries, and numbers and flags cast to their type. A scalar argument is one value for
//! every row.

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{Result, exec_datafusion_err, exec_err};
use datafusion::logical_expr::ColumnarValue;
use geo_types::Geometry;
use geoarrow_array::array::from_arrow_array;
use geoarrow_array::{GeoArrowArrayAccessor, downcast_geoarrow_array};
use geoarrow_expr_geo::util::to_geo::geometry_to_geo;
use geoarrow_schema::error::GeoArrowResult;

use crate::geometry::{Epsg, field_crs};

/// One argument's values by row.
pub struct Values<T> {
    values: Vec<Option<T>>,
    scalar: bool,
}

impl<T> Values<T> {
    pub fn get(&self, row: usize) -> Option<&T> {
        let index = if self.scalar { 0 } else { row };
        self.values.get(index).and_then(Option::as_ref)
    }
}

fn to_array(value: &ColumnarValue) -> Result<(arrow::array::ArrayRef, bool)> {
    Ok(match value {
        ColumnarValue::Array(array) => (array.clone(), false),
        ColumnarValue::Scalar(scalar) => (scalar.to_array_of_size(1)?, true),
    })
}

/// A geometry argument's values, as `geo` geometries.
pub fn geometries(
    function: &str,
    value: &ColumnarValue,
    field: &Field,
) -> Result<Values<Geometry>> {
    let (array, scalar) = to_array(value)?;
    let geoarrow = from_arrow_array(array.as_ref(), field).map_err(|e| {
        exec_datafusion_err!("{function}: `{}` is not a geometry: {e}", field.name())
    })?;
    let geoarrow = geoarrow.as_ref();
    let values = downcast_geoarrow_array!(geoarrow, to_geo)
        .map_err(|e| exec_datafusion_err!("{function}: {e}"))?;
    Ok(Values { values, scalar })
}

fn to_geo<'a>(array: &'a impl GeoArrowArrayAccessor<'a>) -> GeoArrowResult<Vec<Option<Geometry>>> {
    array
        .iter()
        .map(|item| item.map(|g| geometry_to_geo(&g?)).transpose())
        .collect()
}

/// A number argument (metres), as f64.
pub fn floats(function: &str, name: &str, value: &ColumnarValue) -> Result<Values<f64>> {
    let (array, scalar) = to_array(value)?;
    let Ok(numbers) = cast(&array, &DataType::Float64) else {
        return exec_err!(
            "{function}: `{name}` must be a number, not {}",
            array.data_type()
        );
    };
    let values = numbers.as_primitive::<Float64Type>().iter().collect();
    Ok(Values { values, scalar })
}

/// An integer argument (an SRID).
pub fn integers(function: &str, name: &str, value: &ColumnarValue) -> Result<Values<i64>> {
    let (array, scalar) = to_array(value)?;
    let numbers = match array.data_type() {
        t if t.is_integer() || t == &DataType::Null => cast(&array, &DataType::Int64)?,
        other => return exec_err!("{function}: `{name}` must be an integer SRID, not {other}"),
    };
    let values = numbers.as_primitive::<Int64Type>().iter().collect();
    Ok(Values { values, scalar })
}

/// A boolean argument (`use_spheroid`).
pub fn booleans(function: &str, name: &str, value: &ColumnarValue) -> Result<Values<bool>> {
    let (array, scalar) = to_array(value)?;
    if !matches!(array.data_type(), DataType::Boolean | DataType::Null) {
        return exec_err!(
            "{function}: `{name}` must be true or false, not {}",
            array.data_type()
        );
    }
    let flags = cast(&array, &DataType::Boolean)?;
    let values = flags.as_boolean().iter().collect();
    Ok(Values { values, scalar })
}

/// Refuse a geometry column that declares a projected system: its coordinates are metres, not
/// the longitude/latitude the measures in metres read.
pub fn require_lon_lat(function: &str, field: &Field) -> Result<()> {
    match field_crs(field) {
        Ok(Some(crs)) if !crs.is_geographic() => exec_err!(
            "{function} measures longitude/latitude (EPSG:4326) geometries, and this one is in {crs}: ST_Transform(geom, 4326) it first"
        ),
        _ => Ok(()),
    }
}

/// The system an SRID names, or an error naming the function and the supported systems.
pub fn epsg(function: &str, srid: i64) -> Result<&'static Epsg> {
    Epsg::from_code(srid).map_err(|why| exec_datafusion_err!("{function}: {why}"))
}
