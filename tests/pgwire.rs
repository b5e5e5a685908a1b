//! The PostgreSQL wire protocol with real clients: psql (meta-commands, `\copy ... TO STDOUT`),
//! psycopg 3, pgcli, SQLAlchemy and the ADBC PostgreSQL driver. In each: a refused statement, a
//! wrong key, a partner key, a timed-out query and a cancelled query give the right error, and
//! the audit trail names the protocol.

mod common;
mod pgwire_support;
mod postgres_support;

use std::process::Command;

use pgwire_support::{Output, SLOW, Service, python, python_script, run};
use serde_json::{Value, json};

const WRONG_KEY: &str = "ck_000000000000_000000000000000000000000000000000000000000000000";

fn psql(service: &Service, key: &str, args: &[&str]) -> Output {
    let mut command = Command::new("psql");
    command
        .arg(service.dsn(key))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
        .args(args)
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "30");
    run(&mut command, "")
}

fn script(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/pgwire_support/{name}", common::REPO))
        .unwrap_or_else(|e| panic!("tests/pgwire_support/{name}: {e}"))
}

/// Run a client script, parse its JSON.
fn client(name: &str, args: &[&str]) -> Value {
    let output = python_script(&script(name), args).ok(name);
    let last = output.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}):\n{}\n{}",
            output.stdout, output.stderr
        )
    })
}

fn assert_error(seen: &Value, what: &str, sqlstate: &str, words: &str) {
    let error = &seen[what];
    assert_eq!(error["sqlstate"], sqlstate, "{what}: {error}");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains(words)),
        "{what}: `{words}` not in {error}"
    );
}

/// A refused login: libpq reports it as a connection failure carrying the server's FATAL
/// message (no SQLSTATE reaches the driver).
fn assert_login_error(seen: &Value, what: &str, words: &str) {
    let error = &seen[what];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("FATAL") && m.contains(words)),
        "{what}: `FATAL ... {words}` not in {error}"
    );
}

/// What every PostgreSQL client's "main" run saw (psycopg's, PgJDBC's): a refused statement and
/// the session going on, an unknown table, a timed-out query, a wrong and a partner key at
/// login, and its parameterised statement audited.
fn assert_statement_and_login_errors(service: &Service, seen: &Value) {
    assert_error(seen, "refused", "25006", "`DROP TABLE` is not allowed");
    assert_eq!(seen["after_refusal"], 1);
    assert_error(seen, "unknown_table", "42P01", "nessuna");
    assert_error(seen, "timeout", "57014", "time limit of 3s");
    assert_login_error(seen, "wrong_key", "unknown API key");
    assert_login_error(
        seen,
        "partner_key",
        "a partner key cannot use this endpoint",
    );
    assert_audited(service, "ok", "/* parameters: 2, nessuno */");
}

/// The client saw its query cancelled (57014), and the server stopped running it.
fn assert_cancelled(service: &Service, seen: &Value) {
    assert_error(
        seen,
        "cancelled",
        "57014",
        "canceling statement due to user request",
    );
    service.wait_until("the query to stop", |s| s.running_queries() == 0);
}

/// The audit trail holds an entry of this protocol with this outcome (and target text).
fn assert_audited(service: &Service, outcome: &str, target: &str) {
    let audit = service.audit();
    assert!(
        audit.iter().any(|e| e["action"] == "sql:pgwire"
            && e["outcome"] == outcome
            && e["target"].as_str().is_some_and(|t| t.contains(target))),
        "no sql:pgwire entry `{outcome}` for `{target}` in {audit:#?}"
    );
}

