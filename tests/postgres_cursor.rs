//! Incremental pulls of an append-only log: only rows past the committed cursor are fetched, and
//! a failure between the pull and the commit neither loses nor repeats a row.

mod common;
mod postgres_support;

use std::path::Path;
use std::time::Duration;

use common::{ConfigDir, Server};
use cruscotto::connectors::{ConnectorConfig, LoadMode, Loaded, LoadedTable};
use cruscotto::store::Store;
use postgres_support::{Pg, unique, url, wait_for};

fn connector(schema: &str) -> ConnectorConfig {
    let url = url();
    let text = format!(
        "kind = \"postgres\"\nurl = \"{url}\"\n[[table]]\nname = \"eventi\"\n\
         query = \"SELECT id, ts, servizio FROM {schema}.eventi\"\ncursor_column = \"id\"\n"
    );
    ConnectorConfig::parse(Path::new("connectors/log.toml"), &text).unwrap()
}

fn insert_sql(schema: &str, ids: std::ops::RangeInclusive<i64>) -> String {
    format!(
        "INSERT INTO {schema}.eventi SELECT i, timestamptz '2023-01-01 00:00+00' + i * interval '1 minute', 'certificato' \
         FROM generate_series({}, {}) AS i",
        ids.start(),
        ids.end()
    )
}

fn insert(pg: &Pg, schema: &str, ids: std::ops::RangeInclusive<i64>) {
    pg.execute(&insert_sql(schema, ids));
}

