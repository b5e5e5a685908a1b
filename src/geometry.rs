//! Geometry as the whole service holds it: WKB in a Binary column tagged `geoarrow.wkb`, the form
//! geodatafusion's functions read, in WGS84 longitude/latitude. Conversions to and from GeoJSON
//! and WKT live here, and so do the coordinate reference systems geometries are reprojected
//! between (`ST_Transform`, the file connector's reprojection on load).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use geo::MapCoords;
use geo_traits::to_geo::ToGeoGeometry;
use geoarrow_schema::{Crs, GeoArrowType, Metadata, WkbType};

/// A nullable WKB geometry field in WGS84 longitude/latitude.
pub fn wkb_field(name: &str) -> Field {
    wkb_field_in(name, WGS84)
}

/// A nullable WKB geometry field whose coordinates are in `crs`.
pub fn wkb_field_in(name: &str, crs: &Epsg) -> Field {
    let metadata = Metadata::new(Crs::from_authority_code(crs.to_string()), None);
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

/// A coordinate reference system geometries are reprojected between: WGS84 longitude/latitude and
/// the projected systems Italian data come in. Projected coordinates are in the traditional GIS
/// order, x = easting and y = northing, as PostGIS and QGIS read them, also for EPSG:6707 and
/// 6708, whose EPSG definition lists northing first.
#[derive(Debug)]
pub struct Epsg {
    /// The EPSG code, e.g. 3003.
    pub code: u32,
    /// EPSG's name, e.g. "Monte Mario / Italy zone 1".
    pub name: &'static str,
    /// The PROJ.4 definition proj4rs reads.
    proj: &'static str,
    /// EPSG's area of use, as WGS84 [west, south, east, north] (`projinfo EPSG:<code>`, BBOX).
    area: [f64; 4],
}

/// Italy, onshore and offshore (EPSG:6706's area of use). National data come in one zone across
/// the whole country (ISTAT's boundaries are in 32632 down to Apulia, at 18.5°E), so a projected
/// system's area counts as widened to all of Italy.
const ITALY: [f64; 4] = [5.93, 34.76, 18.99, 47.1];

/// The +towgs84 of EPSG's transformation 1660, "Monte Mario to WGS 84 (4)": the one PROJ chooses
/// for Italy's mainland (accuracy 4 m). Sardinia (1661) and Sicily (1662) have their own, so
/// Gauss-Boaga coordinates there land a few metres off.
macro_rules! monte_mario {
    ($lon_0:literal, $x_0:literal) => {
        concat!(
            "+proj=tmerc +lat_0=0 +lon_0=",
            $lon_0,
            " +k=0.9996 +x_0=",
            $x_0,
            " +y_0=0 +ellps=intl",
            " +towgs84=-104.1,-49.1,-9.9,0.971,-2.917,0.714,-11.68 +units=m +no_defs"
        )
    };
}

/// ETRF2000 (RDN2008) and ETRS89 on GRS80, with EPSG's null transformation to WGS 84 (1 m).
macro_rules! utm_grs80 {
    ($zone:literal) => {
        concat!(
            "+proj=utm +zone=",
            $zone,
            " +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"
        )
    };
}

/// WGS84 longitude/latitude in degrees: what every geometry column holds.
pub static WGS84: &Epsg = &SUPPORTED_CRS[0];

/// Every system `ST_Transform` and the file connector's `crs` know. The definitions are PROJ's
/// (`projinfo EPSG:<code> -o PROJ`, PROJ 9.1), with the datum shift PROJ picks for Italy written
/// in as `+towgs84`.
pub static SUPPORTED_CRS: [Epsg; 11] = [
    Epsg {
        code: 4326,
        name: "WGS 84",
        proj: "+proj=longlat +datum=WGS84 +no_defs",
        area: [-180.0, -90.0, 180.0, 90.0],
    },
    Epsg {
        code: 3003,
        name: "Monte Mario / Italy zone 1",
        proj: monte_mario!("9", "1500000"),
        area: [5.93, 36.53, 12.0, 47.04],
    },
    Epsg {
        code: 3004,
        name: "Monte Mario / Italy zone 2",
        proj: monte_mario!("15", "2520000"),
        area: [12.0, 34.76, 18.99, 47.1],
    },
    Epsg {
        code: 32632,
        name: "WGS 84 / UTM zone 32N",
        proj: "+proj=utm +zone=32 +datum=WGS84 +units=m +no_defs",
        area: [6.0, 0.0, 12.0, 84.0],
    },
    Epsg {
        code: 32633,
        name: "WGS 84 / UTM zone 33N",
        proj: "+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs",
        area: [12.0, 0.0, 18.0, 84.0],
    },
    Epsg {
        code: 6707,
        name: "RDN2008 / UTM zone 32N (N-E)",
        proj: utm_grs80!("32"),
        area: [5.93, 36.53, 12.0, 47.04],
    },
    Epsg {
        code: 6708,
        name: "RDN2008 / UTM zone 33N (N-E)",
        proj: utm_grs80!("33"),
        area: [12.0, 34.79, 18.0, 47.1],
    },
    Epsg {
        code: 7791,
        name: "RDN2008 / UTM zone 32N",
        proj: utm_grs80!("32"),
        area: [5.93, 36.53, 12.0, 47.04],
    },
    Epsg {
        code: 7792,
        name: "RDN2008 / UTM zone 33N",
        proj: utm_grs80!("33"),
        area: [12.0, 34.79, 18.0, 47.1],
    },
    Epsg {
        code: 25832,
        name: "ETRS89 / UTM zone 32N",
        proj: utm_grs80!("32"),
        area: [6.0, 38.76, 12.01, 84.33],
    },
    Epsg {
        code: 25833,
        name: "ETRS89 / UTM zone 33N",
        proj: utm_grs80!("33"),
        area: [12.0, 46.4, 18.01, 84.42],
    },
];

/// A system is its code.
impl PartialEq for Epsg {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}

impl Eq for Epsg {}

impl std::fmt::Display for Epsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EPSG:{}", self.code)
    }
}