#[test]
fn psql_meta_commands_copy_and_errors() {
    let service = Service::start("3s");
    let key = service.analyst.clone();

    let schemas = psql(&service, &key, &["-c", "\\dn"]).ok("\\dn");
    for schema in ["prova", "queries", "system"] {
        assert!(schemas.stdout.contains(schema), "\\dn:\n{}", schemas.stdout);
    }
    let tables = psql(&service, &key, &["-c", "\\dt prova.*"]).ok("\\dt");
    assert!(tables.stdout.contains("tipi"), "\\dt:\n{}", tables.stdout);
    let table = psql(&service, &key, &["-c", "\\d prova.tipi"]).ok("\\d prova.tipi");
    for expected in [
        "istante",
        "timestamp without time zone",
        "giorno",
        "date",
        "attivo",
        "boolean",
        "bigint",
        "double precision",
        "text",
    ] {
        assert!(
            table.stdout.contains(expected),
            "`{expected}` not in \\d prova.tipi:\n{}",
            table.stdout
        );
    }
    let views = psql(&service, &key, &["-c", "\\dv queries.*"]).ok("\\dv");
    assert!(
        views.stdout.contains("tipi_attivi"),
        "\\dv:\n{}",
        views.stdout
    );
    let functions = psql(&service, &key, &["-c", "\\df"]).ok("\\df");
    assert!(
        functions.stdout.contains("List of functions"),
        "\\df:\n{}",
        functions.stdout
    );

    let copied = psql(
        &service,
        &key,
        &["-c", "\\copy (SELECT id, nome, attivo FROM prova.tipi ORDER BY id) TO STDOUT WITH CSV HEADER"],
    )
    .ok("\\copy to stdout");
    assert_eq!(
        copied.stdout,
        "id,nome,attivo\n1,Bologna,t\n2,Imola,f\n3,Sasso Marconi,t\n"
    );
    let text = psql(&service, &key, &["-c", "\\copy prova.tipi TO STDOUT"]).ok("\\copy table");
    assert_eq!(text.stdout.lines().count(), 3, "{}", text.stdout);
    // COPY's text form: tabs, \N for NULL (every value as PostgreSQL writes it: see
    // copy_text_and_csv_are_postgresql_s_own_bytes).
    assert!(
        text.stdout
            .contains("3\tSasso Marconi\t\\N\tt\t2024-02-29\t2024-02-29 12:30:00"),
        "{}",
        text.stdout
    );

    // A plain query, as psql shows it.
    let rows = psql(
        &service,
        &key,
        &["-A", "-t", "-c", "SELECT nome FROM tipi_attivi ORDER BY id"],
    )
    .ok("select");
    assert_eq!(rows.stdout, "Bologna\nSasso Marconi\n");
    // A correlated subquery in the select list and LIKE with an escape character of the
    // statement's own: the answers HTTP gives, not NULLs or a refusal.
    let correlated = psql(
        &service,
        &key,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT nome, (SELECT count(*) FROM prova.tipi o WHERE o.attivo = t.attivo), \
             nome LIKE 'Imol/a' ESCAPE '/', nome LIKE 'Sasso/_%' ESCAPE '/' \
             FROM prova.tipi t ORDER BY id",
        ],
    )
    .ok("correlated subquery");
    assert_eq!(
        correlated.stdout,
        "Bologna|2|f|f\nImola|1|t|f\nSasso Marconi|2|f|f\n"
    );

    let refused = psql(&service, &key, &["-c", "DROP TABLE prova.tipi"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("ERROR:  25006: `DROP TABLE` is not allowed: SQL here is read-only"),
        "{}",
        refused.stderr
    );
    let copy_to_file = psql(
        &service,
        &key,
        &["-c", "COPY prova.tipi TO '/tmp/tipi.csv'"],
    );
    assert!(
        copy_to_file.stderr.contains("25006"),
        "{}",
        copy_to_file.stderr
    );

    let timed_out = psql(&service, &key, &["-c", SLOW]);
    assert!(
        timed_out
            .stderr
            .contains("ERROR:  57014: the query ran longer than the time limit of 3s"),
        "{}",
        timed_out.stderr
    );
    let wrong = psql(&service, WRONG_KEY, &["-c", "SELECT 1"]);
    assert!(wrong.stderr.contains("unknown API key"), "{}", wrong.stderr);
    let partner = psql(&service, &service.partner, &["-c", "SELECT 1"]);
    assert!(
        partner
            .stderr
            .contains("a partner key cannot use this endpoint; it needs a analyst key"),
        "{}",
        partner.stderr
    );

    assert_audited(&service, "invalid", "DROP TABLE");
    assert_audited(&service, "invalid", "generate_series");
    assert_audited(&service, "denied", "login");
    assert_audited(&service, "ok", "tipi_attivi");
}