/// A runtime like the service's, for driving a connector and the store in process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The ids the store serves, via SQL over its catalog.
async fn served_ids(store: &Store) -> Vec<i64> {
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_catalog("city", store.catalog());
    let batches = ctx
        .sql("SELECT id FROM city.log.eventi ORDER BY id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_crash_between_pull_and_commit_neither_loses_nor_repeats_rows() {
    let pg = Pg::connect();
    let schema = unique("t_cursor");
    pg.execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"));
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let config = connector(&schema);
        let (client, connection) = tokio_postgres::connect(url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let insert = |_: &Pg, schema: &str, ids| {
            let sql = insert_sql(schema, ids);
            let client = &client;
            async move { client.batch_execute(&sql).await.unwrap() }
        };

        // First run: rows 1..=5 are pulled and committed.
        insert(&pg, &schema, 1..=5).await;
        let store = Store::new(data_dir.path(), 2);
        store.declare("log", "eventi", "pg", Duration::from_secs(60));
        let runner = config.build(Path::new("."));
        let load = runner.load(&store.load_state("log")).await.pop().unwrap();
        let loaded = load.result.map(whole).unwrap();
        assert_eq!(
            (loaded.mode, loaded.rows(), loaded.cursor.as_deref()),
            (LoadMode::Append, 5, Some("5"))
        );
        store
            .commit("log", "eventi", &load.source, loaded)
            .await
            .unwrap();

        // Rows 6..=8 are pulled, then the process dies before the store commits them.
        insert(&pg, &schema, 6..=8).await;
        let pulled = runner
            .load(&store.load_state("log"))
            .await
            .pop()
            .unwrap()
            .result
            .map(whole)
            .unwrap();
        assert_eq!((pulled.rows(), pulled.cursor.as_deref()), (3, Some("8")));
        drop(pulled);
        drop(runner);
        drop(store);

        // Restart: the store restores what it committed (cursor 5); the next pull fetches 6..=10.
        insert(&pg, &schema, 9..=10).await;
        let store = Store::new(data_dir.path(), 2);
        assert!(store.restore("log", "eventi").unwrap());
        assert_eq!(store.load_state("log").cursor("eventi"), Some("5"));
        let runner = config.build(Path::new("."));
        let load = runner.load(&store.load_state("log")).await.pop().unwrap();
        let loaded = load.result.map(whole).unwrap();
        assert_eq!((loaded.rows(), loaded.cursor.as_deref()), (5, Some("10")));
        store
            .commit("log", "eventi", &load.source, loaded)
            .await
            .unwrap();
        assert_eq!(served_ids(&store).await, (1..=10).collect::<Vec<_>>());

        // Nothing new: nothing appended, the cursor stays.
        let load = runner.load(&store.load_state("log")).await.pop().unwrap();
        let loaded = load.result.map(whole).unwrap();
        assert_eq!((loaded.rows(), loaded.cursor.as_deref()), (0, Some("10")));
        store
            .commit("log", "eventi", &load.source, loaded)
            .await
            .unwrap();
        assert_eq!(served_ids(&store).await, (1..=10).collect::<Vec<_>>());
    });
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn the_running_service_appends_new_rows_and_recovers_from_a_failed_commit_without_duplicates() {
    let pg = Pg::connect();
    let schema = unique("t_cursor_srv");
    let url = url();
    pg.execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"));
    insert(&pg, &schema, 1..=100);

    let config = ConfigDir::empty();
    config.write(
        "connectors/log.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{url}\"\nrefresh = \"1s\"\n[[table]]\nname = \"eventi\"\n\
             query = \"SELECT id, ts, servizio FROM {schema}.eventi\"\ncursor_column = \"id\"\n"
        ),
    );
    let count = |server: &Server| {
        server.rows("SELECT count(*) AS n, count(DISTINCT id) AS d, max(id) AS m FROM log.eventi")
            [0]
        .clone()
    };
    let server = Server::start_ready(&config);
    assert_eq!(count(&server)["n"], 100);

    insert(&pg, &schema, 101..=150);
    server.wait_until("the new rows", |s| count(s)["n"] == 150);

    // The disk refuses the next segment: the rows are pulled but cannot be committed.
    let segments = config.path().join("var/snapshots/log/eventi");
    let aside = config.path().join("var/segments-aside");
    std::fs::rename(&segments, &aside).unwrap();
    std::fs::write(&segments, "not a folder").unwrap();
    insert(&pg, &schema, 151..=160);
    server.wait_until("the failed commit in /status", |s| {
        let status = s.table_status("log.eventi");
        status["state"] == "stale"
            && status["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot persist"))
    });
    assert_eq!(
        count(&server)["n"],
        150,
        "rows that were not committed are not served"
    );

    // The disk is back: the same rows are pulled again from the committed cursor, once.
    std::fs::remove_file(&segments).unwrap();
    std::fs::rename(&aside, &segments).unwrap();
    server.wait_until("recovery", |s| {
        s.table_status("log.eventi")["state"] == "fresh" && count(s)["n"] == 160
    });
    let c = count(&server);
    assert_eq!(
        (c["n"].as_i64(), c["d"].as_i64(), c["m"].as_i64()),
        (Some(160), Some(160), Some(160))
    );

    // A restart serves the committed segments and continues from their cursor.
    server.stop();
    insert(&pg, &schema, 161..=170);
    let server = Server::start_ready(&config);
    wait_for(
        "the rows after the restart",
        Duration::from_secs(60),
        || count(&server)["n"] == 170,
    );
    let c = count(&server);
    assert_eq!((c["d"].as_i64(), c["m"].as_i64()), (Some(170), Some(170)));
    server.stop();
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// A source that went backwards (refilled with fewer rows, rows deleted below the cursor, emptied)
/// is noticed and the table reloaded in full, said in /status; rows that are merely new are
/// appended as before, and a restart goes on from the reloaded table.
#[test]
fn a_source_that_went_backwards_is_reloaded_in_full() {
    let pg = Pg::connect();
    let schema = unique("t_rewind");
    let url = url();
    pg.execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"));
    insert(&pg, &schema, 1..=100);

    let config = ConfigDir::empty();
    config.write(
        "connectors/log.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{url}\"\nrefresh = \"1s\"\n[[table]]\nname = \"eventi\"\n\
             query = \"SELECT id, ts, servizio FROM {schema}.eventi\"\ncursor_column = \"id\"\n"
        ),
    );
    let ids = |server: &Server| -> Vec<i64> {
        server
            .rows("SELECT id FROM log.eventi ORDER BY id")
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let reload = |server: &Server| {
        let status = server.table_status("log.eventi");
        (
            status["last_reload"].clone(),
            status["last_reload_reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let refill = |ids: std::ops::RangeInclusive<i64>| {
        format!("TRUNCATE {schema}.eventi; {}", insert_sql(&schema, ids))
    };
    let server = Server::start_ready(&config);
    assert_eq!(ids(&server), (1..=100).collect::<Vec<_>>());
    assert!(reload(&server).0.is_null());

    // (what happened, the SQL that does it, the ids then served, whether it is a reload)
    let variants: Vec<(&str, String, Vec<i64>, bool)> = vec![
        (
            "refilled with fewer rows",
            refill(1..=40),
            (1..=40).collect(),
            true,
        ),
        (
            "new rows",
            insert_sql(&schema, 41..=60),
            (1..=60).collect(),
            false,
        ),
        (
            "rows deleted below the cursor",
            format!("DELETE FROM {schema}.eventi WHERE id BETWEEN 10 AND 19"),
            (1..=9).chain(20..=60).collect(),
            true,
        ),
        (
            "refilled with fewer rows and larger ids",
            refill(1000..=1029),
            (1000..=1029).collect(),
            true,
        ),
        (
            "refilled with fewer rows and smaller ids",
            refill(1..=20),
            (1..=20).collect(),
            true,
        ),
        (
            "emptied",
            format!("TRUNCATE {schema}.eventi"),
            Vec::new(),
            true,
        ),
        (
            "filled again",
            insert_sql(&schema, 1..=5),
            (1..=5).collect(),
            false,
        ),
    ];
    for (what, sql, expected, reloads) in variants {
        let (before, _) = reload(&server);
        pg.execute(&sql);
        server.wait_until(what, |s| {
            ids(s) == expected && (!reloads || reload(s).0 != before)
        });
        let (after, reason) = reload(&server);
        if reloads {
            assert!(
                reason.starts_with("the source went backwards: the table held"),
                "{what}: {reason}"
            );
            assert_eq!(
                server.table_status("log.eventi")["state"],
                "fresh",
                "{what}"
            );
        } else {
            assert_eq!(
                after, before,
                "{what}: reloaded although nothing went backwards"
            );
        }
    }

    // A restart serves the reloaded table and appends to it.
    server.stop();
    insert(&pg, &schema, 6..=8);
    let server = Server::start_ready(&config);
    wait_for(
        "the rows after the restart",
        Duration::from_secs(60),
        || ids(&server) == (1..=8).collect::<Vec<_>>(),
    );
    assert!(reload(&server).0.is_null(), "a restart is not a reload");
    server.stop();
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// An append table with a retention: rows older than it are never pulled, those that age past it
/// are dropped when the table is compacted (also from disk), and dropping them is not mistaken for
/// the source going backwards; a row deleted inside the window still is.
#[test]
fn an_append_table_keeps_its_rows_for_the_retention_only() {
    let pg = Pg::connect();
    let schema = unique("t_retention");
    let url = url();
    pg.execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"
    ));
    // Rows 1..=9 are older than the 1-hour retention, row 10 ages past it a few seconds from now,
    // rows 11..=20 are recent; row 21 has no time.
    pg.execute(&format!(
        "INSERT INTO {schema}.eventi SELECT i, now() - (10 - i) * interval '1 hour' - interval '1 minute', 'vecchio' FROM generate_series(1, 9) AS i;
         INSERT INTO {schema}.eventi VALUES (10, now() - interval '1 hour' + interval '8 seconds', 'in scadenza');
         INSERT INTO {schema}.eventi SELECT i, now() - interval '1 minute', 'recente' FROM generate_series(11, 20) AS i;
         INSERT INTO {schema}.eventi VALUES (21, NULL, 'senza ora')"
    ));
    let ten_expires_at = std::time::Instant::now() + Duration::from_secs(9);
    let text = format!(
        "kind = \"postgres\"\nurl = \"{url}\"\n[[table]]\nname = \"eventi\"\n\
         query = \"SELECT id, ts, servizio FROM {schema}.eventi\"\ncursor_column = \"id\"\n\
         retention = \"1h\"\nretention_column = \"ts\"\n"
    );
    let config = ConnectorConfig::parse(Path::new("connectors/log.toml"), &text).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let execute = |sql: String| {
            let client = &client;
            async move { client.batch_execute(&sql).await.unwrap() }
        };
        let store = Store::new(data_dir.path(), 2);
        store.declare("log", "eventi", "pg", Duration::from_secs(60));
        let runner = config.build(Path::new("."));
        let pull = |store: &Store| {
            let state = store.load_state("log");
            let runner = &runner;
            async move {
                runner
                    .load(&state)
                    .await
                    .pop()
                    .unwrap()
                    .result
                    .map(whole)
                    .unwrap()
            }
        };

        let first = pull(&store).await;
        assert_eq!(first.mode, LoadMode::Append);
        store.commit("log", "eventi", "pg", first).await.unwrap();
        assert_eq!(served_ids(&store).await, (10..=20).collect::<Vec<_>>());

        // Row 10 ages past the retention; new rows keep coming, one pull each, until the table
        // is compacted (16 segments): row 10 is dropped then, and no pull was a reload.
        while std::time::Instant::now() < ten_expires_at {
            std::thread::sleep(Duration::from_millis(100));
        }
        let segments = cruscotto::store::COMPACT_AFTER_SEGMENTS as i64;
        for id in 22..22 + segments {
            execute(format!(
                "INSERT INTO {schema}.eventi VALUES ({id}, now(), 'nuovo')"
            ))
            .await;
            let loaded = pull(&store).await;
            assert_eq!(
                (loaded.mode, loaded.rows()),
                (LoadMode::Append, 1),
                "row {id}"
            );
            store.commit("log", "eventi", "pg", loaded).await.unwrap();
        }
        let expected: Vec<i64> = (11..=20).chain(22..22 + segments).collect();
        assert_eq!(
            served_ids(&store).await,
            expected,
            "row 10 outlived the retention"
        );

        // The next pull holds the same window: what expired is not "the source went backwards".
        let loaded = pull(&store).await;
        assert_eq!((loaded.mode, loaded.rows()), (LoadMode::Append, 0));
        store.commit("log", "eventi", "pg", loaded).await.unwrap();

        // A restart serves the compacted table from disk, without row 10, and goes on.
        drop(store);
        let store = Store::new(data_dir.path(), 2);
        assert!(store.restore("log", "eventi").unwrap());
        assert_eq!(served_ids(&store).await, expected);
        let loaded = pull(&store).await;
        assert_eq!(
            loaded.mode,
            LoadMode::Append,
            "a restart made the window look changed"
        );
        store.commit("log", "eventi", "pg", loaded).await.unwrap();

        // Deleting an expired row changes nothing; deleting a retained one is noticed.
        execute(format!("DELETE FROM {schema}.eventi WHERE id IN (3, 10)")).await;
        let loaded = pull(&store).await;
        assert_eq!(
            loaded.mode,
            LoadMode::Append,
            "an expired row's deletion caused a reload"
        );
        store.commit("log", "eventi", "pg", loaded).await.unwrap();
        execute(format!("DELETE FROM {schema}.eventi WHERE id = 15")).await;
        let loaded = pull(&store).await;
        assert_eq!(
            loaded.mode,
            LoadMode::Reload,
            "a retained row's deletion went unnoticed"
        );
        store.commit("log", "eventi", "pg", loaded).await.unwrap();
        let expected: Vec<i64> = (11..=20)
            .filter(|id| *id != 15)
            .chain(22..22 + segments)
            .collect();
        assert_eq!(served_ids(&store).await, expected);
    });
    pg.execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// A retention needs an append table and a time to measure it on: a mistake is named, with where.
