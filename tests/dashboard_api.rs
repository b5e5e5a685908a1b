//! `/api/v1/dashboards` and the embedded front end, against the real binary on the demo data; and
//! `cruscotto check` on dashboards and the `[index]` section.

mod common;

use common::{ConfigDir, Server};
use serde_json::Value;

fn problem(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().unwrap())
}

#[test]
fn definitions_carry_each_querys_status_and_freshness() {
    let config = ConfigDir::demo_without_simulators();
    let server = Server::start_ready(&config);
    let list = server.get_json("/api/v1/dashboards");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["divario_digitale", "metropolitana"]);

    let definition = server.get_json("/api/v1/dashboards/divario_digitale");
    assert_eq!(
        definition["dashboard"]["map"]["areas"]["query"],
        "aree_statistiche_mappa"
    );
    let index = &definition["queries"]["indice_divario_digitale"];
    assert_eq!(index["ok"], true);
    assert_eq!(index["metadata"]["method_version"], "1.0");
    let freshness = &index["freshness"];
    assert_eq!(freshness["stale"], false, "{freshness}");
    assert!(freshness["updated_at"].is_string(), "{freshness}");
    let sources: Vec<&str> = freshness["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["table"].as_str().unwrap())
        .collect();
    for table in [
        "bologna.fragilita",
        "bologna.hotspot_wifi",
        "bologna.biblioteche",
        "anpr.attivita_residenti",
    ] {
        assert!(sources.contains(&table), "{table} missing from {sources:?}");
    }
    // An indicator that needs the service logs: not ok, its missing source named and flagged.
    let online = &definition["queries"]["servizi_online_per_area"];
    assert_eq!(online["ok"], false);
    assert_eq!(online["freshness"]["stale"], true);
    assert_eq!(
        online["freshness"]["sources"][0]["table"],
        "service_logs.eventi"
    );
    assert_eq!(online["freshness"]["sources"][0]["state"], "missing");

    let (status, body) = problem(server.get("/api/v1/dashboards/nessuno"));
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (404, "urn:cruscotto:problem:not-found")
    );
    let (status, _) = problem(
        server.get("/api/v1/dashboards/divario_digitale/data/anpr_servizi_online_per_1000"),
    );
    assert_eq!(
        status, 404,
        "a query the dashboard does not read is not served through it"
    );
    let (status, body) =
        problem(server.get("/api/v1/dashboards/divario_digitale/data/servizi_online_per_area"));
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("service_logs"),
        "{body}"
    );
}

#[test]
fn data_comes_as_json_or_a_csv_download_and_layers_as_geojson() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let rows = server.get_json("/api/v1/dashboards/divario_digitale/data/indice_divario_digitale");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 90);
    let sql =
        server.rows("SELECT indice FROM indice_divario_digitale WHERE codice_area_statistica = 10");
    let row = rows
        .iter()
        .find(|r| r["codice_area_statistica"] == 10)
        .unwrap();
    assert_eq!(row["indice"], sql[0]["indice"]);

    let response =
        server.get("/api/v1/dashboards/divario_digitale/data/indice_divario_digitale?format=csv");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"indice_divario_digitale.csv\""
    );
    let text = response.text().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "codice_area_statistica,area_statistica,adozione,bisogno,connettivita,supporto,indice,peso_adozione_pct,peso_bisogno_pct,peso_connettivita_pct,peso_supporto_pct,versione_metodo"
    );
    assert_eq!(lines.len(), 91);
    assert!(
        lines[1].starts_with("1,LAVINO DI MEZZO,"),
        "rows are sorted: {}",
        lines[1]
    );

    // Areas: 90 polygons, their attributes as properties, gzip when asked for.
    let response = server
        .client
        .get(format!(
            "{}/api/v1/dashboards/divario_digitale/layers/aree_statistiche_mappa",
            server.url
        ))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["content-type"], "application/geo+json");
    let geojson =
        server.get_json("/api/v1/dashboards/divario_digitale/layers/aree_statistiche_mappa");
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), 90);
    assert!(
        features
            .iter()
            .all(|f| f["geometry"]["type"] == "Polygon" || f["geometry"]["type"] == "MultiPolygon")
    );
    assert!(
        features
            .iter()
            .all(|f| f["properties"]["codice_area_statistica"].is_i64()
                && f["properties"].get("geometry").is_none())
    );
    let libraries = server.get_json("/api/v1/dashboards/divario_digitale/layers/mappa_biblioteche");
    assert_eq!(libraries["features"].as_array().unwrap().len(), 18);
    assert_eq!(libraries["features"][0]["geometry"]["type"], "Point");
    let comuni =
        server.get_json("/api/v1/dashboards/metropolitana/layers/comuni_metropolitani_mappa");
    assert_eq!(comuni["features"].as_array().unwrap().len(), 55);
    let (status, _) =
        problem(server.get("/api/v1/dashboards/divario_digitale/layers/sintesi_citta"));
    assert_eq!(status, 404);
}