/// Grafana's table and column pickers (their queries as Grafana sends them, run by psql).
/// Values whose text PostgreSQL writes its own way: shortest floats with its exponent rule and
/// its names for the non-finite ones, negative zero, timestamps without trailing zeros, text
/// holding the delimiters, quotes, backslashes and line breaks, the empty string, NULLs.
const EVERY_KIND: &str = "SELECT * FROM (VALUES \
    (1, CAST('0.1' AS DOUBLE PRECISION), CAST('0.1' AS REAL), 'Bologna', true, \
     DATE '2024-02-29', TIMESTAMP '2024-02-29 12:30:00'), \
    (2, CAST('1e20' AS DOUBLE PRECISION), CAST('1e7' AS REAL), 'tab' || chr(9) || 'here', false, \
     DATE '0001-01-01', TIMESTAMP '2024-02-29 12:30:00.25'), \
    (3, CAST('1.5e-5' AS DOUBLE PRECISION), CAST('3.4028235e38' AS REAL), \
     'line' || chr(10) || 'break' || chr(13), true, DATE '9999-12-31', \
     TIMESTAMP '1969-12-31 23:59:59.999999'), \
    (4, CAST('-0' AS DOUBLE PRECISION), CAST('123456.7' AS REAL), \
     'back' || chr(92) || 'slash, comma; semi', false, DATE '1970-01-01', \
     TIMESTAMP '2000-01-01 00:00:00.000001'), \
    (5, CAST('12345678901234567' AS DOUBLE PRECISION), CAST('0.0001' AS REAL), \
     'say \"ciao\" | it''s', true, DATE '1969-12-31', TIMESTAMP '1900-03-01 00:00:01'), \
    (6, CAST('1e15' AS DOUBLE PRECISION), CAST('1e-5' AS REAL), '', false, DATE '2000-02-29', \
     TIMESTAMP '2038-01-19 03:14:08'), \
    (7, CAST('NaN' AS DOUBLE PRECISION), CAST('Infinity' AS REAL), 'nil', true, \
     DATE '2024-12-07', TIMESTAMP '2024-12-07 00:00:00'), \
    (8, CAST('-Infinity' AS DOUBLE PRECISION), CAST('-2.5' AS REAL), chr(92) || 'N', false, \
     DATE '2024-12-07', TIMESTAMP '2024-12-07 23:59:59.5'), \
    (9223372036854775807, CAST('123.456' AS DOUBLE PRECISION), CAST('0.001' AS REAL), \
     chr(92) || '.', true, DATE '2024-12-07', TIMESTAMP '2024-12-07 23:59:59.5'), \
    (10, NULL, NULL, NULL, NULL, NULL, NULL) \
    ) AS t(n, d, r, s, b, g, ts) ORDER BY n";

/// COPY's text and CSV forms, with their defaults and with other delimiters, NULL markers and
/// quotes, give the bytes the real PostgreSQL gives for the same values.
#[test]
fn copy_text_and_csv_are_postgresql_s_own_bytes() {
    let service = Service::start("10s");
    let key = service.analyst.clone();
    let same = |args: &[&str], what: &str| {
        let ours = psql(&service, &key, args).ok(what);
        let mut theirs = Command::new("psql");
        theirs
            .arg(postgres_support::url())
            .args(["-X", "-v", "ON_ERROR_STOP=1"])
            .args(args);
        let theirs = run(&mut theirs, "").ok(&format!("PostgreSQL's own {what}"));
        assert!(!theirs.stdout.is_empty(), "{what}: no output");
        assert_eq!(
            ours.stdout, theirs.stdout,
            "{what}: cruscotto (left) and PostgreSQL (right) differ"
        );
    };
    for options in [
        "",
        "WITH (DELIMITER '|', NULL 'nil')",
        "WITH CSV HEADER",
        "WITH (FORMAT csv, DELIMITER ';', QUOTE '''', NULL 'nil')",
    ] {
        let command = format!("\\copy ({EVERY_KIND}) TO STDOUT {options}");
        same(&["-c", &command], &command);
    }
    // A one-column row reading `\.` would end CSV data: PostgreSQL quotes it.
    same(
        &[
            "-c",
            "\\copy (SELECT chr(92) || '.' AS s) TO STDOUT WITH CSV",
        ],
        "one column of `\\.`",
    );
    // A plain query's rows (DataRows in text), as psql prints them unaligned.
    same(&["-A", "-t", "-F", "|", "-c", EVERY_KIND], "SELECT");
}

