//! Incremental pulls of an append-only log: only rows past the committed cursor are fetched, and
//! a failure between the pull and the commit neither loses nor repeats a row.

mod common;
mod postgres_support;

use std::path::Path;
use std::time::Duration;

use common::{ConfigDir, Server};
use cruscotto::connectors::{ConnectorConfig, LoadMode};
use cruscotto::store::Store;
use postgres_support::{Pg, URL, unique, wait_for};

fn connector(schema: &str) -> ConnectorConfig {
    let text = format!(
        "kind = \"postgres\"\nurl = \"{URL}\"\n[[table]]\nname = \"eventi\"\n\
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = connector(&schema);
        let (client, connection) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
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
        let loaded = load.result.unwrap();
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
        let loaded = load.result.unwrap();
        assert_eq!((loaded.rows(), loaded.cursor.as_deref()), (5, Some("10")));
        store
            .commit("log", "eventi", &load.source, loaded)
            .await
            .unwrap();
        assert_eq!(served_ids(&store).await, (1..=10).collect::<Vec<_>>());

        // Nothing new: nothing appended, the cursor stays.
        let load = runner.load(&store.load_state("log")).await.pop().unwrap();
        let loaded = load.result.unwrap();
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
    pg.execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"));
    insert(&pg, &schema, 1..=100);

    let config = ConfigDir::empty();
    config.write(
        "connectors/log.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{URL}\"\nrefresh = \"1s\"\n[[table]]\nname = \"eventi\"\n\
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
    pg.execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.eventi (id bigint, ts timestamptz, servizio text)"));
    insert(&pg, &schema, 1..=100);

    let config = ConfigDir::empty();
    config.write(
        "connectors/log.toml",
        &format!(
            "kind = \"postgres\"\nurl = \"{URL}\"\nrefresh = \"1s\"\n[[table]]\nname = \"eventi\"\n\
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
