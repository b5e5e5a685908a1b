//! `cruscotto check` and `cruscotto query`, run as a user would.

mod common;

use common::ConfigDir;

#[test]
fn check_accepts_the_shipped_configuration() {
    let (code, stdout, stderr) = ConfigDir::demo().run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(": ok (5 connectors, 22 tables, 28 saved queries"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_problem_with_file_and_line_or_key() {
    let config = ConfigDir::empty();
    config.write("data/a.csv", "x\n1\n");
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[query]\ntimeout = \"5s\"\nmax_rows = 10\n",
    );
    config.write(
        "connectors/typo.toml",
        "kind = \"file\"\n\n[[table]]\nname = \"a\"\npath = \"data/a.csv\"\ndelimitr = \";\"\n",
    );
    config.write("connectors/strano.toml", "kind = \"ftp\"\n");
    config.write(
        "connectors/segreto.toml",
        "kind = \"file\"\n[[table]]\nname = \"a\"\npath = \"${CRUSCOTTO_TEST_UNSET_VAR}\"\n",
    );
    config.write("connectors/filtro.toml", "kind = \"file\"\n[[table]]\nname = \"Bad-Name\"\npath = \"data/a.csv\"\nfilter = \"x >\"\n");
    config.write(
        "queries/scrive.sql",
        "-- title: Scrive\n-- colour: red\nDROP TABLE a\n",
    );
    config.write(
        "dashboards/panoramica.toml",
        "title = \"Panoramica\"\n[[panels]]\nquery = \"non_esiste\"\n",
    );

    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    let expected = [
        "connectors/typo.toml: line 6, column 1: unknown field `delimitr`",
        "connectors/strano.toml: kind: unknown connector kind `ftp`",
        "connectors/segreto.toml: line 4: environment variable `CRUSCOTTO_TEST_UNSET_VAR` is not set",
        "connectors/filtro.toml: table[0].name: `Bad-Name` is not a valid table name",
        "connectors/filtro.toml: table[0].filter: not a SQL predicate",
        "queries/scrive.sql: line 2: unknown metadata key `colour`",
        "queries/scrive.sql: line 3: `DROP TABLE` is not allowed",
        "dashboards/panoramica.toml: panels[0].query: `non_esiste` is not a saved query",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(stderr.contains("8 error(s) found"), "{stderr}");

    // An unknown key in cruscotto.toml itself.
    config.write("cruscotto.toml", "data_dir = \"var\"\nport = 8080\n");
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cruscotto.toml: line 2, column 1: unknown field `port`"),
        "{stderr}"
    );
}

/// What used to pass `check` and break at run time: a saved query selecting a missing column, a
/// view on a table no connector declares, a dashboard layer naming columns its query does not
/// return, a function over a column of the wrong type. Each is reported with its file and line,
/// from the tables' schemas alone (the check stores nothing: no data_dir is created).
#[test]
fn check_plans_every_saved_query_and_dashboard_against_the_tables_schemas() {
    let config = ConfigDir::empty();
    config.write(
        "data/aree.geojson",
        r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"codice":"A1","nome":"Centro"},"geometry":{"type":"Polygon","coordinates":[[[11.3,44.5],[11.4,44.5],[11.4,44.6],[11.3,44.5]]]}}]}"#,
    );
    config.write("data/censimento.csv", "codice;residenti;nota\nA1;1200;x\n");
    // Stations whose location does not parse: rejected on load, and `check` says so beforehand.
    config.write(
        "data/stazioni.csv",
        "nome;posizione\nGiardini;(44.4823, 11.3548)\nPorta;44.49 N 11.33 E\n",
    );
    config.write(
        "connectors/aria.toml",
        "kind = \"file\"\n[[table]]\nname = \"stazioni\"\npath = \"data/stazioni.csv\"\ndelimiter = \";\"\npoint = { lat_lon = \"posizione\" }\n",
    );
    config.write(
        "connectors/citta.toml",
        "kind = \"file\"\n[[table]]\nname = \"aree\"\npath = \"data/aree.geojson\"\n\n[[table]]\nname = \"censimento\"\npath = \"data/censimento.csv\"\ndelimiter = \";\"\n",
    );
    // An HTTP table is checked from its declared `schema`, with no request sent (port 9 is
    // closed); one without a declared schema leaves its readers "not checked".
    config.write(
        "connectors/portale.toml",
        "kind = \"http\"\n[[table]]\nname = \"connessioni\"\nurl = \"http://127.0.0.1:9/records\"\njson_pointer = \"/results\"\nschema = { data = \"date\", connessioni = \"int\" }\n\n[[table]]\nname = \"hotspot\"\nurl = \"http://127.0.0.1:9/hotspot\"\n",
    );
    config.write(
        "queries/wifi.sql",
        "-- title: Wi-Fi\nSELECT data,\n  conessioni\nFROM portale.connessioni\n",
    );
    config.write(
        "queries/hotspot_elenco.sql",
        "-- title: Hotspot\nSELECT * FROM portale.hotspot\n",
    );
    config.write(
        "queries/aree_mappa.sql",
        "-- title: Aree\nSELECT codice, nome, geometry\nFROM citta.aree\n",
    );
    config.write(
        "queries/residenti.sql",
        "-- title: Residenti\nSELECT\n  c.codice,\n  c.abitanti\nFROM citta.censimento AS c\n",
    );
    config.write(
        "queries/vecchia_vista.sql",
        "-- title: Vecchia\nSELECT *\n-- a comment naming citta.sezioni\nFROM citta.sezioni\n",
    );
    config.write(
        "queries/somma_note.sql",
        "-- title: Somma\nSELECT codice,\n  sum(nota) AS totale\nFROM citta.censimento\nGROUP BY codice\n",
    );
    config.write(
        "dashboards/mappa.toml",
        "title = \"Mappa\"\n\n[map.areas]\nquery = \"aree_mappa\"\nid = \"codice\"\nname = \"denominazione\"\n\n[[map.indicators]]\nquery = \"aree_mappa\"\nvalue = \"superficie\"\n",
    );

    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    let expected = [
        "queries/residenti.sql: line 4: ",
        "queries/vecchia_vista.sql: line 4: ",
        "queries/somma_note.sql: line 3: ",
        "dashboards/mappa.toml: line 6 (map.areas.name): `denominazione` is not a column of the saved query `aree_mappa`; its columns are: codice, nome, geometry",
        "dashboards/mappa.toml: line 10 (map.indicators[0].value): `superficie` is not a column",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(stderr.contains("abitanti"), "{stderr}");
    assert!(stderr.contains("citta.sezioni"), "{stderr}");
    assert!(
        stderr.contains("sum(nota: Utf8)") || stderr.contains("sum(Utf8)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("queries/wifi.sql: line 3: Schema error: No field named conessioni"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("queries/hotspot_elenco.sql: line 2: not checked: it reads `portale.hotspot`, whose schema is not known: it declares no `schema`"),
        "{stderr}"
    );
    assert!(stderr.contains("6 error(s) found"), "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("connectors/aria.toml: table `stazioni`: 1 record(s) of ")
            && stderr.contains("would be rejected on load; the first: no point: `posizione`: \"44.49 N 11.33 E\" is not a point"),
        "{stderr}"
    );
    assert!(!config.path().join("var").exists(), "check stored data");

    // Fixed, the same configuration passes.
    config.write(
        "queries/residenti.sql",
        "-- title: Residenti\nSELECT codice, residenti FROM citta.censimento\n",
    );
    std::fs::remove_file(config.path().join("queries/vecchia_vista.sql")).unwrap();
    std::fs::remove_file(config.path().join("queries/somma_note.sql")).unwrap();
    std::fs::remove_file(config.path().join("queries/wifi.sql")).unwrap();
    config.write(
        "dashboards/mappa.toml",
        "title = \"Mappa\"\n\n[map.areas]\nquery = \"aree_mappa\"\nid = \"codice\"\nname = \"nome\"\n\n[[map.indicators]]\nquery = \"residenti\"\nvalue = \"residenti\"\n",
    );
    let (code, stdout, stderr) = config.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok (3 connectors, 5 tables, 3 saved queries, 1 dashboards)"),
        "{stdout}"
    );
}