impl Epsg {
    /// The system with this EPSG code; an unknown code is an error listing the known ones.
    pub fn from_code(code: i64) -> Result<&'static Epsg, String> {
        SUPPORTED_CRS
            .iter()
            .find(|crs| i64::from(crs.code) == code)
            .ok_or_else(|| format!("EPSG:{code} is not supported; {}", supported_list()))
    }

    /// A system as configuration files and GeoJSON write it: `EPSG:3003`, `urn:ogc:def:crs:EPSG::3003`;
    /// `OGC:CRS84` (and its URN) is WGS84 longitude/latitude.
    pub fn parse(text: &str) -> Result<&'static Epsg, String> {
        let upper = text.trim().to_ascii_uppercase();
        if matches!(
            upper.as_str(),
            "CRS84" | "OGC:CRS84" | "URN:OGC:DEF:CRS:OGC:1.3:CRS84" | "URN:OGC:DEF:CRS:OGC::CRS84"
        ) {
            return Ok(WGS84);
        }
        // `EPSG:3003`, or the URN form `urn:ogc:def:crs:EPSG:<version>:3003` (version often empty).
        let code = upper
            .strip_prefix("EPSG:")
            .or_else(|| {
                upper
                    .strip_prefix("URN:OGC:DEF:CRS:EPSG:")
                    .and_then(|rest| rest.rsplit(':').next())
            })
            .and_then(|code| code.parse::<i64>().ok());
        match code {
            Some(code) => Self::from_code(code),
            None => Err(format!(
                "`{text}` is not a CRS: write it as `EPSG:<code>`; {}",
                supported_list()
            )),
        }
    }

    /// Whether coordinates are longitude/latitude in degrees (only WGS84 here).
    pub fn is_geographic(&self) -> bool {
        self.code == WGS84.code
    }

    /// Where this system's coordinates may fall in WGS84, as [west, south, east, north]: EPSG's
    /// area of use, widened to the whole of Italy for the projected systems.
    pub fn extent(&self) -> [f64; 4] {
        let [west, south, east, north] = self.area;
        if self.is_geographic() {
            return self.area;
        }
        [
            west.min(ITALY[0]),
            south.min(ITALY[1]),
            east.max(ITALY[2]),
            north.max(ITALY[3]),
        ]
    }

    fn proj(&self) -> proj4rs::Proj {
        proj4rs::Proj::from_proj_string(self.proj)
            .unwrap_or_else(|e| panic!("the definition of {self} does not parse: {e}"))
    }
}

/// "the supported systems are EPSG:4326 (WGS 84), EPSG:3003 (…), …", for error messages.
pub fn supported_list() -> String {
    let systems: Vec<String> = SUPPORTED_CRS
        .iter()
        .map(|crs| format!("{crs} ({})", crs.name))
        .collect();
    format!("the supported systems are {}", systems.join(", "))
}

