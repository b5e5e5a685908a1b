//! Measures in metres, with PostGIS's names and meanings for a `geography`: `ST_Area(geom,
//! use_spheroid)`, `ST_Length(geom, use_spheroid)`, `ST_Distance(a, b, use_spheroid)`,
//! `ST_DistanceSphere`, `ST_DistanceSpheroid` and `ST_DWithin`. They replace geodatafusion's
//! ST_Area, ST_Length and ST_Distance under the same names, and answer those functions' planar
//! forms (one geometry, or two for ST_Distance: units of the coordinates, degrees for WGS84)
//! with geodatafusion's own code.

use std::sync::{Arc, OnceLock};

use arrow::array::{BooleanBuilder, Float64Builder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use geo_types::Geometry;
use geodatafusion::udf::geo::measurement as planar;

use super::args::{self, Values};
use super::metric::{self, Earth};

/// Every function of this file, to register after geodatafusion's.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Measure::area()),
        ScalarUDF::new_from_impl(Measure::length()),
        ScalarUDF::new_from_impl(Distance::default()),
        ScalarUDF::new_from_impl(DistanceOn::sphere()),
        ScalarUDF::new_from_impl(DistanceOn::spheroid()),
        ScalarUDF::new_from_impl(DWithin::default()),
    ]
}

fn documentation(
    cell: &'static OnceLock<Documentation>,
    description: &str,
    syntax: &str,
    arguments: &[(&str, &str)],
) -> &'static Documentation {
    cell.get_or_init(|| {
        let mut builder = Documentation::builder(DOC_SECTION_OTHER, description, syntax);
        for (name, text) in arguments {
            builder = builder.with_argument(*name, *text);
        }
        builder.build()
    })
}

const GEOM: (&str, &str) = (
    "geom",
    "geometry in WGS84 longitude/latitude (EPSG:4326) for the measures in metres",
);
const USE_SPHEROID: (&str, &str) = (
    "use_spheroid",
    "true: on the WGS84 ellipsoid; false: on a sphere of radius 6,371,008.8 m",
);

/// What `ST_Area` and `ST_Length` measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Quantity {
    Area,
    Length,
}

/// `ST_Area(geom)` and `ST_Length(geom)`: planar, in the coordinates' units (geodatafusion's).
/// `ST_Area(geom, use_spheroid)`: area in m²; `ST_Length(geom, use_spheroid)`: length in metres.
#[derive(Debug)]
pub struct Measure {
    quantity: Quantity,
    planar: Box<dyn ScalarUDFImpl>,
    signature: Signature,
}

impl Measure {
    pub fn area() -> Self {
        Self::new(Quantity::Area, Box::new(planar::Area::new()))
    }

    pub fn length() -> Self {
        Self::new(Quantity::Length, Box::new(planar::Length::new()))
    }

    fn new(quantity: Quantity, planar: Box<dyn ScalarUDFImpl>) -> Self {
        let signature = one_or_more_arguments(planar.signature(), &[2]);
        Self {
            quantity,
            planar,
            signature,
        }
    }
}

// One function per quantity: the planar implementation follows from it.
impl PartialEq for Measure {
    fn eq(&self, other: &Self) -> bool {
        self.quantity == other.quantity
    }
}

impl Eq for Measure {}

impl std::hash::Hash for Measure {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.quantity.hash(state);
    }
}

