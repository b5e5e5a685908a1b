//! Keys, roles, dataset scopes, disclosure control, rate limits and the audit trail, through the
//! real binary and the real `cruscotto keys` command.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ConfigDir, Server, create_key};
use serde_json::Value;

/// The demo configuration with keys required, plus a second dataset outside partners' scope.
fn secured(extra_access: &str) -> ConfigDir {
    let config = ConfigDir::demo();
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    let toml = toml.replace(
        "anonymous = \"analyst\"",
        &format!("anonymous = \"none\"\n{extra_access}"),
    );
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

fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server.client.get(format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

fn sql(server: &Server, text: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .body(text.to_string());
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
    assert_eq!(
        sql(
            &server,
            "SELECT * FROM queries.anpr_certificati_per_1000",
            Some(&partner)
        )
        .status(),
        403
    );
    assert_eq!(get(&server, "/api/v1/tables", Some(&partner)).status(), 403);
    assert_eq!(
        get(&server, "/api/v1/queries", Some(&partner)).status(),
        403
    );
    let catalog: Value = get(&server, "/api/v1/datasets", Some(&partner))
        .json()
        .unwrap();
    let names: Vec<&str> = catalog["dcat:dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dct:identifier"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["residenti_per_area"]);
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area",
            Some(&partner)
        )
        .status(),
        200
    );
    assert_eq!(
        get(&server, "/api/v1/datasets/certificati_anpr", Some(&partner)).status(),
        404
    );
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/certificati_anpr?cod_istat_comune=037006",
            Some(&partner)
        )
        .status(),
        404
    );
    // A cursor minted for another dataset (by an analyst) does not open it either.
    let page: Value = get(
        &server,
        "/api/v1/datasets/certificati_anpr?limit=5",
        Some(&analyst),
    )
    .json()
    .unwrap();
    let foreign_cursor = page["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/certificati_anpr?cursor={foreign_cursor}"),
            Some(&partner)
        )
        .status(),
        404
    );
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/residenti_per_area?cursor={foreign_cursor}"),
            Some(&partner)
        )
        .status(),
        400
    );

    // Analyst: SQL and every dataset, but not the audit log.
    assert_eq!(
        sql(&server, "SELECT count(*) FROM bologna.zone", Some(&analyst)).status(),
        200
    );
    assert_eq!(
        get(&server, "/api/v1/datasets/certificati_anpr", Some(&analyst)).status(),
        200
    );
    assert_eq!(
        sql(&server, "SELECT * FROM system.audit", Some(&analyst)).status(),
        403
    );

    // Revocation takes effect at the next request.
    let (code, _, stderr) = config.run(&["keys", "revoke", &partner_id]);
    assert_eq!(code, 0, "{stderr}");
    let response = get(
        &server,
        "/api/v1/datasets/residenti_per_area",
        Some(&partner),
    );
    assert_eq!(response.status(), 401);
    assert!(response.text().unwrap().contains("revoked"));

    // Admin: the audit log holds allowed and denied requests, with key ids and never a secret.
    let audit: Vec<Value> = sql(
        &server,
        "SELECT key_id, role, action, target, status, outcome FROM system.audit",
        Some(&admin),
    )
    .json()
    .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(partner.rsplit('_').next().unwrap()),
        "a secret reached the audit log"
    );
    let has = |key: &str, outcome: &str, target: &str| {
        audit.iter().any(|e| {
            e["key_id"] == key
                && e["outcome"] == outcome
                && e["target"].as_str().unwrap().contains(target)
        })
    };
    assert!(has(&partner_id, "ok", "residenti_per_area"), "{audit:?}");
    assert!(
        has(&partner_id, "denied", "anpr_certificati_per_1000"),
        "{audit:?}"
    );
    // Refused without a key: the SQL text is not kept, its digest is.
    assert!(has("none", "denied", "sha256:"), "{audit:?}");
    assert!(
        !audit
            .iter()
            .any(|e| e["key_id"] == "none" && e["target"] == "SELECT 1"),
        "{audit:?}"
    );
    assert!(audit.iter().any(|e| e["role"] == "analyst"
        && e["action"] == "sql"
        && e["target"] == "SELECT count(*) FROM bologna.zone"
        && e["status"] == 200));
}