#[test]
fn check_reports_what_a_placement_scenario_names_and_is_not_there() {
    let config = ConfigDir::demo();
    let shipped =
        std::fs::read_to_string(config.path().join("plans/punti_facilitazione.toml")).unwrap();
    let wrong = shipped
        .replace("id = \"codice_area_statistica\"", "id = \"codice_area\"")
        .replace(
            "query = \"mappa_risorse_sociali\"",
            "query = \"mappa_risorse\"",
        )
        .replace(
            "dashboard = \"divario_digitale\"",
            "dashboard = \"divario\"",
        )
        .replace("column = \"offline_attesi\"", "column = \"offline\"");
    assert_ne!(wrong, shipped);
    config.write("plans/sbagliato.toml", &wrong);
    config.write("plans/rotto.toml", "title = \"Rotto\"\nk = \"venti\"\n");
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "plans/sbagliato.toml: line 17 (demand.id): `codice_area` is not a column of the saved query `domanda_per_area`",
        "(demand.weights): `offline` is not a column of the saved query `domanda_per_area`",
        "plans/sbagliato.toml: line 51 (query): `mappa_risorse` is neither a saved query nor a table",
        "(dashboard): `divario` is not a dashboard of dashboards/",
        "plans/rotto.toml: ",
        "5 error(s) found",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("punti_facilitazione.toml"), "{stderr}");
}

#[test]
fn query_prints_a_table_from_the_terminal() {
    let config = ConfigDir::demo();
    let (code, stdout, stderr) = config.run(&[
        "query",
        "SELECT count(*) AS aree, sum(residenti) AS residenti FROM queries.residenti_per_area",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("| aree | residenti |"), "{stdout}");
    assert!(stdout.contains("| 90   | 392162    |"), "{stdout}");

    let (code, stdout, _) = config.run(&[
        "query",
        "--format",
        "csv",
        "SELECT codice_area_statistica FROM bologna.aree_statistiche ORDER BY 1 LIMIT 2",
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "codice_area_statistica\n1\n2\n");

    let (code, _, stderr) = config.run(&["query", "DROP TABLE bologna.zone"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`DROP TABLE` is not allowed"), "{stderr}");
}
