//! Tables as Parquet versions on disk, with the real binary: a load streams its source into a new
//! version (memory does not grow with the rows), an unchanged source is not read again, a process
//! killed during a load leaves the previous version whole, a table with more than 2 GiB of text
//! loads and answers, and /readyz says when a table has no version to serve.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use common::{ConfigDir, Server};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const METRICS: [&str; 5] = [
    "clients",
    "download_mbps",
    "upload_mbps",
    "latency_ms",
    "people",
];

/// Readings as the sensors' bench writes them: `rows` rows, row `i` of sensor `i % 2000`, area
/// `i % 90`, metric `i % 5`, value `i % 1000`, written in batches of 64k rows.
fn write_readings(path: &Path, rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("area", DataType::Int64, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let temporary = path.with_extension("partial");
    let file = std::fs::File::create(&temporary).unwrap();
    let properties = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
    let step = 64 * 1024;
    for start in (0..rows).step_by(step) {
        let range = start..(start + step).min(rows);
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                range
                    .clone()
                    .map(|i| 1_709_251_200_000_000 + i as i64 * 1_000_000),
            )),
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| format!("s{:04}", i % 2000)),
            )),
            Arc::new(Int64Array::from_iter_values(
                range.clone().map(|i| (i % 90) as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| METRICS[i % 5]),
            )),
            Arc::new(Float64Array::from_iter_values(
                range.map(|i| (i % 1000) as f64),
            )),
        ];
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
    // Replaced by a rename, as a publisher should: a reader never sees half a file.
    std::fs::rename(temporary, path).unwrap();
}

/// The sum of `value` over the first `rows` readings.
fn value_sum(rows: usize) -> f64 {
    (0..rows).map(|i| (i % 1000) as f64).sum()
}

fn readings_config(refresh: &str) -> ConfigDir {
    let config = ConfigDir::empty();
    config.write(
        "connectors/sensori.toml",
        &format!(
            r#"kind = "file"
refresh = "{refresh}"

[[table]]
name = "letture"
path = "data/letture.parquet"
"#
        ),
    );
    config
}

/// A file table `uffici.sportelli` on data/sportelli.csv, refreshed every second.
fn sportelli_config() -> ConfigDir {
    let config = ConfigDir::empty();
    config.write(
        "connectors/uffici.toml",
        r#"kind = "file"
refresh = "1s"

[[table]]
name = "sportelli"
path = "data/sportelli.csv"
"#,
    );
    config
}

/// The process's peak resident memory (VmHWM) in bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

fn count_and_sum(server: &Server) -> (i64, f64) {
    let row = &server.rows("SELECT count(*) AS n, sum(value) AS s FROM sensori.letture")[0];
    (row["n"].as_i64().unwrap(), row["s"].as_f64().unwrap())
}