/// The system a geometry field declares in its GeoArrow metadata (`"crs": "EPSG:3003"`, or PROJJSON
/// with an EPSG `id`): `Ok(None)` when it declares none, an error when it declares one this service
/// does not know.
pub fn field_crs(field: &Field) -> Result<Option<&'static Epsg>, String> {
    let Some(metadata) = field.metadata().get("ARROW:extension:metadata") else {
        return Ok(None);
    };
    let Ok(metadata) = serde_json::from_str::<serde_json::Value>(metadata) else {
        return Ok(None);
    };
    match metadata.get("crs") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Epsg::parse(text).map(Some),
        Some(projjson) => {
            let id = &projjson["id"];
            match (id["authority"].as_str(), id["code"].as_i64()) {
                (Some(authority), Some(code)) if authority.eq_ignore_ascii_case("EPSG") => {
                    Epsg::from_code(code).map(Some)
                }
                _ => Err(format!(
                    "field `{}` declares a CRS without an EPSG code",
                    field.name()
                )),
            }
        }
    }
}

/// Coordinates from one system to another through proj4rs, checked on the way: a coordinate that
/// is not finite, is outside longitude −180…180 / latitude −90…90 when geographic, or does not
/// transform, is an error naming it.
pub struct Reprojection {
    from: &'static Epsg,
    to: &'static Epsg,
    source: proj4rs::Proj,
    target: proj4rs::Proj,
    /// Refuse what lands outside the source system's extent (see `for_loading`).
    within_extent: bool,
}

impl Reprojection {
    pub fn new(from: &'static Epsg, to: &'static Epsg) -> Self {
        Self {
            from,
            to,
            source: from.proj(),
            target: to.proj(),
            within_extent: false,
        }
    }

    /// From a source's declared system to WGS84, for data being loaded: a coordinate that lands
    /// outside the system's extent is refused too, since swapped axes or a wrong `crs` put points
    /// in another continent, not out of the projection's domain.
    pub fn for_loading(from: &'static Epsg) -> Self {
        Self {
            within_extent: true,
            ..Self::new(from, WGS84)
        }
    }

    pub fn from(&self) -> &'static Epsg {
        self.from
    }

    pub fn to(&self) -> &'static Epsg {
        self.to
    }

    /// One coordinate, (x, y) = (longitude, latitude) in degrees or (easting, northing) in metres.
    pub fn point(&self, x: f64, y: f64) -> Result<(f64, f64), String> {
        if !x.is_finite() || !y.is_finite() {
            return Err(format!("coordinate ({x}, {y}) is not a finite number"));
        }
        if self.from.is_geographic() {
            check_lon_lat(x, y).map_err(|why| format!("coordinate ({x}, {y}) {why}"))?;
        }
        if self.from == self.to {
            return Ok((x, y));
        }
        let mut point = if self.from.is_geographic() {
            (x.to_radians(), y.to_radians(), 0.0)
        } else {
            (x, y, 0.0)
        };
        proj4rs::transform::transform(&self.source, &self.target, &mut point).map_err(|e| {
            format!(
                "coordinate ({x}, {y}) in {} does not transform to {}: {e}",
                self.from, self.to
            )
        })?;
        let (out_x, out_y) = if self.to.is_geographic() {
            (point.0.to_degrees(), point.1.to_degrees())
        } else {
            (point.0, point.1)
        };
        if !out_x.is_finite() || !out_y.is_finite() {
            return Err(format!(
                "coordinate ({x}, {y}) in {} does not transform to {}: the result is not finite",
                self.from, self.to
            ));
        }
        if self.to.is_geographic() {
            check_lon_lat(out_x, out_y).map_err(|why| {
                format!(
                    "coordinate ({x}, {y}) in {} falls at ({out_x}, {out_y}) in {}, which {why}",
                    self.from, self.to
                )
            })?;
        }
        let [west, south, east, north] = self.from.extent();
        if self.within_extent
            && !((west..=east).contains(&out_x) && (south..=north).contains(&out_y))
        {
            return Err(format!(
                "coordinate ({x}, {y}) in {} falls at longitude {out_x:.5}, latitude {out_y:.5}, outside the area {} is used in (longitude {west}…{east}, latitude {south}…{north}): are x and y swapped, or is the data in another system?",
                self.from, self.from
            ));
        }
        Ok((out_x, out_y))
    }

    /// Every coordinate of a geometry; the first that fails is the error.
    pub fn geometry(
        &self,
        geometry: &geo_types::Geometry<f64>,
    ) -> Result<geo_types::Geometry<f64>, String> {
        geometry.try_map_coords(|c| self.point(c.x, c.y).map(|(x, y)| geo_types::Coord { x, y }))
    }
}