#[test]
fn partners_get_small_counts_suppressed_and_not_recoverable_from_zone_totals() {
    let config = secured("");
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let raw: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?limit=100",
        Some(&analyst),
    )
    .json()
    .unwrap();
    let protected: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?limit=100",
        Some(&partner),
    )
    .json()
    .unwrap();
    let raw = raw["items"].as_array().unwrap();
    let protected = protected["items"].as_array().unwrap();
    assert_eq!(raw.len(), 90);
    assert_eq!(protected.len(), 90);
    assert!(
        raw.iter()
            .all(|r| r.get("over_80_stimati_suppressed").is_none()),
        "analysts see raw aggregates"
    );

    let mut hidden_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut primary = 0;
    for (r, p) in raw.iter().zip(protected) {
        assert_eq!(r["codice_area_statistica"], p["codice_area_statistica"]);
        let value = r["over_80_stimati"].as_i64();
        let hidden = p["over_80_stimati_suppressed"] == true;
        *hidden_per_zone
            .entry(r["zona"].as_str().unwrap().to_string())
            .or_default() += hidden as usize;
        if hidden {
            assert!(
                p["over_80_stimati"].is_null() && p["quota_over_80_pct"].is_null(),
                "{p}"
            );
        } else {
            assert_eq!(p["over_80_stimati"], r["over_80_stimati"]);
            assert!(
                value.is_none_or(|v| v == 0 || v >= 10),
                "a small count was published: {p}"
            );
        }
        if value.is_some_and(|v| v > 0 && v < 10) {
            primary += 1;
            assert!(hidden, "{p}");
        }
    }
    assert!(primary > 0, "the demo has small counts to protect");
    for (zone, hidden) in &hidden_per_zone {
        assert_ne!(
            *hidden, 1,
            "zone {zone}: a lone suppressed cell could be recovered from the zone total"
        );
    }
}

#[test]
fn filters_paging_etags_and_formats() {
    let config = secured("");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let key = Some(analyst.as_str());

    // A filter value is a value, whatever it contains.
    let body: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?zona=Navile%27%20OR%20%271%27%3D%271",
        key,
    )
    .json()
    .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 0);
    let body: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?zona=Lame&fields=codice_area_statistica,zona",
        key,
    )
    .json()
    .unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(
        !items.is_empty()
            && items
                .iter()
                .all(|i| i["zona"] == "Lame" && i.as_object().unwrap().len() == 2),
        "{body}"
    );
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area?residenti.min=abc",
            key
        )
        .status(),
        400
    );
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area?area_statistica=X",
            key
        )
        .status(),
        400
    );
    let body: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?residenti.min=10000&residenti.max=12000",
        key,
    )
    .json()
    .unwrap();
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| (10000..=12000).contains(&i["residenti"].as_i64().unwrap()))
    );

    // Keyset paging: every area once.
    let mut seen = BTreeSet::new();
    let mut path = "/api/v1/datasets/residenti_per_area?limit=40".to_string();
    loop {
        let page: Value = get(&server, &path, key).json().unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["codice_area_statistica"].as_i64().unwrap()),
                "a row came twice"
            );
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
    let again = server
        .client
        .get(format!(
            "{}/api/v1/datasets/residenti_per_area?limit=5",
            server.url
        ))
        .bearer_auth(&analyst)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);

    // CSV and GeoJSON (the comuni have no geometry in this dataset: a clear 406).
    let csv = get(
        &server,
        "/api/v1/datasets/residenti_per_area?format=csv&limit=2",
        key,
    )
    .text()
    .unwrap();
    assert!(csv.starts_with("codice_area_statistica,"), "{csv}");
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area?format=geojson",
            key
        )
        .status(),
        406
    );
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    // One request a minute refills the bucket: the fourth of six quick requests is limited
    // however slowly a busy machine answers them (at 60 a minute, six slow answers refilled it).
    let config = secured("requests_per_minute = 1\nburst = 3");
    let config_text = std::fs::read_to_string(config.config_file()).unwrap();
    let config_text = config_text
        .replace("requests_per_minute = 1200\n", "")
        .replace("burst = 600\n", "");
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
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(response.headers()["x-ratelimit-limit"], "1");
    let reset: u64 = response.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        reset, retry_after,
        "the bucket resets when a retry is allowed"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