/// Load, refresh and restart of a 1M- and a 4M-row table: the peak memory of the 4M one is within
/// a bound of the 1M one's well below what rows held in memory would add. Both answer exactly.
#[test]
fn memory_of_a_load_does_not_grow_with_the_rows() {
    let mut peaks = Vec::new();
    for rows in [1_000_000usize, 4_000_000] {
        let config = readings_config("1s");
        let data = config.path().join("data/letture.parquet");
        write_readings(&data, rows);
        let server = Server::start_ready(&config);
        assert_eq!(count_and_sum(&server), (rows as i64, value_sum(rows)));
        let status = server.table_status("sensori.letture");
        assert_eq!(status["storage"], "disk", "{status}");
        let load = peak_rss(&server);

        // A refresh of a changed source: a new version is written and swapped in.
        let first = status["version"].as_u64().expect("a version number");
        write_readings(&data, rows);
        server.wait_until("the refresh of the rewritten file", |s| {
            s.table_status("sensori.letture")["version"].as_u64() > Some(first)
        });
        let refresh = peak_rss(&server);
        assert_eq!(count_and_sum(&server), (rows as i64, value_sum(rows)));
        drop(server);

        // A restart registers the version from its footer and does not read the source again.
        let server = Server::start_ready(&config);
        assert_eq!(count_and_sum(&server), (rows as i64, value_sum(rows)));
        let restart = peak_rss(&server);
        eprintln!(
            "{rows} rows: peak RSS {} MiB at load, {} MiB after a refresh, {} MiB at restart",
            load >> 20,
            refresh >> 20,
            restart >> 20
        );
        peaks.push((load, refresh, restart));
    }
    // Rows held in memory would add ~110 MiB at rest and ~390 MiB during a refresh for these 3M
    // more rows (36 and 129 MiB per million, as measured before versions were streamed); the
    // debug build's peaks move by up to ~55 MiB from run to run (allocator, scan buffers).
    let bound = 96 << 20;
    let (small, large) = (peaks[0], peaks[1]);
    for (what, a, b) in [
        ("load", small.0, large.0),
        ("refresh", small.1, large.1),
        ("restart", small.2, large.2),
    ] {
        assert!(
            b < a + bound,
            "peak RSS at {what}: {} MiB for 4M rows vs {} MiB for 1M rows",
            b >> 20,
            a >> 20
        );
    }
}

/// A source the table's version came from is not read again: /status says since when it is
/// unchanged. A change, even one of the same size within the same clock tick, is read.
#[test]
fn an_unchanged_source_is_not_read_again() {
    let config = sportelli_config();
    config.write("data/sportelli.csv", "id,nome\n1,Navile\n2,Porto\n");
    let server = Server::start_ready(&config);
    let loaded = server.table_status("uffici.sportelli");
    assert_eq!(loaded["rows"], 2);
    assert!(loaded["unchanged_since"].is_null(), "{loaded}");
    server.wait_until("a refresh that finds the file unchanged", |s| {
        s.table_status("uffici.sportelli")["unchanged_since"].is_string()
    });
    let unchanged = server.table_status("uffici.sportelli");
    assert_eq!(unchanged["state"], "fresh");
    assert_ne!(unchanged["last_success"], loaded["last_success"]);

    // Same size, rewritten in place at once: only the content tells.
    config.write("data/sportelli.csv", "id,nome\n1,Navile\n2,Reno_\n");
    server.wait_until("the changed file to be read", |s| {
        s.rows("SELECT nome FROM uffici.sportelli WHERE id = 2")
            .first()
            .is_some_and(|r| r["nome"] == "Reno_")
    });
    // A restart does not read the file either: the version on disk is the file's.
    drop(server);
    let server = Server::start_ready(&config);
    server.wait_until("the restarted table to be confirmed unchanged", |s| {
        let status = s.table_status("uffici.sportelli");
        status["state"] == "fresh" && status["unchanged_since"].is_string()
    });
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM uffici.sportelli")[0]["n"],
        2
    );
}

/// kill -9 while a new version is being written: the restarted server serves the previous
/// version whole (no row lost, none twice), removes the unfinished file, and the next load
/// takes the new source exactly.
#[test]
fn a_kill_during_a_load_leaves_the_previous_version() {
    let config = readings_config("1s");
    let data = config.path().join("data/letture.parquet");
    write_readings(&data, 200_000);
    let server = Server::start_ready(&config);
    assert_eq!(count_and_sum(&server), (200_000, value_sum(200_000)));
    let versions = config.path().join("var/snapshots/sensori");
    let unfinished = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".parquet.tmp"))
    };
    write_readings(&data, 3_000_000);
    server.wait_until("a version being written", |_| unfinished(&versions));
    let pid = server.pid();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(server);
    assert!(
        unfinished(&versions),
        "the kill came after the write finished"
    );

    // The source goes away: what the restart serves is what was on disk.
    let moved = config.path().join("data/letture.later");
    std::fs::rename(&data, &moved).unwrap();
    let server = Server::start_ready(&config);
    assert_eq!(count_and_sum(&server), (200_000, value_sum(200_000)));
    assert_eq!(
        server.table_status("sensori.letture")["from_persisted_snapshot"],
        true
    );
    assert!(!unfinished(&versions), "the unfinished version is removed");

    std::fs::rename(&moved, &data).unwrap();
    server.wait_until("the new source to be loaded", |s| {
        s.table_status("sensori.letture")["rows"] == 3_000_000
    });
    assert_eq!(count_and_sum(&server), (3_000_000, value_sum(3_000_000)));
}

