//! `cargo bench --bench sql`: three aggregate queries over a 10-million-row synthetic sensor table
//! in Parquet, run through `POST /api/v1/sql` of the real server binary, through in-process
//! DataFusion over the same data and partitioning, and through DuckDB (the Python package) on the
//! same file, in the same run. Prints the medians, the ratios and whether the targets are met:
//! HTTP ≤ 1.1× in-process DataFusion and ≤ 1.5× DuckDB.
//!
//! See benches/README.md for what each column measures.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

/// The server's allocator (src/main.rs), so that in-process DataFusion runs on the same footing
/// and HTTP / in-process is what the service adds, not what an allocator changes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// ---------------------------------------------------------------------------------------------
// Parameters

const ROWS: usize = 10_000_000;
const SENSORS: usize = 2_000;
const AREAS: i64 = 90;
const METRICS: [&str; 5] = [
    "clients",
    "download_mbps",
    "upload_mbps",
    "latency_ms",
    "people",
];
/// Readings per (sensor, metric) series: 2,000 sensors × 5 metrics × 1,000 = 10,000,000 rows.
const STEPS: usize = ROWS / (SENSORS * METRICS.len());
/// 2024-03-01T00:00:00Z in microseconds; the readings cover 30 days from there.
const START_MICROS: i64 = 1_709_251_200_000_000;
const SPAN_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;
/// Time steps per record batch (and Parquet row group): 100 × 10,000 = 1,000,000 rows.
const STEPS_PER_GROUP: usize = 100;
const SEED: u64 = 0x00c0_ffee_5eed_2024;
/// Bump when the generator changes, so a cached file from an older generator is rebuilt.
const GENERATOR: &str = "cruscotto-bench-sensors-v1";
const GENERATOR_KEY: &str = "cruscotto.bench.generator";

const WARMUP: usize = 2;
/// Timed runs per query and engine: at least `RUNS`, and more for a fast query until HTTP and
/// in-process together have run `MIN_TIMED` (at most `MAX_RUNS`), so that a 20 ms query's
/// median is not left to 15 samples of a machine whose load changes from second to second.
const RUNS: usize = 15;
const MIN_TIMED: Duration = Duration::from_secs(6);
const MAX_RUNS: usize = 301;
/// The server binary's rows per registered batch (`ROWS_PER_BATCH` in src/store/mod.rs).
const SERVER_ROWS_PER_BATCH: usize = 64 * 1024;
/// The `[query] memory_limit` given to the server, mirrored in process.
const MEMORY_LIMIT: usize = 4 * 1024 * 1024 * 1024;

/// Column kinds of a result, to compare the three engines' answers value by value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Int,
    Float,
    Text,
    /// A timestamp, compared as microseconds since the epoch.
    Time,
}

struct BenchQuery {
    name: &'static str,
    label: &'static str,
    /// The SQL, written once; `{table}` becomes the engine's name for the table.
    sql: &'static str,
    columns: &'static [(&'static str, Kind)],
}

