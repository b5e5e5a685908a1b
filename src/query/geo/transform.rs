//! `ST_Transform(geom, to_srid)` and `ST_Transform(geom, from_srid, to_srid)`: geometries from
//! one coordinate system to another, among WGS84 and the systems Italian data come in (see
//! `geometry::SUPPORTED_CRS`), through proj4rs. The result is WKB tagged with its system.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::BinaryBuilder;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, exec_err, plan_err};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use geoarrow_schema::{GeoArrowType, Metadata, WkbType};

use super::args;
use crate::geometry::{
    Epsg, Reprojection, WGS84, field_crs, geo_to_wkb, supported_list, wkb_field_in,
};

const FUNCTION: &str = "ST_Transform";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    signature: Signature,
}

impl Default for Transform {
    fn default() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for Transform {
    fn name(&self) -> &str {
        "st_transform"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    /// WKB tagged with the target system when the SRID is a literal (as it nearly always is),
    /// which is also when an unknown SRID is refused: as the query is planned.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        for (i, srid) in args.scalar_arguments.iter().enumerate().skip(1) {
            if let Some(srid) = srid.and_then(scalar_integer)
                && let Err(why) = Epsg::from_code(srid)
            {
                let which = if i + 1 == args.scalar_arguments.len() {
                    "to_srid"
                } else {
                    "from_srid"
                };
                return plan_err!("{FUNCTION}: {which}: {why}");
            }
        }
        let target = args
            .scalar_arguments
            .last()
            .copied()
            .flatten()
            .and_then(scalar_integer)
            .and_then(|srid| Epsg::from_code(srid).ok());
        let field = match target {
            Some(crs) => wkb_field_in(self.name(), crs),
            None => GeoArrowType::Wkb(WkbType::new(Arc::new(Metadata::default())))
                .to_field(self.name(), true),
        };
        Ok(Arc::new(field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let geometries = args::geometries(FUNCTION, &args.args[0], &args.arg_fields[0])?;
        let (from, to) = match args.args.len() {
            2 => (None, args::integers(FUNCTION, "to_srid", &args.args[1])?),
            _ => (
                Some(args::integers(FUNCTION, "from_srid", &args.args[1])?),
                args::integers(FUNCTION, "to_srid", &args.args[2])?,
            ),
        };
        // Without from_srid, the system the column declares; WGS84 if it declares none.
        let declared = match field_crs(&args.arg_fields[0]) {
            Ok(crs) => crs.unwrap_or(WGS84),
            Err(why) => {
                return exec_err!(
                    "{FUNCTION}: {why}; name the source system: ST_Transform(geom, from_srid, to_srid)"
                );
            }
        };
        let mut reprojections: HashMap<(u32, u32), Reprojection> = HashMap::new();
        let mut out = BinaryBuilder::with_capacity(args.number_rows, args.number_rows * 32);
        for row in 0..args.number_rows {
            let source = match &from {
                None => Some(declared),
                Some(srids) => srids
                    .get(row)
                    .map(|s| args::epsg(FUNCTION, *s))
                    .transpose()?,
            };
            let target = to.get(row).map(|s| args::epsg(FUNCTION, *s)).transpose()?;
            let (Some(geometry), Some(source), Some(target)) =
                (geometries.get(row), source, target)
            else {
                out.append_null();
                continue;
            };
            let reprojection = reprojections
                .entry((source.code, target.code))
                .or_insert_with(|| Reprojection::new(source, target));
            let moved = reprojection
                .geometry(geometry)
                .map_err(|why| exec_datafusion_err!("{FUNCTION}: {why}"))?;
            out.append_value(
                geo_to_wkb(&moved).map_err(|why| exec_datafusion_err!("{FUNCTION}: {why}"))?,
            );
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                format!(
                    "The geometry in another coordinate system. The source is from_srid, or the system the column declares (WGS84, EPSG:4326, for the service's own columns); {}. Projected coordinates are x = easting, y = northing.",
                    supported_list()
                ),
                "ST_Transform(geom, [from_srid,] to_srid)",
            )
            .with_argument("geom", "geometry")
            .with_argument("from_srid", "EPSG code of the geometry's system")
            .with_argument("to_srid", "EPSG code of the system wanted")
            .build()
        }))
    }
}

fn scalar_integer(value: &ScalarValue) -> Option<i64> {
    if !value.data_type().is_integer() {
        return None;
    }
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(value) => value,
        _ => None,
    }
}
