//! Measures of WGS84 longitude/latitude geometries in metres, the way PostGIS measures a
//! `geography`: edges are geodesics, on the WGS84 ellipsoid (Karney's algorithms, through
//! geographiclib) or on a sphere of radius 6,371,008.8 m, the ellipsoid's mean radius.

use geo::{
    Closest, CoordsIter, Distance, Geodesic, Haversine, HaversineClosestPoint, Intersects, Length,
};
use geo_types::{Geometry, LineString, Point};
use geographiclib_rs::{PolygonArea, Winding};

/// The model of the Earth a measure is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Earth {
    /// WGS84's ellipsoid: PostGIS's `use_spheroid = true`, its default for geography.
    Spheroid,
    /// A sphere of the ellipsoid's mean radius: faster, within about 0.5 % of the ellipsoid.
    Sphere,
}

/// The sphere's radius: WGS84's mean radius (2a + b) / 3, as PostGIS's and geo's haversine.
pub const SPHERE_RADIUS: f64 = 6_371_008.8;

impl Earth {
    pub fn from_use_spheroid(use_spheroid: bool) -> Self {
        if use_spheroid {
            Earth::Spheroid
        } else {
            Earth::Sphere
        }
    }

    fn geodesic(self) -> geographiclib_rs::Geodesic {
        match self {
            Earth::Spheroid => geographiclib_rs::Geodesic::wgs84(),
            Earth::Sphere => geographiclib_rs::Geodesic::new(SPHERE_RADIUS, 0.0),
        }
    }

    fn point_distance(self, a: Point, b: Point) -> f64 {
        match self {
            Earth::Spheroid => Geodesic.distance(a, b),
            Earth::Sphere => Haversine.distance(a, b),
        }
    }

    fn line_length(self, line: &LineString) -> f64 {
        match self {
            Earth::Spheroid => Geodesic.length(line),
            Earth::Sphere => Haversine.length(line),
        }
    }
}

/// Every coordinate is a longitude within −180…180 and a latitude within −90…90; otherwise the
/// first one that is not, which usually means a geometry in a projected system.
pub fn check_lon_lat(geometry: &Geometry) -> Result<(), String> {
    match geometry
        .coords_iter()
        .find(|c| !((-180.0..=180.0).contains(&c.x) && (-90.0..=90.0).contains(&c.y)))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "coordinate ({}, {}) is not a longitude/latitude: measures in metres need WGS84 (EPSG:4326); ST_Transform(geom, <srid>, 4326) a projected geometry first",
            c.x, c.y
        )),
    }
}

/// Area in m²: polygons' areas (exterior less holes) summed, 0 for points and lines. Each ring
/// counts as the smaller of the two parts it divides the Earth into, whichever way it turns, as
/// PostGIS's geography does (sources write rings clockwise as often as not).
pub fn area(geometry: &Geometry, earth: Earth) -> f64 {
    let geodesic = earth.geodesic();
    area_on(geometry, &geodesic)
}

fn area_on(geometry: &Geometry, geodesic: &geographiclib_rs::Geodesic) -> f64 {
    let polygon_area = |polygon: &geo_types::Polygon| {
        let holes: f64 = polygon
            .interiors()
            .iter()
            .map(|ring| ring_area(ring, geodesic))
            .sum();
        (ring_area(polygon.exterior(), geodesic) - holes).max(0.0)
    };
    match geometry {
        Geometry::Polygon(polygon) => polygon_area(polygon),
        Geometry::MultiPolygon(polygons) => polygons.iter().map(polygon_area).sum(),
        Geometry::Rect(rect) => polygon_area(&rect.to_polygon()),
        Geometry::Triangle(triangle) => polygon_area(&triangle.to_polygon()),
        Geometry::GeometryCollection(members) => members.iter().map(|g| area_on(g, geodesic)).sum(),
        Geometry::Point(_)
        | Geometry::MultiPoint(_)
        | Geometry::Line(_)
        | Geometry::LineString(_)
        | Geometry::MultiLineString(_) => 0.0,
    }
}

fn ring_area(ring: &LineString, geodesic: &geographiclib_rs::Geodesic) -> f64 {
    let mut polygon = PolygonArea::new(geodesic, Winding::CounterClockwise);
    for coord in ring.coords() {
        polygon.add_point(coord.y, coord.x);
    }
    // Signed: within ±half the Earth, so its magnitude is the smaller part whichever the winding.
    let (_perimeter, area, _points) = polygon.compute(true);
    area.abs()
}