/// The three queries. Output columns carry aliases only so that every engine names them
/// the same way (a JSON object does not keep column order); the work is unchanged.
const QUERIES: &[BenchQuery] = &[
    BenchQuery {
        name: "a",
        label: "(a) by area and metric",
        sql: "SELECT area, metric, count(*) AS n, avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value \
              FROM {table} GROUP BY area, metric ORDER BY area, metric",
        columns: &[
            ("area", Kind::Int),
            ("metric", Kind::Text),
            ("n", Kind::Int),
            ("avg_value", Kind::Float),
            ("min_value", Kind::Float),
            ("max_value", Kind::Float),
        ],
    },
    BenchQuery {
        name: "b",
        label: "(b) hourly, area 42",
        sql: "SELECT date_trunc('hour', ts) AS hour, metric, avg(value) AS avg_value \
              FROM {table} WHERE area = 42 GROUP BY 1, 2 ORDER BY 1, 2",
        columns: &[
            ("hour", Kind::Time),
            ("metric", Kind::Text),
            ("avg_value", Kind::Float),
        ],
    },
    BenchQuery {
        name: "c",
        label: "(c) top sensors > 80 ms",
        sql: "SELECT sensor_id, count(*) AS n, max(value) AS peak \
              FROM {table} WHERE metric = 'latency_ms' AND value > 80 GROUP BY sensor_id ORDER BY n DESC LIMIT 20",
        columns: &[
            ("sensor_id", Kind::Text),
            ("n", Kind::Int),
            ("peak", Kind::Float),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// Data

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) from the `stream`-th random number of row `row`.
fn uniform(row: u64, stream: u64) -> f64 {
    (splitmix64(SEED ^ row.wrapping_mul(4).wrapping_add(stream)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The area of sensor `k` (1-based): 37 is coprime with 90, so every area gets 22 or 23 sensors.
fn sensor_area(k: usize) -> i64 {
    1 + (k as i64 * 37) % AREAS
}

/// Every 67th sensor is faulty: its latency exceeds 80 ms in a fixed share of its readings,
/// 10%, 11%, … 38%, so the top 20 of query (c) are 20 distinct, well-separated counts (about
/// 190 to 380) far above the ordinary sensors (4% of readings, about 40 ± 6).
fn faulty_share(k: usize) -> Option<f64> {
    (k % 67 == 0).then(|| 0.10 + 0.01 * (k / 67 - 1) as f64)
}

fn sensors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("area", DataType::Int64, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// Rows of time steps `steps`: time-major, like telemetry arriving every 43.2 minutes from each
/// of the 2,000 access points, one reading per metric.
fn generate_batch(schema: &SchemaRef, steps: std::ops::Range<usize>) -> RecordBatch {
    let rows = steps.len() * SENSORS * METRICS.len();
    let step_micros = SPAN_MICROS / STEPS as i64;
    let sensor_names: Vec<String> = (1..=SENSORS).map(|k| format!("ap-{k:04}")).collect();
    let mut sensor_id = Vec::with_capacity(rows);
    let mut area = Vec::with_capacity(rows);
    let mut metric = Vec::with_capacity(rows);
    let mut ts = Vec::with_capacity(rows);
    let mut value = Vec::with_capacity(rows);
    for t in steps {
        for k in 1..=SENSORS {
            // Each access point reports at its own offset within the step, plus up to 1 s of jitter.
            let offset = (k as i64 - 1) * (step_micros / SENSORS as i64);
            for (m, name) in METRICS.iter().enumerate() {
                let row = ((t * SENSORS + (k - 1)) * METRICS.len() + m) as u64;
                let (u, w) = (uniform(row, 0), uniform(row, 1));
                let jitter = (uniform(row, 2) * 1_000_000.0) as i64;
                let v = match *name {
                    "clients" => (u * 120.0).floor(),
                    "download_mbps" => 20.0 + 480.0 * u * w.sqrt(),
                    "upload_mbps" => 5.0 + 95.0 * u * w,
                    "latency_ms" => {
                        let exceeds = match faulty_share(k) {
                            // A low-discrepancy sequence: the count over 1,000 steps is exact to ±1.
                            Some(share) => {
                                ((t as f64 + 0.5) * 0.618_033_988_749_894_9 + k as f64 * 0.1)
                                    .fract()
                                    < share
                            }
                            None => u < 0.04,
                        };
                        if exceeds {
                            80.5 - 40.0 * (1.0 - w).ln()
                        } else {
                            5.0 + 70.0 * w.powf(1.5)
                        }
                    }
                    _ => (u * 60.0).floor(),
                };
                sensor_id.push(sensor_names[k - 1].as_str());
                area.push(sensor_area(k));
                metric.push(*name);
                ts.push(START_MICROS + t as i64 * step_micros + offset + jitter);
                value.push(v);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(sensor_id)),
        Arc::new(Int64Array::from(area)),
        Arc::new(StringArray::from(metric)),
        Arc::new(TimestampMicrosecondArray::from(ts)),
        Arc::new(Float64Array::from(value)),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("generated columns match the schema")
}

/// Whether `path` is a complete file of the current generator.
fn cached_file_ok(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return false;
    };
    let meta = builder.metadata().file_metadata();
    let generator = meta
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == GENERATOR_KEY))
        .and_then(|kv| kv.value.clone());
    meta.num_rows() as usize == ROWS && generator.as_deref() == Some(GENERATOR)
}

/// The sensors file, generated once and cached; rebuilt when missing, incomplete or older.
fn ensure_parquet(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the bench data folder");
    let path = dir.join("sensors.parquet");
    if cached_file_ok(&path) {
        println!("data: {} (cached)", path.display());
        return path;
    }
    let started = Instant::now();
    let temporary = dir.join("sensors.parquet.tmp");
    let schema = sensors_schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(STEPS_PER_GROUP * SENSORS * METRICS.len()))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            GENERATOR_KEY.to_string(),
            GENERATOR.to_string(),
        )]))
        .build();
    let file = File::create(&temporary).expect("create the Parquet file");
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).expect("Parquet writer");
    for first in (0..STEPS).step_by(STEPS_PER_GROUP) {
        let batch = generate_batch(&schema, first..(first + STEPS_PER_GROUP).min(STEPS));
        writer.write(&batch).expect("write a row group");
        writer.flush().expect("close the row group");
    }
    writer.close().expect("finish the Parquet file");
    std::fs::rename(&temporary, &path).expect("move the Parquet file into place");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "data: generated {} ({} rows, {:.0} MB) in {:.1} s",
        path.display(),
        ROWS,
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Results in one comparable form

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Int(i64),
    Float(f64),
    Text(String),
    Time(i64),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v}"),
            Cell::Text(v) => write!(f, "{v:?}"),
            Cell::Time(v) => match chrono::DateTime::from_timestamp_micros(*v) {
                Some(t) => write!(f, "{}", t.naive_utc()),
                None => write!(f, "{v}µs"),
            },
        }
    }
}

