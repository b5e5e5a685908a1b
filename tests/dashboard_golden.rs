//! Golden values of the dashboard's indicators on the Bologna demo data, through the real binary.
//! The expected values in tests/golden/indicators_per_area.csv and anpr_services_per_1000.csv were
//! computed independently, in Python with shapely, from the indicators' stated method
//! (tests/golden/indicators_check.py, numbers in tests/golden/indicators.md).

mod common;

use std::collections::BTreeMap;

use common::{ConfigDir, Server, golden};
use serde_json::Value;

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// A value from the golden file and the service's agree within `tolerance` (both empty = agree).
fn close(
    row: &Value,
    column: &str,
    want: &BTreeMap<String, String>,
    golden_column: &str,
    tolerance: f64,
) {
    match want[golden_column].as_str() {
        "" => assert!(row[column].is_null(), "{column} should be empty: {row}"),
        text => {
            let expected: f64 = text.parse().unwrap();
            let got = number(&row[column]);
            assert!(
                (got - expected).abs() <= tolerance,
                "{column}: {got} vs {expected} (±{tolerance}) in {row}"
            );
        }
    }
}

/// The probes' readings are simulated from the first start, in the background: wait until every
/// area with a probe has its measured speed, so that the index no longer changes with them.
fn wait_for_the_probes(server: &Server, probe_areas: usize) {
    server.wait_until("a measured speed in every area with a probe", |s| {
        let n = s.rows("SELECT count(download_sonde_mbps) AS n FROM indice_divario_pilastri");
        number(&n[0]["n"]) == probe_areas as f64
    });
}

#[test]
fn area_indicators_and_the_index_match_the_independent_computation() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let expected = golden("indicators_per_area.csv");
    assert_eq!(expected.len(), 90);

    let offline =
        server.rows("SELECT * FROM residenti_offline_attesi ORDER BY codice_area_statistica");
    let coverage =
        server.rows("SELECT * FROM copertura_supporto_800m ORDER BY codice_area_statistica");
    // Pillars without the probes: every one of them from the data files alone.
    let pillars = server
        .rows("SELECT * FROM indice_divario_pilastri_senza_sonde ORDER BY codice_area_statistica");
    // The pillars the index uses: connectivity with the probes' measured speed where an area
    // has a probe. Their readings are simulated from the first start: wait for all of them.
    let probe_areas = expected.iter().filter(|w| w["sonde"] != "0").count();
    assert_eq!(
        probe_areas, 16,
        "the 18 probes of the registry lie in 16 areas"
    );
    wait_for_the_probes(&server, probe_areas);
    let measured =
        server.rows("SELECT * FROM indice_divario_pilastri ORDER BY codice_area_statistica");
    let index =
        server.rows("SELECT * FROM indice_divario_digitale ORDER BY codice_area_statistica");
    for rows in [&offline, &coverage, &pillars, &measured, &index] {
        assert_eq!(rows.len(), 90);
    }
    let mut speeds = Vec::new();
    for (i, want) in expected.iter().enumerate() {
        let code = want["codice_area_statistica"].as_str();
        for rows in [&offline, &coverage, &pillars, &measured, &index] {
            assert_eq!(rows[i]["codice_area_statistica"].to_string(), code);
        }
        // Connectivity: the hotspot indicator, averaged with the speed indicator (bounds
        // 30–300 Mbit/s) where a probe measures; every other pillar as without the probes.
        let hotspots: f64 = want["connettivita"].parse().unwrap();
        let row = &measured[i];
        let connectivity = if want["sonde"] == "0" {
            assert!(row["download_sonde_mbps"].is_null(), "{row}");
            hotspots
        } else {
            let speed = number(&row["download_sonde_mbps"]);
            speeds.push(speed);
            (hotspots + 100.0 - 100.0 * ((speed - 30.0) / 270.0).clamp(0.0, 1.0)) / 2.0
        };
        assert!(
            (number(&row["connettivita"]) - connectivity).abs() <= 0.011,
            "connettivita: {} vs {connectivity} in {row}",
            row["connettivita"]
        );
        for pillar in ["bisogno", "adozione", "supporto"] {
            close(row, pillar, want, pillar, 0.011);
        }
        // The index: the mean of its pillars that vary (uptake is the same everywhere). Live
        // readings arrive between the two queries, so its connectivity may have moved a little.
        for pillar in ["bisogno", "adozione", "supporto"] {
            close(&index[i], pillar, want, pillar, 0.011);
        }
        if !row["connettivita"].is_null() {
            let moved = number(&index[i]["connettivita"]) - number(&row["connettivita"]);
            assert!(moved.abs() < 1.0, "{} vs {row}", index[i]);
        }
        if want["bisogno"].is_empty() {
            assert!(index[i]["indice"].is_null(), "{}", index[i]);
        } else {
            let mean = ["bisogno", "connettivita", "supporto"]
                .iter()
                .map(|p| number(&index[i][*p]))
                .sum::<f64>()
                / 3.0;
            assert!(
                (number(&index[i]["indice"]) - mean).abs() <= 0.011,
                "indice vs {mean}: {}",
                index[i]
            );
        }
        // Counts are rounded on both sides; Python rounds halves to even, SQL away from zero.
        close(&offline[i], "adulti", want, "adulti", 1.0);
        close(&offline[i], "offline_attesi", want, "offline_attesi", 1.0);
        close(
            &offline[i],
            "quota_offline_attesi_pct",
            want,
            "quota_offline_attesi_pct",
            0.011,
        );
        close(
            &coverage[i],
            "quota_entro_800m_pct",
            want,
            "quota_entro_800m_pct",
            0.011,
        );
        for pillar in ["bisogno", "connettivita", "adozione", "supporto"] {
            close(&pillars[i], pillar, want, pillar, 0.011);
        }
    }
    // The simulated probes sit on lines from ADSL to gigabit fibre: the measured speeds tell the
    // areas apart, so connectivity is no longer the hotspots alone.
    let slowest = speeds.iter().cloned().fold(f64::INFINITY, f64::min);
    let fastest = speeds.iter().cloned().fold(0.0, f64::max);
    assert!(slowest < 30.0 && fastest > 300.0, "{speeds:?}");
    assert!(
        index.iter().all(|r| r["versione_metodo"] == "1.0"),
        "the method version travels with the index"
    );
    // The uptake pillar is the same in every area: it carries no weight, and the weights the
    // index used are published with it.
    for row in &index {
        assert_eq!(number(&row["peso_adozione_pct"]), 0.0, "{row}");
        for pillar in ["bisogno", "connettivita", "supporto"] {
            assert_eq!(number(&row[&format!("peso_{pillar}_pct")]), 33.3, "{row}");
        }
    }
    assert_eq!(
        index.iter().filter(|r| !r["indice"].is_null()).count(),
        79,
        "the 11 excluded areas have no index"
    );

    // The city summary is made of the same numbers.
    let summary = &server.rows("SELECT * FROM sintesi_citta")[0];
    assert_eq!(number(&summary["residenti"]), 392_162.0);
    assert_eq!(number(&summary["hotspot_wifi"]), 303.0);
    assert!(
        (number(&summary["adulti_offline_attesi"]) - 74_707.0).abs() <= 5.0,
        "{summary}"
    );
    assert!(
        (number(&summary["quota_entro_800m_pct"]) - 71.9).abs() < 0.051,
        "{summary}"
    );

    // Support places: the 18 libraries and the 32 digital facilitation points.
    let places = server.rows(
        "SELECT (SELECT count(*) FROM mappa_biblioteche) AS libraries, (SELECT count(*) FROM mappa_facilitazione_digitale) AS facilitation",
    );
    assert_eq!(
        (
            number(&places[0]["libraries"]),
            number(&places[0]["facilitation"])
        ),
        (18.0, 32.0)
    );
}