fn request(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> reqwest::blocking::Response {
    let mut request = server
        .client
        .request(method.parse().unwrap(), format!("{}{path}", server.url));
    if let Some(body) = body {
        request = request
            .header("content-type", "text/plain")
            .body(body.to_string());
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

#[test]
fn the_role_endpoint_matrix() {
    let config = secured("");
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (analyst_id, analyst) = create_key(&config, "analyst", "");
    let (_, admin) = create_key(&config, "admin", "");
    let server = Server::start_ready(&config);

    // Expected status without a key, then as partner, analyst and admin.
    let matrix: &[(&str, &str, Option<&str>, [u16; 4])] = &[
        ("GET", "/healthz", None, [200; 4]),
        ("GET", "/status", None, [200; 4]),
        ("GET", "/metrics", None, [200; 4]),
        ("GET", "/api/v1/openapi.json", None, [200; 4]),
        ("GET", "/api/v1/dashboards", None, [200; 4]),
        (
            "GET",
            "/api/v1/dashboards/divario_digitale/data/sintesi_citta",
            None,
            [200; 4],
        ),
        ("GET", "/api/v1/datasets", None, [401, 200, 200, 200]),
        (
            "GET",
            "/api/v1/datasets/residenti_per_area",
            None,
            [401, 200, 200, 200],
        ),
        (
            "GET",
            "/api/v1/datasets/certificati_anpr",
            None,
            [401, 404, 200, 200],
        ),
        (
            "GET",
            "/api/v1/sql?q=SELECT%201",
            None,
            [401, 403, 200, 200],
        ),
        (
            "POST",
            "/api/v1/sql",
            Some("SELECT 1"),
            [401, 403, 200, 200],
        ),
        (
            "POST",
            "/api/v1/sql",
            Some("SELECT * FROM queries.residenti_per_area"),
            [401, 403, 200, 200],
        ),
        (
            "POST",
            "/api/v1/sql",
            Some("SELECT count(*) FROM system.audit"),
            [401, 403, 403, 200],
        ),
        ("GET", "/api/v1/tables", None, [401, 403, 200, 200]),
        ("GET", "/api/v1/queries", None, [401, 403, 200, 200]),
    ];
    let keys = [
        None,
        Some(partner.as_str()),
        Some(analyst.as_str()),
        Some(admin.as_str()),
    ];
    let roles = ["no key", "partner", "analyst", "admin"];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in matrix {
        for ((key, role), want) in keys.iter().zip(roles).zip(expected) {
            let response = request(&server, method, path, *body, *key);
            let status = response.status().as_u16();
            if status >= 400 {
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json",
                    "{method} {path} as {role}"
                );
            }
            if status != *want {
                wrong.push(format!(
                    "{method} {path} {body:?} as {role}: {status}, expected {want}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // A revoked key fails at the very next request, whatever the endpoint.
    assert_eq!(sql(&server, "SELECT 1", Some(&analyst)).status(), 200);
    let (code, _, stderr) = config.run(&["keys", "revoke", &analyst_id]);
    assert_eq!(code, 0, "{stderr}");
    let response = sql(&server, "SELECT 1", Some(&analyst));
    assert_eq!(response.status(), 401);
    assert!(response.text().unwrap().contains("revoked"));
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area",
            Some(&analyst)
        )
        .status(),
        401
    );
}

#[test]
fn a_partner_cannot_reach_another_dataset_by_cursors_fields_or_forged_cursors() {
    let config = secured("");
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let page: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?limit=5",
        Some(&partner),
    )
    .json()
    .unwrap();
    let own_cursor = page["next_cursor"].as_str().unwrap().to_string();
    // The partner's own cursor does not open the other dataset, for the partner nor for an analyst.
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/certificati_anpr?cursor={own_cursor}"),
            Some(&partner)
        )
        .status(),
        404
    );
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/certificati_anpr?cursor={own_cursor}"),
            Some(&analyst)
        )
        .status(),
        400
    );
    // A cursor forged to name the other dataset, or carrying SQL, is refused.
    use base64::Engine;
    let forge =
        |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let forged = forge(serde_json::json!({"d": "certificati_anpr", "k": "0"}));
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/residenti_per_area?cursor={forged}"),
            Some(&partner)
        )
        .status(),
        400
    );
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/certificati_anpr?cursor={forged}"),
            Some(&partner)
        )
        .status(),
        404
    );
    let injected = forge(serde_json::json!({"d": "residenti_per_area", "k": "0 OR 1=1"}));
    assert_eq!(
        get(
            &server,
            &format!("/api/v1/datasets/residenti_per_area?cursor={injected}"),
            Some(&partner)
        )
        .status(),
        400
    );
    // Fields and filters only name the dataset's own columns.
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area?fields=cod_istat_comune",
            Some(&partner)
        )
        .status(),
        400
    );
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area?cod_istat_comune=037006",
            Some(&partner)
        )
        .status(),
        400
    );
    // Choosing fields does not drop the suppression of what is chosen.
    let narrow: Value = get(&server, "/api/v1/datasets/residenti_per_area?fields=codice_area_statistica,over_80_stimati&limit=100", Some(&partner)).json().unwrap();
    let items = narrow["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["over_80_stimati_suppressed"] == true && i["over_80_stimati"].is_null()),
        "{narrow}"
    );
    assert!(
        items.iter().all(|i| i["over_80_stimati"]
            .as_i64()
            .is_none_or(|v| v == 0 || v >= 10)),
        "{narrow}"
    );
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn filter_values_containing_sql_are_values() {
    let config = secured("");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let rows = |filters: &[(&str, &str)]| -> (u16, Value) {
        let query: Vec<String> = filters
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let response = get(
            &server,
            &format!("/api/v1/datasets/residenti_per_area?{}", query.join("&")),
            Some(&analyst),
        );
        let status = response.status().as_u16();
        (status, response.json().unwrap())
    };
    for value in [
        "' OR 1=1 --",
        "Lame' OR '1'='1",
        "'; DROP TABLE bologna.zone; --",
        "Lame; DROP TABLE bologna.zone",
        "\" OR \"\"=\"",
    ] {
        let (status, body) = rows(&[("zona", value)]);
        assert_eq!(status, 200, "{value}: {body}");
        assert_eq!(
            body["items"].as_array().unwrap().len(),
            0,
            "`{value}` matched rows: {body}"
        );
    }
    // In a list, each item is one value: the real zone matches, the SQL does not.
    let (status, body) = rows(&[("zona.in", "Lame,' OR 1=1 --")]);
    assert_eq!(status, 200);
    let items = body["items"].as_array().unwrap();
    assert!(
        !items.is_empty() && items.iter().all(|i| i["zona"] == "Lame"),
        "{body}"
    );
    // A number column takes numbers only.
    for value in ["1 OR 1=1", "0; DROP TABLE bologna.zone", "1) OR (1=1"] {
        let (status, body) = rows(&[("residenti.min", value)]);
        assert_eq!(status, 400, "{value}: {body}");
        assert_eq!(body["type"], "urn:cruscotto:problem:bad-request");
    }
    // And nothing was dropped.
    let zones: Vec<Value> = sql(
        &server,
        "SELECT count(*) AS n FROM bologna.zone",
        Some(&analyst),
    )
    .json()
    .unwrap();
    assert_eq!(zones[0]["n"], 18);
}