#[test]
fn a_retention_that_cannot_apply_is_refused_with_its_place() {
    let url = url();
    let parse = |table: &str| {
        let text =
            format!("kind = \"postgres\"\nurl = \"{url}\"\n[[table]]\nname = \"eventi\"\n{table}");
        let file = Path::new("connectors/log.toml");
        let problems = match ConnectorConfig::parse(file, &text) {
            Ok(config) => config.validate(file, Path::new(".")),
            Err(problem) => vec![problem],
        };
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
        }
    };
    parse("query = \"SELECT 1 AS id\"\ncursor_column = \"id\"\nretention = \"30d\"\n").unwrap();
    let no_cursor = parse("query = \"SELECT 1 AS id\"\nretention = \"30d\"\n").unwrap_err();
    assert!(
        no_cursor.contains("table[0].retention") && no_cursor.contains("cursor_column"),
        "{no_cursor}"
    );
    let zero = parse("query = \"SELECT 1 AS id\"\ncursor_column = \"id\"\nretention = \"0s\"\n")
        .unwrap_err();
    assert!(zero.contains("longer than zero"), "{zero}");
    let unreadable =
        parse("query = \"SELECT 1 AS id\"\ncursor_column = \"id\"\nretention = \"a month\"\n")
            .unwrap_err();
    assert!(
        unreadable.contains("line 7") && unreadable.contains("expected a duration"),
        "{unreadable}"
    );
}

/// A load's rows, which this connector returns in memory.
fn whole(loaded: Loaded) -> LoadedTable {
    loaded.into_whole().expect("rows in memory")
}
