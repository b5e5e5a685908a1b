//! Log tables against a temporary folder: recovery, compaction, retention, deduplication.
use super::*;
use arrow::array::Float64Array;
use arrow::datatypes::{Field, Schema};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

fn options(retention_days: Option<i64>) -> LogOptions {
    LogOptions {
        time_column: "ts".into(),
        dedupe: vec!["sensor_id".into(), "metric".into(), "ts".into()],
        arrival: Vec::new(),
        retention_days,
        compact_rows: 1_000_000,
        rollup: Some(RollupSpec {
            table: "letture_orarie".into(),
            keys: vec!["sensor_id".into(), "metric".into()],
            value: "value".into(),
            retention_days: None,
        }),
    }
}

/// Readings of sensor `s` at the given times (seconds).
fn readings(sensor: &str, seconds: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![sensor; seconds.len()])),
            Arc::new(StringArray::from(vec!["people"; seconds.len()])),
            Arc::new(Float64Array::from(
                seconds.iter().map(|s| *s as f64).collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    seconds.iter().map(|s| s * 1_000_000).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

fn now_seconds() -> i64 {
    Utc::now().timestamp()
}

#[test]
fn appends_survive_a_crash_before_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(
        log.append(&readings("a", &[t, t + 1])).unwrap(),
        Appended {
            stored: 2,
            duplicates: 0,
            conflicts: vec![]
        }
    );
    // A redelivery (same sensor, metric and time) and a duplicate inside one batch.
    assert_eq!(
        log.append(&readings("a", &[t + 1, t + 2, t + 2])).unwrap(),
        Appended {
            stored: 1,
            duplicates: 2,
            conflicts: vec![]
        }
    );
    drop(log); // no compaction: everything is in the WAL only

    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(log.row_count(), 3);
    assert_eq!(
        log.append(&readings("a", &[t])).unwrap().duplicates,
        1,
        "dedupe keys are recovered"
    );
    assert!(
        wal::list(&dir.path().join("log/sensori/letture/wal"))
            .unwrap()
            .len()
            == 1,
        "the replayed WAL was compacted"
    );
    assert_eq!(log.rollup_row_count() > 0, true);
}

/// One reading per (sensor, time, value).
fn valued(rows: &[(&str, i64, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["people"; rows.len()])),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.1 * 1_000_000).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

fn one_message(key: u64, rows: Range<usize>) -> MessageRows {
    MessageRows {
        key: Some(key),
        rows,
    }
}

#[test]
fn a_conflicting_reading_is_handed_back_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    log.append(&valued(&[("a", t, 10.0)])).unwrap();
    // Same sensor, metric and time, another value: a conflict, in whichever position and
    // whatever else is in the group; the same value again: the same reading.
    for (round, (position, others)) in [(0usize, 0usize), (0, 3), (2, 3), (5, 5)]
        .into_iter()
        .enumerate()
    {
        let key = |i: usize| (round * 100 + i) as u64;
        let mut rows: Vec<(&str, i64, f64)> = (0..others)
            .map(|i| ("b", t + position as i64 * 100 + i as i64, i as f64))
            .collect();
        rows.insert(position.min(rows.len()), ("a", t, 20.0));
        let at = rows.iter().position(|r| r.0 == "a").unwrap();
        let messages: Vec<MessageRows> = (0..rows.len())
            .map(|i| one_message(key(i), i..i + 1))
            .collect();
        let appended = log.append_messages(&valued(&rows), &messages).unwrap();
        assert_eq!(
            appended.conflicts,
            vec![Conflict {
                message: at,
                row: at
            }],
            "{rows:?}"
        );
        assert_eq!(appended.stored, rows.len() - 1);
        // Only the messages stored are recorded: a conflict comes back if redelivered.
        for i in 0..rows.len() {
            assert_eq!(log.has_message(key(i)), i != at, "{rows:?}");
        }
    }
    let again = log.append(&valued(&[("a", t, 10.0)])).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
    // Two messages of one group sharing a key: the second conflicts with the first.
    let appended = log
        .append_messages(
            &valued(&[("c", t, 1.0), ("c", t, 2.0)]),
            &[one_message(100, 0..1), one_message(101, 1..2)],
        )
        .unwrap();
    assert_eq!((appended.stored, appended.conflicts.len()), (1, 1));
    assert_eq!(log.row_count(), 1 + (3 + 3 + 5) + 1);
}

