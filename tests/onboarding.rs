//! A new city onboarded as the README's "Your city in ten minutes" says, on data that is not
//! Bologna's statistical areas: the 55 comuni of the metropolitan area (GeoJSON polygons and
//! multipolygons) with the ANPR per-comune tables (comma CSV, dd-mm-yyyy dates, ISTAT codes with
//! leading zeros). `cruscotto init` writes the configuration, the analyst adds one saved query and
//! one indicator, `check` passes, and the real binary serves the map with the right numbers.

mod common;

use std::path::Path;

use common::{REPO, Server, run};

fn copy(from: &str, to: &Path) {
    std::fs::copy(Path::new(REPO).join(from), to).unwrap();
}

#[test]
fn a_new_city_is_onboarded_with_init_one_query_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("metropoli");
    std::fs::create_dir_all(&folder).unwrap();
    copy(
        "data/bologna/limits_P_37_municipalities.geojson",
        &folder.join("comuni.geojson"),
    );
    copy(
        "data/italia/anpr_popolazione_residente_export.csv",
        &folder.join("anpr_residenti.csv"),
    );
    copy(
        "data/italia/anpr_attivita_residenti_export.csv",
        &folder.join("anpr_attivita.csv"),
    );
    std::fs::write(folder.join("LEGGIMI.pdf"), b"%PDF-1.4").unwrap();
    let folder_arg = folder.to_str().unwrap();

    let (code, stdout, stderr) = run(&[
        "init",
        folder_arg,
        "--city",
        "Città metropolitana di Bologna",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "dati.comuni (comuni.geojson): ",
        "name text",
        "com_istat_code text",
        "geometry geometry",
        "dati.anpr_residenti (anpr_residenti.csv): data_elaborazione ",
        "Skipped (not data files): LEGGIMI.pdf",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    let connector = std::fs::read_to_string(folder.join("connectors/dati.toml")).unwrap();
    assert!(
        connector.contains("cod_istat_comune = \"text\""),
        "{connector}"
    );
    let dashboard = std::fs::read_to_string(folder.join("dashboards/mappa.toml")).unwrap();
    assert!(dashboard.contains("id = \"com_istat_code\""), "{dashboard}");
    assert!(dashboard.contains("name = \"name\""), "{dashboard}");
    // A second init refuses to overwrite.
    let (code, _, stderr) = run(&["init", folder_arg]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already exists"), "{stderr}");

    // The analyst's own indicator: residents per km², from ANPR and the areas' geodesic surface.
    std::fs::write(
        folder.join("queries/densita.sql"),
        "-- title: Residenti per km²\n-- polarity: neutral\n\
         SELECT c.com_istat_code, r.residenti,\n  round(r.residenti / c.superficie_km2, 1) AS residenti_per_km2\n\
         FROM comuni_mappa AS c\nJOIN dati.anpr_residenti AS r ON r.cod_istat_comune = c.com_istat_code\n",
    )
    .unwrap();
    let mut dashboard = dashboard;
    dashboard.push_str(
        "\n[[map.indicators]]\nquery = \"densita\"\nvalue = \"residenti_per_km2\"\nlabel = \"Residenti per km²\"\n",
    );
    std::fs::write(folder.join("dashboards/mappa.toml"), &dashboard).unwrap();

    let config = folder.join("cruscotto.toml");
    let config_arg = config.to_str().unwrap();
    let (code, stdout, stderr) = run(&["--config", config_arg, "check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok (1 connectors, 3 tables, 2 saved queries, 1 dashboards)"),
        "{stdout}"
    );

    let server = Server::start_config_file(&config);
    server.wait_until("the tables are loaded", |s| {
        s.get("/readyz").status() == 200 && s.table_status("dati.anpr_attivita")["state"] == "fresh"
    });
    let rows = server.rows(
        "SELECT com_istat_code, name, superficie_km2 FROM comuni_mappa ORDER BY com_istat_code",
    );
    assert_eq!(rows.len(), 55);
    let bologna = rows
        .iter()
        .find(|r| r["com_istat_code"] == "037006")
        .unwrap();
    assert_eq!(bologna["name"], "Bologna");
    // ISTAT gives 140.86 km² for the Comune di Bologna; the boundaries are generalised.
    let km2 = bologna["superficie_km2"].as_f64().unwrap();
    assert!((km2 - 140.86).abs() < 140.86 * 0.01, "{km2}");
    let density = server
        .rows("SELECT residenti, residenti_per_km2 FROM densita WHERE com_istat_code = '037006'");
    let residents = density[0]["residenti"].as_f64().unwrap();
    let expected = std::fs::read_to_string(folder.join("anpr_residenti.csv"))
        .unwrap()
        .lines()
        .find(|l| l.contains(",037006,"))
        .and_then(|l| l.rsplit(',').next().map(|n| n.parse::<f64>().unwrap()))
        .unwrap();
    assert_eq!(residents, expected);
    let per_km2 = density[0]["residenti_per_km2"].as_f64().unwrap();
    assert!((per_km2 - expected / km2).abs() < 0.1, "{per_km2}");

    // The map: 55 areas, each with its geometry, and the page titled with the city.
    let layer = server.get_json("/api/v1/dashboards/mappa/layers/comuni_mappa");
    assert_eq!(layer["features"].as_array().unwrap().len(), 55);
    let page = server.get("/").text().unwrap();
    assert!(page.contains("Città metropolitana di Bologna"), "{page}");
    server.stop();
}

/// The forms other cities' open data come in, each decided by `init` without a hint: a `;` CSV
/// with decimal commas, thousands dots and ISTAT-style codes, a CSV without a header, points of
/// interest in a JSON envelope with a "(lat, lon)" text column, and areas in UTM metres.
#[test]
fn init_decides_dialects_envelopes_points_and_projected_areas() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path();
    std::fs::write(
        folder.join("censimento.csv"),
        "Codice sezione;Popolazione residente;Superficie ha\n\
         0370060001;1.234;12,5\n0370060002;987;8,25\n0370060003;2.001;3,75\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("sezioni_aree.csv"),
        "0370060001,A1\n0370060002,A1\n0370060003,A2\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("stazioni.json"),
        r#"{"meta":{"source":"ARPA"},"result":{"records":[
{"nome":"Giardini Margherita","location":"(44.4823, 11.3548)"},
{"nome":"Porta San Felice","location":"(44.4991, 11.3276)"}]}}"#,
    )
    .unwrap();
    // Two squares of 1 km × 1 km in UTM 32N (EPSG:32632), near Bologna.
    let square = |x: f64, y: f64| {
        format!(
            "[[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]]",
            x + 1000.0,
            x + 1000.0,
            y + 1000.0,
            y + 1000.0
        )
    };
    std::fs::write(
        folder.join("aree.geojson"),
        format!(
            r#"{{"type":"FeatureCollection","features":[
{{"type":"Feature","properties":{{"codice_area":"A1","nome_area":"Centro"}},"geometry":{{"type":"Polygon","coordinates":{}}}}},
{{"type":"Feature","properties":{{"codice_area":"A2","nome_area":"Navile"}},"geometry":{{"type":"Polygon","coordinates":{}}}}}]}}"#,
            square(686_000.0, 4_929_000.0),
            square(687_000.0, 4_929_000.0)
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "init",
        folder.to_str().unwrap(),
        "--city",
        "Comune di Prova",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let connector = std::fs::read_to_string(folder.join("connectors/dati.toml")).unwrap();
    for expected in [
        "delimiter = \";\"",
        "decimal = \",\"",
        "thousands = \".\"",
        "header = false",
        "json_pointer = \"/result/records\"",
        "point = { lat_lon = \"location\" }",
        "crs = \"EPSG:32632\"",
        "codice_sezione = \"text\"",
        "popolazione_residente = \"int\"",
        "superficie_ha = \"float\"",
    ] {
        assert!(
            connector.contains(expected),
            "missing `{expected}` in:\n{connector}"
        );
    }
    for expected in [
        "sezioni_aree.csv: the first row holds values, not names: columns are column_1…column_2; name them with `columns = [...]`",
        "aree.geojson: coordinates are UTM metres (e.g. 686000, 4929000); zone 32 or 33 cannot be told from them",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    let dashboard = std::fs::read_to_string(folder.join("dashboards/mappa.toml")).unwrap();
    assert!(dashboard.contains("id = \"codice_area\""), "{dashboard}");
    assert!(dashboard.contains("name = \"nome_area\""), "{dashboard}");
    assert!(
        dashboard.contains("query = \"mappa_stazioni\""),
        "{dashboard}"
    );

    let config = folder.join("cruscotto.toml");
    let (code, stdout, stderr) = run(&["--config", config.to_str().unwrap(), "check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let server = Server::start_config_file(&config);
    server.wait_until("ready", |s| s.get("/readyz").status() == 200);
    let census = server.rows(
        "SELECT sum(popolazione_residente) AS p, sum(superficie_ha) AS s FROM dati.censimento",
    );
    assert_eq!(census[0]["p"], 1234 + 987 + 2001);
    assert_eq!(census[0]["s"].as_f64().unwrap(), 12.5 + 8.25 + 3.75);
    // The squares, reprojected from UTM on load, are 1 km² each on the ellipsoid.
    let areas =
        server.rows("SELECT codice_area, superficie_km2 FROM aree_mappa ORDER BY codice_area");
    for area in &areas {
        let km2 = area["superficie_km2"].as_f64().unwrap();
        assert!((km2 - 1.0).abs() < 0.01, "{area}");
    }
    let stations =
        server.rows("SELECT nome, ST_XMin(geometry) AS lon FROM mappa_stazioni ORDER BY nome");
    assert_eq!(stations.len(), 2);
    assert!(
        (stations[0]["lon"].as_f64().unwrap() - 11.3548).abs() < 1e-9,
        "{stations:?}"
    );
    server.stop();
}
