//! Measures in metres and reprojection, through SQL as the service plans it and through the file
//! connector, against reference values computed outside this code:
//!
//! - coordinates: PROJ 9.1.1's cs2cs (Debian's proj-bin), e.g.
//!   `echo 44.4939 11.3426 | cs2cs -d 4 EPSG:4326 EPSG:3003`
//!   (EPSG:4326 input is latitude first; 6707 and 6708 print northing first, their EPSG axis
//!   order, and are written here as x = easting, y = northing, as the service reads them);
//! - areas and geodesic lengths: GeographicLib 2.1 for Python (`pip install geographiclib`):
//!   `p = Geodesic.WGS84.Polygon(); p.AddPoint(lat, lon)…; p.Compute(False, True)` and
//!   `Geodesic.WGS84.Inverse(lat1, lon1, lat2, lon2)['s12']`;
//! - spheres: the haversine formula and Van Oosterom–Strackee's spherical excess in plain Python
//!   with R = 6371008.8.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, RecordBatch};
use arrow::datatypes::{Float64Type, Schema};
use cruscotto::connectors::file::{FileTableConfig, load_table};
use cruscotto::geometry::{field_crs, is_geometry, wkb_to_geo};
use datafusion::prelude::SessionContext;

/// Piazza Maggiore (Bologna), the Duomo (Milan), the Colosseum (Rome), Bari's old town.
const PLACES: [(&str, f64, f64); 4] = [
    ("Bologna", 11.3426, 44.4939),
    ("Milano", 9.19, 45.4642),
    ("Roma", 12.4922, 41.8902),
    ("Bari", 16.8719, 41.1171),
];

/// `cs2cs -d 4 EPSG:4326 EPSG:<code>` of PLACES, in their order, as (easting, northing).
const PROJECTED: [(i64, [(f64, f64); 4]); 10] = [
    (
        3003,
        [
            (1686282.6404, 4929418.1426),
            (1514881.4906, 5034556.8124),
            (1789763.6855, 4643496.3199),
            (2161184.3955, 4581733.2826),
        ],
    ),
    (
        3004,
        [
            (2229214.1444, 4933256.5991),
            (2065808.8622, 5050980.9981),
            (2311949.8679, 4640636.8625),
            (2677165.0185, 4553452.4461),
        ],
    ),
    (
        32632,
        [
            (686251.8399, 4929400.8223),
            (514853.4959, 5034536.7962),
            (789732.0697, 4643484.8484),
            (1161145.9552, 4581724.4157),
        ],
    ),
    (
        32633,
        [
            (209210.9027, 4933240.5749),
            (45808.2910, 5050962.2411),
            (291945.9942, 4640626.5972),
            (657154.5352, 4553444.9085),
        ],
    ),
    (
        6707,
        [
            (686251.8399, 4929400.8222),
            (514853.4959, 5034536.7961),
            (789732.0697, 4643484.8482),
            (1161145.9552, 4581724.4156),
        ],
    ),
    (
        6708,
        [
            (209210.9027, 4933240.5748),
            (45808.2910, 5050962.2410),
            (291945.9942, 4640626.5971),
            (657154.5352, 4553444.9084),
        ],
    ),
    (
        7791,
        [
            (686251.8399, 4929400.8222),
            (514853.4959, 5034536.7961),
            (789732.0697, 4643484.8482),
            (1161145.9552, 4581724.4156),
        ],
    ),
    (
        7792,
        [
            (209210.9027, 4933240.5748),
            (45808.2910, 5050962.2410),
            (291945.9942, 4640626.5971),
            (657154.5352, 4553444.9084),
        ],
    ),
    (
        25832,
        [
            (686251.8399, 4929400.8222),
            (514853.4959, 5034536.7961),
            (789732.0697, 4643484.8482),
            (1161145.9552, 4581724.4156),
        ],
    ),
    (
        25833,
        [
            (209210.9027, 4933240.5748),
            (45808.2910, 5050962.2410),
            (291945.9942, 4640626.5971),
            (657154.5352, 4553444.9084),
        ],
    ),
];

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    cruscotto::query::geo::register(&ctx);
    ctx
}