#[test]
fn grafana_table_and_column_pickers() {
    let service = Service::start("3s");
    let key = service.analyst.clone();
    let file = |name: &str| format!("{}/tests/pgwire_support/{name}", common::REPO);
    let tables = psql(
        &service,
        &key,
        &["-A", "-t", "-f", &file("grafana_tables.sql")],
    )
    .ok("grafana's tables");
    let tables: Vec<&str> = tables.stdout.lines().collect();
    // The search path's schema (queries) first and unqualified, then the others qualified.
    assert_eq!(tables.first(), Some(&"tipi_attivi"), "{tables:?}");
    assert!(tables.contains(&"prova.tipi"), "{tables:?}");
    assert!(
        !tables.iter().any(|t| t.starts_with("pg_catalog.")),
        "{tables:?}"
    );
    for (table, columns) in [
        ("prova.tipi", "id,nome,quota,attivo,giorno,istante,importo"),
        ("tipi_attivi", "id,nome"),
    ] {
        let seen = psql(
            &service,
            &key,
            &[
                "-A",
                "-t",
                "-v",
                &format!("table={table}"),
                "-f",
                &file("grafana_columns.sql"),
            ],
        )
        .ok("grafana's columns");
        let names: Vec<&str> = seen
            .stdout
            .lines()
            .filter_map(|l| l.split('|').next())
            .collect();
        assert_eq!(names.join(","), columns, "{table}: {}", seen.stdout);
        // The types the picker shows are PostgreSQL's names, as information_schema gives them.
        for expected in ["id|bigint", "nome|text"] {
            assert!(
                seen.stdout.lines().any(|l| l == expected),
                "{table}: no `{expected}` in\n{}",
                seen.stdout
            );
        }
        if table == "prova.tipi" {
            for expected in [
                "quota|double precision",
                "attivo|boolean",
                "giorno|date",
                "istante|timestamp without time zone",
            ] {
                assert!(
                    seen.stdout.lines().any(|l| l == expected),
                    "no `{expected}` in\n{}",
                    seen.stdout
                );
            }
        }
    }
}

