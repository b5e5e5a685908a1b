//! PostgreSQL going away and coming back, access revoked and restored, a query with a syntax
//! error: the last good snapshot is served and flagged stale, the error is in /status (without the
//! password), and the connector recovers by itself, also when the database was down at start.
//! `cruscotto check` finds what it can.

mod common;
mod postgres_support;

use common::{ConfigDir, Server};
use postgres_support::{Cluster, Pg, Relay, port, unique, url};

fn rows(server: &Server, table: &str) -> i64 {
    server.rows(&format!("SELECT count(*) AS n FROM {table}"))[0]["n"]
        .as_i64()
        .unwrap()
}

fn error_of(server: &Server, table: &str) -> String {
    server.table_status(table)["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn postgres_down_then_back_serves_the_stale_snapshot_and_recovers() {
    let pg = Pg::connect();
    let schema = unique("t_down");
    pg.execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.residenti AS SELECT i AS area, 10 * i AS n FROM generate_series(1, 3) AS i"
    ));
    let relay = Relay::start();
    let config = ConfigDir::empty();
    // Trust authentication never asks for the password: it is there to prove it never shows.
    config.write(
        "connectors/registro.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{}\"\nrefresh = \"1s\"\nconnect_timeout = \"2s\"\n\
             [[table]]\nname = \"residenti\"\nquery = \"SELECT area, n FROM {schema}.residenti\"\n",
            relay.url("postgres:s3greto-comunale")
        ),
    );
    let server = Server::start_ready(&config);
    assert_eq!(rows(&server, "registro.residenti"), 3);
    assert_eq!(server.table_status("registro.residenti")["state"], "fresh");

    relay.cut();
    pg.execute(&format!(
        "INSERT INTO {schema}.residenti VALUES (4, 40), (5, 50)"
    ));
    server.wait_until("the table to turn stale", |s| {
        s.table_status("registro.residenti")["state"] == "stale"
    });
    let error = error_of(&server, "registro.residenti");
    assert!(
        error.contains(&format!(
            "PostgreSQL at postgres://postgres@127.0.0.1:{}/test",
            relay.port
        )),
        "{error}"
    );
    assert!(
        error.to_lowercase().contains("connect") || error.contains("closed"),
        "{error}"
    );
    assert_eq!(
        rows(&server, "registro.residenti"),
        3,
        "the last good snapshot is served"
    );
    let status = server.get("/status").text().unwrap();
    assert!(
        !status.contains("s3greto"),
        "the password leaked into /status: {status}"
    );

    relay.restore();
    server.wait_until("recovery", |s| {
        s.table_status("registro.residenti")["state"] == "fresh"
            && rows(s, "registro.residenti") == 5
    });
    assert!(server.table_status("registro.residenti")["last_error"].is_null());
    server.stop();
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn access_revoked_mid_run_then_restored() {
    let pg = Pg::connect();
    let schema = unique("t_revoke");
    let role = unique("lettore");
    let port = port();
    pg.execute(&format!(
        "CREATE ROLE {role} LOGIN;
         CREATE SCHEMA {schema};
         CREATE TABLE {schema}.eventi AS SELECT i AS id FROM generate_series(1, 7) AS i;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT ON {schema}.eventi TO {role};"
    ));
    let config = ConfigDir::empty();
    config.write(
        "connectors/servizi.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"postgres://{role}@127.0.0.1:{port}/test\"\nrefresh = \"1s\"\nconnect_timeout = \"2s\"\n\
             [[table]]\nname = \"eventi\"\nquery = \"SELECT id FROM {schema}.eventi\"\n"
        ),
    );
    let server = Server::start_ready(&config);
    assert_eq!(rows(&server, "servizi.eventi"), 7);

    // The table's privilege is revoked: queries fail on the open connections.
    pg.execute(&format!(
        "REVOKE SELECT ON {schema}.eventi FROM {role}; INSERT INTO {schema}.eventi VALUES (8)"
    ));
    server.wait_until("permission denied in /status", |s| {
        s.table_status("servizi.eventi")["state"] == "stale"
            && error_of(s, "servizi.eventi").contains("permission denied for table eventi")
    });
    assert_eq!(rows(&server, "servizi.eventi"), 7);

    // The login is revoked and its sessions ended: new connections are refused.
    pg.execute(&format!(
        "ALTER ROLE {role} NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    ));
    server.wait_until("the refused login in /status", |s| {
        error_of(s, "servizi.eventi").contains("not permitted to log in")
    });
    assert_eq!(server.table_status("servizi.eventi")["state"], "stale");
    assert_eq!(rows(&server, "servizi.eventi"), 7);

    pg.execute(&format!(
        "ALTER ROLE {role} LOGIN; GRANT SELECT ON {schema}.eventi TO {role}"
    ));
    server.wait_until("recovery", |s| {
        s.table_status("servizi.eventi")["state"] == "fresh" && rows(s, "servizi.eventi") == 8
    });
    server.stop();
    pg.execute(&format!(
        "DROP SCHEMA {schema} CASCADE; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; DROP OWNED BY {role}; DROP ROLE {role}"
    ));
}

#[test]
fn a_query_with_a_syntax_error_is_reported_by_status_and_check() {
    let pg = Pg::connect();
    let schema = unique("t_syntax");
    let url = url();
    pg.execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.residenti (codice_fiscale text, nome text, area int, durata interval);
         INSERT INTO {schema}.residenti VALUES ('RSSMRA80A01A944X', 'Mario', 1, '1 day');"
    ));
    let config = ConfigDir::empty();
    config.write(
        "connectors/registro.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{url}\"\n\
             [[table]]\nname = \"per_area\"\nquery = \"\"\"\nSELECT area,\n       count(*)\n  FROM {schema}.residenti\n WHERE area = = 1\n GROUP BY area\"\"\"\n\
             [[table]]\nname = \"nominativi\"\nquery = \"SELECT codice_fiscale, nome AS n FROM {schema}.residenti\"\n\
             [[table]]\nname = \"tutto\"\nquery = \"SELECT * FROM {schema}.residenti\"\n\
             [[table]]\nname = \"conteggi\"\nquery = \"SELECT area, count(DISTINCT codice_fiscale) AS persone FROM {schema}.residenti GROUP BY area\"\n"
        ),
    );

    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "connectors/registro.toml: table[0].query: syntax error at or near \"=\" (line 4, column 15 of the query)".to_string(),
        format!("connectors/registro.toml: table[1].query: column `codice_fiscale` is computed from the identifying column `codice_fiscale` of {schema}.residenti; column `n` is computed from the identifying column `nome` of {schema}.residenti: identifying data may not leave the registry"),
        "connectors/registro.toml: table[2].query: column `durata`: type `interval` is not supported".into(),
        format!("connectors/registro.toml: table[2].query: column `codice_fiscale` is computed from the identifying column `codice_fiscale` of {schema}.residenti; column `nome` is computed from the identifying column `nome` of {schema}.residenti"),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(!stderr.contains("table[3]"), "{stderr}");
    assert!(stderr.contains("4 error(s) found"), "{stderr}");

    let server = Server::start(&config);
    server.wait_until("the syntax error in /status", |s| {
        let status = s.table_status("registro.per_area");
        status["state"] == "failed"
            && status["last_error"].as_str().is_some_and(|e| {
                e.contains("syntax error at or near \"=\" (line 4, column 15 of the query)")
            })
    });
    // The other tables of the connector load or fail on their own.
    server.wait_until("the good table to load and the bad ones to fail", |s| {
        s.table_status("registro.conteggi")["state"] == "fresh"
            && s.table_status("registro.nominativi")["state"] == "failed"
            && s.table_status("registro.tutto")["state"] == "failed"
    });
    assert!(error_of(&server, "registro.nominativi").contains(
        "column `codice_fiscale` is computed from the identifying column `codice_fiscale`"
    ));
    assert!(
        error_of(&server, "registro.tutto")
            .contains("column `durata`: type `interval` is not supported")
    );
    server.stop();

    // Without the database, check says so and still checks what it can offline.
    let unreachable = ConfigDir::empty();
    unreachable.write(
        "connectors/registro.toml",
        "kind = \"postgres\"\nurl = \"postgres://postgres:segreta@127.0.0.1:1/test\"\n\
         [[table]]\nname = \"per_area\"\nquery = \"SELECT area, count(*) FROM x WHERE area = = 1 GROUP BY area\"\n",
    );
    let (code, stdout, stderr) = unreachable.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok (1 connectors, 1 tables"), "{stdout}");
    assert!(
        stderr.lines().any(|line| line.starts_with("warning: ")
            && line.contains("connectors/registro.toml: url: could not connect to PostgreSQL at postgres://postgres@127.0.0.1:1/test")),
        "{stderr}"
    );
    assert!(
        stderr.contains("the queries' syntax and column types were not checked"),
        "{stderr}"
    );
    assert!(
        stderr.contains("table[0].query: does not parse as SQL"),
        "{stderr}"
    );
    assert!(!stderr.contains("segreta"), "{stderr}");
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// `check` plans the saved queries over a PostgreSQL table from the database's description of
/// the prepared query (nothing is run, nothing stored): a saved query selecting a column the
/// table does not have is an error with its line, and the right one passes.
#[test]
fn check_plans_saved_queries_against_the_databases_description() {
    let pg = Pg::connect();
    let schema = unique("t_describe");
    let url = url();
    pg.execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.residenti (area int, eta int, reddito numeric(12,2));
         INSERT INTO {schema}.residenti VALUES (1, 80, 1200.50);"
    ));
    let config = ConfigDir::empty();
    config.write(
        "connectors/registro.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{url}\"\n\
             [[table]]\nname = \"per_area\"\nquery = \"SELECT area, count(*) AS residenti, avg(reddito)::numeric(12,2) AS reddito_medio FROM {schema}.residenti GROUP BY area\"\n"
        ),
    );
    config.write(
        "queries/anziani.sql",
        "-- title: Anziani\nSELECT area,\n  over_80\nFROM registro.per_area\n",
    );
    let (code, _, stderr) = config.run(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("queries/anziani.sql: line 3: Schema error: No field named over_80"),
        "{stderr}"
    );
    assert!(
        stderr.contains("residenti") && stderr.contains("reddito_medio"),
        "{stderr}"
    );
    config.write(
        "queries/anziani.sql",
        "-- title: Anziani\nSELECT area, residenti, reddito_medio * 2 AS doppio\nFROM registro.per_area\n",
    );
    let (code, stdout, stderr) = config.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 saved queries"), "{stdout}");
    assert!(!config.path().join("var").exists(), "check stored data");
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// With PostgreSQL down when cruscotto starts, a failed first load is retried with backoff, not
/// after a whole refresh interval (a day here).
#[test]
fn postgres_down_at_start_is_retried_with_backoff() {
    let mut cluster = Cluster::start_new();
    let pg = Pg::connect_to(&cluster.url());
    pg.execute(
        "CREATE TABLE eventi AS SELECT i AS id, i % 3 AS canale FROM generate_series(1, 9) AS i",
    );
    drop(pg);
    cluster.stop();

    let config = ConfigDir::empty();
    config.write(
        "connectors/servizi.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{}\"\nrefresh = \"24h\"\nconnect_timeout = \"2s\"\n\
             [[table]]\nname = \"per_canale\"\nquery = \"SELECT canale, count(*) AS n FROM eventi GROUP BY canale\"\n",
            cluster.url()
        ),
    );
    let server = Server::start_ready(&config);
    let status = server.table_status("servizi.per_canale");
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        error_of(&server, "servizi.per_canale")
            .to_lowercase()
            .contains("connect"),
        "{status}"
    );

    cluster.start();
    server.wait_until("the first load after PostgreSQL came up", |s| {
        s.table_status("servizi.per_canale")["state"] == "fresh"
    });
    assert_eq!(
        server.rows("SELECT sum(n) AS n FROM servizi.per_canale")[0]["n"],
        9
    );
    server.stop();
}