#[test]
fn bad_keys_are_rate_limited_before_they_cost_a_hash_and_never_reach_the_audit_log() {
    // One request a minute after a burst of 3: nothing refills while the test runs.
    let config = secured("requests_per_minute = 1\nburst = 3");
    let config_text = std::fs::read_to_string(config.config_file()).unwrap();
    let config_text = config_text
        .replace("requests_per_minute = 1200\n", "")
        .replace("burst = 600\n", "");
    config.write("cruscotto.toml", &config_text);
    let (analyst_id, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);

    // Wrong secrets for a real key id: each would cost an argon2 verification.
    let wrong: Vec<String> = (0..8)
        .map(|i| format!("ck_{analyst_id}_{}", format!("{i:x}").repeat(48)))
        .collect();
    let mut statuses = Vec::new();
    for key in &wrong {
        let response = sql(&server, "SELECT 1", Some(key));
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        } else {
            assert!(
                response.headers().contains_key("x-ratelimit-remaining"),
                "{:?}",
                response.headers()
            );
        }
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(
        statuses[3..].iter().all(|s| *s == 429),
        "bad keys were not limited: {statuses:?}"
    );
    // Malformed and unknown keys count against the same client too, on public endpoints as well.
    assert_eq!(get(&server, "/healthz", Some("ck_nope_123")).status(), 429);
    assert_eq!(
        get(&server, "/api/v1/datasets", Some("not a key")).status(),
        429
    );

    let audit = std::fs::read_to_string(config.path().join("var/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"outcome\":\"denied\"") && l.contains("\"status\":401")),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"outcome\":\"rate_limited\"")),
        "{audit}"
    );
    for key in wrong.iter().chain([&analyst]) {
        let secret = key.rsplit('_').next().unwrap();
        assert!(
            !audit.contains(secret),
            "a secret reached the audit log: {audit}"
        );
    }
    let keys_file = std::fs::read_to_string(config.path().join("var/keys.json")).unwrap();
    assert!(!keys_file.contains(analyst.rsplit('_').next().unwrap()));
}