#[test]
fn need_and_time_series_indicators_follow_their_sources() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);

    // Older residents: real 80+ and living-alone shares; the 65+ share is the stated estimate.
    let older = server.rows(
        "SELECT o.*, r.over_80_stimati FROM anziani_per_area o JOIN residenti_per_area r USING (codice_area_statistica) ORDER BY codice_area_statistica",
    );
    assert_eq!(older.len(), 90);
    for row in older.iter().filter(|r| !r["quota_over_80_pct"].is_null()) {
        let over_80 = number(&row["quota_over_80_pct"]);
        assert!(
            (number(&row["quota_over_65_stimata_pct"]) - (over_80 * 2.8 * 10.0).round() / 10.0)
                .abs()
                < 1e-9,
            "{row}"
        );
        assert_eq!(row["over_80"], row["over_80_stimati"], "{row}");
    }
    assert_eq!(
        older
            .iter()
            .filter(|r| r["quota_over_80_pct"].is_null())
            .count(),
        11
    );
    let area_1 = &older[0];
    assert_eq!(
        (
            number(&area_1["quota_over_80_pct"]),
            number(&area_1["over_65_soli_pct"])
        ),
        (3.7, 29.9)
    );

    let fragility =
        server.rows("SELECT * FROM fragilita_per_area WHERE codice_area_statistica = 5");
    assert_eq!(number(&fragility[0]["fragilita_complessiva"]), 100.0);
    assert_eq!(number(&fragility[0]["fragilita_demografica"]), 101.0);

    // Households per area and year: the 2023 total of the source file.
    let households = server.rows("SELECT sum(famiglie) AS total, count(DISTINCT codice_area_statistica) AS areas FROM famiglie_per_area_anno WHERE anno = 2023");
    assert_eq!(number(&households[0]["total"]), 211_585.0);
    let income = server
        .rows("SELECT count(*) AS areas FROM reddito_mediano_per_area_anno WHERE anno = 2021");
    assert_eq!(number(&income[0]["areas"]), 89.0);
    let wifi = server.rows(
        "SELECT count(*) AS days, sum(connessioni) AS total FROM connessioni_wifi_giornaliere",
    );
    assert_eq!(number(&wifi[0]["days"]), 382.0);

    // The quartiere bar is a resident-weighted mean of the index. Both in one query: the index
    // follows the probes' live readings.
    wait_for_the_probes(&server, 16);
    let quartieri = server.rows("SELECT * FROM indice_per_quartiere ORDER BY quartiere");
    assert_eq!(quartieri.len(), 6);
    let navile = server.rows(
        "SELECT (SELECT indice FROM indice_per_quartiere WHERE quartiere = 'Navile') AS bar, \
         (SELECT sum(i.indice * r.residenti) / sum(r.residenti) FROM indice_divario_digitale i \
         JOIN residenti_per_area r USING (codice_area_statistica) JOIN aree_statistiche_mappa m USING (codice_area_statistica) \
         WHERE m.quartiere = 'Navile' AND i.indice IS NOT NULL) AS mean",
    );
    assert!(
        (number(&navile[0]["bar"]) - number(&navile[0]["mean"])).abs() < 0.006,
        "{navile:?}"
    );
}