type Rows = Vec<Vec<Cell>>;

fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = text.parse::<chrono::NaiveDateTime>() {
        return Some(t.and_utc().timestamp_micros());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_micros());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn json_cell(value: &serde_json::Value, kind: Kind) -> Result<Cell, String> {
    let bad = || format!("cannot read {value} as {kind:?}");
    match kind {
        Kind::Int => value.as_i64().map(Cell::Int).ok_or_else(bad),
        Kind::Float => value.as_f64().map(Cell::Float).ok_or_else(bad),
        Kind::Text => value
            .as_str()
            .map(|s| Cell::Text(s.to_string()))
            .ok_or_else(bad),
        Kind::Time => value
            .as_str()
            .and_then(parse_time)
            .map(Cell::Time)
            .ok_or_else(bad),
    }
}

/// The server's JSON: an array of objects keyed by column name.
fn rows_from_server_json(body: &[u8], query: &BenchQuery) -> Result<Rows, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let records = value.as_array().ok_or("the body is not a JSON array")?;
    records
        .iter()
        .map(|record| {
            query
                .columns
                .iter()
                .map(|(name, kind)| {
                    json_cell(
                        record
                            .get(*name)
                            .ok_or_else(|| format!("no column `{name}` in {record}"))?,
                        *kind,
                    )
                })
                .collect()
        })
        .collect()
}

/// The DuckDB script's JSON: an array of arrays in column order.
fn rows_from_duckdb_json(rows: &serde_json::Value, query: &BenchQuery) -> Result<Rows, String> {
    rows.as_array()
        .ok_or("rows are not an array")?
        .iter()
        .map(|row| {
            let cells = row.as_array().ok_or("a row is not an array")?;
            if cells.len() != query.columns.len() {
                return Err(format!(
                    "a row has {} columns, expected {}",
                    cells.len(),
                    query.columns.len()
                ));
            }
            cells
                .iter()
                .zip(query.columns)
                .map(|(cell, (_, kind))| json_cell(cell, *kind))
                .collect()
        })
        .collect()
}

