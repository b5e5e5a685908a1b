//! What may leave the registry, judged on what a query does rather than on its names: a table whose
//! output carries an identifying column, however transformed or renamed, or whose rows are
//! person-level, fails to load with an error naming why; aggregates load. Against a PostgreSQL
//! cluster the test starts itself.

mod common;
mod postgres_support;

use common::{ConfigDir, Server};
use postgres_support::{Cluster, Pg};

/// 2,000 residents over 10 areas, with the columns a real registry has.
fn registry(pg: &Pg) {
    pg.execute(
        "CREATE SCHEMA anagrafe;
         CREATE TABLE anagrafe.residenti AS
         SELECT i AS id,
                'RSSMRA' || lpad(i::text, 10, '0') AS codice_fiscale,
                'Cognome' || i AS cognome,
                'Nome' || i AS nome,
                date '1940-01-01' + (i * 13) AS data_nascita,
                1940 + (i * 13) / 365 AS anno_nascita,
                CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END AS sesso,
                i % 10 AS area_statistica
           FROM generate_series(1, 2000) AS i;
         CREATE VIEW anagrafe.persone AS SELECT id, sesso, area_statistica FROM anagrafe.residenti;",
    );
}

fn toml_string(text: &str) -> String {
    format!("\"\"\"\n{text}\"\"\"")
}

/// Tables that must fail because an output column is identifying, and the column each names.
fn identifying_tables() -> Vec<(String, String, String)> {
    let mut tables = vec![
        // The three of the issue.
        (
            "per_codice_fiscale".to_string(),
            "SELECT codice_fiscale, count(*) AS n FROM anagrafe.residenti GROUP BY codice_fiscale"
                .to_string(),
            "column `codice_fiscale` is computed from the identifying column `codice_fiscale` of anagrafe.residenti".to_string(),
        ),
        (
            "chiavi".into(),
            "SELECT lower(codice_fiscale) AS chiave, area_statistica FROM anagrafe.residenti".into(),
            "column `chiave` is computed from the identifying column `codice_fiscale` of anagrafe.residenti".into(),
        ),
        (
            "tutto".into(),
            "SELECT * FROM anagrafe.residenti".into(),
            "column `cognome` is computed from the identifying column `cognome` of anagrafe.residenti".into(),
        ),
    ];
    // An aggregate that returns one person's value is that person's data.
    tables.push((
        "primo_per_area".into(),
        "SELECT area_statistica, min(cognome) AS primo FROM anagrafe.residenti GROUP BY 1".into(),
        "column `primo` is computed from the identifying column `cognome` of anagrafe.residenti"
            .into(),
    ));
    // The same data under every wrapping and shape: the name never decides.
    let wrappings = [
        ("upper", "upper({c}::text)"),
        ("cast", "{c}::varchar"),
        ("concat", "{c} || '-' || area_statistica"),
        ("hash", "md5({c}::text)"),
        ("coalesce", "coalesce({c}::text, '?')"),
        ("month", "date_trunc('month', {c}::date)"),
    ];
    for column in ["codice_fiscale", "nome", "data_nascita"] {
        for (i, (label, wrapping)) in wrappings.iter().enumerate() {
            let expr = wrapping.replace("{c}", column);
            let shape = i % 3;
            let query = match shape {
                0 => format!(
                    "SELECT {expr} AS valore, count(*) AS n FROM anagrafe.residenti GROUP BY 1"
                ),
                1 => format!(
                    "SELECT s.valore FROM (SELECT {expr} AS valore, count(*) AS n FROM anagrafe.residenti GROUP BY 1) AS s"
                ),
                _ => format!(
                    "WITH w AS (SELECT {expr} AS valore, count(*) AS n FROM anagrafe.residenti GROUP BY 1) SELECT valore AS etichetta, n FROM w"
                ),
            };
            let output = if shape == 2 { "etichetta" } else { "valore" };
            tables.push((
                format!("v_{column}_{label}"),
                query,
                format!("column `{output}` is computed from the identifying column `{column}` of anagrafe.residenti"),
            ));
        }
    }
    tables
}

