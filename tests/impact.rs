//! Impact monitoring on known truth. The service-log simulator injects +5 percentage points of
//! requests made online, from the month each demo intervention started, in the areas within
//! 800 m of its site; the estimator must find it (its 95% interval contains 5 and excludes 0),
//! and find nothing (its interval contains 0) when nothing was injected. Over several seeds, so it
//! is not a lucky draw: the coverage is printed and asserted. The API is checked against the real
//! binary, on the demo as shipped (its simulated logs carry the effect) and on the demo with a
//! plain file of logs carrying it.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use common::{ConfigDir, REPO, Server};
use cruscotto::impact::panel::{AREAS_SQL, Area, outcome_sql, panel_from};
use cruscotto::impact::{ImpactRequest, Intervention, Metric, analyse};
use cruscotto::query::QueryResult;
use cruscotto::simulate::{ServiceLogOptions, SimulatedEffect, service_log_batch_with_effect};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde_json::Value;

const TRUTH: f64 = 5.0;

fn options(seed: u64) -> ServiceLogOptions {
    ServiceLogOptions {
        areas: Path::new(REPO).join("data/bologna/indici-di-fragilita-dal-2021.csv"),
        seed,
        events: 200_000,
        year: 2023,
    }
}

fn effect(points: f64) -> SimulatedEffect {
    SimulatedEffect {
        interventions: Path::new(REPO).join("data/bologna/interventi.csv"),
        areas: Path::new(REPO).join("data/bologna/bologna_aree_statistiche.geojson"),
        points,
        radius: 800.0,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The demo with its service logs replaced by a file simulated with `points` of effect (none
/// injected at 0).
fn demo_with_effect(points: f64, seed: u64) -> ConfigDir {
    let config = ConfigDir::demo();
    let file = config.path().join("eventi_con_effetto.parquet");
    let rows = runtime()
        .block_on(cruscotto::simulate::write_service_logs_with_effect(
            &file,
            &options(seed),
            (points != 0.0).then(|| effect(points)).as_ref(),
        ))
        .unwrap();
    assert_eq!(rows, 200_000);
    config.write(
        "connectors/service_logs.toml",
        &format!(
            "kind = \"file\"\nrefresh = \"24h\"\n\n[[table]]\nname = \"eventi\"\npath = \"{}\"\n",
            file.display()
        ),
    );
    config
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_api_recovers_an_injected_effect_on_the_real_binary() {
    let config = demo_with_effect(TRUTH, 1);
    let server = Server::start_ready(&config);
    let report = server.get_json("/api/v1/impact");
    let e = &report["estimate"];
    let (estimate, low, high) = (
        number(&e["estimate"]),
        number(&e["low"]),
        number(&e["high"]),
    );
    println!("injected +{TRUTH} pp: estimate {estimate:.2}, interval {low:.2}–{high:.2}");
    assert!(low <= TRUTH && TRUTH <= high, "{report:#}");
    assert!(low > 0.0, "{report:#}");
    assert_eq!(report["metric"], "quota_online");
    assert_eq!(
        report["simulated"], false,
        "a plain file is not labelled simulated"
    );
    // The five openings are estimated together; the course and the volunteers are not selected.
    let selected: Vec<&str> = report["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["selected"] == true)
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(selected.len(), 5, "{selected:?}");
    assert!(!selected.contains(&"salaborsa-corso-2023"));
    // Covered areas: centroid within 800 m of a selected site; comparison areas: none of them.
    let roles = |role: &str| -> Vec<i64> {
        report["areas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["role"] == role)
            .map(|a| a["codice_area_statistica"].as_i64().unwrap())
            .collect()
    };
    let (covered, comparison, other) = (roles("covered"), roles("comparison"), roles("other"));
    assert_eq!(
        covered.len() as u64,
        report["covered_areas"].as_u64().unwrap()
    );
    assert!(covered.len() >= 10, "{covered:?}");
    assert!(!comparison.is_empty() && comparison.iter().all(|c| !covered.contains(c)));
    // Sala Borsa's course covers 53, 54, 60, 61, 66: left out of the comparison.
    assert!(
        other.contains(&53) && !comparison.contains(&53),
        "{other:?}"
    );
    // The event study: months before near 0, months from the start near the truth.
    let series = report["event_study"].as_array().unwrap();
    let month = |m: i64| series.iter().find(|p| p["month"] == m).unwrap();
    assert!(number(&month(-1)["estimate"]).abs() < 3.0, "{series:?}");
    assert!(
        number(&month(0)["low"]) > 0.0 || number(&month(1)["low"]) > 0.0,
        "{series:?}"
    );
    let after: Vec<f64> = series
        .iter()
        .filter(|p| number(&p["month"]) >= 0.0)
        .map(|p| number(&p["estimate"]))
        .collect();
    let mean_after = after.iter().sum::<f64>() / after.len() as f64;
    assert!((mean_after - TRUTH).abs() < 2.5, "{series:?}");
    // The reading says it in both languages.
    let it = report["reading"]["it"].as_str().unwrap();
    let en = report["reading"]["en"].as_str().unwrap();
    assert!(
        it.starts_with('+') && it.contains("punti percentuali, intervallo"),
        "{it}"
    );
    assert!(
        en.contains("percentage points, interval") && en.contains("excludes zero"),
        "{en}"
    );

    // One intervention alone, the other metric, and errors that say what is wrong.
    let one =
        server.get_json("/api/v1/impact?interventions=villa-spada-2023&metric=accessi_spid_cie");
    assert_eq!(one["metric"], "accessi_spid_cie");
    assert_eq!(
        one["interventions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["selected"] == true)
            .count(),
        1
    );
    // Logins were not touched by the simulated effect: their interval contains 0.
    assert!(
        number(&one["estimate"]["low"]) <= 0.0 && number(&one["estimate"]["high"]) >= 0.0,
        "{one:#}"
    );
    let missing = server.get("/api/v1/impact?interventions=nowhere");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no intervention `nowhere`"),
        "{body}"
    );
    let far = server.get("/api/v1/impact?radius=10");
    assert_eq!(far.status(), 400);
    let body: Value = far.json().unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("radius 10 m"),
        "{body}"
    );
    let bad = server.get("/api/v1/impact?metric=wrong");
    assert_eq!(bad.status(), 400);
    // The same request gives the same interval (seeded bootstrap).
    let again = server.get_json("/api/v1/impact");
    assert_eq!(again["estimate"], report["estimate"]);
}

#[test]
fn the_api_finds_nothing_where_nothing_was_injected() {
    let config = demo_with_effect(0.0, 1);
    let server = Server::start_ready(&config);
    let report = server.get_json("/api/v1/impact");
    let e = &report["estimate"];
    let (low, high) = (number(&e["low"]), number(&e["high"]));
    println!("nothing injected: {e}");
    assert!(low <= 0.0 && 0.0 <= high, "{report:#}");
    let it = report["reading"]["it"].as_str().unwrap();
    assert!(it.contains("L'intervallo contiene lo zero"), "{it}");
    let en = report["reading"]["en"].as_str().unwrap();
    assert!(en.contains("The interval contains zero"), "{en}");
}

#[test]
fn the_shipped_demo_finds_the_effect_its_simulated_logs_carry_and_says_they_are_simulated() {
    // connectors/service_logs.toml simulates the logs with +5 points around the interventions.
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let report = server.get_json("/api/v1/impact");
    let e = &report["estimate"];
    let (low, high) = (number(&e["low"]), number(&e["high"]));
    println!("demo (+{TRUTH} pp injected): {e}");
    assert!(low > 0.0 && low <= TRUTH && TRUTH <= high, "{report:#}");
    assert_eq!(report["simulated"], true);
    let it = report["reading"]["it"].as_str().unwrap();
    assert!(
        it.starts_with('+') && it.contains("punti percentuali"),
        "{it}"
    );
    // Documented in the OpenAPI document.
    let openapi = server.get_json("/api/v1/openapi.json");
    assert!(openapi["paths"]["/api/v1/impact"]["get"].is_object());
}

/// The areas as the service reads them (centroids, need indicators), once, from the real binary.
fn demo_areas() -> Vec<Area> {
    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    server
        .rows(AREAS_SQL)
        .iter()
        .map(|r| Area {
            code: r["codice_area_statistica"].as_i64().unwrap(),
            name: r["area_statistica"].as_str().unwrap().to_string(),
            centroid: (number(&r["lon"]), number(&r["lat"])),
            needs: vec![
                r["quota_over_80_pct"].as_f64(),
                r["quota_offline_attesi_pct"].as_f64(),
            ],
        })
        .collect()
}

fn demo_interventions() -> Vec<Intervention> {
    let mut reader =
        csv::Reader::from_path(Path::new(REPO).join("data/bologna/interventi.csv")).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            Intervention {
                id: r[0].to_string(),
                tipo: r[1].to_string(),
                nome: r[2].to_string(),
                lon: r[3].parse().unwrap(),
                lat: r[4].parse().unwrap(),
                inizio: date(&r[5]).unwrap(),
                fine: date(&r[6]),
            }
        })
        .collect()
}

/// The estimate on logs simulated with `seed` and `points` of effect: the monthly outcome by the
/// service's own SQL (DataFusion over the simulated batch), the estimator as the API runs it.
async fn estimate_on(seed: u64, points: Option<f64>, areas: &[Area]) -> (f64, f64, f64) {
    let effect = points.map(effect);
    let batch = service_log_batch_with_effect(&options(seed), effect.as_ref())
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.sql("CREATE SCHEMA service_logs").await.unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("service_logs.eventi", Arc::new(table))
        .unwrap();
    let frame = ctx.sql(&outcome_sql(Metric::OnlineShare)).await.unwrap();
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.unwrap();
    let panel = panel_from(
        areas.to_vec(),
        &QueryResult { schema, batches },
        Metric::OnlineShare,
    )
    .unwrap();
    let request = ImpactRequest {
        seed,
        ..ImpactRequest::default()
    };
    let report = analyse(demo_interventions(), panel, &request).unwrap();
    (
        report.estimate.estimate,
        report.estimate.low,
        report.estimate.high,
    )
}

#[test]
fn the_interval_covers_the_truth_over_many_seeds() {
    const SEEDS: u64 = 12;
    let areas = demo_areas();
    let runtime = runtime();
    let (mut covers_truth, mut excludes_zero, mut covers_zero) = (0, 0, 0);
    let mut estimates = Vec::new();
    for seed in 1..=SEEDS {
        let (e, low, high) = runtime.block_on(estimate_on(seed, Some(TRUTH), &areas));
        covers_truth += usize::from(low <= TRUTH && TRUTH <= high);
        excludes_zero += usize::from(low > 0.0);
        estimates.push(e);
        let (e0, low0, high0) = runtime.block_on(estimate_on(seed, None, &areas));
        covers_zero += usize::from(low0 <= 0.0 && 0.0 <= high0);
        println!(
            "seed {seed:2}: +{TRUTH} injected → {e:5.2} [{low:5.2}, {high:5.2}];   none injected → {e0:5.2} [{low0:5.2}, {high0:5.2}]"
        );
    }
    let mean = estimates.iter().sum::<f64>() / estimates.len() as f64;
    println!(
        "over {SEEDS} seeds: the interval contains {TRUTH} in {covers_truth}, excludes 0 in {excludes_zero}; \
         with no effect it contains 0 in {covers_zero}; mean estimate {mean:.2}"
    );
    // A 95% interval should miss about one seed in twenty; allow two misses in twelve.
    assert!(
        covers_truth >= SEEDS as usize - 2,
        "coverage of the truth {covers_truth}/{SEEDS}"
    );
    assert_eq!(
        excludes_zero, SEEDS as usize,
        "the effect was missed in some seeds"
    );
    assert!(
        covers_zero >= SEEDS as usize - 2,
        "coverage of 0 with no effect {covers_zero}/{SEEDS}"
    );
    // Unbiased: the mean over seeds is near the truth (its standard error is about 0.3 pp).
    assert!((mean - TRUTH).abs() < 1.0, "mean estimate {mean}");
}