impl ScalarUDFImpl for Measure {
    fn name(&self) -> &str {
        match self.quantity {
            Quantity::Area => "st_area",
            Quantity::Length => "st_length",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() == 1 {
            return self.planar.invoke_with_args(args);
        }
        match self.quantity {
            Quantity::Area => measure_each("ST_Area", &args, metric::area),
            Quantity::Length => measure_each("ST_Length", &args, metric::length),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static AREA: OnceLock<Documentation> = OnceLock::new();
        static LENGTH: OnceLock<Documentation> = OnceLock::new();
        Some(match self.quantity {
            Quantity::Area => documentation(
                &AREA,
                "Area of the polygons. With use_spheroid, in square metres on the WGS84 ellipsoid (true) or a sphere (false), as PostGIS's geography; without it, planar in the units of the coordinates.",
                "ST_Area(geom [, use_spheroid])",
                &[GEOM, USE_SPHEROID],
            ),
            Quantity::Length => documentation(
                &LENGTH,
                "Length of the lines (0 for points and polygons). With use_spheroid, in metres along geodesics of the WGS84 ellipsoid (true) or great circles of a sphere (false); without it, planar in the units of the coordinates.",
                "ST_Length(geom [, use_spheroid])",
                &[GEOM, USE_SPHEROID],
            ),
        })
    }
}

/// `ST_Distance(a, b)`: planar distance in the coordinates' units (geodatafusion's).
/// `ST_Distance(a, b, use_spheroid)`: distance in metres.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Distance {
    planar: planar::Distance,
    signature: Signature,
}

impl Default for Distance {
    fn default() -> Self {
        let planar = planar::Distance::new();
        let signature = one_or_more_arguments(planar.signature(), &[3]);
        Self { planar, signature }
    }
}

impl ScalarUDFImpl for Distance {
    fn name(&self) -> &str {
        "st_distance"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() == 2 {
            return self.planar.invoke_with_args(args);
        }
        let use_spheroid = args::booleans("ST_Distance", "use_spheroid", &args.args[2])?;
        let earth = |row| use_spheroid.get(row).map(|s| Earth::from_use_spheroid(*s));
        let distances = distances("ST_Distance", &args, earth)?;
        Ok(float_column(distances))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(documentation(
            &DOC,
            "Shortest distance between two geometries. With use_spheroid, in metres on the WGS84 ellipsoid (true) or a sphere (false), as PostGIS's geography; without it, planar in the units of the coordinates.",
            "ST_Distance(geomA, geomB [, use_spheroid])",
            &[("geomA", GEOM.1), ("geomB", GEOM.1), USE_SPHEROID],
        ))
    }
}

/// `ST_DistanceSphere(a, b)` (metres on the sphere of radius 6,371,008.8 m) and
/// `ST_DistanceSpheroid(a, b)` (metres on the WGS84 ellipsoid): one function per model.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceOn {
    signature: Signature,
    earth: Earth,
}

impl DistanceOn {
    pub fn sphere() -> Self {
        Self::new(Earth::Sphere)
    }

    pub fn spheroid() -> Self {
        Self::new(Earth::Spheroid)
    }

    fn new(earth: Earth) -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
            earth,
        }
    }

    fn sql_name(&self) -> &'static str {
        match self.earth {
            Earth::Sphere => "ST_DistanceSphere",
            Earth::Spheroid => "ST_DistanceSpheroid",
        }
    }
}

impl ScalarUDFImpl for DistanceOn {
    fn name(&self) -> &str {
        match self.earth {
            Earth::Sphere => "st_distancesphere",
            Earth::Spheroid => "st_distancespheroid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let earth = self.earth;
        let distances = distances(self.sql_name(), &args, |_| Some(earth))?;
        Ok(float_column(distances))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static SPHERE: OnceLock<Documentation> = OnceLock::new();
        static SPHEROID: OnceLock<Documentation> = OnceLock::new();
        Some(match self.earth {
            Earth::Sphere => documentation(
                &SPHERE,
                "Shortest distance in metres between two longitude/latitude geometries on a sphere of radius 6,371,008.8 m (WGS84's mean radius).",
                "ST_DistanceSphere(geomA, geomB)",
                &[("geomA", GEOM.1), ("geomB", GEOM.1)],
            ),
            Earth::Spheroid => documentation(
                &SPHEROID,
                "Shortest distance in metres between two longitude/latitude geometries along geodesics of the WGS84 ellipsoid.",
                "ST_DistanceSpheroid(geomA, geomB)",
                &[("geomA", GEOM.1), ("geomB", GEOM.1)],
            ),
        })
    }
}

/// `ST_DWithin(a, b, metres [, use_spheroid])`: whether the geometries are within `metres` of
/// each other, on the WGS84 ellipsoid unless `use_spheroid` is false.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DWithin {
    signature: Signature,
}

