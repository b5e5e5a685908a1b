//! The placement planner through the real binary on the Bologna demo: `POST /api/v1/plans` for
//! the shipped scenario (20 sites, proven optimal, a monotone curve), its coverage recomputed here
//! from what it answered, the kept plan read back in every format, the command line giving the
//! same plan, and bad input answered with a problem that names the field.

mod common;

use std::collections::BTreeSet;

use common::{ConfigDir, Server, create_key};
use serde_json::{Value, json};

const EARTH_RADIUS_M: f64 = 6_371_008.8;

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (phi1, phi2) = (a.1.to_radians(), b.1.to_radians());
    let h = ((b.1 - a.1).to_radians() / 2.0).sin().powi(2)
        + phi1.cos() * phi2.cos() * ((b.0 - a.0).to_radians() / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

fn post(server: &Server, body: Value) -> reqwest::blocking::Response {
    server
        .client
        .post(format!("{}/api/v1/plans", server.url))
        .json(&body)
        .send()
        .expect("POST /api/v1/plans")
}

fn created(server: &Server, body: Value) -> Value {
    let response = post(server, body.clone());
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 201, "{body}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(plan: &Value) -> BTreeSet<String> {
    plan["result"]["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn point(value: &Value) -> (f64, f64) {
    (
        value["lon"].as_f64().unwrap(),
        value["lat"].as_f64().unwrap(),
    )
}

/// The weight within `radius` of any of `sites`, recomputed from the plan's own demand points.
fn covered_by(plan: &Value, sites: &[(f64, f64)], radius: f64) -> f64 {
    plan["result"]["demand"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| sites.iter().any(|s| distance_m(*s, point(d)) <= radius))
        .map(|d| d["weight"].as_f64().unwrap())
        .sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn the_bologna_scenario_is_solved_to_proven_optimality_and_kept() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);

    let plan = created(&server, json!({}));
    let request = &plan["request"];
    assert_eq!(request["scenario"], "punti_facilitazione");
    assert_eq!(request["demand"], "over_80");
    assert_eq!(request["radius_m"], 800.0);
    assert_eq!(request["k"], 20);
    let result = &plan["result"];
    let chosen = result["chosen"].as_array().unwrap();
    assert_eq!(chosen.len(), 20, "{}", result["chosen"]);
    assert_eq!(ids(&plan).len(), 20, "twenty different sites");
    let solver = &result["solver"];
    assert_eq!(solver["optimal"], true, "{solver}");
    assert_eq!(solver["gap"], 0.0, "{solver}");
    println!(
        "Bologna, 800 m, k = 20: {solver}; {} candidates",
        plan["inputs"]["candidates"]
    );

    // The inputs: 90 areas, demand = residents × over-80 share, the 11 areas without it at 0.
    let inputs = &plan["inputs"];
    assert_eq!(inputs["demand_points"], 90);
    assert_eq!(inputs["demand_without_weight"], 11);
    let sql = server.rows(
        "SELECT sum(residenti * quota_over_80_pct / 100.0) AS over_80, count(*) AS areas FROM residenti_per_area",
    );
    assert!(
        close(
            result["total_demand"].as_f64().unwrap(),
            sql[0]["over_80"].as_f64().unwrap()
        ),
        "{} vs {}",
        result["total_demand"],
        sql[0]["over_80"]
    );
    let open_count = server.rows("SELECT count(*) AS n FROM mappa_facilitazione_digitale")[0]["n"]
        .as_u64()
        .unwrap();
    assert!(inputs["open_sites"].as_u64().unwrap() <= open_count);
    assert!(inputs["candidates"].as_u64().unwrap() > 100, "{inputs}");
    // The data versions it was read from.
    let sources = inputs["sources"].as_array().unwrap();
    for table in [
        "bologna.aree_statistiche",
        "bologna.fragilita",
        "bologna.biblioteche",
        "bologna.risorse_sociali",
    ] {
        let source = sources
            .iter()
            .find(|s| s["table"] == table)
            .unwrap_or_else(|| panic!("{table} is not among the sources: {sources:?}"));
        assert!(source["version"].as_u64().is_some(), "{source}");
    }

    // What it says it covers is what its sites cover, recomputed here.
    let radius = 800.0;
    let open: Vec<(f64, f64)> = result["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(point)
        .collect();
    let mut all = open.clone();
    all.extend(chosen.iter().map(point));
    let covered = result["covered"]["persons"].as_f64().unwrap();
    assert!(close(covered, covered_by(&plan, &all, radius)), "{covered}");
    let open_covered = result["open_covered"]["persons"].as_f64().unwrap();
    assert!(close(open_covered, covered_by(&plan, &open, radius)));
    assert!(covered > open_covered);
    let share = result["covered"]["share_of_total"].as_f64().unwrap();
    assert!(close(
        share,
        covered / result["total_demand"].as_f64().unwrap()
    ));
    // Uncovered: the areas of positive weight out of every site's reach.
    for d in result["uncovered"].as_array().unwrap() {
        assert!(d["weight"].as_f64().unwrap() > 0.0);
        assert!(all.iter().all(|s| distance_m(*s, point(d)) > radius), "{d}");
    }

    // The curve: one point per k, covering more (never less) with each site, ending at the plan.
    let curve = result["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 20);
    for (n, p) in curve.iter().enumerate() {
        assert_eq!(p["k"], n + 1);
        assert_eq!(p["optimal"], true, "{p}");
    }
    for pair in curve.windows(2) {
        assert!(
            pair[1]["persons"].as_f64().unwrap() >= pair[0]["persons"].as_f64().unwrap() - 1e-9,
            "{pair:?}"
        );
    }
    assert!(curve[0]["persons"].as_f64().unwrap() > open_covered);
    assert!(close(curve[19]["persons"].as_f64().unwrap(), covered));

    // No greedy choice beats it (the optimum is at least greedy's).
    let demand = result["demand"].as_array().unwrap();
    let candidates_sample: Vec<(f64, f64)> = chosen.iter().map(point).collect();
    let mut greedy = open.clone();
    for _ in 0..5 {
        let best = candidates_sample
            .iter()
            .filter(|c| !greedy.contains(c))
            .map(|c| {
                let mut with = greedy.clone();
                with.push(*c);
                (covered_by(&plan, &with, radius), *c)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap();
        greedy.push(best.1);
    }
    assert!(covered_by(&plan, &greedy, radius) <= curve[4]["persons"].as_f64().unwrap() + 1e-6);
    assert_eq!(demand.len(), 90);

    // Kept: listed, and read back the same, in JSON, CSV and GeoJSON.
    let id = plan["id"].as_str().unwrap();
    let list = server.get_json("/api/v1/plans");
    assert!(
        list.as_array().unwrap().iter().any(|p| p["id"] == id),
        "{list}"
    );
    let again = server.get_json(&format!("/api/v1/plans/{id}"));
    assert_eq!(ids(&again), ids(&plan));
    assert_eq!(again["inputs"]["sources"], plan["inputs"]["sources"]);
    let csv = server.get(&format!("/api/v1/plans/{id}?format=csv"));
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("nuovo,")).count(),
        20,
        "{csv}"
    );
    let geojson = server
        .client
        .get(format!("{}/api/v1/plans/{id}", server.url))
        .header("accept", "application/geo+json")
        .send()
        .unwrap();
    assert_eq!(geojson.headers()["content-type"], "application/geo+json");
    let geojson: Value = geojson.json().unwrap();
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(
        features
            .iter()
            .filter(|f| f["properties"]["role"] == "new")
            .count(),
        20
    );
    assert_eq!(
        features
            .iter()
            .filter(|f| f["properties"]["role"] == "demand")
            .count(),
        90
    );
    assert!(
        config
            .path()
            .join("var/plans")
            .join(format!("{id}.json"))
            .is_file()
    );

    // The other demands and radii: a larger radius never covers less.
    let mut previous = 0.0;
    for radius in [500.0, 800.0, 1000.0] {
        let plan = created(
            &server,
            json!({"demand": "offline_attesi", "radius_m": radius}),
        );
        assert_eq!(plan["result"]["chosen"].as_array().unwrap().len(), 20);
        assert_eq!(plan["result"]["solver"]["optimal"], true);
        let covered = plan["result"]["covered"]["persons"].as_f64().unwrap();
        assert!(
            covered >= previous,
            "{radius} m covers {covered} < {previous}"
        );
        previous = covered;
    }
    // The capacitated variant: each site serves at most 300 persons, so 5 sites serve less than
    // they cover, and at most 5 × 300 more than the open sites (which have the same capacity).
    let free = created(&server, json!({"k": 5}));
    let capped = created(&server, json!({"k": 5, "capacity": 300}));
    assert_eq!(capped["result"]["capacitated"], true);
    assert_eq!(
        capped["result"]["solver"]["optimal"], true,
        "{}",
        capped["result"]["solver"]
    );
    let capped_covered = capped["result"]["covered"]["persons"].as_f64().unwrap();
    let capped_open = capped["result"]["open_covered"]["persons"]
        .as_f64()
        .unwrap();
    assert!(capped_covered < free["result"]["covered"]["persons"].as_f64().unwrap());
    assert!(capped_covered - capped_open <= 5.0 * 300.0 + 1e-6);
    assert!(capped_open <= open.len() as f64 * 300.0 + 1e-6);
    let residents = created(
        &server,
        json!({"demand": "residenti", "k": 5, "curve_max": 8}),
    );
    assert_eq!(residents["result"]["chosen"].as_array().unwrap().len(), 5);
    assert_eq!(residents["result"]["curve"].as_array().unwrap().len(), 8);
    assert_eq!(residents["inputs"]["demand_without_weight"], 0);
}

#[test]
fn the_command_line_gives_the_same_plan() {
    let config = ConfigDir::demo();
    let (code, stdout, stderr) = config.run(&[
        "plan",
        "punti_facilitazione",
        "--k",
        "20",
        "--radius",
        "800",
        "--demand",
        "over_80",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("proven optimal"), "{stderr}");
    let cli: Value = serde_json::from_str(&stdout).expect("the plan as JSON");
    assert_eq!(cli["result"]["chosen"].as_array().unwrap().len(), 20);

    let (code, csv, stderr) = config.run(&["plan", "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(csv.lines().filter(|l| l.starts_with("nuovo,")).count(), 20);
    let (code, geojson, stderr) = config.run(&["plan", "--format", "geojson", "--k", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let geojson: Value = serde_json::from_str(&geojson).unwrap();
    assert_eq!(geojson["type"], "FeatureCollection");

    // The server over the same configuration answers the same plan, and lists the CLI's ones.
    let server = Server::start_ready(&config);
    let api = created(&server, json!({}));
    assert_eq!(ids(&api), ids(&cli));
    assert!(close(
        api["result"]["covered"]["persons"].as_f64().unwrap(),
        cli["result"]["covered"]["persons"].as_f64().unwrap()
    ));
    let persons = |plan: &Value| -> Vec<f64> {
        plan["result"]["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["persons"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(persons(&api), persons(&cli));
    let listed = server.get_json("/api/v1/plans");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == cli["id"]),
        "{listed}"
    );

    // Bad input on the command line names the field too.
    drop(server);
    let (code, _, stderr) = config.run(&["plan", "--radius=-5"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("radius_m"), "{stderr}");
    let (code, _, stderr) = config.run(&["plan", "nessuno"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("scenario") && stderr.contains("punti_facilitazione"),
        "{stderr}"
    );
}

fn problem(response: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().unwrap();
    problem["detail"].as_str().unwrap().to_string()
}

#[test]
fn bad_input_is_a_problem_naming_the_field() {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    for (body, field) in [
        (json!({"radius_m": -1}), "radius_m"),
        (json!({"radius_m": 0}), "radius_m"),
        (json!({"k": 0}), "k"),
        (json!({"k": 100000}), "k"),
        (json!({"demand": "gatti"}), "demand"),
        (json!({"scenario": "nessuno"}), "scenario"),
        (json!({"capacity": -10}), "capacity"),
        (json!({"curve_max": 1000}), "curve_max"),
        (json!({"k": "venti"}), "k"),
        (json!({"raggio": 800}), "raggio"),
    ] {
        let detail = problem(post(&server, body.clone()), 400);
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let response = server
        .client
        .post(format!("{}/api/v1/plans", server.url))
        .header("content-type", "application/json")
        .body("{\"k\": ")
        .send()
        .unwrap();
    problem(response, 400);
    let detail = problem(server.get("/api/v1/plans/nessuno"), 404);
    assert!(detail.contains("nessuno"), "{detail}");
    let detail = problem(server.get("/api/v1/plans/nessuno?format=xlsx"), 406);
    assert!(detail.contains("xlsx"), "{detail}");
}

#[test]
fn plans_need_an_analyst_key() {
    let config = ConfigDir::demo();
    config.write(
        "cruscotto.toml",
        &std::fs::read_to_string(config.config_file())
            .unwrap()
            .replace("anonymous = \"analyst\"", "anonymous = \"none\""),
    );
    let (_, partner) = create_key(&config, "partner", "residenti_per_area");
    let (_, analyst) = create_key(&config, "analyst", "");
    let server = Server::start_ready(&config);
    let send = |key: Option<&str>| {
        let mut request = server
            .client
            .post(format!("{}/api/v1/plans", server.url))
            .json(&json!({"k": 2, "curve_max": 2}));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().unwrap()
    };
    problem(send(None), 401);
    problem(send(Some(&partner)), 403);
    assert_eq!(send(Some(&analyst)).status(), 201);
}
