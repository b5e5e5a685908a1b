//! `ST_AsGeoJSON`, which geodatafusion does not have yet.

use std::sync::Arc;

use arrow::array::{Array, BinaryArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::wkb_to_geojson;

/// `ST_AsGeoJSON(geometry)`: the GeoJSON geometry object as text, from WKB.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsGeoJson {
    signature: Signature,
}

impl Default for AsGeoJson {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AsGeoJson {
    fn name(&self) -> &str {
        "st_asgeojson"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let array = args.args[0].clone().into_array(rows)?;
        let Some(wkb) = array.as_any().downcast_ref::<BinaryArray>() else {
            return exec_err!("ST_AsGeoJSON expects a geometry (WKB)");
        };
        let mut out = StringBuilder::with_capacity(wkb.len(), wkb.len() * 64);
        for value in wkb.iter() {
            match value {
                Some(bytes) => match wkb_to_geojson(bytes) {
                    Ok(text) => out.append_value(text),
                    Err(reason) => return exec_err!("ST_AsGeoJSON: {reason}"),
                },
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
