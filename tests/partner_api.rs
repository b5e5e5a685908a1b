//! Keys, roles, dataset scopes, disclosure control, rate limits and the audit trail, through the
//! real binary and the real `cruscotto keys` command.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ConfigDir, Server};
use serde_json::Value;

/// The demo configuration with keys required, plus a second dataset outside partners' scope.
fn secured(extra_access: &str) -> ConfigDir {
    let config = ConfigDir::demo();
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    let toml = toml.replace("anonymous = \"analyst\"", &format!("anonymous = \"none\"\n{extra_access}"));
    config.write("cruscotto.toml", &toml);
    config.write(
        "datasets/certificati_anpr.toml",
        r#"title = "Certificati ANPR"
description = "Certificati online per comune"
query = "anpr_certificati_per_1000"
licence = "https://creativecommons.org/publicdomain/zero/1.0/"
publisher = "Ministero dell'Interno"
update_frequency = "IRREG"
spatial = "Città metropolitana di Bologna"
key = "cod_istat_comune"
"#,
    );
    config
}

fn create_key(config: &ConfigDir, role: &str, datasets: &str) -> (String, String) {
    let mut args = vec!["keys", "create", "--name", "test", "--role", role];
    if !datasets.is_empty() {
        args.extend(["--datasets", datasets]);
    }
    let (code, stdout, stderr) = config.run(&args);
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim().to_string();
    let id = key.split('_').nth(1).unwrap().to_string();
    (id, key)
}

fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server.client.get(format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

fn sql(server: &Server, text: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server.client.post(format!("{}/api/v1/sql", server.url)).body(text.to_string());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().unwrap()
}

#[test]
fn roles_endpoints_scopes_and_revocation() {
    let config = secured("");
    let (partner_id, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let (_, admin) = create_key(&config, "admin", "");
    let server = Server::start_ready(&config);

    // Without a key: public operations only.
    assert_eq!(get(&server, "/status", None).status(), 200);
    assert_eq!(get(&server, "/healthz", None).status(), 200);
    assert_eq!(sql(&server, "SELECT 1", None).status(), 401);
    assert_eq!(get(&server, "/api/v1/datasets", None).status(), 401);
    assert_eq!(get(&server, "/api/v1/tables", None).status(), 401);
    assert_eq!(sql(&server, "SELECT 1", Some("ck_nope_123")).status(), 401);

    // Partner: its datasets, nothing else, by any route.
    assert_eq!(sql(&server, "SELECT * FROM queries.anpr_certificati_per_1000", Some(&partner)).status(), 403);
    assert_eq!(get(&server, "/api/v1/tables", Some(&partner)).status(), 403);
    assert_eq!(get(&server, "/api/v1/queries", Some(&partner)).status(), 403);
    let catalog: Value = get(&server, "/api/v1/datasets", Some(&partner)).json().unwrap();
    let names: Vec<&str> = catalog["dcat:dataset"].as_array().unwrap().iter().map(|d| d["dct:identifier"].as_str().unwrap()).collect();
    assert_eq!(names, ["residenti_per_area"]);
    assert_eq!(get(&server, "/api/v1/datasets/residenti_per_area", Some(&partner)).status(), 200);
    assert_eq!(get(&server, "/api/v1/datasets/certificati_anpr", Some(&partner)).status(), 404);
    assert_eq!(get(&server, "/api/v1/datasets/certificati_anpr?cod_istat_comune=037006", Some(&partner)).status(), 404);
    // A cursor minted for another dataset (by an analyst) does not open it either.
    let page: Value = get(&server, "/api/v1/datasets/certificati_anpr?limit=5", Some(&analyst)).json().unwrap();
    let foreign_cursor = page["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(get(&server, &format!("/api/v1/datasets/certificati_anpr?cursor={foreign_cursor}"), Some(&partner)).status(), 404);
    assert_eq!(get(&server, &format!("/api/v1/datasets/residenti_per_area?cursor={foreign_cursor}"), Some(&partner)).status(), 400);

    // Analyst: SQL and every dataset, but not the audit log.
    assert_eq!(sql(&server, "SELECT count(*) FROM bologna.zone", Some(&analyst)).status(), 200);
    assert_eq!(get(&server, "/api/v1/datasets/certificati_anpr", Some(&analyst)).status(), 200);
    assert_eq!(sql(&server, "SELECT * FROM system.audit", Some(&analyst)).status(), 403);

    // Revocation takes effect at the next request.
    let (code, _, stderr) = config.run(&["keys", "revoke", &partner_id]);
    assert_eq!(code, 0, "{stderr}");
    let response = get(&server, "/api/v1/datasets/residenti_per_area", Some(&partner));
    assert_eq!(response.status(), 401);
    assert!(response.text().unwrap().contains("revoked"));

    // Admin: the audit log holds allowed and denied requests, with key ids and never a secret.
    let audit: Vec<Value> = sql(&server, "SELECT key_id, role, action, target, status, outcome FROM system.audit", Some(&admin)).json().unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(partner.rsplit('_').next().unwrap()), "a secret reached the audit log");
    let has = |key: &str, outcome: &str, target: &str| audit.iter().any(|e| e["key_id"] == key && e["outcome"] == outcome && e["target"].as_str().unwrap().contains(target));
    assert!(has(&partner_id, "ok", "residenti_per_area"), "{audit:?}");
    assert!(has(&partner_id, "denied", "anpr_certificati_per_1000"), "{audit:?}");
    assert!(has("none", "denied", "/api/v1/sql"), "{audit:?}");
    assert!(audit.iter().any(|e| e["role"] == "analyst" && e["action"] == "sql" && e["target"] == "SELECT count(*) FROM bologna.zone" && e["status"] == 200));
}

#[test]
fn partners_get_small_counts_suppressed_and_not_recoverable_from_zone_totals() {
    let config = secured("");
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let raw: Value = get(&server, "/api/v1/datasets/residenti_per_area?limit=100", Some(&analyst)).json().unwrap();
    let protected: Value = get(&server, "/api/v1/datasets/residenti_per_area?limit=100", Some(&partner)).json().unwrap();
    let raw = raw["items"].as_array().unwrap();
    let protected = protected["items"].as_array().unwrap();
    assert_eq!(raw.len(), 90);
    assert_eq!(protected.len(), 90);
    assert!(raw.iter().all(|r| r.get("over_80_stimati_suppressed").is_none()), "analysts see raw aggregates");

    let mut hidden_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut primary = 0;
    for (r, p) in raw.iter().zip(protected) {
        assert_eq!(r["codice_area_statistica"], p["codice_area_statistica"]);
        let value = r["over_80_stimati"].as_i64();
        let hidden = p["over_80_stimati_suppressed"] == true;
        *hidden_per_zone.entry(r["zona"].as_str().unwrap().to_string()).or_default() += hidden as usize;
        if hidden {
            assert!(p["over_80_stimati"].is_null() && p["quota_over_80_pct"].is_null(), "{p}");
        } else {
            assert_eq!(p["over_80_stimati"], r["over_80_stimati"]);
            assert!(value.is_none_or(|v| v == 0 || v >= 10), "a small count was published: {p}");
        }
        if value.is_some_and(|v| v > 0 && v < 10) {
            primary += 1;
            assert!(hidden, "{p}");
        }
    }
    assert!(primary > 0, "the demo has small counts to protect");
    for (zone, hidden) in &hidden_per_zone {
        assert_ne!(*hidden, 1, "zone {zone}: a lone suppressed cell could be recovered from the zone total");
    }
}

#[test]
fn filters_paging_etags_and_formats() {
    let config = secured("");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let key = Some(analyst.as_str());

    // A filter value is a value, whatever it contains.
    let body: Value = get(&server, "/api/v1/datasets/residenti_per_area?zona=Navile%27%20OR%20%271%27%3D%271", key).json().unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 0);
    let body: Value = get(&server, "/api/v1/datasets/residenti_per_area?zona=Lame&fields=codice_area_statistica,zona", key).json().unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|i| i["zona"] == "Lame" && i.as_object().unwrap().len() == 2), "{body}");
    assert_eq!(get(&server, "/api/v1/datasets/residenti_per_area?residenti.min=abc", key).status(), 400);
    assert_eq!(get(&server, "/api/v1/datasets/residenti_per_area?area_statistica=X", key).status(), 400);
    let body: Value = get(&server, "/api/v1/datasets/residenti_per_area?residenti.min=10000&residenti.max=12000", key).json().unwrap();
    assert!(body["items"].as_array().unwrap().iter().all(|i| (10000..=12000).contains(&i["residenti"].as_i64().unwrap())));

    // Keyset paging: every area once.
    let mut seen = BTreeSet::new();
    let mut path = "/api/v1/datasets/residenti_per_area?limit=40".to_string();
    loop {
        let page: Value = get(&server, &path, key).json().unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(seen.insert(item["codice_area_statistica"].as_i64().unwrap()), "a row came twice");
        }
        match page["links"]["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 90);

    // ETag and If-None-Match.
    let first = get(&server, "/api/v1/datasets/residenti_per_area?limit=5", key);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let again = server.client.get(format!("{}/api/v1/datasets/residenti_per_area?limit=5", server.url)).bearer_auth(&analyst).header("if-none-match", &etag).send().unwrap();
    assert_eq!(again.status(), 304);

    // CSV and GeoJSON (the comuni have no geometry in this dataset: a clear 406).
    let csv = get(&server, "/api/v1/datasets/residenti_per_area?format=csv&limit=2", key).text().unwrap();
    assert!(csv.starts_with("codice_area_statistica,"), "{csv}");
    assert_eq!(get(&server, "/api/v1/datasets/residenti_per_area?format=geojson", key).status(), 406);
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    let config = secured("requests_per_minute = 60\nburst = 3");
    let config_text = std::fs::read_to_string(config.config_file()).unwrap();
    let config_text = config_text.replace("requests_per_minute = 1200\n", "").replace("burst = 600\n", "");
    config.write("cruscotto.toml", &config_text);
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let response = sql(&server, "SELECT 1", Some(&analyst));
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
    }
    let response = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}
