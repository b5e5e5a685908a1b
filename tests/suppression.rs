//! Disclosure control across everything published together, through the real binary and the demo
//! data, for several thresholds: no value lies under a NULL in any binary download, and no
//! suppressed count can be recomputed from the other published values with the published methods.

mod common;
mod sdc_support;

use std::collections::{BTreeMap, BTreeSet};

use common::Server;
use sdc_support::{
    Output, create_key, datasets, decode, fetch, parquet_hidden_values, published, secured,
    values_under_nulls,
};
use serde_json::{Map, Value};

#[test]
fn binary_downloads_carry_nothing_under_a_suppressed_cell() {
    for min_count in [10, 30, 100] {
        let config = secured(min_count);
        let partner = create_key(&config, "partner", "residenti_per_area");
        let server = Server::start_ready(&config);
        let mut suppressed = 0;
        for (dataset, _) in datasets(&config) {
            for params in [
                "limit=10000",
                "limit=7",
                "fields=codice_area_statistica,over_80_stimati,quota_over_80_pct&limit=10000",
                "zona.in=Lame,Borgo%20Panigale,Santa%20Viola&limit=10000",
            ] {
                for format in ["arrow", "parquet"] {
                    let mut next = Some(format!(
                        "/api/v1/datasets/{dataset}?{params}&format={format}"
                    ));
                    while let Some(path) = next {
                        let response = fetch(&server, &path, Some(&partner));
                        assert_eq!(response.status(), 200, "{path}");
                        next = response
                            .headers()
                            .get("link")
                            .and_then(|l| l.to_str().ok())
                            .and_then(|l| l.strip_prefix('<'))
                            .and_then(|l| l.split_once('>'))
                            .map(|(url, _)| url.to_string());
                        let body = response.bytes().unwrap();
                        if format == "parquet" {
                            let hidden = parquet_hidden_values(&body);
                            assert!(
                                hidden.is_empty(),
                                "min_count {min_count}, {path}: the file holds values no cell shows: {hidden:?}"
                            );
                        }
                        for batch in decode(format, &body) {
                            for (field, column) in
                                batch.schema().fields().iter().zip(batch.columns())
                            {
                                // The Parquet reader's own padding fills its NULL slots.
                                let leaked = if format == "arrow" {
                                    values_under_nulls(column.as_ref())
                                } else {
                                    Vec::new()
                                };
                                assert!(
                                    leaked.is_empty(),
                                    "min_count {min_count}, {path}: column `{}` holds values under NULL at rows {leaked:?}",
                                    field.name()
                                );
                                if field.name().ends_with("_suppressed") {
                                    let flags = column
                                        .as_any()
                                        .downcast_ref::<arrow::array::BooleanArray>()
                                        .unwrap();
                                    suppressed += flags.iter().filter(|f| *f == Some(true)).count();
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(
            suppressed > 0,
            "min_count {min_count}: the demo has cells to suppress"
        );
    }
}

#[test]
fn a_dataset_cannot_declare_counts_its_saved_query_does_not() {
    let config = secured(10);
    let query = config.path().join("queries/residenti_per_area.sql");
    let text = std::fs::read_to_string(&query).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("-- persons"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&query, stripped).unwrap();
    let (code, stdout, stderr) = config.run(&["check"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        format!("{stdout}{stderr}")
            .contains("declare the counts in queries/residenti_per_area.sql"),
        "{stdout}{stderr}"
    );
}

/// What the attacker solves for in one statistical area: residents R, the share over 80 Q (one
/// decimal in the source) and the share of over-65s living alone P (one decimal).
#[derive(Clone, Copy, Debug)]
struct Candidate {
    r: f64,
    q: f64,
    p: f64,
}

/// An area's figures that no count of persons is computed from, given to the attacker as known.
#[derive(Default, Debug)]
struct Known {
    minors: f64,
    fragility: Option<f64>,
    hotspots: f64,
    /// The download speed the area's probes measured (sensors), where it has any.
    probe_mbps: Option<f64>,
    grid_points: f64,
    covered_points: f64,
    support: f64,
    /// SPID/CIE logins from the area (service logs): published, not a count of persons.
    logins: f64,
    truth: Option<Candidate>,
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn clamp01(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

/// The published method (queries/*.sql) of `query.column` for one area: the value before rounding
/// and how many decimals it is published with; `None` when it is not computed from R, Q or P.
fn method(query: &str, column: &str, c: Candidate, k: &Known) -> Option<(f64, i32)> {
    let e = c.r * c.q / 100.0;
    let o = c.r * c.q * 2.8 / 100.0;
    let a = c.r * (1.0 - k.minors);
    let offline = (a - 1.8 * e - e) * 0.09 + 1.8 * e * 0.44 + e * 0.686;
    let quota_offline = offline * 100.0 / a;
    let per_1000 = k.hotspots * 1000.0 / c.r;
    let need = k.fragility.map(|fragility| {
        (100.0 * clamp01((round_to(quota_offline, 2) - 10.0) / 25.0)
            + 100.0 * clamp01((c.p - 10.0) / 40.0)
            + 100.0 * clamp01((fragility - 80.0) / 40.0))
            / 3.0
    });
    let hotspot_connectivity = 100.0 - 100.0 * clamp01(round_to(per_1000, 4) / 5.0);
    // Where a probe measures, the mean of the hotspot indicator and the measured speed's.
    let connectivity = match k.probe_mbps {
        None => hotspot_connectivity,
        Some(mbps) => {
            let speed = 100.0 - 100.0 * clamp01((round_to(mbps, 1) - 30.0) / 270.0);
            (round_to(hotspot_connectivity, 2) + speed) / 2.0
        }
    };
    Some(match (query, column) {
        (_, "residenti") => (c.r, 0),
        (_, "quota_over_80_pct") => (c.q, 1),
        (_, "over_80_stimati" | "over_80" | "adulti_80_piu") => (e, 0),
        (_, "quota_over_65_stimata_pct") => (c.q * 2.8, 1),
        (_, "over_65_stimati") => (o, 0),
        (_, "over_65_soli_pct") => (c.p, 1),
        (_, "over_65_soli_stimati") => (o * c.p / 100.0, 0),
        (_, "adulti") => (a, 0),
        (_, "adulti_65_79") => (1.8 * e, 0),
        (_, "adulti_18_64") => (a - 2.8 * e, 0),
        (_, "offline_attesi") => (offline, 0),
        (_, "quota_offline_attesi_pct") => (quota_offline, 2),
        (_, "hotspot_per_1000_residenti") => (per_1000, 4),
        (_, "accessi_per_adulto") => (k.logins / round_to(a, 0), 3),
        (_, "residenti_entro_800m") => (c.r * k.covered_points / k.grid_points, 0),
        (_, "bisogno") => (need?, 2),
        (_, "connettivita") => (connectivity, 2),
        ("indice_divario_digitale", "indice") => (
            // The uptake pillar is one city-wide figure in the demo: it carries no weight.
            (round_to(need?, 2) + round_to(connectivity, 2) + k.support) / 3.0,
            2,
        ),
        _ => return None,
    })
}

/// Which unknowns a method uses: (R, Q, P).
fn uses(column: &str) -> (bool, bool, bool) {
    match column {
        "residenti"
        | "adulti"
        | "hotspot_per_1000_residenti"
        | "accessi_per_adulto"
        | "residenti_entro_800m"
        | "connettivita" => (true, false, false),
        "quota_over_80_pct" | "quota_over_65_stimata_pct" => (false, true, false),
        "over_65_soli_pct" => (false, false, true),
        "over_65_soli_stimati" | "bisogno" | "indice" => (true, true, true),
        _ => (true, true, false),
    }
}

/// The suppressed count a withheld cell stands for: R, E (over 80) or S (over 65 living alone).
/// The pillars and the index are withheld only with a count of their area and protect none alone.
fn protects(query: &str, column: &str) -> Option<char> {
    Some(match column {
        "residenti"
        | "adulti"
        | "hotspot_per_1000_residenti"
        | "accessi_per_adulto"
        | "residenti_entro_800m"
        | "connettivita" => 'R',
        "over_65_soli_pct" | "over_65_soli_stimati" => 'S',
        "bisogno" | "indice" => return None,
        c if method(
            query,
            c,
            Candidate {
                r: 1.0,
                q: 1.0,
                p: 1.0,
            },
            &Known {
                fragility: Some(100.0),
                ..Default::default()
            },
        )
        .is_some() =>
        {
            'E'
        }
        other => {
            panic!("a cell of `{query}.{other}` is withheld but the test has no method for it")
        }
    })
}

/// A row's cell; a missing key is NULL.
fn cell<'a>(row: &'a Map<String, Value>, column: &str) -> &'a Value {
    row.get(column).unwrap_or(&Value::Null)
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn area_of(row: &Map<String, Value>) -> Option<i64> {
    row.get("codice_area_statistica")
        .and_then(number)
        .map(|v| v as i64)
}

#[test]
fn no_suppressed_cell_can_be_recomputed_from_what_is_published() {
    for min_count in [10, 25, 100] {
        let config = secured(min_count);
        let partner = create_key(&config, "partner", "residenti_per_area");
        let analyst = create_key(&config, "analyst", "");
        let server = Server::start_ready(&config);
        let outputs = published(&server, &config, &partner);
        let raw = |sql: &str| -> Vec<Map<String, Value>> {
            let response = server
                .client
                .post(format!("{}/api/v1/sql", server.url))
                .bearer_auth(&analyst)
                .body(sql.to_string())
                .send()
                .unwrap();
            assert_eq!(response.status(), 200, "{sql}");
            response.json().unwrap()
        };
        let queries: BTreeSet<&str> = outputs.iter().map(|o| o.query.as_str()).collect();
        let raw_rows: BTreeMap<&str, Vec<Map<String, Value>>> = queries
            .iter()
            .map(|q| (*q, raw(&format!("SELECT * FROM queries.{q}"))))
            .collect();
        let known = known_figures(&raw_rows, &raw);

        // Withheld cells: NULL where the raw aggregate has a value.
        let mut targets: BTreeMap<i64, BTreeSet<char>> = BTreeMap::new();
        let mut withheld = 0;
        for output in &outputs {
            let raw = &raw_rows[output.query.as_str()];
            for row in &output.rows {
                let Some(area) = area_of(row) else { continue };
                if row.contains_key("anno") {
                    if output.query == "famiglie_per_area_anno" {
                        families(output, row, raw, min_count);
                    }
                    continue;
                }
                let truth = raw.iter().find(|r| area_of(r) == Some(area)).unwrap();
                for (column, value) in row {
                    if value.is_null() && truth.get(column).is_some_and(|v| !v.is_null()) {
                        withheld += 1;
                        if let Some(quantity) = protects(&output.query, column) {
                            targets.entry(area).or_default().insert(quantity);
                        }
                    }
                }
            }
        }
        assert!(
            withheld > 0,
            "min_count {min_count}: the demo has cells to suppress"
        );

        for (area, quantities) in &targets {
            let observations: Vec<(&str, &str, f64)> = outputs
                .iter()
                .flat_map(|o| o.rows.iter().map(move |r| (o, r)))
                .filter(|(_, r)| area_of(r) == Some(*area) && !r.contains_key("anno"))
                .flat_map(|(o, r)| {
                    r.iter()
                        .filter_map(move |(c, v)| Some((o.query.as_str(), c.as_str(), number(v)?)))
                })
                .filter(|(q, c, _)| {
                    method(
                        q,
                        c,
                        Candidate {
                            r: 1.0,
                            q: 1.0,
                            p: 1.0,
                        },
                        &Known {
                            fragility: Some(100.0),
                            ..Default::default()
                        },
                    )
                    .is_some()
                })
                .collect();
            let ranges = solve(&observations, &known[area], quantities);
            for (quantity, (low, high)) in ranges {
                assert!(
                    high - low >= min_count as f64,
                    "min_count {min_count}: area {area}: the suppressed count {quantity} is determined to [{low}, {high}] by {observations:?}"
                );
            }
        }
        aggregates_use_only_published_cells(&outputs);
    }
}

/// A one-person-household count is bounded by the households of the same area and year.
fn families(output: &Output, row: &Map<String, Value>, raw: &[Map<String, Value>], min_count: u64) {
    let truth = raw
        .iter()
        .find(|r| {
            let year = |r: &Map<String, Value>| r.get("anno").and_then(number);
            area_of(r) == area_of(row) && year(r) == year(row)
        })
        .unwrap_or_else(|| panic!("{}: {row:?} is in no raw row", output.name));
    let value = |r: &Map<String, Value>, c: &str| r.get(c).cloned().unwrap_or(Value::Null);
    if value(row, "famiglie_una_persona").is_null()
        && !value(truth, "famiglie_una_persona").is_null()
    {
        let bound = value(row, "famiglie").as_f64().unwrap_or(f64::INFINITY);
        assert!(
            bound >= min_count as f64,
            "{}: {row:?}: the suppressed one-person households are at most {bound}",
            output.name
        );
    }
}

/// The feasible range of each suppressed quantity of an area, over every (R, Q, P) consistent
/// with every published value of that area.
fn solve(
    observations: &[(&str, &str, f64)],
    known: &Known,
    quantities: &BTreeSet<char>,
) -> BTreeMap<char, (f64, f64)> {
    let given = |column: &str| {
        observations
            .iter()
            .find(|(_, c, _)| *c == column)
            .map(|(_, _, v)| *v)
    };
    let needs =
        |which: fn((bool, bool, bool)) -> bool| observations.iter().any(|(_, c, _)| which(uses(c)));
    // Every suppressed quantity grows with R, Q and P: an unknown that no published value uses
    // takes its extremes only; one that some value uses is searched on its grid.
    let domain = |given: Option<f64>, used: bool, grid: Vec<f64>, extremes: [f64; 2]| match given {
        Some(v) => vec![v],
        None if used => grid,
        None => extremes.to_vec(),
    };
    let shares = || (0..=1000).map(|i| f64::from(i) / 10.0).collect::<Vec<_>>();
    let rs = domain(
        given("residenti"),
        needs(|u| u.0),
        (0..=5000).map(f64::from).collect(),
        [0.0, 5000.0],
    );
    let qs = domain(
        given("quota_over_80_pct"),
        needs(|u| u.1),
        shares(),
        [0.0, 100.0],
    );
    let ps = domain(
        given("over_65_soli_pct"),
        needs(|u| u.2),
        shares(),
        [0.0, 100.0],
    );
    let feasible = |c: Candidate| {
        observations.iter().all(|(q, column, v)| {
            let (value, decimals) = method(q, column, c, known).unwrap();
            let slack = if matches!(*column, "bisogno" | "indice") {
                0.02
            } else {
                0.0
            };
            (value - v).abs() <= 0.5 * 10f64.powi(-decimals) + slack + 1e-6 * v.abs().max(1.0)
        })
    };
    if let Some(truth) = known.truth.filter(|t| t.q.is_finite() && t.p.is_finite()) {
        assert!(
            feasible(truth),
            "the test's methods disagree with the published values: {truth:?} {observations:?}"
        );
    }
    let mut ranges: BTreeMap<char, (f64, f64)> = BTreeMap::new();
    for &r in &rs {
        for &q in &qs {
            for &p in &ps {
                let c = Candidate { r, q, p };
                if !feasible(c) {
                    continue;
                }
                for quantity in quantities {
                    let value = match quantity {
                        'R' => r,
                        'E' => r * q / 100.0,
                        _ => r * q * 2.8 / 100.0 * p / 100.0,
                    };
                    let range = ranges.entry(*quantity).or_insert((value, value));
                    range.0 = range.0.min(value);
                    range.1 = range.1.max(value);
                }
            }
        }
    }
    for quantity in quantities {
        assert!(
            ranges.contains_key(quantity),
            "no (R, Q, P) fits {observations:?}"
        );
    }
    ranges
}

/// The figures of each area that are not computed from its counts of persons, from the raw data.
fn known_figures(
    raw: &BTreeMap<&str, Vec<Map<String, Value>>>,
    sql: &dyn Fn(&str) -> Vec<Map<String, Value>>,
) -> BTreeMap<i64, Known> {
    let minors = sql(
        "WITH area_zone AS (SELECT a.codice_area_statistica, z.nome_zona FROM bologna.aree_statistiche AS a \
         JOIN bologna.zone AS z ON ST_Contains(z.geometry, ST_PointOnSurface(a.geometry))), \
         minors_share AS (SELECT zona, sum(CASE WHEN eta = '00_17' THEN residenti ELSE 0 END) * 1.0 / sum(residenti) AS m \
         FROM bologna.popolazione WHERE anno = 2021 GROUP BY zona) \
         SELECT az.codice_area_statistica, ms.m FROM area_zone AS az JOIN minors_share AS ms ON ms.zona = az.nome_zona",
    );
    let find = |query: &str, area: i64, column: &str| -> Option<f64> {
        raw.get(query)?
            .iter()
            .find(|r| area_of(r) == Some(area))
            .and_then(|r| r.get(column).and_then(number))
    };
    let mut out = BTreeMap::new();
    for row in &minors {
        let area = area_of(row).unwrap();
        let truth = Candidate {
            r: find("residenti_per_area", area, "residenti").unwrap_or(f64::NAN),
            q: find("residenti_per_area", area, "quota_over_80_pct").unwrap_or(f64::NAN),
            p: find("anziani_per_area", area, "over_65_soli_pct").unwrap_or(f64::NAN),
        };
        out.insert(
            area,
            Known {
                minors: number(&cell(row, "m")).unwrap(),
                fragility: find("fragilita_per_area", area, "fragilita_complessiva"),
                hotspots: find("hotspot_wifi_per_area", area, "hotspot").unwrap_or(0.0),
                probe_mbps: find("indice_divario_pilastri", area, "download_sonde_mbps"),
                grid_points: find("copertura_supporto_800m", area, "punti_griglia").unwrap_or(1.0),
                covered_points: find("copertura_supporto_800m", area, "punti_coperti")
                    .unwrap_or(0.0),
                support: find("indice_divario_pilastri", area, "supporto").unwrap_or(0.0),
                logins: find("accessi_spid_cie_per_adulto", area, "accessi_spid_cie")
                    .unwrap_or(0.0),
                truth: Some(truth),
            },
        );
    }
    out
}

/// City and quartiere figures are sums and ratios over areas: published, they must be the same
/// function of the published area cells, so they carry nothing about a withheld one.
fn aggregates_use_only_published_cells(outputs: &[Output]) {
    let json = |query: &str| -> &Vec<Map<String, Value>> {
        &outputs
            .iter()
            .find(|o| o.query == query && o.name.ends_with(&format!("/data/{query}")))
            .unwrap_or_else(|| panic!("no public data of {query}"))
            .rows
    };
    let sum = |rows: &[Map<String, Value>], column: &str| -> f64 {
        rows.iter()
            .filter_map(|r| r.get(column).and_then(number))
            .sum()
    };
    let offline = json("residenti_offline_attesi");
    let coverage = json("copertura_supporto_800m");
    let city = &json("sintesi_citta")[0];
    let with_offline: Vec<Map<String, Value>> = offline
        .iter()
        .filter(|r| !cell(r, "offline_attesi").is_null())
        .cloned()
        .collect();
    let expected = [
        ("residenti", sum(offline, "residenti"), 0.0),
        ("adulti_offline_attesi", sum(offline, "offline_attesi"), 0.0),
        (
            "quota_adulti_offline_pct",
            round_to(
                sum(&with_offline, "offline_attesi") * 100.0 / sum(&with_offline, "adulti"),
                1,
            ),
            0.051,
        ),
        (
            "quota_entro_800m_pct",
            round_to(
                sum(coverage, "residenti_entro_800m") * 100.0 / sum(coverage, "residenti"),
                1,
            ),
            0.051,
        ),
        (
            "hotspot_wifi",
            sum(json("hotspot_wifi_per_area"), "hotspot"),
            0.0,
        ),
    ];
    for (column, value, tolerance) in expected {
        let published = cell(city, column).as_f64().unwrap();
        assert!(
            (published - value).abs() <= tolerance + 1e-9,
            "sintesi_citta.{column} = {published}, not the {value} of the published area cells: it carries withheld ones"
        );
    }
    let quartiere: BTreeMap<i64, String> = outputs
        .iter()
        .find(|o| o.name.ends_with("/layers/aree_statistiche_mappa"))
        .unwrap()
        .rows
        .iter()
        .map(|r| {
            (
                area_of(r).unwrap(),
                cell(r, "quartiere").as_str().unwrap().to_string(),
            )
        })
        .collect();
    let residents: BTreeMap<i64, f64> = offline
        .iter()
        .filter_map(|r| Some((area_of(r)?, number(&cell(r, "residenti"))?)))
        .collect();
    let mut per_quartiere: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for row in json("indice_divario_digitale") {
        let (Some(area), Some(index)) = (area_of(row), number(&cell(row, "indice"))) else {
            continue;
        };
        let r = residents[&area];
        let entry = per_quartiere.entry(quartiere[&area].as_str()).or_default();
        entry.0 += index * r;
        entry.1 += r;
    }
    for row in json("indice_per_quartiere") {
        let (weighted, r) = per_quartiere[cell(row, "quartiere").as_str().unwrap()];
        assert_eq!(cell(row, "residenti").as_f64().unwrap(), r, "{row:?}");
        assert!(
            (cell(row, "indice").as_f64().unwrap() - round_to(weighted / r, 2)).abs() <= 0.0051,
            "{row:?}"
        );
    }
}
