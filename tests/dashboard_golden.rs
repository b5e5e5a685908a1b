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
    let pillars =
        server.rows("SELECT * FROM indice_divario_pilastri ORDER BY codice_area_statistica");
    let index =
        server.rows("SELECT * FROM indice_divario_digitale ORDER BY codice_area_statistica");
    for rows in [&offline, &coverage, &pillars, &index] {
        assert_eq!(rows.len(), 90);
    }
    for (i, want) in expected.iter().enumerate() {
        let code = want["codice_area_statistica"].as_str();
        for rows in [&offline, &coverage, &pillars, &index] {
            assert_eq!(rows[i]["codice_area_statistica"].to_string(), code);
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
            close(&index[i], pillar, want, pillar, 0.011);
        }
        close(&index[i], "indice", want, "indice", 0.011);
    }
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

    // The quartiere bar is a resident-weighted mean of the index.
    let quartieri = server.rows("SELECT * FROM indice_per_quartiere ORDER BY quartiere");
    assert_eq!(quartieri.len(), 6);
    let weighted = server.rows(
        "SELECT sum(i.indice * r.residenti) / sum(r.residenti) AS mean FROM indice_divario_digitale i \
         JOIN residenti_per_area r USING (codice_area_statistica) JOIN aree_statistiche_mappa m USING (codice_area_statistica) \
         WHERE m.quartiere = 'Navile' AND i.indice IS NOT NULL",
    );
    let navile = quartieri
        .iter()
        .find(|q| q["quartiere"] == "Navile")
        .unwrap();
    assert!(
        (number(&navile["indice"]) - number(&weighted[0]["mean"])).abs() < 0.006,
        "{navile}"
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