#[test]
fn the_public_dashboard_does_not_give_away_what_partners_get_suppressed() {
    let config = secured("");
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let path = "/api/v1/dashboards/divario_digitale/data/anziani_per_area";
    let raw: Vec<Value> = get(&server, path, Some(&analyst)).json().unwrap();
    let public: Vec<Value> = get(&server, path, None).json().unwrap();
    let as_partner: Vec<Value> = get(&server, path, Some(&partner)).json().unwrap();
    assert_eq!(public, as_partner);
    assert_eq!(raw.len(), public.len());
    assert!(
        raw.iter().all(|r| r.get("over_80_suppressed").is_none()),
        "analysts see raw aggregates"
    );
    let by_area = |rows: &[Value]| -> BTreeMap<i64, Value> {
        rows.iter()
            .map(|r| (r["codice_area_statistica"].as_i64().unwrap(), r.clone()))
            .collect()
    };
    let public = by_area(&public);
    let mut hidden = 0;
    for r in &raw {
        let p = &public[&r["codice_area_statistica"].as_i64().unwrap()];
        if r["over_80"].as_i64().is_some_and(|v| v > 0 && v < 10) {
            assert!(
                p["over_80"].is_null() && p["over_80_suppressed"] == true,
                "{p}"
            );
            // Nor can it be recomputed from the share, or from the 65+ estimate (80+ × 2.8).
            assert!(
                p["quota_over_80_pct"].is_null()
                    && p["quota_over_65_stimata_pct"].is_null()
                    && p["over_65_stimati"].is_null(),
                "{p}"
            );
        }
        hidden += (p["over_80_suppressed"] == true) as usize;
        for count in ["over_80", "over_65_stimati", "over_65_soli_stimati"] {
            assert!(
                p[count].as_i64().is_none_or(|v| v == 0 || v >= 10),
                "a small count on the public dashboard: {p}"
            );
        }
    }
    assert!(hidden >= 2, "the demo has small counts of over-80s to hide");

    // What the partner's dataset suppresses as a small count is not on the dashboard either.
    let dataset: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?limit=100",
        Some(&partner),
    )
    .json()
    .unwrap();
    let raw_dataset: Value = get(
        &server,
        "/api/v1/datasets/residenti_per_area?limit=100",
        Some(&analyst),
    )
    .json()
    .unwrap();
    for (d, r) in dataset["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(raw_dataset["items"].as_array().unwrap())
    {
        if r["over_80_stimati"]
            .as_i64()
            .is_some_and(|v| v > 0 && v < 10)
        {
            assert_eq!(d["over_80_stimati_suppressed"], true);
            assert!(public[&d["codice_area_statistica"].as_i64().unwrap()]["over_80"].is_null());
        }
    }
}