#[test]
fn metropolitan_anpr_indicators_match_the_independent_computation() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let rows = server.rows("SELECT * FROM anpr_servizi_online_per_1000 ORDER BY cod_istat_comune");
    let expected = golden("anpr_services_per_1000.csv");
    assert_eq!(rows.len(), 55);
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row["cod_istat_comune"], want["cod_istat_comune"].as_str());
        assert_eq!(
            number(&row["residenti"]),
            want["residenti"].parse::<f64>().unwrap()
        );
        close(
            row,
            "operazioni_per_1000",
            want,
            "operazioni_per_1000",
            0.0051,
        );
        close(
            row,
            "cambi_residenza_per_1000",
            want,
            "cambi_residenza_per_1000",
            0.0051,
        );
    }
}

#[test]
fn indicators_that_need_absent_sources_are_reported_not_ok() {
    let config = ConfigDir::demo_without_simulators();
    let server = Server::start_ready(&config);
    let queries: Vec<Value> = server
        .get_json("/api/v1/queries")
        .as_array()
        .unwrap()
        .clone();
    let find = |name: &str| {
        queries
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no query {name}"))
            .clone()
    };
    for (name, table) in [
        ("servizi_online_per_area", "service_logs"),
        ("accessi_spid_cie_per_adulto", "service_logs"),
        ("connettivita_sonde_per_area", "sensori"),
        ("visite_contapersone", "sensori"),
        ("mappa_sensori", "sensori"),
    ] {
        let query = find(name);
        assert_eq!(query["ok"], false, "{query}");
        assert!(query["error"].as_str().unwrap().contains(table), "{query}");
    }
    for name in [
        "indice_divario_digitale",
        "indice_divario_pilastri",
        "copertura_supporto_800m",
        "anpr_servizi_online_per_1000",
    ] {
        assert_eq!(find(name)["ok"], true, "{name}: {}", find(name));
    }
    // Without the sensors, the pillars that would use the probes are answered by their fallback,
    // which the listing names with the reason, and the dashboard describes with its own metadata.
    let pillars = find("indice_divario_pilastri");
    assert_eq!(
        pillars["fallback"], "indice_divario_pilastri_senza_sonde",
        "{pillars}"
    );
    assert!(
        pillars["error"].as_str().unwrap().contains("sensori"),
        "{pillars}"
    );
    assert_eq!(find("indice_divario_digitale")["fallback"], Value::Null);
    let definition = server.get_json("/api/v1/dashboards/divario_digitale");
    let shown = &definition["queries"]["indice_divario_pilastri"];
    assert_eq!(shown["fallback"], "indice_divario_pilastri_senza_sonde");
    assert!(
        shown["metadata"]["title"]
            .as_str()
            .unwrap()
            .contains("senza le sonde"),
        "{shown}"
    );
    assert!(
        shown["freshness"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["table"] != "sensori.letture"),
        "{shown}"
    );
    let rows =
        server.rows("SELECT count(*) AS n, count(connettivita) AS c FROM indice_divario_pilastri");
    assert_eq!((number(&rows[0]["n"]), number(&rows[0]["c"])), (90.0, 90.0));
    let index = find("indice_divario_digitale");
    assert_eq!(index["metadata"]["method_version"], "1.0");
    assert!(
        index["metadata"]["method"]
            .as_str()
            .unwrap()
            .contains("bisogno 25.0%"),
        "{index}"
    );
    let status = server.get_json("/status");
    let view = status["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "servizi_online_per_area")
        .unwrap()
        .clone();
    assert_eq!(view["ok"], false);
}