/// Length in metres of the lines, summed; 0 for points and polygons (their perimeter is not a
/// length, as in PostGIS).
pub fn length(geometry: &Geometry, earth: Earth) -> f64 {
    match geometry {
        Geometry::Line(line) => earth.point_distance(line.start_point(), line.end_point()),
        Geometry::LineString(line) => earth.line_length(line),
        Geometry::MultiLineString(lines) => lines.iter().map(|l| earth.line_length(l)).sum(),
        Geometry::GeometryCollection(members) => members.iter().map(|g| length(g, earth)).sum(),
        Geometry::Point(_)
        | Geometry::MultiPoint(_)
        | Geometry::Polygon(_)
        | Geometry::MultiPolygon(_)
        | Geometry::Rect(_)
        | Geometry::Triangle(_) => 0.0,
    }
}

/// Shortest distance in metres between two geometries; `None` when either is empty.
///
/// Two points are measured directly (exact on either model). Otherwise the closest pair of
/// points is found on the sphere, edges being great-circle arcs: 0 when the geometries
/// intersect, else the nearest of each vertex of one to the other (the closest pair of two
/// disjoint sets of arcs always has a vertex in it). That pair is then measured on the chosen
/// model, as PostGIS does for a geography; on the ellipsoid the true closest pair may differ from
/// the sphere's by a few metres over hundreds of kilometres, not over a city.
pub fn distance(a: &Geometry, b: &Geometry, earth: Earth) -> Option<f64> {
    if let (Geometry::Point(p), Geometry::Point(q)) = (a, b) {
        return Some(earth.point_distance(*p, *q));
    }
    let (p, q) = closest_points(a, b)?;
    Some(earth.point_distance(p, q))
}

/// The closest pair of points of `a` and `b` on the sphere, the first from `a`.
fn closest_points(a: &Geometry, b: &Geometry) -> Option<(Point, Point)> {
    if a.coords_count() == 0 || b.coords_count() == 0 {
        return None;
    }
    if a.intersects(b) {
        let touching = a.coords_iter().next().map(Point::from)?;
        return Some((touching, touching));
    }
    let mut best: Option<(f64, Point, Point)> = None;
    let mut consider = |from: Point, to: Point| {
        let d = Haversine.distance(from, to);
        if best.is_none_or(|(closest, _, _)| d < closest) {
            best = Some((d, from, to));
        }
    };
    for vertex in a.coords_iter().map(Point::from) {
        match b.haversine_closest_point(&vertex) {
            Closest::Intersection(_) => return Some((vertex, vertex)),
            Closest::SinglePoint(nearest) => consider(vertex, nearest),
            Closest::Indeterminate => {}
        }
    }
    for vertex in b.coords_iter().map(Point::from) {
        match a.haversine_closest_point(&vertex) {
            Closest::Intersection(_) => return Some((vertex, vertex)),
            Closest::SinglePoint(nearest) => consider(nearest, vertex),
            Closest::Indeterminate => {}
        }
    }
    best.map(|(_, p, q)| (p, q))
}

#[cfg(test)]
mod tests {
    //! Reference values from GeographicLib 2.1 (Python, `pip install geographiclib`), not from
    //! the code under test:
    //!   g = Geodesic.WGS84; p = g.Polygon(); p.AddPoint(lat, lon)…; p.Compute(False, True)
    //!   g.Inverse(lat1, lon1, lat2, lon2)['s12']
    //! and the haversine formula in plain Python (math.asin, R = 6371008.8).

