//! The OpenAPI document at /api/v1/openapi.json against the router that really serves requests,
//! and the problem+json shape of every error, through the real binary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ConfigDir, REPO, Server};
use serde_json::Value;

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];
/// The browser front end: served by the router, deliberately outside the API's document.
const FRONT_END: &[&str] = &["/", "/assets/{*path}"];

fn document(server: &Server) -> Value {
    let response = server.get("/api/v1/openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().expect("the document is JSON")
}

fn documented_operations(document: &Value) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| METHODS.contains(&m.as_str()))
        {
            operations.push((method.clone(), path.clone()));
        }
    }
    operations
}

fn assert_problem(response: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().expect("a problem document");
    assert_eq!(problem["status"], status, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:cruscotto:problem:"),
        "{problem}"
    );
    assert!(
        problem["title"].is_string() && problem["detail"].is_string(),
        "{problem}"
    );
    problem
}

#[test]
fn the_document_is_openapi_3_1_with_security_problems_and_rate_limit_headers() {
    let config = ConfigDir::demo();
    let server = Server::start(&config);
    let doc = document(&server);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem has no `{field}`: {problem}"
        );
    }

    for (method, path) in documented_operations(&doc) {
        let operation = &doc["paths"][&path][&method];
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            operation["security"].is_array(),
            "{method} {path} has no security"
        );
        assert_eq!(
            responses["default"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{method} {path}"
        );
        for (status, response) in responses
            .iter()
            .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
        {
            assert!(
                response["content"]
                    .get("application/problem+json")
                    .is_some(),
                "{method} {path} {status} is not problem+json"
            );
        }
        if path.starts_with("/api/") {
            let ok = responses
                .iter()
                .find(|(s, _)| s.starts_with('2'))
                .map(|(_, r)| r)
                .unwrap_or_else(|| panic!("{method} {path}: no 2xx"));
            for header in [
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ] {
                assert!(
                    ok["headers"].get(header).is_some(),
                    "{method} {path}: no {header}"
                );
            }
            assert!(
                responses["429"]["headers"].get("Retry-After").is_some(),
                "{method} {path}: 429 without Retry-After"
            );
        }
    }

    // Every reference resolves (a parameter's enum once pointed to a schema never registered).
    let mut references = Vec::new();
    collect_references(&doc, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {reference}"));
        assert!(
            doc.pointer(pointer).is_some(),
            "unresolvable reference {reference}"
        );
    }

    // The dataset API's query parameters.
    let rows = &doc["paths"]["/api/v1/datasets/{name}"]["get"];
    let parameters: BTreeSet<&str> = rows["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "name",
        "format",
        "fields",
        "cursor",
        "limit",
        "filters",
        "If-None-Match",
    ] {
        assert!(
            parameters.contains(name),
            "no parameter `{name}`: {parameters:?}"
        );
    }
    let filters = rows["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "filters")
        .unwrap();
    assert_eq!(filters["in"], "query");
    assert_eq!(filters["style"], "form");
    assert_eq!(filters["explode"], true);
}

