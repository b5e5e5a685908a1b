//! The store's snapshot and append tables, their persistence and restart.

use super::*;
use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};

fn rows(values: &[i64], mode: LoadMode, cursor: Option<&str>) -> LoadedTable {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(values.to_vec()))],
    )
    .unwrap();
    LoadedTable {
        retention: None,
        fingerprint: None,
        schema,
        batches: vec![batch],
        rejected: Vec::new(),
        mode,
        cursor: cursor.map(str::to_string),
    }
}

fn ids(store: &Store) -> Vec<i64> {
    let data = store.data.read().unwrap();
    first_column_i64(&data[&("log".to_string(), "events".to_string())].batches)
}

#[tokio::test]
async fn appends_commit_their_cursor_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 2);
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[1, 2], LoadMode::Append, Some("2")),
        )
        .await
        .unwrap();
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[3], LoadMode::Append, Some("3")),
        )
        .await
        .unwrap();
    assert_eq!(store.load_state("log").cursor("events"), Some("3"));
    assert_eq!(ids(&store), vec![1, 2, 3]);

    let restarted = Store::new(dir.path(), 2);
    assert!(restarted.restore("log", "events").unwrap());
    assert_eq!(ids(&restarted), vec![1, 2, 3]);
    assert_eq!(restarted.load_state("log").cursor("events"), Some("3"));
    restarted
        .commit(
            "log",
            "events",
            "pg",
            rows(&[4], LoadMode::Append, Some("4")),
        )
        .await
        .unwrap();
    assert_eq!(ids(&restarted), vec![1, 2, 3, 4]);

    // A full reload replaces everything, and a restart does not resurrect the old segments.
    restarted
        .commit(
            "log",
            "events",
            "pg",
            rows(&[10, 11], LoadMode::Replace, None),
        )
        .await
        .unwrap();
    let again = Store::new(dir.path(), 2);
    assert!(again.restore("log", "events").unwrap());
    assert_eq!(ids(&again), vec![10, 11]);
    assert_eq!(again.load_state("log").cursor("events"), None);
}

#[tokio::test]
async fn a_reload_replaces_an_append_table_keeps_its_cursor_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 2);
    for (values, cursor) in [(&[1, 2, 3][..], "3"), (&[4, 5][..], "5")] {
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(values, LoadMode::Append, Some(cursor)),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.load_state("log").committed_rows("events"), Some(5));
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[1, 2], LoadMode::Reload, Some("2")),
        )
        .await
        .unwrap();
    assert_eq!(ids(&store), vec![1, 2]);
    let state = store.load_state("log");
    assert_eq!(
        (state.cursor("events"), state.committed_rows("events")),
        (Some("2"), Some(2))
    );
    let status = store
        .statuses()
        .into_iter()
        .find(|s| s.table == "events")
        .unwrap();
    assert!(status.last_reload.is_some());
    assert_eq!(
        status.last_reload_reason.as_deref(),
        Some(
            "the source went backwards: the table held 5 rows up to cursor 5, the source now \
             has 2 (reloaded in full, new cursor 2)"
        )
    );
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[3], LoadMode::Append, Some("3")),
        )
        .await
        .unwrap();
    assert_eq!(ids(&store), vec![1, 2, 3]);

    let restarted = Store::new(dir.path(), 2);
    assert!(restarted.restore("log", "events").unwrap());
    assert_eq!(ids(&restarted), vec![1, 2, 3]);
    assert_eq!(restarted.load_state("log").cursor("events"), Some("3"));
    // A reload right after a restart, then an append, then a restart again.
    restarted
        .commit(
            "log",
            "events",
            "pg",
            rows(&[7], LoadMode::Reload, Some("7")),
        )
        .await
        .unwrap();
    restarted
        .commit(
            "log",
            "events",
            "pg",
            rows(&[8], LoadMode::Append, Some("8")),
        )
        .await
        .unwrap();
    let again = Store::new(dir.path(), 2);
    assert!(again.restore("log", "events").unwrap());
    assert_eq!(ids(&again), vec![7, 8]);
    assert_eq!(again.load_state("log").cursor("events"), Some("8"));
}

#[tokio::test]
async fn appends_are_compacted_into_a_bounded_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 2);
    let files = |store: &Store| {
        persist::list_segments(&store.segments_dir("log", "events"))
            .unwrap()
            .len()
            + version::list(&store.schema_dir("log"), "events").len()
    };
    let appends = 3 * COMPACT_AFTER_SEGMENTS as i64 + 5;
    let mut most = 0;
    for id in 1..=appends {
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[id], LoadMode::Append, Some(&id.to_string())),
            )
            .await
            .unwrap();
        most = most.max(files(&store));
    }
    assert!(
        most <= COMPACT_AFTER_SEGMENTS as usize,
        "{most} files for one table"
    );
    assert_eq!(ids(&store), (1..=appends).collect::<Vec<_>>());
    // Compacted batches are large, not one per pull.
    let batches = store.data.read().unwrap()[&("log".to_string(), "events".to_string())]
        .batches
        .len();
    assert!(batches < 10, "{batches} batches");

    let restarted = Store::new(dir.path(), 2);
    assert!(restarted.restore("log", "events").unwrap());
    assert_eq!(ids(&restarted), (1..=appends).collect::<Vec<_>>());
    let state = restarted.load_state("log");
    let last = appends.to_string();
    assert_eq!(
        (state.cursor("events"), state.committed_rows("events")),
        (Some(last.as_str()), Some(appends as u64))
    );
    restarted
        .commit(
            "log",
            "events",
            "pg",
            rows(&[appends + 1], LoadMode::Append, Some("1000")),
        )
        .await
        .unwrap();
    let again = Store::new(dir.path(), 2);
    assert!(again.restore("log", "events").unwrap());
    assert_eq!(ids(&again), (1..=appends + 1).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_pull_that_found_nothing_writes_no_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 2);
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[1, 2], LoadMode::Append, Some("2")),
        )
        .await
        .unwrap();
    let segments = || {
        persist::list_segments(&store.segments_dir("log", "events"))
            .unwrap()
            .len()
    };
    assert_eq!(segments(), 1);
    for _ in 0..3 {
        store
            .commit(
                "log",
                "events",
                "pg",
                rows(&[], LoadMode::Append, Some("2")),
            )
            .await
            .unwrap();
    }
    assert_eq!(segments(), 1, "empty pulls left segments behind");
    assert_eq!(ids(&store), vec![1, 2]);
    let status = store
        .statuses()
        .into_iter()
        .find(|s| s.table == "events")
        .unwrap();
    assert_eq!((status.state, status.rows), (TableState::Fresh, 2));
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[3], LoadMode::Append, Some("3")),
        )
        .await
        .unwrap();
    assert_eq!(segments(), 2);
    assert_eq!(ids(&store), vec![1, 2, 3]);
}

#[tokio::test]
async fn an_append_with_other_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), 2);
    store
        .commit(
            "log",
            "events",
            "pg",
            rows(&[1], LoadMode::Append, Some("1")),
        )
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "other",
        DataType::Int64,
        false,
    )]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![5]))]).unwrap();
    let wrong = LoadedTable {
        fingerprint: None,
        schema,
        batches: vec![batch],
        rejected: Vec::new(),
        mode: LoadMode::Append,
        cursor: Some("5".into()),
        retention: None,
    };
    let error = store
        .commit("log", "events", "pg", wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("appended rows have columns [\"other\"], the table has [\"id\"]"),
        "{error}"
    );
    assert_eq!(store.load_state("log").cursor("events"), Some("1"));
}
