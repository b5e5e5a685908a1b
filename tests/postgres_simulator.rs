//! `cruscotto simulate postgres` against the real PostgreSQL, in a database of its own: the
//! residents agree with the fragility file they were built from (read here independently), the
//! online share falls with age, the same seed gives the same database, and the shipped compose
//! connectors load it.

mod common;
mod postgres_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{BINARY, REPO};
use postgres_support::{Pg, unique};

/// A database for this test only, dropped at the end even when the test fails.
struct Database {
    name: String,
}

impl Database {
    fn create() -> Self {
        let name = unique("cruscotto_sim");
        Pg::connect().execute(&format!("CREATE DATABASE {name}"));
        Self { name }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            postgres_support::port(),
            self.name
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        Pg::connect().execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn cruscotto(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Area code → (2021 population, share over 80 in percent), read from the CSV with the csv crate.
fn fragility_2021() -> BTreeMap<i32, (i64, Option<f64>)> {
    let path = Path::new(REPO).join("data/bologna/indici-di-fragilita-dal-2021.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = reader.headers().unwrap().clone();
    let index = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (year, code, population, share) = (
        index("Anno"),
        index("Cod Area Statistica"),
        index("Popolazione residente"),
        index("Perc residenti oltre 80 anni"),
    );
    let mut areas = BTreeMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        if &record[year] != "2021" {
            continue;
        }
        areas.insert(
            record[code].parse().unwrap(),
            (
                record[population].parse().unwrap(),
                record[share].parse().ok(),
            ),
        );
    }
    areas
}

#[test]
fn the_simulated_registry_agrees_with_the_real_area_populations() {
    let database = Database::create();
    let url = database.url();
    let fragility = Path::new(REPO)
        .join("data/bologna/indici-di-fragilita-dal-2021.csv")
        .display()
        .to_string();
    let simulate = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "postgres",
            "--url",
            url.as_str(),
            "--seed",
            "7",
            "--events",
            "30000",
            "--fragility",
            fragility.as_str(),
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = cruscotto(&args, &[]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        stdout
    };
    let stdout = simulate(&[]);
    assert!(stdout.contains("90 areas, 392162 residents"), "{stdout}");
    assert!(stdout.contains("30000 service events in 2023"), "{stdout}");

    let pg = Pg::connect_to(&url);
    let expected = fragility_2021();
    assert_eq!(expected.len(), 90);
    let known: Vec<(i64, f64)> = expected
        .values()
        .filter_map(|(p, s)| s.map(|s| (*p, s)))
        .collect();
    let city_share = known
        .iter()
        .map(|(p, s)| *p as f64 * s / 100.0)
        .sum::<f64>()
        * 100.0
        / known.iter().map(|(p, _)| *p as f64).sum::<f64>();
    let per_area = pg.rows(
        "SELECT area_statistica, count(*) AS residenti, count(*) FILTER (WHERE 2021 - anno_nascita >= 80) AS over_80, \
         count(DISTINCT famiglia_id) AS famiglie FROM anagrafe.residenti GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(per_area.len(), 90);
    for row in &per_area {
        let area: i32 = row.get(0);
        let (residents, over_80): (i64, i64) = (row.get(1), row.get(2));
        let (population, share) = expected[&area];
        assert_eq!(residents, population, "area {area}");
        let expected_over_80 =
            (population as f64 * share.unwrap_or(city_share) / 100.0).round() as i64;
        assert_eq!(over_80, expected_over_80, "area {area}: share {share:?}");
        let households: i64 = row.get(3);
        assert!(households > 0 && households <= residents, "area {area}");
    }
    // Nobody under 18 lives alone.
    assert_eq!(
        pg.i64("SELECT count(*) FROM (SELECT famiglia_id FROM anagrafe.residenti GROUP BY 1 HAVING max(2021 - anno_nascita) < 18) AS x"),
        0
    );

    // Events: the requested number, one year, ids in time order, online share falling with age.
    assert_eq!(pg.i64("SELECT count(*) FROM servizi.eventi"), 30000);
    assert_eq!(pg.i64("SELECT count(*) FROM servizi.eventi WHERE ts < '2023-01-01 00:00+01' OR ts >= '2024-01-01 00:00+01'"), 0);
    assert_eq!(pg.i64("SELECT count(*) FROM servizi.eventi AS a JOIN servizi.eventi AS b ON b.id = a.id + 1 WHERE b.ts < a.ts - interval '1 hour'"), 0);
    assert_eq!(
        pg.i64("SELECT count(DISTINCT servizio) FROM servizi.eventi"),
        5
    );
    let online: BTreeMap<String, f64> = pg
        .rows("SELECT fascia_eta, avg((canale = 'online')::int)::float8 FROM servizi.eventi GROUP BY 1")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (young, sixties, old) = (online["25-34"], online["65-74"], online["80+"]);
    assert!(
        young > 0.75 && young > sixties + 0.15 && sixties > old + 0.2 && old < 0.35,
        "{online:?}"
    );
    // Desks and facilitation points are closed at weekends.
    assert_eq!(pg.i64("SELECT count(*) FROM servizi.eventi WHERE canale <> 'online' AND extract(isodow FROM ts AT TIME ZONE 'Europe/Rome') > 5"), 0);

    // The same seed gives the same database; a second run needs --replace.
    let fingerprint = |pg: &Pg| {
        pg.text(
            "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (SELECT concat_ws('|', id, area_statistica, anno_nascita, sesso, cittadinanza, famiglia_id) AS x FROM anagrafe.residenti \
             UNION ALL SELECT concat_ws('|', id, ts, servizio, canale, area_statistica, fascia_eta) FROM servizi.eventi) AS t",
        )
    };
    let before = fingerprint(&pg);
    let (code, _, stderr) = cruscotto(
        &[
            "simulate",
            "postgres",
            "--url",
            &url,
            "--events",
            "10",
            "--fragility",
            &fragility,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("already exists: pass --replace"),
        "{stderr}"
    );
    drop(pg);
    simulate(&["--replace"]);
    let pg = Pg::connect_to(&url);
    assert_eq!(fingerprint(&pg), before);
    drop(pg);

    // The shipped compose configuration checks and loads against it.
    let config = tempfile::tempdir().unwrap();
    let repo = Path::new(REPO);
    std::fs::copy(
        repo.join("cruscotto.compose.toml"),
        config.path().join("cruscotto.compose.toml"),
    )
    .unwrap();
    for folder in [
        "connectors",
        "connectors.compose",
        "queries",
        "dashboards",
        "data",
    ] {
        std::os::unix::fs::symlink(repo.join(folder), config.path().join(folder)).unwrap();
    }
    let config_file = config
        .path()
        .join("cruscotto.compose.toml")
        .display()
        .to_string();
    let env = [
        ("REGISTRY_URL", url.as_str()),
        ("SERVICE_LOGS_URL", url.as_str()),
    ];
    let (code, stdout, stderr) = cruscotto(&["--config", &config_file, "check"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(": ok (5 connectors, "), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let sql = "SELECT (SELECT sum(residenti) FROM registry.residenti_per_area) AS residenti, \
               (SELECT sum(residenti) FROM registry.residenti_per_area WHERE fascia_eta = '80+') AS over_80, \
               (SELECT sum(componenti * famiglie) FROM registry.famiglie_per_area) AS in_famiglia, \
               (SELECT sum(residenti_over_80) FROM registry.aree_statistiche) AS over_80_aree, \
               (SELECT count(*) FROM service_logs.eventi) AS eventi, \
               (SELECT count(DISTINCT id) FROM service_logs.eventi) AS eventi_distinti";
    let (code, stdout, stderr) = cruscotto(
        &["--config", &config_file, "query", "--format", "json", sql],
        &env,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let row = &result[0];
    assert_eq!(row["residenti"], 392162, "{stdout}");
    assert_eq!(row["in_famiglia"], 392162, "{stdout}");
    assert_eq!(row["over_80"], row["over_80_aree"], "{stdout}");
    assert_eq!(
        (row["eventi"].as_i64(), row["eventi_distinti"].as_i64()),
        (Some(30000), Some(30000)),
        "{stdout}"
    );
}
