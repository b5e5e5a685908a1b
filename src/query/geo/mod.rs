//! Spatial functions: geodatafusion's (ST_Contains, ST_Intersects, ST_Centroid, ST_AsText, …),
//! ST_AsGeoJSON, which geodatafusion does not have yet, measures in metres on the WGS84 ellipsoid
//! or on a sphere (ST_Area and ST_Length with `use_spheroid`, ST_DistanceSphere,
//! ST_DistanceSpheroid, ST_DWithin), and ST_Transform between WGS84 and the systems Italian data
//! come in.

mod args;
mod geojson;
mod measure;
mod metric;
mod transform;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use geojson::AsGeoJson;
pub use measure::{DWithin, Distance, DistanceOn, Measure};
pub use metric::{Earth, SPHERE_RADIUS};
pub use transform::Transform;

pub fn register(ctx: &SessionContext) {
    geodatafusion::register(ctx);
    ctx.register_udf(ScalarUDF::new_from_impl(AsGeoJson::default()));
    // After geodatafusion's: ST_Area, ST_Length and ST_Distance replace its functions of the same
    // name, whose planar forms they still answer with its code.
    for function in measure::functions() {
        ctx.register_udf(function);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Transform::default()));
}