fn rows_from_batches(batches: &[RecordBatch], query: &BenchQuery) -> Result<Rows, String> {
    let mut rows = Vec::new();
    for batch in batches {
        if batch.num_columns() != query.columns.len() {
            return Err(format!(
                "{} columns, expected {}",
                batch.num_columns(),
                query.columns.len()
            ));
        }
        let mut columns: Vec<Vec<Cell>> = Vec::new();
        for (column, (_, kind)) in batch.columns().iter().zip(query.columns) {
            let err = |e: arrow::error::ArrowError| e.to_string();
            let cells: Vec<Cell> = match kind {
                Kind::Int => {
                    let a = cast(column, &DataType::Int64).map_err(err)?;
                    let a = a.as_any().downcast_ref::<Int64Array>().ok_or("not Int64")?;
                    a.iter().map(|v| Cell::Int(v.unwrap_or_default())).collect()
                }
                Kind::Float => {
                    let a = cast(column, &DataType::Float64).map_err(err)?;
                    let a = a
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .ok_or("not Float64")?;
                    a.iter()
                        .map(|v| Cell::Float(v.unwrap_or(f64::NAN)))
                        .collect()
                }
                Kind::Text => {
                    let a = cast(column, &DataType::Utf8).map_err(err)?;
                    let a = a.as_any().downcast_ref::<StringArray>().ok_or("not Utf8")?;
                    a.iter()
                        .map(|v| Cell::Text(v.unwrap_or_default().to_string()))
                        .collect()
                }
                Kind::Time => {
                    let a = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
                        .map_err(err)?;
                    let a = a
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .ok_or("not a timestamp")?;
                    a.iter()
                        .map(|v| Cell::Time(v.unwrap_or_default()))
                        .collect()
                }
            };
            columns.push(cells);
        }
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    Ok(rows)
}

fn same_cell(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        // Averages may differ in the last bits with the order of summation.
        (Cell::Float(x), Cell::Float(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Compare two results; `None` if they agree. Query (c) orders by `n` only, so rows are compared
/// after sorting by (n desc, sensor_id); a difference among rows tied at the cut-off `n` would be
/// legitimate and is reported as such.
fn compare(query: &BenchQuery, reference: &Rows, other: &Rows) -> Option<String> {
    if reference.len() != other.len() {
        return Some(format!("{} rows against {}", other.len(), reference.len()));
    }
    let (reference, other) = if query.name == "c" {
        let sorted = |rows: &Rows| {
            let mut rows = rows.clone();
            rows.sort_by(|a, b| match (&a[1], &b[1], &a[0], &b[0]) {
                (Cell::Int(x), Cell::Int(y), Cell::Text(s), Cell::Text(t)) => {
                    y.cmp(x).then(s.cmp(t))
                }
                _ => std::cmp::Ordering::Equal,
            });
            rows
        };
        (sorted(reference), sorted(other))
    } else {
        (reference.clone(), other.clone())
    };
    let cut_off = reference.last().map(|r| r[1].clone());
    for (i, (r, o)) in reference.iter().zip(&other).enumerate() {
        if r.len() != o.len() || !r.iter().zip(o).all(|(x, y)| same_cell(x, y)) {
            let show = |row: &Vec<Cell>| {
                row.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let tie = query.name == "c"
                && Some(&r[1]) == cut_off.as_ref()
                && Some(&o[1]) == cut_off.as_ref();
            return Some(format!(
                "row {}: ({}) against ({}){}",
                i + 1,
                show(o),
                show(r),
                if tie {
                    " [a tie at the LIMIT cut-off: both answers are correct]"
                } else {
                    ""
                }
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The server

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(parquet: &Path) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("cruscotto-bench-")
            .tempdir()
            .expect("temporary folder");
        let config = dir.path().join("cruscotto.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[query]\ntimeout = \"300s\"\nmemory_limit = \"4 GiB\"\nmax_rows = 10000000\n\n\
                 # No key needed on 127.0.0.1, and no rate limit in the way of the timed runs.\n\
                 [access]\nanonymous = \"analyst\"\nrequests_per_minute = 1000000\nburst = 100000\n",
                dir.path().join("var").display().to_string()
            ),
        )
        .expect("write the configuration");
        std::fs::create_dir_all(dir.path().join("connectors")).expect("connectors folder");
        std::fs::write(
            dir.path().join("connectors/bench.toml"),
            format!("kind = \"file\"\nrefresh = \"24h\"\n\n[[table]]\nname = \"readings\"\npath = {:?}\n", parquet.display().to_string()),
        )
        .expect("write the connector");
        let log = dir.path().join("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cruscotto"))
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("server log"))
            .spawn()
            .expect("start the server binary");
        let started = Instant::now();
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("cruscotto listening on ") {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(address.trim().to_string());
                    }
                }
            }
        });
        let base = match receiver.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => base,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let why = match e {
                    std::sync::mpsc::RecvTimeoutError::Timeout => {
                        "did not print its address within 120 s".to_string()
                    }
                    std::sync::mpsc::RecvTimeoutError::Disconnected => {
                        format!("exited ({status}) without printing its address")
                    }
                };
                panic!("the server {why}; its log:\n{}", tail(&log));
            }
        };
        let mut server = Server {
            child,
            base,
            log,
            _dir: dir,
        };
        // Loading 10M rows from Parquet and persisting the snapshot takes a while: poll /readyz.
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the server exited ({status}) before it was ready; its log:\n{}",
                    tail(&server.log)
                );
            }
            if let Ok(response) = client.get(format!("{}/readyz", server.base)).send() {
                if response.status() == reqwest::StatusCode::OK {
                    break;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "the server was not ready within 900 s; its log:\n{}",
                    tail(&server.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "server: {} ready in {:.1} s (pid {})",
            server.base,
            started.elapsed().as_secs_f64(),
            server.child.id()
        );
        server
    }

    /// A line of /proc/<pid>/status, e.g. `VmHWM`, in bytes.
    fn proc_status_bytes(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The timed HTTP client: reqwest's async client driven on the calling thread by a
/// current-thread runtime, so the connection and the body are read where the time is taken
/// (the blocking client hands every body chunk over from a background thread).
struct HttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A body and the server's `Server-Timing` durations: (query ms, encode ms).
struct HttpAnswer {
    body: bytes::Bytes,
    server: Option<(f64, f64)>,
}

impl HttpClient {
    fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .expect("HTTP client"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("client runtime"),
        }
    }

    fn query(&self, base: &str, sql: &str) -> Result<HttpAnswer, String> {
        self.runtime.block_on(async {
            let response = self
                .client
                .post(format!("{base}/api/v1/sql"))
                .header("content-type", "text/plain")
                .body(sql.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let server = response
                .headers()
                .get("server-timing")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_server_timing);
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(HttpAnswer { body, server })
        })
    }
}

/// `query;dur=1.234, encode;dur=0.100` → (1.234, 0.100).
fn parse_server_timing(text: &str) -> Option<(f64, f64)> {
    let duration = |name: &str| {
        text.split(',').find_map(|m| {
            m.trim()
                .strip_prefix(name)?
                .strip_prefix(";dur=")?
                .parse()
                .ok()
        })
    };
    Some((duration("query")?, duration("encode")?))
}

// ---------------------------------------------------------------------------------------------
// In-process DataFusion, set up like the server

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What the file connector does with a Parquet file (`read_parquet` in
/// src/connectors/file/mod.rs): read every batch and concatenate them into one.
fn load_like_the_server(parquet: &Path) -> (SchemaRef, RecordBatch) {
    let file = File::open(parquet).expect("open the Parquet file");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("Parquet reader");
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .build()
        .expect("Parquet reader")
        .collect::<Result<_, _>>()
        .expect("read the Parquet file");
    let batch = concat_batches(&schema, &batches).expect("concatenate");
    (schema, batch)
}

/// The store's `partition` (src/store/mod.rs): 64K-row slices dealt round-robin over the partitions.
fn partition_like_the_server(batches: &[RecordBatch], partitions: usize) -> Vec<Vec<RecordBatch>> {
    let mut out = vec![Vec::new(); partitions];
    let mut next = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let length = SERVER_ROWS_PER_BATCH.min(batch.num_rows() - offset);
            out[next % partitions].push(batch.slice(offset, length));
            next += 1;
            offset += length;
        }
    }
    out
}