async fn query(sql: &str) -> RecordBatch {
    let batches = context()
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

async fn error(sql: &str) -> String {
    let planned = context().sql(sql).await;
    let result = match planned {
        Ok(frame) => frame.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => panic!("{sql} succeeded"),
        Err(e) => e.to_string(),
    }
}

fn float(batch: &RecordBatch, column: usize) -> Vec<Option<f64>> {
    batch
        .column(column)
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn point(batch: &RecordBatch, column: usize, row: usize) -> (f64, f64) {
    let wkb = batch
        .column(column)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("a WKB column");
    match wkb_to_geo(wkb.value(row)).unwrap() {
        geo_types::Geometry::Point(p) => (p.x(), p.y()),
        other => panic!("not a point: {other:?}"),
    }
}

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

#[tokio::test]
async fn areas_are_square_metres_on_the_ellipsoid_or_the_sphere_and_planar_without_the_flag() {
    let cell = "ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))')";
    let clockwise = "ST_GeomFromText('POLYGON((0 0, 0 1, 1 1, 1 0, 0 0))')";
    let batch = query(&format!(
        "SELECT ST_Area({cell}, true), ST_Area({clockwise}, true), ST_Area({cell}, false), ST_Area({cell}), \
         ST_Area(ST_GeomFromText('LINESTRING(0 0, 1 1)'), true)"
    ))
    .await;
    // Planimeter: 12308778361.469452 m².
    close(
        float(&batch, 0)[0].unwrap(),
        12_308_778_361.469452,
        0.01,
        "ellipsoid",
    );
    close(
        float(&batch, 1)[0].unwrap(),
        12_308_778_361.469452,
        0.01,
        "clockwise ring",
    );
    // Spherical excess of the two triangles (0 0, 1 0, 1 1) and (0 0, 1 1, 0 1), times R².
    close(
        float(&batch, 2)[0].unwrap(),
        12_364_031_909.465616,
        0.01,
        "sphere",
    );
    assert_eq!(
        float(&batch, 3)[0],
        Some(1.0),
        "planar square degrees, as before"
    );
    assert_eq!(float(&batch, 4)[0], Some(0.0), "a line has no area");
}

#[tokio::test]
async fn a_meridian_degree_is_its_geodesic_length() {
    let meridian = "ST_GeomFromText('LINESTRING(11 44, 11 45)')";
    let route = "ST_GeomFromText('LINESTRING(11.3426 44.4939, 9.19 45.4642, 12.4922 41.8902)')";
    let batch = query(&format!(
        "SELECT ST_Length({meridian}, true), ST_Length({meridian}), ST_Length({route}, true), ST_Length({meridian}, false)"
    ))
    .await;
    // g.Inverse(44, 11, 45, 11)['s12'] = 111122.00826280942
    close(
        float(&batch, 0)[0].unwrap(),
        111_122.00826280942,
        1e-6,
        "ellipsoid",
    );
    assert_eq!(float(&batch, 1)[0], Some(1.0), "planar degrees, as before");
    // Bologna → Milan → Rome: 201123.91760010857 + 478013.4372275654 = 679137.354827674.
    close(
        float(&batch, 2)[0].unwrap(),
        679_137.354827674,
        1e-6,
        "route",
    );
    // R · π / 180.
    close(
        float(&batch, 3)[0].unwrap(),
        111_195.08023353292,
        1e-6,
        "sphere",
    );
}

#[tokio::test]
async fn bologna_to_milan_on_the_sphere_and_on_the_ellipsoid() {
    let bologna = "ST_GeomFromText('POINT(11.3426 44.4939)')";
    let milano = "ST_GeomFromText('POINT(9.19 45.4642)')";
    let batch = query(&format!(
        "SELECT ST_DistanceSphere({bologna}, {milano}), ST_DistanceSpheroid({bologna}, {milano}), \
                ST_Distance({bologna}, {milano}, true), ST_Distance({bologna}, {milano}, false), \
                ST_Distance({bologna}, {milano})"
    ))
    .await;
    // Haversine with R = 6371008.8 in Python: 200757.53909136832.
    close(
        float(&batch, 0)[0].unwrap(),
        200_757.53909136832,
        1e-6,
        "sphere",
    );
    // g.Inverse(44.4939, 11.3426, 45.4642, 9.19)['s12'] = 201123.91760010857
    close(
        float(&batch, 1)[0].unwrap(),
        201_123.91760010857,
        1e-6,
        "ellipsoid",
    );
    close(
        float(&batch, 2)[0].unwrap(),
        201_123.91760010857,
        1e-6,
        "use_spheroid",
    );
    close(
        float(&batch, 3)[0].unwrap(),
        200_757.53909136832,
        1e-6,
        "sphere flag",
    );
    // hypot(11.3426 − 9.19, 44.4939 − 45.4642) degrees, as geodatafusion answers.
    close(
        float(&batch, 4)[0].unwrap(),
        2.3611795463284873,
        1e-12,
        "planar",
    );
}

#[tokio::test]
async fn dwithin_counts_metres_on_the_ellipsoid_unless_told_the_sphere() {
    let bologna = "ST_GeomFromText('POINT(11.3426 44.4939)')";
    let milano = "ST_GeomFromText('POINT(9.19 45.4642)')";
    // 201 km lies between the sphere's 200.76 km and the ellipsoid's 201.12 km.
    let batch = query(&format!(
        "SELECT ST_DWithin({bologna}, {milano}, 201000), ST_DWithin({bologna}, {milano}, 201000, false), \
                ST_DWithin({bologna}, {milano}, 201200), ST_DWithin({bologna}, {milano}, 201000.0, true)"
    ))
    .await;
    let flags: Vec<Option<bool>> = (0..4)
        .map(|c| batch.column(c).as_boolean().iter().next().unwrap())
        .collect();
    assert_eq!(
        flags,
        vec![Some(false), Some(true), Some(true), Some(false)]
    );
}

#[tokio::test]
async fn a_point_inside_an_area_is_at_no_distance_and_a_line_is_measured_from_its_nearest_point() {
    let batch = query(
        "SELECT ST_DistanceSpheroid(ST_GeomFromText('POINT(11.3426 44.4939)'), \
                    ST_GeomFromText('POLYGON((11 44, 12 44, 12 45, 11 45, 11 44))')), \
                ST_DistanceSpheroid(ST_GeomFromText('POINT(11.3426 44.4939)'), \
                    ST_GeomFromText('LINESTRING(9.19 45.4642, 8 46)'))",
    )
    .await;
    assert_eq!(float(&batch, 0)[0], Some(0.0));
    // The nearest point of the line is its Milan end: g.Inverse → 201123.91760010857.
    close(
        float(&batch, 1)[0].unwrap(),
        201_123.91760010857,
        1e-6,
        "to a line",
    );
}

#[tokio::test]
async fn st_transform_agrees_with_cs2cs_in_every_supported_system() {
    for (code, expected) in PROJECTED {
        let rows: Vec<String> = PLACES
            .iter()
            .map(|(name, lon, lat)| format!("('{name}', 'POINT({lon} {lat})')"))
            .collect();
        let sql = format!(
            "SELECT ST_Transform(ST_GeomFromText(wkt), {code}) AS projected, \
                    ST_Transform(ST_Transform(ST_GeomFromText(wkt), {code}), 4326) AS back \
             FROM (VALUES {}) AS places(name, wkt)",
            rows.join(", ")
        );
        let batch = query(&sql).await;
        let field = batch.schema().field(0).clone();
        assert!(is_geometry(&field), "{code}: {field:?}");
        assert_eq!(field_crs(&field).unwrap().unwrap().code as i64, code);
        // Gauss-Boaga adds a datum shift; PROJ applies the same seven parameters.
        let tolerance = if code == 3003 || code == 3004 {
            0.05
        } else {
            0.01
        };
        for (row, ((name, lon, lat), (east, north))) in PLACES.iter().zip(expected).enumerate() {
            let (x, y) = point(&batch, 0, row);
            close(
                x,
                east,
                tolerance,
                &format!("{name} easting in EPSG:{code}"),
            );
            close(
                y,
                north,
                tolerance,
                &format!("{name} northing in EPSG:{code}"),
            );
            // The projected column declares its system, so the second ST_Transform reads it.
            let (back_lon, back_lat) = point(&batch, 1, row);
            close(
                back_lon,
                *lon,
                1e-8,
                &format!("{name} longitude back from {code}"),
            );
            close(
                back_lat,
                *lat,
                1e-8,
                &format!("{name} latitude back from {code}"),
            );
        }
    }
}

#[tokio::test]
async fn st_transform_from_a_named_system_and_nulls() {
    let batch = query(
        "SELECT ST_Transform(ST_GeomFromText('POINT(1686282.6404 4929418.1426)'), 3003, 4326), \
                ST_Transform(ST_GeomFromText(CAST(NULL AS VARCHAR)), 3003), \
                ST_Area(ST_GeomFromText(CAST(NULL AS VARCHAR)), true), \
                ST_DistanceSphere(ST_GeomFromText(CAST(NULL AS VARCHAR)), ST_GeomFromText('POINT(0 0)'))",
    )
    .await;
    let (lon, lat) = point(&batch, 0, 0);
    close(lon, 11.3426, 1e-7, "longitude");
    close(lat, 44.4939, 1e-7, "latitude");
    assert!(batch.column(1).is_null(0));
    assert!(batch.column(2).is_null(0));
    assert!(batch.column(3).is_null(0));
}

#[tokio::test]
async fn errors_name_the_function_and_what_is_wrong() {
    let unknown = error("SELECT ST_Transform(ST_GeomFromText('POINT(11 44)'), 3857)").await;
    assert!(unknown.contains("ST_Transform"), "{unknown}");
    assert!(unknown.contains("EPSG:3857 is not supported"), "{unknown}");
    assert!(
        unknown.contains("EPSG:3003 (Monte Mario / Italy zone 1)"),
        "{unknown}"
    );

    let projected = error(
        "SELECT ST_Area(ST_Transform(ST_GeomFromText('POLYGON((11 44, 12 44, 12 45, 11 44))'), 32632), true)",
    )
    .await;
    assert!(projected.contains("ST_Area"), "{projected}");
    assert!(projected.contains("EPSG:32632"), "{projected}");

    let metres = error(
        "SELECT ST_Length(ST_GeomFromText('LINESTRING(686251 4929400, 686300 4929500)'), true)",
    )
    .await;
    assert!(metres.contains("ST_Length"), "{metres}");
    assert!(metres.contains("not a longitude/latitude"), "{metres}");

    let outside = error("SELECT ST_Transform(ST_GeomFromText('POINT(11 95)'), 32632)").await;
    assert!(outside.contains("ST_Transform"), "{outside}");
    assert!(outside.contains("(11, 95)"), "{outside}");

    let negative = error(
        "SELECT ST_DWithin(ST_GeomFromText('POINT(11 44)'), ST_GeomFromText('POINT(11 44)'), -1)",
    )
    .await;
    assert!(negative.contains("ST_DWithin"), "{negative}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_engine_keeps_the_transformed_column_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = cruscotto::store::Store::new(dir.path(), 2);
    let engine = cruscotto::query::QueryEngine::new(
        &store,
        Vec::new(),
        cruscotto::config::QueryLimits::default(),
    );
    let result = engine
        .execute("SELECT ST_Transform(ST_GeomFromText('POINT(11.3426 44.4939)'), 32632) AS utm, ST_DistanceSphere(ST_GeomFromText('POINT(11.3426 44.4939)'), ST_GeomFromText('POINT(9.19 45.4642)')) AS metres")
        .await
        .unwrap();
    let field = result.schema.field(0).clone();
    assert!(is_geometry(&field), "{field:?}");
    assert_eq!(field_crs(&field).unwrap().unwrap().code, 32632);
    let batch = &result.batches[0];
    let (x, y) = point(batch, 0, 0);
    close(x, 686_251.8399, 0.01, "easting");
    close(y, 4_929_400.8223, 0.01, "northing");
    close(
        float(batch, 1)[0].unwrap(),
        200_757.53909136832,
        1e-6,
        "sphere",
    );
}

/// A GeoJSON file as QGIS and ogr2ogr write one in Gauss-Boaga: its `crs` member names the system.
#[tokio::test]
async fn the_file_connector_reprojects_a_gauss_boaga_geojson_and_rejects_the_point_off_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fermate.geojson");
    let (bologna_x, bologna_y) = PROJECTED[0].1[0];
    let (bari_x, bari_y) = PROJECTED[0].1[3];
    let features = serde_json::json!({
        "type": "FeatureCollection",
        "crs": { "type": "name", "properties": { "name": "urn:ogc:def:crs:EPSG::3003" } },
        "features": [
            { "type": "Feature", "properties": { "nome": "Piazza Maggiore" },
              "geometry": { "type": "Point", "coordinates": [bologna_x, bologna_y] } },
            { "type": "Feature", "properties": { "nome": "Bari vecchia" },
              "geometry": { "type": "Point", "coordinates": [bari_x, bari_y] } },
            { "type": "Feature", "properties": { "nome": "coordinate scambiate" },
              "geometry": { "type": "Point", "coordinates": [bologna_y, bologna_x] } }
        ]
    });
    std::fs::write(&path, features.to_string()).unwrap();
    let config: FileTableConfig = toml::from_str(&format!(
        "name = \"fermate\"\npath = {:?}",
        path.display().to_string()
    ))
    .unwrap();
    let loaded = load_table(config, path.clone()).await.unwrap();

    let batch = arrow::compute::concat_batches(&loaded.schema, &loaded.batches).unwrap();
    assert_eq!(batch.num_rows(), 2);
    let geometry = batch.schema().index_of("geometry").unwrap();
    assert_eq!(
        field_crs(batch.schema().field(geometry))
            .unwrap()
            .unwrap()
            .code,
        4326
    );
    // Gauss-Boaga's datum shift is EPSG's 7-parameter one, the same PROJ used: well under 1e-6°.
    for (row, (name, lon, lat)) in [PLACES[0], PLACES[3]].iter().enumerate() {
        let (x, y) = point(&batch, geometry, row);
        close(x, *lon, 1e-6, &format!("{name} longitude"));
        close(y, *lat, 1e-6, &format!("{name} latitude"));
    }
    assert_eq!(loaded.rejected.len(), 1, "{:?}", loaded.rejected);
    let rejected = &loaded.rejected[0];
    assert!(
        rejected.reason.starts_with("feature 3: "),
        "{}",
        rejected.reason
    );
    assert!(rejected.reason.contains("EPSG:3003"), "{}", rejected.reason);
    assert!(
        rejected.raw.contains("coordinate scambiate"),
        "{}",
        rejected.raw
    );

    // And the stored column measures in metres: Bologna to Bari on the ellipsoid.
    let ctx = context();
    let schema: Arc<Schema> = batch.schema();
    ctx.register_batch(
        "fermate",
        RecordBatch::try_new(schema, batch.columns().to_vec()).unwrap(),
    )
    .unwrap();
    let distance = ctx
        .sql("SELECT ST_DistanceSpheroid(a.geometry, b.geometry) FROM fermate a, fermate b WHERE a.nome = 'Piazza Maggiore' AND b.nome = 'Bari vecchia'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let metres = distance[0].column(0).as_primitive::<Float64Type>().value(0);
    // g.Inverse(44.4939, 11.3426, 41.1171, 16.8719)['s12'], to within the shift's centimetres.
    close(metres, BOLOGNA_BARI, 0.5, "Bologna–Bari");
}

/// `Geodesic.WGS84.Inverse(44.4939, 11.3426, 41.1171, 16.8719)['s12']`.
const BOLOGNA_BARI: f64 = 587_362.286520695;

/// A CSV of stops in Gauss-Boaga, as regional open data often comes: `crs` on the table, the
/// easting and northing columns as `point = { x, y }`.
#[tokio::test]
async fn a_table_declared_in_gauss_boaga_loads_as_wgs84_and_its_swapped_row_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fermate.csv");
    let (x, y) = PROJECTED[0].1[0];
    std::fs::write(
        &path,
        format!("nome;est;nord\nPiazza Maggiore;{x};{y}\nscambiata;{y};{x}\nsenza;;\n"),
    )
    .unwrap();
    let config: FileTableConfig = toml::from_str(&format!(
        "name = \"fermate\"\npath = {:?}\ndelimiter = \";\"\ncrs = \"EPSG:3003\"\npoint = {{ x = \"est\", y = \"nord\" }}",
        path.display().to_string()
    ))
    .unwrap();
    let loaded = load_table(config, path.clone()).await.unwrap();
    let batch = arrow::compute::concat_batches(&loaded.schema, &loaded.batches).unwrap();
    assert_eq!(
        batch.num_rows(),
        2,
        "Piazza Maggiore, and the row without coordinates"
    );
    let geometry = batch.schema().index_of("geometry").unwrap();
    let (lon, lat) = point(&batch, geometry, 0);
    close(lon, PLACES[0].1, 1e-6, "longitude");
    close(lat, PLACES[0].2, 1e-6, "latitude");
    assert!(batch.column(geometry).is_null(1));
    assert_eq!(loaded.rejected.len(), 1, "{:?}", loaded.rejected);
    assert!(
        loaded.rejected[0].reason.contains("x and y swapped"),
        "{}",
        loaded.rejected[0].reason
    );
}

#[test]
fn an_unknown_crs_is_a_problem_naming_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let config: cruscotto::connectors::file::FileConnectorConfig = toml::from_str(
        "kind = \"file\"\n[[table]]\nname = \"fermate\"\npath = \"fermate.csv\"\ncrs = \"EPSG:3857\"",
    )
    .unwrap();
    let problems = config.validate(&dir.path().join("trasporti.toml"), dir.path());
    let crs = problems
        .iter()
        .find(|p| p.location.as_deref() == Some("table[0].crs"))
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(!crs.warning);
    assert!(crs.message.contains("table `fermate`"), "{}", crs.message);
    assert!(
        crs.message.contains("EPSG:3857 is not supported"),
        "{}",
        crs.message
    );
}