#[test]
fn rows_of_one_message_never_dedupe_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    // A SenML pack with records sharing name and time (equal or not): all kept.
    let pack = valued(&[("a", t, 1.0), ("a", t, 1.0), ("a", t, 2.0)]);
    let appended = log.append_messages(&pack, &[one_message(1, 0..3)]).unwrap();
    assert_eq!((appended.stored, appended.conflicts.len()), (3, 0));
    // The same pack published again (not a redelivery): every row is a stored reading.
    let appended = log.append_messages(&pack, &[one_message(2, 0..3)]).unwrap();
    assert_eq!((appended.stored, appended.duplicates), (0, 3));
    assert!(log.has_message(1) && !log.has_message(2));
}

#[test]
fn message_keys_survive_a_crash_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    log.append_messages(&valued(&[("a", t, 1.0)]), &[one_message(11, 0..1)])
        .unwrap();
    log.compact().unwrap();
    log.append_messages(&valued(&[("a", t + 1, 1.0)]), &[one_message(12, 0..1)])
        .unwrap();
    drop(log); // 11 is compacted, 12 only in the WAL
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert!(log.has_message(11) && log.has_message(12) && !log.has_message(13));
    // The window keeps the last MESSAGE_WINDOW keys only.
    let many = MESSAGE_WINDOW + 10;
    let rows: Vec<(&str, i64, f64)> = (0..many).map(|i| ("w", t, i as f64)).collect();
    let messages: Vec<MessageRows> = (0..many)
        .map(|i| MessageRows {
            key: Some(1_000 + i as u64),
            rows: i..i + 1,
        })
        .collect();
    // All at one time with other values: conflicts, never recorded...
    let appended = log.append_messages(&valued(&rows), &messages).unwrap();
    assert_eq!(appended.conflicts.len(), many - 1);
    // ... so give each its own time.
    let rows: Vec<(&str, i64, f64)> = (0..many).map(|i| ("w", t + 10 + i as i64, 0.0)).collect();
    log.append_messages(&valued(&rows), &messages).unwrap();
    log.compact().unwrap();
    drop(log);
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert!(!log.has_message(11) && !log.has_message(1_000 + 9));
    assert!(log.has_message(1_000 + 10) && log.has_message(1_000 + many as u64 - 1));
}

#[test]
fn compaction_writes_day_partitions_and_recovery_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    log.append(&readings("a", &[t - 86_400, t])).unwrap();
    log.compact().unwrap();
    log.append(&readings("b", &[t])).unwrap();
    let table_dir = dir.path().join("log/sensori/letture");
    let days: Vec<String> = std::fs::read_dir(&table_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("day="))
        .collect();
    assert_eq!(days.len(), 2, "{days:?}");
    drop(log);
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(log.row_count(), 3);
    // An orphan segment (written, then a crash before the manifest) is ignored and removed.
    let orphan = table_dir.join(format!(
        "day={}/part-999999999999.parquet",
        day_name(today())
    ));
    write_parquet(&orphan, &readings("zzz", &[t])).unwrap();
    drop(log);
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(log.row_count(), 3);
    assert!(!orphan.exists());
}

#[test]
fn retention_drops_old_days_and_rollups_outlive_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    // Two readings in one hour ten days ago, one now.
    let old = (t - 10 * 86_400) / 3_600 * 3_600;
    log.append(&readings("a", &[old, old + 60, t])).unwrap();
    log.compact().unwrap();
    assert_eq!(log.row_count(), 3);
    assert_eq!(log.rollup_row_count(), 2);
    drop(log);
    // Raw rows kept 5 days: the old day goes, its hourly rollup stays.
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(Some(5))).unwrap();
    assert_eq!(log.row_count(), 1);
    assert_eq!(log.rollup_row_count(), 2);
}

#[test]
fn a_second_process_reads_a_table_it_does_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let writer = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    writer.append(&readings("a", &[t, t + 1])).unwrap();
    let reader = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert!(writer.is_writable() && !reader.is_writable());
    assert_eq!(reader.row_count(), 2);
    assert!(
        reader
            .append(&readings("b", &[t]))
            .unwrap_err()
            .to_string()
            .contains("read-only")
    );
    // The reader neither compacted nor deleted the writer's WAL: appends go on.
    writer.append(&readings("a", &[t + 2])).unwrap();
    drop((writer, reader));
    let again = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(again.row_count(), 3);
}