/// A text column holding more than 2 GiB (past 32-bit string offsets) loads, batch by batch, and
/// answers.
#[test]
fn a_table_with_more_than_2_gib_of_text_loads_and_answers() {
    const ROWS: usize = 2_200_000;
    const WIDTH: usize = 1_000;
    let config = ConfigDir::empty();
    config.write(
        "connectors/note.toml",
        r#"kind = "file"
refresh = "1h"

[[table]]
name = "testi"
path = "data/testi.parquet"
"#,
    );
    let path = config.path().join("data/testi.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("testo", DataType::Utf8, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
    let filler = "x".repeat(WIDTH - 8);
    let step = 50_000;
    for start in (0..ROWS).step_by(step) {
        let range = start..(start + step).min(ROWS);
        let ids = Int64Array::from_iter_values(range.clone().map(|i| i as i64));
        let texts =
            StringArray::from_iter_values(range.map(|i| format!("{:08}{filler}", i % 100_000_000)));
        writer
            .write(
                &RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)])
                    .unwrap(),
            )
            .unwrap();
    }
    writer.close().unwrap();
    let server = Server::start_ready(&config);
    let status = server.table_status("note.testi");
    assert_eq!(status["state"], "fresh", "{status}");
    let row = &server.rows(
        "SELECT count(*) AS n, sum(length(testo)) AS chars, max(testo) AS last FROM note.testi",
    )[0];
    assert_eq!(row["n"], ROWS as i64);
    assert_eq!(row["chars"], (ROWS * WIDTH) as i64);
    assert!(
        row["last"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{:08}", ROWS - 1)),
        "{row}"
    );
}

/// A table whose only load failed has no version to serve: /readyz is 503 and names it, and 200
/// once a load succeeds.
#[test]
fn readyz_is_503_while_a_table_has_no_version() {
    let config = sportelli_config();
    let server = Server::start_ready(&config);
    let response = server.get("/readyz");
    assert_eq!(response.status(), 503);
    let problem: serde_json::Value = response.json().unwrap();
    assert_eq!(problem["failed"], serde_json::json!(["uffici.sportelli"]));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("uffici.sportelli"),
        "{problem}"
    );
    config.write("data/sportelli.csv", "id,nome\n1,Navile\n");
    server.wait_until("ready once the file is there", |s| {
        s.get("/readyz").status() == 200
    });
}

/// The file of the latest version of `sensori.letture`.
fn latest_version(config: &ConfigDir) -> std::path::PathBuf {
    let dir = config.path().join("var/snapshots/sensori");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .max()
        .expect("a version file")
}

/// Every row of the latest version of `sensori.letture`, read from its file.
fn version_batches(config: &ConfigDir) -> Vec<RecordBatch> {
    let file = std::fs::File::open(latest_version(config)).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The (min, max) of the metric column in each row group of the latest version.
fn metric_row_groups(config: &ConfigDir) -> Vec<(String, String)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    let version = latest_version(config);
    let reader = SerializedFileReader::new(std::fs::File::open(&version).unwrap()).unwrap();
    let metadata = reader.metadata();
    let metric = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "metric")
        .unwrap();
    metadata
        .row_groups()
        .iter()
        .map(|group| match group.column(metric).statistics() {
            Some(Statistics::ByteArray(s)) => (
                String::from_utf8(s.min_opt().unwrap().data().to_vec()).unwrap(),
                String::from_utf8(s.max_opt().unwrap().data().to_vec()).unwrap(),
            ),
            other => panic!("no text statistics for metric: {other:?}"),
        })
        .collect()
}