#[test]
fn identifying_outputs_and_person_level_rows_fail_to_load() {
    let cluster = Cluster::start_new();
    let pg = Pg::connect_to(&cluster.url());
    registry(&pg);

    let identifying = identifying_tables();
    let mut connector = format!(
        "kind = \"postgres\"\nurl = \"{}\"\nperson_tables = [\"anagrafe.residenti\"]\nmax_rows_per_person = 0.05\n",
        cluster.url()
    );
    for (name, query, _) in &identifying {
        connector.push_str(&format!(
            "[[table]]\nname = \"{name}\"\nquery = {}\n",
            toml_string(query)
        ));
    }
    let person_level = [
        (
            "persone",
            "SELECT id, anno_nascita, sesso FROM anagrafe.residenti",
        ),
        // Through a view: the plan shows the registry behind it.
        ("persone_vista", "SELECT * FROM anagrafe.persone"),
        (
            "persone_per_id",
            "SELECT id, count(*) AS n FROM anagrafe.residenti GROUP BY id",
        ),
    ];
    let aggregates = [
        (
            "per_area",
            "SELECT area_statistica, sesso, count(*) AS residenti FROM anagrafe.residenti GROUP BY 1, 2",
        ),
        (
            "per_anno",
            "SELECT extract(year FROM data_nascita) AS anno, count(DISTINCT codice_fiscale) AS residenti FROM anagrafe.residenti GROUP BY 1",
        ),
        // A name alone decides nothing: this `nome` is an area's label.
        (
            "etichette",
            "SELECT 'area ' || area_statistica AS nome, count(*) AS n FROM anagrafe.residenti GROUP BY 1",
        ),
    ];
    for (name, query) in person_level.iter().chain(&aggregates) {
        connector.push_str(&format!(
            "[[table]]\nname = \"{name}\"\nquery = {}\n",
            toml_string(query)
        ));
    }
    let config = ConfigDir::empty();
    config.write("connectors/registro.toml", &connector);

    // `cruscotto check` finds every identifying output before anything runs.
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    for (i, (_, _, expected)) in identifying.iter().enumerate() {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("connectors/registro.toml: table[{i}].query: ")))
            .unwrap_or_else(|| panic!("no error for table[{i}] in:\n{stderr}"));
        assert!(
            line.contains(expected),
            "table[{i}]: `{expected}` not in: {line}"
        );
        assert!(
            line.contains("identifying data may not leave the registry"),
            "{line}"
        );
    }
    assert!(
        stderr.contains(&format!("{} error(s) found", identifying.len())),
        "{stderr}"
    );

    let server = Server::start_ready(&config);
    for (name, _, expected) in &identifying {
        let status = server.table_status(&format!("registro.{name}"));
        assert_eq!(status["state"], "failed", "{name}: {status}");
        let error = status["last_error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{name}: `{expected}` not in: {error}"
        );
    }
    for (name, _) in person_level {
        let status = server.table_status(&format!("registro.{name}"));
        assert_eq!(status["state"], "failed", "{name}: {status}");
        let error = status["last_error"].as_str().unwrap();
        assert!(
            error.contains(
                "returns more than 100 rows while reading 2000 persons from anagrafe.residenti"
            ) && error.contains("its rows are person-level"),
            "{name}: {error}"
        );
    }
    for (name, _) in aggregates {
        let status = server.table_status(&format!("registro.{name}"));
        assert_eq!(status["state"], "fresh", "{name}: {status}");
    }
    let residents = server.rows("SELECT sum(residenti) AS n FROM registro.per_area");
    assert_eq!(residents[0]["n"], 2000);
    // Nothing of a failed table is served.
    let served = server.sql("SELECT * FROM registro.persone");
    assert_ne!(served.status(), 200);
    server.stop();
}