#[test]
fn a_torn_wal_tail_is_dropped_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_seconds();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    log.append(&readings("a", &[t])).unwrap();
    log.append(&readings("a", &[t + 1])).unwrap();
    drop(log);
    let wal_dir = dir.path().join("log/sensori/letture/wal");
    let (_, last) = wal::list(&wal_dir)
        .unwrap()
        .into_iter()
        .rev()
        .find(|(_, p)| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() - 7]).unwrap();
    let log = LogTable::open(dir.path(), "sensori", "letture", schema(), options(None)).unwrap();
    assert_eq!(log.row_count(), 1);
}

/// Compacted parts are read from their files at each query (their rows are not held), the WAL
/// tail from memory, its single-row group commits merged into a few batches; SQL sees both.
#[tokio::test]
async fn parts_are_queried_from_disk_and_the_tail_is_merged() {
    use datafusion::prelude::SessionContext;
    let dir = tempfile::tempdir().unwrap();
    let log = LogTable::open(dir.path(), "s", "t", schema(), options(None)).unwrap();
    let now = now_seconds();
    log.append(&readings("a", &[now - 10, now - 9, now - 8]))
        .unwrap();
    log.compact().unwrap();
    for i in 0..100 {
        log.append(&readings("b", &[now + i])).unwrap();
    }
    let live = log.live_rows();
    assert_eq!(live.files.len(), 1, "{:?}", live.files);
    assert!(live.files[0].starts_with(dir.path()));
    assert_eq!(
        live.tail.iter().map(RecordBatch::num_rows).sum::<usize>(),
        100
    );
    assert!(
        live.tail.len() < TAIL_BATCHES_TO_MERGE,
        "{} tail batches for 100 appends",
        live.tail.len()
    );

    let ctx = SessionContext::new();
    let rows: crate::store::provider::RowSource = {
        let log = log.clone();
        Arc::new(move || log.live_rows())
    };
    let table = crate::store::provider::LiveTable::new(schema(), rows, 2);
    ctx.register_table("t", Arc::new(table)).unwrap();
    let count = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        }
    };
    assert_eq!(count("SELECT count(*) FROM t").await, 103);
    assert_eq!(
        count("SELECT count(*) FROM t WHERE sensor_id = 'a'").await,
        3
    );
    assert_eq!(log.row_count(), 103);
}

/// The readings of days before the recent ones leave memory at compaction; a reading of such a
/// day delivered again is still recognised, its day read back from disk.
#[test]
fn a_late_redelivery_of_an_old_day_is_recognised_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogTable::open(dir.path(), "s", "t", schema(), options(None)).unwrap();
    let old = now_seconds() - 5 * 86_400;
    let old_day = (old * 1_000_000).div_euclid(DAY_MICROS);
    log.append(&readings("a", &[old, old + 1])).unwrap();
    assert!(log.wal.lock().unwrap().seen.is_held(old_day));
    log.compact().unwrap();
    assert!(!log.wal.lock().unwrap().seen.is_held(old_day));

    let again = log.append(&readings("a", &[old, old + 2])).unwrap();
    assert_eq!((again.stored, again.duplicates), (1, 1));
    assert_eq!(log.row_count(), 3);
    // And after a restart, which holds only the recent days.
    drop(log);
    let log = LogTable::open(dir.path(), "s", "t", schema(), options(None)).unwrap();
    assert!(!log.wal.lock().unwrap().seen.is_held(old_day));
    let again = log.append(&readings("a", &[old + 1, old + 2])).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 2));
}

/// A day rewritten as one part keeps the parts it replaced on disk for a while, so a query
/// planned before the rewrite still reads them; a restart removes them.
#[test]
fn replaced_parts_stay_for_the_queries_planned_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogTable::open(dir.path(), "s", "t", schema(), options(None)).unwrap();
    let noon = today() * 86_400 + 43_200;
    let mut planned_before = None;
    for i in 0..=MAX_PARTS_PER_DAY as i64 {
        if i == MAX_PARTS_PER_DAY as i64 {
            planned_before = Some(log.live_rows());
        }
        log.append(&readings("a", &[noon + i])).unwrap();
        log.compact().unwrap();
    }
    let planned_before = planned_before.unwrap();
    assert_eq!(planned_before.files.len(), MAX_PARTS_PER_DAY);
    assert!(planned_before.files.iter().all(|f| f.exists()));
    assert_eq!(log.live_rows().files.len(), 1);
    assert_eq!(log.row_count(), MAX_PARTS_PER_DAY + 1);
    drop(log);
    let log = LogTable::open(dir.path(), "s", "t", schema(), options(None)).unwrap();
    assert!(planned_before.files.iter().all(|f| !f.exists()));
    assert_eq!(log.row_count(), MAX_PARTS_PER_DAY + 1);
}