#[test]
fn the_front_end_is_embedded_and_fetches_nothing_from_elsewhere() {
    let config = ConfigDir::demo();
    let server = Server::start(&config);
    let page = server.get("/");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text().unwrap();
    assert!(html.contains("<html lang=\"it\">"));
    let outside: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("http://") || s.starts_with("https://") || s.starts_with("//"))
        .collect();
    assert!(
        outside.is_empty(),
        "the page refers to outside addresses: {outside:?}"
    );
    let worker = server
        .client
        .get(format!(
            "{}/assets/vendor/maplibre-gl/maplibre-gl-worker.mjs",
            server.url
        ))
        .header("accept-encoding", "gzip, deflate")
        .send()
        .unwrap();
    assert_eq!(worker.status(), 200);
    assert_eq!(worker.headers()["content-encoding"], "gzip");
    assert_eq!(
        worker.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = worker.headers()["etag"].to_str().unwrap().to_string();
    let again = server
        .client
        .get(format!(
            "{}/assets/vendor/maplibre-gl/maplibre-gl-worker.mjs",
            server.url
        ))
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    for path in [
        "/assets/app.mjs",
        "/assets/vendor/echarts/echarts.esm.min.mjs",
        "/assets/vendor/bootstrap-italia/css/bootstrap-italia.min.css",
        "/assets/sql.html",
    ] {
        assert_eq!(server.get(path).status(), 200, "{path}");
    }
    assert_eq!(server.get("/assets/nope.js").status(), 404);
}

#[test]
fn check_validates_dashboards_and_the_index_weights() {
    let (code, stdout, stderr) = ConfigDir::demo().run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("28 saved queries, 2 dashboards"),
        "{stdout}"
    );

    let config = ConfigDir::demo();
    config.write("dashboards/rotto.toml", "title = \"Rotto\"\n[map.areas]\nquery = \"aree_statistiche_mappa\"\nid = \"x\"\nname = \"y\"\nzoom = 3\n");
    config.write(
        "dashboards/pannelli.toml",
        "title = \"Pannelli\"\n[[panels]]\nkind = \"line\"\nquery = \"residenti_per_area\"\n[[panels]]\nquery = \"inesistente\"\n",
    );
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    config.write(
        "cruscotto.toml",
        &format!("{toml}\n[index]\nweights = {{ bisogno = 1, supporto = -2 }}\n"),
    );
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "dashboards/rotto.toml: line 6, column 1: unknown field `zoom`",
        "dashboards/pannelli.toml: panels[0]: a bar or line panel needs `x` and `y`",
        "dashboards/pannelli.toml: panels[1].query: `inesistente` is not a saved query",
        "cruscotto.toml: index.weights.supporto: weight -2 must be a number ≥ 0",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

/// The server computes the dashboards' queries by itself once the data is loaded: without any
/// request for a dashboard, /metrics counts them as run, so the first visitor finds them ready.
#[test]
fn dashboard_queries_are_computed_before_anyone_asks() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let queries_run = |s: &Server| -> f64 {
        let metrics = s.get("/metrics").text().unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("cruscotto_queries_total{outcome=\"ok\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    // The demo's dashboards read 25 saved queries; those over the MQTT and service-log tables
    // (not configured in the demo) do not run, the others (well over 15) do.
    server.wait_until("the dashboards' queries computed in the background", |s| {
        queries_run(s) >= 15.0
    });
}

/// A dashboard whose map layer names a column its saved query does not return cannot be drawn:
/// the layer answers a problem that says so, with the columns there are, not a bare "Internal
/// error" whose reason is only in the log.
#[test]
fn a_layer_naming_a_missing_column_says_which() {
    let config = ConfigDir::demo_without_simulators();
    config.write(
        "dashboards/sbagliato.toml",
        "title = \"Sbagliato\"\n[map.areas]\nquery = \"aree_statistiche_mappa\"\nid = \"codice_inesistente\"\nname = \"area_statistica\"\n\
         [[map.indicators]]\nquery = \"residenti_per_area\"\nvalue = \"residenti\"\n",
    );
    let server = Server::start_ready(&config);
    let (status, body) =
        problem(server.get("/api/v1/dashboards/sbagliato/layers/aree_statistiche_mappa"));
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["type"], "urn:cruscotto:problem:configuration");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("dashboards/sbagliato.toml")
            && detail.contains("`codice_inesistente`")
            && detail.contains("codice_area_statistica"),
        "{detail}"
    );
    // The same layer in the shipped dashboard, with the right columns, is drawn.
    assert_eq!(
        server
            .get("/api/v1/dashboards/divario_digitale/layers/aree_statistiche_mappa")
            .status(),
        200
    );
}