/// Every documented operation reaches a handler of the running server; on a documented path, every
/// method the document does not list is refused with 405; and every route the code registers is
/// in the document (`routes!` takes its path from the handler's `#[utoipa::path]`, so only a plain
/// `.route("...")` could escape it).
#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let config = ConfigDir::demo();
    let server = Server::start(&config);
    let doc = document(&server);
    let operations = documented_operations(&doc);
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for expected in [
        "/api/v1/openapi.json",
        "/api/v1/sql",
        "/api/v1/datasets",
        "/api/v1/datasets/{name}",
        "/api/v1/tables",
        "/api/v1/queries",
        "/api/v1/dashboards",
        "/api/v1/dashboards/{name}",
        "/api/v1/dashboards/{name}/data/{query}",
        "/api/v1/dashboards/{name}/layers/{query}",
        "/status",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains(expected), "{expected} is not documented");
    }
    assert!(
        operations.contains(&("post".into(), "/api/v1/sql".into()))
            && operations.contains(&("get".into(), "/api/v1/sql".into()))
    );

    for path in &paths {
        let concrete = path
            .replace("{name}", "nessuno")
            .replace("{query}", "nessuna");
        let url = format!("{}{concrete}", server.url);
        for method in METHODS {
            let response = server
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().unwrap();
            if operations.contains(&(method.to_string(), path.to_string())) {
                assert_ne!(
                    status, 405,
                    "{method} {path} is documented but not served: {text}"
                );
                assert!(
                    !text.contains("no such endpoint"),
                    "{method} {path} is documented but not served: {text}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {text}"
                );
            }
        }
    }

    let registered = plain_routes(&Path::new(REPO).join("src"));
    for route in &registered {
        assert!(
            FRONT_END.contains(&route.as_str()) || paths.contains(route.as_str()),
            "`.route(\"{route}\", ...)` is served but not in the OpenAPI document; register it with `routes!`"
        );
    }
    assert_eq!(
        registered
            .iter()
            .filter(|r| FRONT_END.contains(&r.as_str()))
            .count(),
        FRONT_END.len(),
        "{registered:?}"
    );
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| collect_references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// The literal paths given to `.route(` in the sources.
fn plain_routes(dir: &Path) -> Vec<String> {
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            routes.extend(plain_routes(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split(".route(").skip(1) {
                let piece = piece.trim_start();
                if let Some(rest) = piece.strip_prefix('"') {
                    routes.push(rest.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    routes
}

#[test]
fn every_error_is_problem_json() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let client = &server.client;

    // No such route, and a route without that method (with the methods it has).
    let problem = assert_problem(server.get("/api/v1/nowhere"), 404);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nowhere"),
        "{problem}"
    );
    assert_problem(server.get("/nowhere/at/all"), 404);
    let response = client
        .delete(format!("{}/api/v1/sql", server.url))
        .send()
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    assert_problem(response, 405);
    assert!(allow.is_some_and(|a| a.contains("GET") && a.contains("POST")));
    assert_problem(
        client.put(format!("{}/status", server.url)).send().unwrap(),
        405,
    );

    // A query string that does not deserialize (a parameter twice), a path segment that is not UTF-8.
    let problem = assert_problem(server.get("/api/v1/sql?q=SELECT%201&q=SELECT%202"), 400);
    assert!(
        problem["detail"].as_str().unwrap().contains("duplicate"),
        "{problem}"
    );
    assert_problem(
        server.get("/api/v1/dashboards/divario_digitale/data/sintesi_citta?format=json&format=csv"),
        400,
    );
    assert_problem(server.get("/api/v1/dashboards/%FF%FE"), 400);
    assert_problem(server.get("/api/v1/datasets/%C3%28"), 400);

    // Malformed JSON, a body type that is not read, a body over the limit.
    let post = |content_type: &str, body: Vec<u8>| {
        client
            .post(format!("{}/api/v1/sql", server.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let problem = assert_problem(
        post("application/json", br#"{"sql": "SELECT 1""#.to_vec()),
        400,
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("JSON"),
        "{problem}"
    );
    assert_problem(
        post("application/json", br#"{"query": "SELECT 1"}"#.to_vec()),
        400,
    );
    assert_problem(post("image/png", b"SELECT 1".to_vec()), 415);

    // Handler errors keep their shape, and a 5xx never carries details.
    assert_problem(server.get("/api/v1/datasets/nessuno"), 404);
    assert_problem(server.get("/api/v1/sql?q=DROP%20TABLE%20x"), 400);
    assert_problem(server.get("/api/v1/sql?q=SELECT%201&format=xlsx"), 406);

    // A body far over the SQL limit: the server reads and drops the rest before it answers, so
    // the client, still writing, reads the 413 instead of a reset connection (one try in three
    // failed with a broken pipe when the server answered at once).
    for _ in 0..8 {
        assert_problem(post("text/plain", vec![b' '; 2 * 1024 * 1024]), 413);
    }
}

/// The validators shipped in tests/validators/ (or `$CRUSCOTTO_VALIDATORS`).
fn validators() -> PathBuf {
    std::env::var_os("CRUSCOTTO_VALIDATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("tests/validators"))
}

/// The document passes the Italian API guidelines' Spectral ruleset, Full profile, with no
/// error: the bar PDND sets for publishing an e-service. Spectral comes from `web/node_modules`
/// (a devDependency, installed by `npm ci`).
#[test]
fn the_document_has_no_error_under_the_italian_guidelines_ruleset() {
    let spectral = Path::new(REPO).join("web/node_modules/.bin/spectral");
    assert!(
        spectral.exists(),
        "{} is missing: run `npm ci` in web/ (.ci/run does)",
        spectral.display()
    );
    let ruleset = validators().join("oas/spectral.yml");
    assert!(ruleset.exists(), "{} is missing", ruleset.display());
    let config = ConfigDir::demo();
    let server = Server::start(&config);
    let document = document(&server);
    // The contact is the operator's, from [catalogue].
    assert_eq!(document["info"]["contact"]["name"], "Comune di Bologna");
    let file = config.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let output = Command::new(&spectral)
        .args(["lint", "--format", "json", "--quiet", "--ruleset"])
        .arg(&ruleset)
        .arg(&file)
        .output()
        .expect("spectral runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<Value> = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "spectral did not answer JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let errors: Vec<String> = results
        .iter()
        .filter(|r| r["severity"] == 0)
        .map(|r| format!("{} at {}: {}", r["code"], r["path"], r["message"]))
        .collect();
    assert!(
        errors.is_empty(),
        "{} errors under the Italian guidelines:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(output.status.success(), "spectral failed: {stdout}");
}