#[test]
fn psql_cancel_request_stops_the_query() {
    let service = Service::start("10m");
    let child = Command::new("psql")
        .arg(service.dsn(&service.analyst))
        .args(["-X", "-v", "VERBOSITY=verbose", "-c", SLOW])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql (Debian's postgresql-client) runs");
    service.wait_until("the query to run", |s| s.running_queries() == 1);
    // Ctrl-C: psql sends a cancel request on a new connection.
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    service.wait_until("the query to stop", |s| s.running_queries() == 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("57014: canceling statement due to user request"),
        "{stderr}"
    );
    assert_audited(&service, "cancelled", "generate_series");
}

#[test]
fn psycopg_parameters_server_side_cursor_types_and_errors() {
    let service = Service::start("3s");
    let dsn = service.dsn(&service.analyst);
    let seen = client(
        "psycopg_client.py",
        &[
            &dsn,
            &service.dsn(WRONG_KEY),
            &service.dsn(&service.partner),
            &service.http,
            "main",
            SLOW,
        ],
    );
    assert_eq!(seen["params"], json!([[2, "Imola"], [3, "Sasso Marconi"]]));
    for format in ["text", "binary"] {
        assert_eq!(
            seen[format],
            json!({"id": 1, "nome": "Bologna", "quota": 0.25, "attivo": true,
                   "giorno": "2024-03-01", "istante": "2024-03-01T10:00:00", "importo": 392203.5,
                   "python_types": ["int", "str", "float", "bool", "date", "datetime", "float"]}),
            "{format}"
        );
    }
    assert_eq!(seen["round_trip_equal"], true, "{}", seen["round_trip"]);
    assert_eq!(
        seen["numeric_array_interval"],
        json!(["12.50", [1, 2, 3], "1 day, 0:00:00"])
    );
    assert_eq!(seen["geometry_bytes"], 21, "a WKB point is 21 bytes");
    assert_eq!(seen["cursor_description"], json!(["id"]));
    assert_eq!(seen["cursor_first"], json!([[1], [2]]));
    assert_eq!(seen["cursor_rest"], json!([[3]]));
    assert_statement_and_login_errors(&service, &seen);
}

#[test]
fn psycopg_sqlalchemy_and_adbc_cancel() {
    let service = Service::start("10m");
    let dsn = service.dsn(&service.analyst);
    let seen = client(
        "psycopg_client.py",
        &[&dsn, "", "", &service.http, "cancel", SLOW],
    );
    assert_cancelled(&service, &seen);
    assert_eq!(seen["after_cancel"], 2);

    for (script, url) in [
        (
            "sqlalchemy_client.py",
            sqlalchemy_url(&service, &service.analyst),
        ),
        ("adbc_postgresql_client.py", service.uri(&service.analyst)),
    ] {
        let seen = client(script, &[&url, "", "", &service.http, SLOW, "cancel"]);
        assert_cancelled(&service, &seen);
    }
}

fn sqlalchemy_url(service: &Service, key: &str) -> String {
    format!(
        "postgresql+psycopg://analyst:{key}@127.0.0.1:{}/city?sslmode=disable",
        service.pgwire_port
    )
}

#[test]
fn sqlalchemy_reflection_queries_and_errors() {
    let service = Service::start("3s");
    let seen = client(
        "sqlalchemy_client.py",
        &[
            &sqlalchemy_url(&service, &service.analyst),
            &sqlalchemy_url(&service, WRONG_KEY),
            &sqlalchemy_url(&service, &service.partner),
            &service.http,
            SLOW,
            "main",
        ],
    );
    let schemas = seen["schemas"].as_array().unwrap();
    assert!(
        schemas.contains(&json!("prova")) && schemas.contains(&json!("queries")),
        "{seen}"
    );
    assert_eq!(seen["tables"], json!(["tipi"]));
    assert_eq!(seen["views"], json!(["tipi_attivi"]));
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "id", "nome", "quota", "attivo", "giorno", "istante", "importo"
        ]
    );
    let types: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "BIGINT",
            "TEXT",
            "DOUBLE PRECISION",
            "BOOLEAN",
            "DATE",
            "TIMESTAMP",
            "DOUBLE PRECISION"
        ]
    );
    assert_eq!(seen["select"], json!([[2, "Imola"], [3, "Sasso Marconi"]]));
    assert_eq!(
        seen["pandas"],
        json!({"nome": ["Bologna", "Imola", "Sasso Marconi"], "importo": [392203.5, 69936.25, 14729.0]})
    );
    assert_error(&seen, "refused", "25006", "`DELETE FROM` is not allowed");
    assert_error(&seen, "timeout", "57014", "time limit of 3s");
    assert_login_error(&seen, "wrong_key", "unknown API key");
    assert_login_error(
        &seen,
        "partner_key",
        "a partner key cannot use this endpoint",
    );
}