fn check_lon_lat(lon: f64, lat: f64) -> Result<(), String> {
    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok(())
    } else {
        Err("is outside longitude −180…180 / latitude −90…90".to_string())
    }
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

    /// Piazza Maggiore, Bologna (44.4939 N, 11.3426 E) in each system, from PROJ 9.1.1:
    /// `echo 44.4939 11.3426 | cs2cs -d 4 EPSG:4326 EPSG:<code>` (6707 and 6708 print northing
    /// first, their EPSG axis order; here in x = easting order).
    const BOLOGNA: (f64, f64) = (11.3426, 44.4939);
    const BOLOGNA_IN: [(u32, f64, f64); 10] = [
        (3003, 1686282.6404, 4929418.1426),
        (3004, 2229214.1444, 4933256.5991),
        (32632, 686251.8399, 4929400.8223),
        (32633, 209210.9027, 4933240.5749),
        (6707, 686251.8399, 4929400.8222),
        (6708, 209210.9027, 4933240.5748),
        (7791, 686251.8399, 4929400.8222),
        (7792, 209210.9027, 4933240.5748),
        (25832, 686251.8399, 4929400.8222),
        (25833, 209210.9027, 4933240.5748),
    ];

    #[test]
    fn wgs84_projects_as_proj_does_and_back() {
        for (code, x, y) in BOLOGNA_IN {
            let crs = Epsg::from_code(code.into()).unwrap();
            let (east, north) = Reprojection::new(WGS84, crs)
                .point(BOLOGNA.0, BOLOGNA.1)
                .unwrap();
            assert!(
                (east - x).abs() < 0.01 && (north - y).abs() < 0.01,
                "{crs}: ({east}, {north}), PROJ says ({x}, {y})"
            );
            let (lon, lat) = Reprojection::new(crs, WGS84).point(x, y).unwrap();
            // 1e-7° is about a centimetre.
            assert!(
                (lon - BOLOGNA.0).abs() < 1e-7 && (lat - BOLOGNA.1).abs() < 1e-7,
                "{crs}: ({lon}, {lat})"
            );
        }
    }

    #[test]
    fn systems_are_named_as_files_and_geojson_write_them() {
        assert_eq!(Epsg::parse("EPSG:3003").unwrap().code, 3003);
        assert_eq!(Epsg::parse("epsg:32632").unwrap().code, 32632);
        assert_eq!(
            Epsg::parse("urn:ogc:def:crs:EPSG::6707").unwrap().code,
            6707
        );
        assert_eq!(Epsg::parse("urn:ogc:def:crs:OGC:1.3:CRS84").unwrap(), WGS84);
        let unknown = Epsg::parse("EPSG:3857").unwrap_err();
        assert!(unknown.contains("EPSG:3857 is not supported"), "{unknown}");
        assert!(
            unknown.contains("EPSG:3003 (Monte Mario / Italy zone 1)"),
            "{unknown}"
        );
        assert!(
            Epsg::parse("Gauss-Boaga")
                .unwrap_err()
                .contains("EPSG:<code>")
        );
    }

    #[test]
    fn coordinates_that_do_not_transform_are_refused_with_the_reason() {
        let to_wgs84 = Reprojection::new(Epsg::from_code(3003).unwrap(), WGS84);
        let why = to_wgs84.point(f64::NAN, 4929418.0).unwrap_err();
        assert!(why.contains("not a finite number"), "{why}");
        // Far outside the projection's domain.
        let why = to_wgs84.point(4.9e9, 1.6e6).unwrap_err();
        assert!(why.contains("EPSG:3003"), "{why}");
        // Easting and northing swapped: a valid coordinate, in Eritrea, refused on load.
        // `echo 4929418.1426 1686282.6404 | cs2cs -f %.5f <3003's definition above> +to
        // +proj=longlat +datum=WGS84` → 39.30394 13.23429.
        let (lon, lat) = to_wgs84.point(4929418.1426, 1686282.6404).unwrap();
        assert!(
            (lon - 39.30394).abs() < 1e-5 && (lat - 13.23429).abs() < 1e-5,
            "{lon} {lat}"
        );
        let loading = Reprojection::for_loading(Epsg::from_code(3003).unwrap());
        let why = loading.point(4929418.1426, 1686282.6404).unwrap_err();
        assert!(why.contains("x and y swapped"), "{why}");
        assert!(loading.point(1686282.6404, 4929418.1426).is_ok());
        let from_wgs84 = Reprojection::new(WGS84, Epsg::from_code(32632).unwrap());
        let why = from_wgs84.point(11.0, 95.0).unwrap_err();
        assert!(why.contains("outside longitude"), "{why}");
    }

    #[test]
    fn a_field_names_its_system() {
        let crs = Epsg::from_code(3003).unwrap();
        assert_eq!(field_crs(&wkb_field_in("g", crs)), Ok(Some(crs)));
        assert_eq!(field_crs(&wkb_field("g")), Ok(Some(WGS84)));
        assert_eq!(
            field_crs(&Field::new("g", DataType::Binary, true)),
            Ok(None)
        );
    }
}
