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
    // The simulated sensors report live: what reads them, directly or through other saved
    // queries (the index reads the probes' speeds), differs from one run to the next.
    let texts: Vec<(String, String)> = server
        .get_json("/api/v1/queries")
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().into(),
                q["sql"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut live: std::collections::BTreeSet<String> = texts
        .iter()
        .filter(|(_, sql)| sql.contains("sensori."))
        .map(|(name, _)| name.clone())
        .collect();
    loop {
        let more: Vec<String> = texts
            .iter()
            .filter(|(name, sql)| {
                !live.contains(name) && live.iter().any(|l| sql.contains(l.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        live.extend(more);
    }
    assert!(live.contains("indice_divario_digitale"), "{live:?}");
    let reads_live_sensors = |name: &str| live.contains(name);
    names
        .iter()
        .map(|n| n["table_name"].as_str().unwrap().to_string())
        .filter(|name| !reads_live_sensors(name))
        .map(|name| {
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
            // Snapshot tables only: the sensors' log tables are kept otherwise.
            .filter(|t| {
                t["rows"].as_u64().unwrap_or(0) > 0
                    && t["name"] != "system.audit"
                    && t["schema"] != "sensori"
            })
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

/// The demo is complete with no external service: the service logs and the sensors come from
/// the built-in simulators through the file and MQTT connectors, every saved query plans, every
/// table is fresh, and what is simulated is labelled so in /status, system.tables and the
/// dashboard definition, and nothing else is.
#[test]
fn the_demo_is_complete_with_its_simulated_sources_labelled() {
    let config = ConfigDir::demo();
    // A partner dataset computed from simulated logs, beside the shipped one from real data.
    config.write(
        "datasets/richieste_online.toml",
        r#"title = "Richieste online per area"
description = "Quota di richieste online per area statistica."
query = "servizi_online_per_area"
licence = "https://creativecommons.org/licenses/by/4.0/"
publisher = "Comune di Bologna"
update_frequency = "ANNUAL"
themes = ["GOVE"]
keywords = ["servizi online"]
spatial = "Bologna"
key = "codice_area_statistica"
"#,
    );
    let server = Server::start_ready(&config);
    let catalogue = server.get_json("/api/v1/datasets");
    let datasets = catalogue["dcat:dataset"].as_array().unwrap();
    let description = |name: &str| {
        let dataset = datasets
            .iter()
            .find(|d| d["dct:identifier"] == name)
            .unwrap_or_else(|| panic!("{name} not in {catalogue}"));
        (
            dataset["dct:description"][0]["@value"]
                .as_str()
                .unwrap()
                .to_string(),
            dataset["dcat:keyword"].to_string(),
        )
    };
    let (simulated, keywords) = description("richieste_online");
    assert!(simulated.starts_with("Dati simulati"), "{simulated}");
    assert!(keywords.contains("dati simulati"), "{keywords}");
    let (real, keywords) = description("residenti_per_area");
    assert!(
        !real.contains("simulat") && !keywords.contains("simulat"),
        "{real} {keywords}"
    );

    // A year of synthetic requests, written once into data_dir.
    let events = server.rows(
        "SELECT count(*) AS n, count(DISTINCT area_statistica) AS areas, \
                count(DISTINCT canale) AS channels, min(ts) AS first, max(ts) AS last \
         FROM service_logs.eventi",
    );
    assert_eq!(number(&events[0]["n"]), 200_000.0, "{events:?}");
    assert!(number(&events[0]["areas"]) >= 85.0, "{events:?}");
    assert_eq!(number(&events[0]["channels"]), 3.0, "{events:?}");
    // The year 2023 in Rome (UTC+1 in winter), written in UTC.
    let (first, last) = (
        events[0]["first"].as_str().unwrap(),
        events[0]["last"].as_str().unwrap(),
    );
    assert!(
        ("2022-12-31T23:00:00Z".."2023-01-01T23:00:00Z").contains(&first)
            && ("2023-12-30T23:00:00Z".."2023-12-31T23:00:00Z").contains(&last),
        "{events:?}"
    );
    // A week of sensor history at the first start, then live readings through the connector.
    let letture = |sql: &str| number(&server.rows(sql)[0]["n"]);
    // The history is written in the background after the start, in about a second.
    server.wait_until("the simulated history", |s| {
        number(&s.rows("SELECT count(*) AS n FROM sensori.letture")[0]["n"]) > 60_000.0
    });
    let history = letture(
        "SELECT count(DISTINCT sensor_id) AS n FROM sensori.letture \
         WHERE ts < now() - INTERVAL '6 days'",
    );
    assert_eq!(
        history, 371.0,
        "every JSON sensor (303 + 18 + 50) has a week of history"
    );
    let before = letture("SELECT count(*) AS n FROM sensori.letture");
    server.wait_until("live simulated readings", |s| {
        number(&s.rows("SELECT count(*) AS n FROM sensori.letture")[0]["n"]) > before
    });
    assert!(letture("SELECT count(*) AS n FROM sensori.ambiente") > 0.0);
    // Whole days only: the history starts at a midnight, and the day in progress is not counted.
    assert_eq!(
        letture(
            "SELECT count(*) AS n FROM visite_contapersone WHERE giorno >= date_trunc('day', now())"
        ),
        0.0
    );
    assert!(letture("SELECT count(*) AS n FROM visite_contapersone") >= 7.0);
    assert_eq!(
        letture("SELECT count(*) AS n FROM sensori.letture WHERE ts > now()"),
        0.0,
        "no simulated reading is from the future"
    );
    let first_day = letture(
        "SELECT count(DISTINCT date_trunc('hour', ts)) AS n FROM sensori.letture          WHERE ts < (SELECT min(date_trunc('day', ts)) + INTERVAL '1 day' FROM sensori.letture)",
    );
    assert_eq!(first_day, 24.0, "the first day of history has every hour");
    // The hourly rollups follow at the compaction that comes once the history is written.
    server.wait_until("rollups of the history", |s| {
        number(&s.rows("SELECT count(*) AS n FROM sensori.letture_orarie")[0]["n"]) > 0.0
    });

    let status = server.get_json("/status");
    let simulated_schemas = ["service_logs", "sensori"];
    for table in status["tables"].as_array().unwrap() {
        let schema = table["schema"].as_str().unwrap();
        assert_ne!(table["state"], "failed", "{table}");
        assert_eq!(
            table["simulated"],
            simulated_schemas.contains(&schema),
            "{table}"
        );
    }
    for view in status["views"].as_array().unwrap() {
        assert_eq!(view["ok"], true, "every saved query plans: {view}");
    }
    let labelled = server.rows(
        "SELECT schema_name FROM system.tables WHERE simulated GROUP BY schema_name ORDER BY 1",
    );
    assert_eq!(
        labelled,
        vec![
            serde_json::json!({"schema_name": "sensori"}),
            serde_json::json!({"schema_name": "service_logs"})
        ]
    );

    // Every indicator, panel and layer of both dashboards is live; exactly those fed by a
    // simulator are marked simulated.
    for dashboard in ["divario_digitale", "metropolitana"] {
        let definition = server.get_json(&format!("/api/v1/dashboards/{dashboard}"));
        for (name, query) in definition["queries"].as_object().unwrap() {
            assert_eq!(query["ok"], true, "{dashboard}: {name}: {query}");
            let reads_simulated = query["freshness"]["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| {
                    let table = s["table"].as_str().unwrap();
                    simulated_schemas
                        .iter()
                        .any(|p| table.starts_with(&format!("{p}.")))
                });
            assert_eq!(
                query["freshness"]["simulated"], reads_simulated,
                "{dashboard}: {name}: {query}"
            );
            let rows = server.rows(&format!("SELECT count(*) AS n FROM queries.{name}"));
            assert!(
                number(&rows[0]["n"]) > 0.0,
                "{dashboard}: {name} has no rows"
            );
        }
    }
    let divide = server.get_json("/api/v1/dashboards/divario_digitale");
    for name in [
        "servizi_online_per_area",
        "accessi_spid_cie_per_adulto",
        "connettivita_sonde_per_area",
        "visite_contapersone",
        "mappa_sensori",
    ] {
        assert_eq!(
            divide["queries"][name]["freshness"]["simulated"], true,
            "{name}: {}",
            divide["queries"][name]
        );
    }
}

/// The simulated service log is the same file for the same seed, whatever the machine or run.
#[test]
fn the_simulated_service_log_is_deterministic() {
    let digest = || {
        let config = ConfigDir::demo();
        let server = Server::start_ready(&config);
        let rows = server.rows(
            "SELECT count(*) AS n, sum(id * area_statistica) AS s, \
                    sum(CAST(extract(epoch FROM ts) AS BIGINT) % 100003) AS t, \
                    count(DISTINCT servizio || canale || fascia_eta) AS kinds \
             FROM service_logs.eventi",
        );
        server.stop();
        rows
    };
    assert_eq!(digest(), digest());
}