impl Default for DWithin {
    fn default() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(3), TypeSignature::Any(4)],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for DWithin {
    fn name(&self) -> &str {
        "st_dwithin"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        const FUNCTION: &str = "ST_DWithin";
        let metres = args::floats(FUNCTION, "distance_meters", &args.args[2])?;
        let use_spheroid = match args.args.get(3) {
            Some(flag) => Some(args::booleans(FUNCTION, "use_spheroid", flag)?),
            None => None,
        };
        let earth = |row| match &use_spheroid {
            Some(flags) => flags.get(row).map(|s| Earth::from_use_spheroid(*s)),
            None => Some(Earth::Spheroid),
        };
        let distances = distances(FUNCTION, &args, earth)?;
        let mut within = BooleanBuilder::with_capacity(distances.len());
        for (row, distance) in distances.into_iter().enumerate() {
            match (distance, metres.get(row)) {
                (_, Some(limit)) if *limit < 0.0 || limit.is_nan() => {
                    return exec_err!(
                        "{FUNCTION}: the distance must be a number of metres, 0 or more, not {limit}"
                    );
                }
                (Some(distance), Some(limit)) => within.append_value(distance <= *limit),
                _ => within.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(within.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(documentation(
            &DOC,
            "Whether two longitude/latitude geometries are within the given distance in metres of each other, as PostGIS's geography: on the WGS84 ellipsoid, or a sphere with use_spheroid = false.",
            "ST_DWithin(geomA, geomB, distance_meters [, use_spheroid])",
            &[
                ("geomA", GEOM.1),
                ("geomB", GEOM.1),
                ("distance_meters", "the distance in metres"),
                USE_SPHEROID,
            ],
        ))
    }
}

/// geodatafusion's forms of the function, plus the same with `counts` arguments of any type.
fn one_or_more_arguments(planar: &Signature, counts: &[usize]) -> Signature {
    let mut forms = vec![planar.type_signature.clone()];
    forms.extend(counts.iter().map(|n| TypeSignature::Any(*n)));
    Signature::one_of(forms, Volatility::Immutable)
}

/// `measure(geometry, earth)` for each row of (geom, use_spheroid).
fn measure_each(
    function: &str,
    args: &ScalarFunctionArgs,
    measure: fn(&Geometry, Earth) -> f64,
) -> Result<ColumnarValue> {
    args::require_lon_lat(function, &args.arg_fields[0])?;
    let geometries = args::geometries(function, &args.args[0], &args.arg_fields[0])?;
    let use_spheroid = args::booleans(function, "use_spheroid", &args.args[1])?;
    let mut out = Float64Builder::with_capacity(args.number_rows);
    for row in 0..args.number_rows {
        match (geometries.get(row), use_spheroid.get(row)) {
            (Some(geometry), Some(use_spheroid)) => {
                lon_lat(function, geometry)?;
                out.append_value(measure(geometry, Earth::from_use_spheroid(*use_spheroid)));
            }
            _ => out.append_null(),
        }
    }
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

/// The distance of the first two arguments' geometries, row by row, on the Earth `earth` says
/// for that row (`None`: a NULL flag, so a NULL distance).
fn distances(
    function: &str,
    args: &ScalarFunctionArgs,
    earth: impl Fn(usize) -> Option<Earth>,
) -> Result<Vec<Option<f64>>> {
    args::require_lon_lat(function, &args.arg_fields[0])?;
    args::require_lon_lat(function, &args.arg_fields[1])?;
    let first: Values<Geometry> = args::geometries(function, &args.args[0], &args.arg_fields[0])?;
    let second = args::geometries(function, &args.args[1], &args.arg_fields[1])?;
    let mut out = Vec::with_capacity(args.number_rows);
    for row in 0..args.number_rows {
        let distance = match (first.get(row), second.get(row), earth(row)) {
            (Some(a), Some(b), Some(earth)) => {
                lon_lat(function, a)?;
                lon_lat(function, b)?;
                metric::distance(a, b, earth)
            }
            _ => None,
        };
        out.push(distance);
    }
    Ok(out)
}

fn lon_lat(function: &str, geometry: &Geometry) -> Result<()> {
    match metric::check_lon_lat(geometry) {
        Ok(()) => Ok(()),
        Err(why) => exec_err!("{function}: {why}"),
    }
}

fn float_column(values: Vec<Option<f64>>) -> ColumnarValue {
    ColumnarValue::Array(Arc::new(arrow::array::Float64Array::from(values)))
}