    use super::*;
    use geo_types::{LineString, Polygon, polygon};

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not within {tolerance} of {expected}"
        );
    }

    #[test]
    fn a_degree_square_at_the_equator_has_geographiclibs_area_whichever_the_winding() {
        // Planimeter: 12308778361.469452 m².
        let cell = polygon![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0), (x: 1.0, y: 1.0), (x: 0.0, y: 1.0)];
        close(
            area(&Geometry::Polygon(cell.clone()), Earth::Spheroid),
            12_308_778_361.469452,
            0.01,
        );
        let (exterior, _) = cell.into_inner();
        let clockwise = Polygon::new(
            LineString::from_iter(exterior.coords().rev().copied()),
            vec![],
        );
        close(
            area(&Geometry::Polygon(clockwise), Earth::Spheroid),
            12_308_778_361.469452,
            0.01,
        );
    }

    #[test]
    fn holes_are_taken_out_and_parts_summed() {
        // 0.01° cell at Bologna: 883823.2029561996 m²; the 0.005° hole: 220957.6697564125 m².
        let cell = LineString::from(vec![
            (11.34, 44.49),
            (11.35, 44.49),
            (11.35, 44.50),
            (11.34, 44.50),
            (11.34, 44.49),
        ]);
        let hole = LineString::from(vec![
            (11.342, 44.492),
            (11.347, 44.492),
            (11.347, 44.497),
            (11.342, 44.497),
            (11.342, 44.492),
        ]);
        let with_hole = Polygon::new(cell.clone(), vec![hole]);
        close(
            area(&Geometry::Polygon(with_hole.clone()), Earth::Spheroid),
            883_823.2029561996 - 220_957.6697564125,
            1e-3,
        );
        let both = geo_types::MultiPolygon::new(vec![with_hole, Polygon::new(cell, vec![])]);
        close(
            area(&Geometry::MultiPolygon(both), Earth::Spheroid),
            2.0 * 883_823.2029561996 - 220_957.6697564125,
            1e-3,
        );
        assert_eq!(
            area(&Geometry::Point(Point::new(11.34, 44.49)), Earth::Spheroid),
            0.0
        );
    }

    #[test]
    fn a_meridian_degree_is_geographiclibs_length() {
        // g.Inverse(44, 11, 45, 11)['s12'] = 111122.00826280942
        let meridian = Geometry::LineString(LineString::from(vec![(11.0, 44.0), (11.0, 45.0)]));
        close(
            length(&meridian, Earth::Spheroid),
            111_122.00826280942,
            1e-6,
        );
        // On the sphere: R·π/180.
        close(
            length(&meridian, Earth::Sphere),
            SPHERE_RADIUS * std::f64::consts::PI / 180.0,
            1e-6,
        );
    }

    #[test]
    fn distances_between_points_and_to_the_nearest_part_of_a_line() {
        let bologna = Geometry::Point(Point::new(11.3426, 44.4939));
        let milano = Geometry::Point(Point::new(9.19, 45.4642));
        // Haversine in Python: 200757.53909136832; g.Inverse: 201123.91760010857.
        close(
            distance(&bologna, &milano, Earth::Sphere).unwrap(),
            200_757.53909136832,
            1e-6,
        );
        close(
            distance(&bologna, &milano, Earth::Spheroid).unwrap(),
            201_123.91760010857,
            1e-6,
        );
        // A line from Milan heading away from Bologna: its nearest point is Milan.
        let away = Geometry::LineString(LineString::from(vec![(9.19, 45.4642), (8.0, 46.0)]));
        close(
            distance(&bologna, &away, Earth::Spheroid).unwrap(),
            201_123.91760010857,
            1e-6,
        );
        close(
            distance(&away, &bologna, Earth::Sphere).unwrap(),
            200_757.53909136832,
            1e-6,
        );
        // A meridian segment passing 0.01° of longitude west of a point at 44.5°N: the nearest
        // point is abeam, not a vertex. min over lat of g.Inverse(44.5, 11.34, lat, 11.33)['s12']
        // (lat stepped by 1e-6°) = 795.2956181654256, at lat 44.5.
        let meridian = Geometry::LineString(LineString::from(vec![(11.33, 44.0), (11.33, 45.0)]));
        let beside = Geometry::Point(Point::new(11.34, 44.5));
        close(
            distance(&beside, &meridian, Earth::Spheroid).unwrap(),
            795.2956181654256,
            0.1,
        );
        let inside = polygon![(x: 11.0, y: 44.0), (x: 12.0, y: 44.0), (x: 12.0, y: 45.0), (x: 11.0, y: 45.0)];
        assert_eq!(
            distance(&bologna, &Geometry::Polygon(inside), Earth::Spheroid),
            Some(0.0)
        );
    }

    #[test]
    fn projected_coordinates_are_not_measured_as_degrees() {
        let projected = Geometry::Point(Point::new(686_251.84, 4_929_400.82));
        let why = check_lon_lat(&projected).unwrap_err();
        assert!(why.contains("ST_Transform"), "{why}");
        assert!(check_lon_lat(&Geometry::Point(Point::new(11.34, 44.49))).is_ok());
    }
}