#[test]
fn adbc_postgresql_driver_reads_arrow() {
    let service = Service::start("3s");
    let seen = client(
        "adbc_postgresql_client.py",
        &[
            &service.uri(&service.analyst),
            &service.uri(WRONG_KEY),
            &service.uri(&service.partner),
            &service.http,
            SLOW,
            "main",
        ],
    );
    assert_eq!(seen["schema"], pgwire_support::types_arrow_schema());
    assert_eq!(seen["nome"], json!(["Bologna", "Imola", "Sasso Marconi"]));
    assert_eq!(seen["param"], json!([["Imola"]]));
    assert_eq!(seen["pandas"], json!([392203.5, 69936.25, 14729.0]));
    for (what, words) in [
        ("refused", "`CREATE TABLE` is not allowed"),
        ("timeout", "time limit of 3s"),
        ("wrong_key", "unknown API key"),
        ("partner_key", "a partner key cannot use this endpoint"),
    ] {
        assert!(
            seen[what]["message"]
                .as_str()
                .is_some_and(|m| m.contains(words)),
            "{what}: `{words}` not in {}",
            seen[what]
        );
    }
}

fn pgcli(service: &Service, key: &str, args: &[&str]) -> Command {
    let config = service.config.path().join("pgcli");
    std::fs::create_dir_all(&config).unwrap();
    let mut command = Command::new(python().parent().unwrap().join("pgcli"));
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &service.pgwire_port.to_string(),
            "-u",
            "analyst",
            "-d",
            "city",
        ])
        .args(["-w", "--less-chatty", "-y", "--single-connection"])
        .args(args)
        .env("PGPASSWORD", key)
        .env("PGSSLMODE", "disable")
        .env("XDG_CONFIG_HOME", &config)
        .env("HOME", &config);
    command
}

#[test]
fn pgcli_scripted() {
    let service = Service::start("3s");
    let key = service.analyst.clone();
    let rows = run(
        &mut pgcli(
            &service,
            &key,
            &["-c", "SELECT nome FROM prova.tipi ORDER BY id"],
        ),
        "",
    )
    .ok("pgcli");
    for name in ["Bologna", "Imola", "Sasso Marconi"] {
        assert!(rows.stdout.contains(name), "{}", rows.stdout);
    }
    let tables = run(&mut pgcli(&service, &key, &["-c", "\\dt prova.*"]), "").ok("pgcli \\dt");
    assert!(tables.stdout.contains("tipi"), "{}", tables.stdout);
    let refused = run(
        &mut pgcli(&service, &key, &["-c", "DROP TABLE prova.tipi"]),
        "",
    );
    // pgcli prints a statement's error where it prints results.
    let said = |o: &Output| format!("{}{}", o.stdout, o.stderr);
    assert!(
        said(&refused).contains("`DROP TABLE` is not allowed"),
        "{}",
        said(&refused)
    );
    let timed_out = run(&mut pgcli(&service, &key, &["-c", SLOW]), "");
    assert!(
        said(&timed_out).contains("time limit of 3s"),
        "{}",
        said(&timed_out)
    );
    let wrong = run(&mut pgcli(&service, WRONG_KEY, &["-c", "SELECT 1"]), "");
    assert!(
        format!("{}{}", wrong.stdout, wrong.stderr).contains("unknown API key"),
        "{}\n{}",
        wrong.stdout,
        wrong.stderr
    );
    let partner = run(
        &mut pgcli(&service, &service.partner, &["-c", "SELECT 1"]),
        "",
    );
    assert!(
        format!("{}{}", partner.stdout, partner.stderr)
            .contains("a partner key cannot use this endpoint"),
        "{}\n{}",
        partner.stdout,
        partner.stderr
    );
}

#[test]
fn pgcli_cancel() {
    let service = Service::start("10m");
    let child = pgcli(&service, &service.analyst, &["-c", SLOW])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgcli runs");
    service.wait_until("the query to run", |s| s.running_queries() == 1);
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    service.wait_until("the query to stop", |s| s.running_queries() == 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cancel"), "{stderr}");
    assert_audited(&service, "cancelled", "generate_series");
}

#[test]
fn tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    pgwire_support::certificates(dir.path());
    let extra = format!(
        "[protocols.pgwire.tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\n",
        dir.path().display()
    );
    let service = Service::start_with("3s", &extra);
    let dsn = format!(
        "host=localhost port={} dbname=city user=analyst password={} sslmode=verify-full sslrootcert={}/ca.pem",
        service.pgwire_port,
        service.analyst,
        dir.path().display()
    );
    let mut command = Command::new("psql");
    command.arg(&dsn).args([
        "-X",
        "-A",
        "-t",
        "-c",
        "SELECT ssl FROM (SELECT true AS ssl) t",
    ]);
    let secure = run(&mut command, "").ok("psql over TLS");
    assert_eq!(secure.stdout, "t\n");
    // With TLS configured, a key is never sent in clear text.
    let plain = psql(&service, &service.analyst, &["-c", "SELECT 1"]);
    assert!(plain.stderr.contains("TLS"), "{}", plain.stderr);
}