/// A table with `sort_by` is stored in that order, sorted in bounded memory (8 MiB here, so the
/// sort spills): its row groups hold ranges of the leading column, the rows are all there once,
/// and a misnamed sort column fails the table with a problem naming it.
#[test]
fn a_table_with_sort_by_is_stored_in_order() {
    let rows = 2_500_000;
    let config = ConfigDir::empty();
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n[storage]\nsort_memory = \"8 MiB\"\n",
    );
    let connector = |sort_by: &str| {
        format!(
            "kind = \"file\"\nrefresh = \"1s\"\n\n[[table]]\nname = \"letture\"\npath = \"data/letture.parquet\"\nsort_by = {sort_by}\n"
        )
    };
    config.write(
        "connectors/sensori.toml",
        &connector(r#"["metric", "area"]"#),
    );
    write_readings(&config.path().join("data/letture.parquet"), rows);
    let server = Server::start_ready(&config);
    assert_eq!(count_and_sum(&server), (rows as i64, value_sum(rows)));
    let per_metric = server.rows(
        "SELECT metric, count(*) AS n, count(DISTINCT area) AS areas FROM sensori.letture GROUP BY metric ORDER BY metric",
    );
    assert_eq!(per_metric.len(), 5, "{per_metric:?}");
    for row in &per_metric {
        assert_eq!(row["n"], rows / 5, "{row}");
    }

    // Row groups in order of the metric, each holding one or two metrics: a filter on the metric
    // reads only the row groups whose range holds it.
    let groups = metric_row_groups(&config);
    assert!(groups.len() >= 3, "{groups:?}");
    assert!(
        groups.windows(2).all(|w| w[0].1 <= w[1].0),
        "row groups overlap: {groups:?}"
    );
    let holding_latency = groups
        .iter()
        .filter(|(min, max)| min.as_str() <= "latency_ms" && "latency_ms" <= max.as_str())
        .count();
    assert!(holding_latency < groups.len(), "{groups:?}");
    let latency = server.rows(
        "SELECT count(*) AS n, min(area) AS first, max(area) AS last FROM sensori.letture WHERE metric = 'latency_ms'",
    );
    assert_eq!(latency[0]["n"], rows / 5);
    // Every row in order of (metric, area), read back from the version file.
    let mut previous: Option<(String, i64)> = None;
    for batch in version_batches(&config) {
        let metric = batch.column_by_name("metric").unwrap();
        let metric = metric.as_any().downcast_ref::<StringArray>().unwrap();
        let area = batch.column_by_name("area").unwrap();
        let area = area.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            let this = (metric.value(i).to_string(), area.value(i));
            if let Some(before) = &previous {
                assert!(*before <= this, "{before:?} before {this:?}");
            }
            previous = Some(this);
        }
    }
    assert!(
        std::fs::read_dir(config.path().join("var/.sort"))
            .map(|d| d
                .flatten()
                .all(|e| std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none())))
            .unwrap_or(true),
        "spilled runs are removed once the version is written"
    );

    // A column the table lacks: the table fails, naming it; the version already there stays.
    config.write("connectors/sensori.toml", &connector(r#"["metrica"]"#));
    drop(server);
    write_readings(&config.path().join("data/letture.parquet"), 1000);
    let server = Server::start(&config);
    server.wait_until("the load to fail", |s| {
        s.table_status("sensori.letture")["last_error"].is_string()
    });
    let status = server.table_status("sensori.letture");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("sort_by") && error.contains("metrica") && error.contains("\"metric\""),
        "{status}"
    );
    assert_eq!(count_and_sum(&server), (rows as i64, value_sum(rows)));
}