fn in_process_context(parquet: &Path) -> SessionContext {
    let (schema, batch) = load_like_the_server(parquet);
    let partitions = partition_like_the_server(&[batch], cores());
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(cores());
    // The server's per-query runtime: a memory pool of `memory_limit`, no spilling.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(MEMORY_LIMIT, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .expect("runtime environment");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.catalog("datafusion")
        .expect("default catalog")
        .register_schema("bench", Arc::new(MemorySchemaProvider::new()))
        .expect("register schema bench");
    ctx.register_table(
        "bench.readings",
        Arc::new(MemTable::try_new(schema, partitions).expect("MemTable")),
    )
    .expect("register bench.readings");
    ctx
}

/// In-process DataFusion: the context and a runtime with as many workers as cores, like the
/// server's query runtime. A query runs as a task on that runtime, as in the server.
struct InProcess {
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl InProcess {
    fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let ctx = self.ctx.clone();
        let sql = sql.to_string();
        let task = self
            .runtime
            .spawn(async move { ctx.sql(&sql).await?.collect().await });
        self.runtime
            .block_on(task)
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// DuckDB

struct DuckDbResults {
    version: String,
    load_ms: f64,
    /// Per query name: median ms of the in-memory table, of `read_parquet`, and the result rows.
    table_ms: BTreeMap<String, f64>,
    parquet_ms: BTreeMap<String, f64>,
    rows: BTreeMap<String, serde_json::Value>,
}

fn run_duckdb(parquet: &Path) -> Result<DuckDbResults, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_bench.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let spec = serde_json::json!({
        "parquet": parquet.display().to_string(),
        "threads": cores(),
        "warmup": WARMUP,
        "runs": RUNS,
        "queries": QUERIES.iter().map(|q| serde_json::json!({"name": q.name, "sql": q.sql})).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start `{python} {}`: {e}", script.display()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(spec.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "the DuckDB script printed no JSON ({e}); exit status {}",
            output.status
        )
    })?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Err(error.to_string());
    }
    let medians = |key: &str| -> BTreeMap<String, f64> {
        value[key]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(DuckDbResults {
        version: value["version"].as_str().unwrap_or("?").to_string(),
        load_ms: value["load_ms"].as_f64().unwrap_or(f64::NAN),
        table_ms: medians("table_ms"),
        parquet_ms: medians("parquet_ms"),
        rows: value["rows"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// Medians in ms of `a` and `b`, run alternately (and each first in turn), so that on a shared
/// machine whose load changes from one second to the next both are timed under the same load;
/// and the number of timed runs of each.
fn time_alternating(
    warmup: usize,
    mut a: impl FnMut() -> Result<(), String>,
    mut b: impl FnMut() -> Result<(), String>,
) -> Result<(f64, f64, usize), String> {
    for _ in 0..warmup {
        a()?;
        b()?;
    }
    let timed = |run: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        let started = Instant::now();
        run()?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut samples_a, mut samples_b) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut i = 0;
    while i < RUNS || (started.elapsed() < MIN_TIMED && i < MAX_RUNS) {
        if i % 2 == 0 {
            samples_a.push(timed(&mut a)?);
            samples_b.push(timed(&mut b)?);
        } else {
            samples_b.push(timed(&mut b)?);
            samples_a.push(timed(&mut a)?);
        }
        i += 1;
    }
    Ok((median(samples_a), median(samples_b), i))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| {
        format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
    })
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure.
    let data_dir = std::env::var_os("CRUSCOTTO_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("cruscotto-bench"));
    println!(
        "cruscotto SQL benchmark: {ROWS} rows, {} cores, {WARMUP} warm-up + at least {RUNS} timed runs per query and engine \
         (HTTP and in-process: more for a fast query, until the pair has run {} s; DuckDB: {RUNS})",
        cores(),
        MIN_TIMED.as_secs()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let one: f64 = load
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0);
        println!(
            "load average before start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        if one > 0.5 {
            println!(
                "warning: the machine is busy (1-minute load {one:.2}); timings will be noisy"
            );
        }
    }
    // reqwest is built with `rustls-no-provider` (the service's own HTTP connectors pick ring):
    // a client needs a process-wide provider, as in tests/common.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parquet = ensure_parquet(&data_dir);

    let server = Server::start(&parquet);
    let rss_after_load = server.proc_status_bytes("VmHWM");
    let http = HttpClient::new();

    let started = Instant::now();
    let local = InProcess {
        ctx: in_process_context(&parquet),
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores())
            .enable_all()
            .build()
            .expect("tokio runtime"),
    };
    println!(
        "in-process: loaded and partitioned like the server in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut failures: Vec<String> = Vec::new();

    // Sanity: both see all rows.
    let count_sql = "SELECT count(*) AS n FROM bench.readings";
    let count_query = BenchQuery {
        name: "count",
        label: "count",
        sql: "",
        columns: &[("n", Kind::Int)],
    };
    let server_count = http
        .query(&server.base, count_sql)
        .and_then(|a| rows_from_server_json(&a.body, &count_query));
    let local_count = local
        .query(count_sql)
        .and_then(|b| rows_from_batches(&b, &count_query));
    let expected = vec![vec![Cell::Int(ROWS as i64)]];
    if server_count.as_ref() == Ok(&expected) && local_count.as_ref() == Ok(&expected) {
        println!("row count: {ROWS} through HTTP and in process");
    } else {
        failures.push(format!("expected {ROWS} rows in bench.readings: server {server_count:?}, in-process {local_count:?}"));
    }

    println!(
        "DuckDB: loading the file into an in-memory table and timing (python3 benches/duckdb_bench.py) …"
    );
    let duckdb = run_duckdb(&parquet);
    match &duckdb {
        Ok(d) => println!(
            "DuckDB {}: CREATE TABLE … AS SELECT * FROM read_parquet(…) took {:.1} s",
            d.version,
            d.load_ms / 1000.0
        ),
        Err(e) => {
            println!("ERROR: DuckDB did not run: {e}");
            println!(
                "       install it with `pip install duckdb` (or set PYTHON to an interpreter that has it)"
            );
            failures.push(format!("DuckDB did not run: {e}"));
        }
    }

    // Same answers everywhere, before any timing counts.
    let mut server_sql_overhead = None;
    println!();
    println!("checking that the engines agree …");
    for query in QUERIES {
        let sql = query.sql.replace("{table}", "bench.readings");
        let reference = local.query(&sql).and_then(|b| rows_from_batches(&b, query));
        let reference = match reference {
            Ok(rows) => rows,
            Err(e) => {
                failures.push(format!(
                    "{}: in-process DataFusion failed: {e}",
                    query.label
                ));
                continue;
            }
        };
        let mut line = format!("  {}: {} rows", query.label, reference.len());
        match http
            .query(&server.base, &sql)
            .and_then(|answer| rows_from_server_json(&answer.body, query))
        {
            Ok(rows) => match compare(query, &reference, &rows) {
                None => line.push_str(", HTTP = in-process"),
                Some(diff) => failures.push(format!(
                    "{}: HTTP differs from in-process DataFusion: {diff}",
                    query.label
                )),
            },
            Err(e) => failures.push(format!("{}: HTTP failed: {e}", query.label)),
        }
        if let Ok(d) = &duckdb {
            match d
                .rows
                .get(query.name)
                .ok_or_else(|| "no rows reported".to_string())
                .and_then(|r| rows_from_duckdb_json(r, query))
            {
                Ok(rows) => match compare(query, &reference, &rows) {
                    None => line.push_str(", DuckDB = in-process"),
                    Some(diff) => failures.push(format!(
                        "{}: DuckDB differs from in-process DataFusion: {diff}",
                        query.label
                    )),
                },
                Err(e) => failures.push(format!("{}: DuckDB result unreadable: {e}", query.label)),
            }
        }
        println!("{line}");
        if query.name == "c" {
            let top: Vec<String> = reference
                .iter()
                .take(5)
                .map(|r| {
                    format!(
                        "{} n={} peak={:.1}",
                        r[0],
                        r[1],
                        match r[2] {
                            Cell::Float(v) => v,
                            _ => f64::NAN,
                        }
                    )
                })
                .collect();
            println!("    top 5: {}", top.join("; "));
        }
    }
    for failure in &failures {
        println!("ERROR: {failure}");
    }

    // Timing.
    println!();
    println!("timing …");
    struct Line {
        label: &'static str,
        name: &'static str,
        http: f64,
        local: f64,
        runs: usize,
        duck: Option<f64>,
        duck_parquet: Option<f64>,
    }
    let mut lines = Vec::new();
    let mut server_side = Vec::new();
    for query in QUERIES {
        let sql = query.sql.replace("{table}", "bench.readings");
        let mut body_bytes = 0;
        // HTTP and in-process alternate run by run, so both see the same machine; the server's
        // own times (Server-Timing) are kept for every HTTP run.
        let mut server_times = Vec::new();
        let timed = time_alternating(
            WARMUP,
            || {
                http.query(&server.base, &sql).map(|answer| {
                    body_bytes = answer.body.len();
                    server_times.extend(answer.server);
                })
            },
            || local.query(&sql).map(|_| ()),
        );
        if !server_times.is_empty() {
            server_side.push((
                query.label,
                median(server_times.iter().map(|t| t.0).collect()),
                median(server_times.iter().map(|t| t.1).collect()),
                body_bytes,
            ));
        }
        let (http, local, runs) = match timed {
            Ok(timed) => timed,
            Err(e) => {
                failures.push(format!("{}: timing failed: {e}", query.label));
                continue;
            }
        };
        let (duck, duck_parquet) = match &duckdb {
            Ok(d) => (
                d.table_ms.get(query.name).copied(),
                d.parquet_ms.get(query.name).copied(),
            ),
            Err(_) => (None, None),
        };
        lines.push(Line {
            label: query.label,
            name: query.name,
            http,
            local,
            runs,
            duck,
            duck_parquet,
        });
    }
    // The fixed cost of a request: a query that does no work.
    let trivial = "SELECT 1 AS one";
    if let Ok((h, l, _)) = time_alternating(
        WARMUP,
        || http.query(&server.base, trivial).map(|_| ()),
        || local.query(trivial).map(|_| ()),
    ) {
        server_sql_overhead = Some((h, l));
    }
    let rss_peak = server.proc_status_bytes("VmHWM");
    let rss_now = server.proc_status_bytes("VmRSS");

    let opt =
        |v: Option<f64>, digits: usize| v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"));
    println!();
    println!(
        "| query                   | runs | HTTP median ms | in-process median ms | DuckDB median ms | HTTP/in-process | HTTP/DuckDB |"
    );
    println!(
        "|-------------------------|-----:|---------------:|---------------------:|-----------------:|----------------:|------------:|"
    );
    for l in &lines {
        println!(
            "| {:<23} | {:>4} | {:>14.1} | {:>20.1} | {:>16} | {:>14.2}× | {:>10}× |",
            l.label,
            l.runs,
            l.http,
            l.local,
            opt(l.duck, 1),
            l.http / l.local,
            opt(l.duck.map(|d| l.http / d), 2)
        );
    }
    println!();
    println!(
        "extra, not a target: DuckDB querying read_parquet('sensors.parquet') directly (no in-memory table):"
    );
    for l in &lines {
        println!(
            "  {:<23} {:>8} ms  (HTTP/this {}×)",
            l.label,
            opt(l.duck_parquet, 1),
            opt(l.duck_parquet.map(|d| l.http / d), 2)
        );
    }
    let http_median = |label: &str| lines.iter().find(|l| l.label == label).map(|l| l.http);
    for (label, query_ms, encode_ms, bytes) in &server_side {
        let rest = http_median(label).map_or("n/a".to_string(), |h| {
            format!("{:.2}", h - query_ms - encode_ms)
        });
        println!(
            "extra: {label}: the server's Server-Timing medians: query {query_ms:.2} ms, encode {encode_ms:.2} ms; the rest of the HTTP median (HTTP, network, client) {rest} ms; JSON body {bytes} bytes"
        );
    }
    if let Some((h, l)) = server_sql_overhead {
        println!("extra: `SELECT 1` (fixed cost per query): HTTP {h:.2} ms, in-process {l:.2} ms");
    }
    println!();
    println!("targets:");
    let mut all_met = true;
    for l in &lines {
        let local_ok = l.http <= 1.1 * l.local;
        let duck_ok = l.duck.map(|d| l.http <= 1.5 * d);
        all_met &= local_ok && duck_ok == Some(true);
        println!(
            "  {} {:<23} HTTP ≤ 1.1× in-process: {:<7} HTTP ≤ 1.5× DuckDB: {}",
            l.name,
            l.label,
            if local_ok { "met" } else { "NOT met" },
            match duck_ok {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            }
        );
    }
    println!(
        "  all targets met: {}",
        if all_met && failures.is_empty() {
            "yes"
        } else {
            "no"
        }
    );
    println!();
    println!(
        "server memory: peak RSS (VmHWM) {} after loading, {} at the end; RSS now {}",
        mib(rss_after_load),
        mib(rss_peak),
        mib(rss_now)
    );
    if !failures.is_empty() {
        println!();
        for failure in &failures {
            println!("ERROR: {failure}");
        }
        drop(server);
        std::process::exit(1);
    }
    drop(server);
}