/// Debian's PgJDBC (the driver of DBeaver, Metabase and the other JDBC tools), by its jar.
const PGJDBC: &str = "/usr/share/java/postgresql.jar";

/// Run tests/pgwire_support/JdbcClient.java (compiled once per test binary) and parse its JSON.
fn jdbc(service: &Service, args: &[&str]) -> Value {
    static COMPILED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let classes = COMPILED.get_or_init(|| {
        let classes = std::env::temp_dir().join(format!("cruscotto-jdbc-{}", std::process::id()));
        std::fs::create_dir_all(&classes).unwrap();
        let source = format!("{}/tests/pgwire_support/JdbcClient.java", common::REPO);
        run(
            Command::new("javac").arg("-d").arg(&classes).arg(&source),
            "",
        )
        .ok("javac JdbcClient.java (Debian's openjdk-17-jdk-headless)");
        classes
    });
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/city?sslmode=disable&connectTimeout=30",
        service.pgwire_port
    );
    let output = run(
        Command::new("java")
            .arg("-cp")
            .arg(format!("{PGJDBC}:{}", classes.display()))
            .arg("JdbcClient")
            .arg(&url)
            .args(args),
        "",
    )
    .ok("JdbcClient");
    let last = output.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "JdbcClient printed no JSON ({e}):\n{}\n{}",
            output.stdout, output.stderr
        )
    })
}

#[test]
fn pgjdbc_metadata_prepared_statements_types_and_errors() {
    let service = Service::start("3s");
    let seen = jdbc(
        &service,
        &[
            &service.analyst,
            WRONG_KEY,
            &service.partner,
            &service.http,
            SLOW,
            "main",
        ],
    );
    assert!(
        seen["product"]
            .as_str()
            .is_some_and(|p| p.starts_with("PostgreSQL 16")),
        "{seen}"
    );
    let schemas = seen["schemas"].as_array().unwrap();
    for schema in ["prova", "queries"] {
        assert!(schemas.contains(&json!(schema)), "{seen}");
    }
    assert_eq!(seen["tables"], json!(["tipi:TABLE"]));
    assert_eq!(seen["views"], json!(["tipi_attivi:VIEW"]));
    assert_eq!(
        seen["columns"],
        json!([
            "id:int8",
            "nome:text",
            "quota:float8",
            "attivo:bool",
            "giorno:date",
            "istante:timestamp",
            "importo:float8"
        ])
    );
    assert_eq!(seen["primary_keys"], json!([]));
    // Every execution, the driver's unnamed ones and its server-prepared ones, gives the rows.
    assert_eq!(seen["prepared"], json!(vec!["2:Imola,3:Sasso Marconi"; 7]));
    assert_eq!(
        seen["types"],
        json!([
            "1",
            "Bologna",
            "0.25",
            "true",
            "2024-03-01",
            "2024-03-01 10:00:00.0",
            "392203.5",
            "timestamp"
        ])
    );
    assert_statement_and_login_errors(&service, &seen);
}

#[test]
fn pgjdbc_cancel() {
    let service = Service::start("10m");
    let seen = jdbc(
        &service,
        &[&service.analyst, "", "", &service.http, SLOW, "cancel"],
    );
    assert_cancelled(&service, &seen);
    assert_eq!(seen["after_cancel"], 2);
    assert_audited(&service, "cancelled", "generate_series");
}
