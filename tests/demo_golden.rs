//! Golden results of the saved queries on the Bologna demo data, served by the real binary over
//! HTTP. The expected values in tests/golden/ were computed independently, in Python with shapely
//! (tests/golden/independent_check.py), straight from the files in data/.

mod common;

use common::{ConfigDir, Server, golden};
use serde_json::Value;

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

#[test]
fn saved_queries_match_the_independent_computation() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);

    // Residents per area: 90 areas, 2021 populations summing to 392,162, shares as in the file.
    let residents =
        server.rows("SELECT * FROM queries.residenti_per_area ORDER BY codice_area_statistica");
    assert_eq!(residents.len(), 90);
    let total: f64 = residents.iter().map(|r| number(&r["residenti"])).sum();
    assert_eq!(total, 392_162.0);
    let expected = golden("fragility_2021.csv");
    for (row, want) in residents.iter().zip(&expected) {
        assert_eq!(
            row["codice_area_statistica"].to_string(),
            want["codice_area_statistica"]
        );
        assert_eq!(
            number(&row["residenti"]),
            want["popolazione"].parse::<f64>().unwrap()
        );
        match want["perc_over_80"].as_str() {
            "" => assert!(row["quota_over_80_pct"].is_null(), "{row}"),
            share => assert_eq!(
                number(&row["quota_over_80_pct"]),
                share.parse::<f64>().unwrap(),
                "{row}"
            ),
        }
    }

    // Hotspots per 1,000 residents, by a spatial join of points to polygons.
    let hotspots =
        server.rows("SELECT * FROM queries.hotspot_wifi_per_area ORDER BY codice_area_statistica");
    assert_eq!(hotspots.len(), 90);
    let expected = golden("hotspots_per_area.csv");
    let mut sum = 0.0;
    for (row, want) in hotspots.iter().zip(&expected) {
        assert_eq!(
            row["codice_area_statistica"].to_string(),
            want["codice_area_statistica"]
        );
        assert_eq!(
            number(&row["hotspot"]),
            want["hotspots"].parse::<f64>().unwrap(),
            "{row}"
        );
        let rate = number(&row["hotspot_per_1000_residenti"]);
        assert!(
            (rate - want["hotspots_per_1000"].parse::<f64>().unwrap()).abs() < 1e-9,
            "{row} vs {want:?}"
        );
        sum += number(&row["hotspot"]);
    }
    assert_eq!(sum, 303.0);

    // ANPR online certificates per 1,000 residents for the 55 comuni of the metropolitan city.
    let anpr =
        server.rows("SELECT * FROM queries.anpr_certificati_per_1000 ORDER BY cod_istat_comune");
    let expected = golden("anpr_certificates_per_1000.csv");
    assert_eq!(anpr.len(), 55);
    for (row, want) in anpr.iter().zip(&expected) {
        assert_eq!(row["cod_istat_comune"], want["cod_istat_comune"].as_str());
        assert_eq!(
            number(&row["residenti"]),
            want["residenti"].parse::<f64>().unwrap()
        );
        assert_eq!(
            number(&row["certificati"]),
            want["certificati"].parse::<f64>().unwrap()
        );
        let rate = number(&row["certificati_per_1000"]);
        assert!(
            (rate - want["certificati_per_1000"].parse::<f64>().unwrap()).abs() < 1e-9,
            "{row} vs {want:?}"
        );
    }
}

#[test]
fn every_hotspot_falls_in_exactly_one_area_the_one_its_file_names() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let rows = server.rows(
        "SELECT h.hostname, count(a.codice_area_statistica) AS areas, \
                max(upper(a.area_statistica)) AS joined, max(upper(h.area_statistica)) AS declared \
         FROM bologna.hotspot_wifi h LEFT JOIN bologna.aree_statistiche a ON ST_Contains(a.geometry, h.geometry) \
         GROUP BY h.hostname, h.x, h.y",
    );
    assert_eq!(rows.len(), 303);
    for row in &rows {
        assert_eq!(row["areas"], 1, "{row}");
        assert_eq!(row["joined"], row["declared"], "{row}");
    }
}

#[test]
fn the_demo_tables_load_whole() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let count =
        |table: &str| number(&server.rows(&format!("SELECT count(*) AS n FROM {table}"))[0]["n"]);
    assert_eq!(count("bologna.aree_statistiche"), 90.0);
    assert_eq!(count("bologna.zone"), 18.0);
    assert_eq!(count("bologna.hotspot_wifi"), 303.0);
    assert_eq!(count("bologna.biblioteche"), 18.0);
    assert_eq!(count("bologna.risorse_sociali"), 594.0);
    assert_eq!(count("bologna.comuni_metropolitani"), 55.0);
    assert_eq!(count("bologna.fragilita"), 90.0);
    assert_eq!(count("bologna.connessioni_wifi"), 382.0);
    assert_eq!(count("anpr.popolazione_residente"), 7896.0);
    // The population series, melted: 1,171 rows × 38 years; 2023 sums to 392,017.
    assert_eq!(count("bologna.popolazione"), 1171.0 * 38.0);
    let total_2023 =
        server.rows("SELECT sum(residenti) AS total FROM bologna.popolazione WHERE anno = 2023");
    assert_eq!(number(&total_2023[0]["total"]), 392_017.0);
    // Decimal commas read as numbers: Bologna's statistical areas cover about 140.9 km².
    let area =
        server.rows("SELECT sum(mq_areast) / 1e6 AS km2 FROM bologna.aree_statistiche_attributi");
    let km2 = number(&area[0]["km2"]);
    assert!((140.0..142.0).contains(&km2), "{km2}");
    // Nothing in the shipped demo is rejected, except what the sources themselves got wrong.
    let status = server.get_json("/status");
    for table in status["tables"].as_array().unwrap() {
        assert_eq!(table["state"], "fresh", "{table}");
    }
}

/// Every saved query's rows, each row as JSON with numbers to 9 significant digits (sums may
/// differ in the last bits with the order rows are read in), sorted.
fn every_saved_query(server: &Server) -> std::collections::BTreeMap<String, Vec<String>> {
    fn rounded(value: &Value) -> Value {
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => serde_json::json!(format!("{f:.9e}")),
                _ => value.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(rounded).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), rounded(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let names = server.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'queries' ORDER BY 1",
    );
    assert!(names.len() > 10, "{names:?}");
    names
        .iter()
        .map(|n| {
            let name = n["table_name"].as_str().unwrap().to_string();
            let response = server.sql(&format!("SELECT * FROM queries.{name}"));
            let mut rows: Vec<String> = match response.status().as_u16() {
                200 => response
                    .json::<Vec<Value>>()
                    .unwrap()
                    .iter()
                    .map(|r| rounded(r).to_string())
                    .collect(),
                status => vec![format!("{status}")],
            };
            rows.sort();
            (name, rows)
        })
        .collect()
}

/// With every snapshot table queried in place from disk (`memory_cache = "0 B"`), and again after
/// a restart that registers them from their footers, every saved query gives the rows it gives
/// with the tables in memory.
#[test]
fn tables_queried_in_place_answer_as_tables_in_memory() {
    let in_memory = ConfigDir::demo();
    let server = Server::start_ready(&in_memory);
    let expected = every_saved_query(&server);
    server.stop();

    let on_disk = ConfigDir::demo();
    let toml = std::fs::read_to_string(on_disk.config_file()).unwrap();
    on_disk.write(
        "cruscotto.toml",
        &format!("{toml}\n[storage]\nmemory_cache = \"0 B\"\n"),
    );
    for restart in [false, true] {
        let server = Server::start_ready(&on_disk);
        let status = server.get_json("/status");
        let tables = status["tables"].as_array().unwrap();
        let snapshot_tables: Vec<&Value> = tables
            .iter()
            .filter(|t| t["rows"].as_u64().unwrap_or(0) > 0 && t["name"] != "system.audit")
            .collect();
        assert!(snapshot_tables.len() > 5, "{status}");
        for table in &snapshot_tables {
            assert_eq!(table["storage"], "disk", "restart {restart}: {table}");
        }
        let actual = every_saved_query(&server);
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, rows) in &expected {
            assert_eq!(&actual[name], rows, "restart {restart}: queries.{name}");
        }
        server.stop();
    }
}
