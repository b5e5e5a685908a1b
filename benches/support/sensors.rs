//! The sensor readings the SQL and storage benches share (`benches/sql.rs`, `benches/storage.rs`):
//! the generator of any number of readings in Parquet, cached; the three queries; their answers
//! in one comparable form, to check that engines agree before timing; the real binary started on
//! a file connector; the timed HTTP client; and alternating timing.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

// ---------------------------------------------------------------------------------------------
// Parameters

pub const SENSORS: usize = 2_000;
const AREAS: i64 = 90;
const METRICS: [&str; 5] = [
    "clients",
    "download_mbps",
    "upload_mbps",
    "latency_ms",
    "people",
];
/// Rows of one time step: every sensor reports every metric once.
pub const ROWS_PER_STEP: usize = SENSORS * METRICS.len();
/// 2024-03-01T00:00:00Z in microseconds; the readings start there.
const START_MICROS: i64 = 1_709_251_200_000_000;
const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;
/// The time between two readings of a series: 43.2 minutes (10M rows, 1,000 steps, cover 30
/// days), shortened for more than 36,500 steps so the readings never cover more than a year
/// (350M rows, 35,000 steps: one every 15 minutes, as the sensors' log table holds a year).
fn step_micros(steps: usize) -> i64 {
    (30 * DAY_MICROS / 1_000).min(365 * DAY_MICROS / steps as i64)
}
/// Time steps per record batch (and Parquet row group): 100 × 10,000 = 1,000,000 rows.
const STEPS_PER_GROUP: usize = 100;
const SEED: u64 = 0x00c0_ffee_5eed_2024;
/// Bump when the generator changes, so a cached file from an older generator is rebuilt.
const GENERATOR: &str = "cruscotto-bench-sensors-v1";
const GENERATOR_KEY: &str = "cruscotto.bench.generator";

/// `10M`, `100M`, `350M`, `1500000` → a number of rows, a whole number of time steps.
pub fn parse_rows(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix(['M', 'm']) {
        Some(n) => (n, 1_000_000.0),
        None => match text.strip_suffix(['K', 'k']) {
            Some(n) => (n, 1_000.0),
            None => (text, 1.0),
        },
    };
    let rows = number
        .parse::<f64>()
        .map(|n| (n * scale).round() as usize)
        .map_err(|_| format!("`{text}` is not a number of rows (e.g. 10M, 350M)"))?;
    if rows == 0 || rows % ROWS_PER_STEP != 0 {
        return Err(format!(
            "{rows} rows is not a whole number of time steps of {ROWS_PER_STEP} readings"
        ));
    }
    Ok(rows)
}

/// 10000000 → `10M`.
pub fn rows_label(rows: usize) -> String {
    if rows % 1_000_000 == 0 {
        format!("{}M", rows / 1_000_000)
    } else {
        rows.to_string()
    }
}

/// Column kinds of a result, to compare the three engines' answers value by value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Int,
    Float,
    Text,
    /// A timestamp, compared as microseconds since the epoch.
    Time,
}

pub struct BenchQuery {
    pub name: &'static str,
    pub label: &'static str,
    /// The SQL, written once; `{table}` becomes the engine's name for the table.
    pub sql: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

/// The three queries. Output columns carry aliases only so that every engine names them
/// the same way (a JSON object does not keep column order); the work is unchanged.
pub const QUERIES: &[BenchQuery] = &[
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

/// The `n`-th pseudo-random number of the bench's seed (for other generated tables).
pub fn random(n: u64) -> u64 {
    splitmix64(SEED ^ n)
}

/// The area of sensor `k` (1-based): 37 is coprime with 90, so every area gets 22 or 23 sensors.
fn sensor_area(k: usize) -> i64 {
    1 + (k as i64 * 37) % AREAS
}

/// Every 67th sensor is faulty: its latency exceeds 80 ms in a fixed share of its readings,
/// 10%, 11%, … 38%, so the top 20 of query (c) are 20 distinct, well-separated counts (about
/// 190 to 380 at 10M rows) far above the ordinary sensors (4% of readings, about 40 ± 6).
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

/// Rows of time steps `steps` of `total_steps`: time-major, like telemetry arriving from each of
/// the 2,000 access points once a step, one reading per metric (the order a log table holds).
fn generate_batch(
    schema: &SchemaRef,
    steps: std::ops::Range<usize>,
    total_steps: usize,
) -> RecordBatch {
    let rows = steps.len() * ROWS_PER_STEP;
    let step_micros = step_micros(total_steps);
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

/// Whether `path` is a complete file of `rows` readings of the current generator.
fn cached_file_ok(path: &Path, rows: usize) -> bool {
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
    meta.num_rows() as usize == rows && generator.as_deref() == Some(GENERATOR)
}

/// The folder of the generated files: `CRUSCOTTO_BENCH_DATA`, else
/// `$CARGO_TARGET_DIR/tmp/cruscotto-bench/`.
pub fn data_folder() -> PathBuf {
    std::env::var_os("CRUSCOTTO_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("cruscotto-bench"))
}

/// The file of `rows` readings (`sensors-10M.parquet`), generated once and cached; rebuilt when
/// missing, incomplete or written by an older generator (a key in the file's metadata).
pub fn ensure_parquet(dir: &Path, rows: usize) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the bench data folder");
    let path = dir.join(format!("sensors-{}.parquet", rows_label(rows)));
    if cached_file_ok(&path, rows) {
        println!("data: {} (cached)", path.display());
        return path;
    }
    let started = Instant::now();
    let temporary = path.with_extension("parquet.tmp");
    let schema = sensors_schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(STEPS_PER_GROUP * ROWS_PER_STEP))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            GENERATOR_KEY.to_string(),
            GENERATOR.to_string(),
        )]))
        .build();
    let file = File::create(&temporary).expect("create the Parquet file");
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).expect("Parquet writer");
    let steps = rows / ROWS_PER_STEP;
    for first in (0..steps).step_by(STEPS_PER_GROUP) {
        let batch = generate_batch(&schema, first..(first + STEPS_PER_GROUP).min(steps), steps);
        writer.write(&batch).expect("write a row group");
        writer.flush().expect("close the row group");
    }
    writer.close().expect("finish the Parquet file");
    std::fs::rename(&temporary, &path).expect("move the Parquet file into place");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "data: generated {} ({} rows, {:.0} MB) in {:.1} s",
        path.display(),
        rows,
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Results in one comparable form

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
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

pub type Rows = Vec<Vec<Cell>>;

pub fn parse_time(text: &str) -> Option<i64> {
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

pub fn json_cell(value: &serde_json::Value, kind: Kind) -> Result<Cell, String> {
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
pub fn rows_from_server_json(body: &[u8], query: &BenchQuery) -> Result<Rows, String> {
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
pub fn rows_from_duckdb_json(rows: &serde_json::Value, query: &BenchQuery) -> Result<Rows, String> {
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

pub fn rows_from_batches(batches: &[RecordBatch], query: &BenchQuery) -> Result<Rows, String> {
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

pub fn same_cell(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        // Averages may differ in the last bits with the order of summation.
        (Cell::Float(x), Cell::Float(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Compare two results; `None` if they agree. Query (c) orders by `n` only, so rows are compared
/// after sorting by (n desc, sensor_id); a difference among rows tied at the cut-off `n` would be
/// legitimate and is reported as such.
pub fn compare(query: &BenchQuery, reference: &Rows, other: &Rows) -> Option<String> {
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
    let cut_off = reference.last().and_then(|r| r.get(1).cloned());
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

/// The `[query]` limits given to the server: generous, so that no timed query meets them.
pub const QUERY_LIMITS: &str =
    "[query]\ntimeout = \"300s\"\nmemory_limit = \"4 GiB\"\nmax_rows = 10000000\n";

/// A configuration in `dir`: data in `dir/var`, the generous query limits, anonymous analysts
/// with no rate limit in the way of the timed runs, and one file connector, `bench`, whose
/// tables are the given files (`bench.<name>`), checked every `refresh`. A table named
/// `readings` is stored sorted by `READINGS_SORT_BY`, as a city would configure its sensor
/// readings (`CRUSCOTTO_BENCH_SORT_BY=""` keeps the source's order).
pub fn write_config(dir: &Path, tables: &[(&str, &Path)], refresh: &str) {
    std::fs::write(
        dir.join("cruscotto.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n{QUERY_LIMITS}{}\n\
             # No key needed on 127.0.0.1, and no rate limit in the way of the timed runs.\n\
             [access]\nanonymous = \"analyst\"\nrequests_per_minute = 1000000\nburst = 100000\n",
            dir.join("var").display().to_string(),
            partitions_setting(),
        ),
    )
    .expect("write the configuration");
    let mut connector = format!("kind = \"file\"\nrefresh = {refresh:?}\n");
    for (name, path) in tables {
        connector.push_str(&format!(
            "\n[[table]]\nname = {name:?}\npath = {:?}\n",
            path.display().to_string()
        ));
        if *name == "readings" {
            connector.push_str(&format!("sort_by = {:?}\n", readings_sort_by()));
        }
    }
    std::fs::create_dir_all(dir.join("connectors")).expect("connectors folder");
    std::fs::write(dir.join("connectors/bench.toml"), connector).expect("write the connector");
}

/// `partitions = N` for the `[query]` section when `CRUSCOTTO_BENCH_PARTITIONS` is set (to
/// compare partition counts); otherwise nothing, and the server's default applies.
fn partitions_setting() -> String {
    match std::env::var("CRUSCOTTO_BENCH_PARTITIONS") {
        Ok(n) => format!(
            "partitions = {}\n",
            n.trim()
                .parse::<usize>()
                .expect("CRUSCOTTO_BENCH_PARTITIONS: a whole number")
        ),
        Err(_) => String::new(),
    }
}

/// The columns the server stores `readings` sorted by: the metric first (what (c) filters on
/// and every dashboard query of a sensor table names), then the area ((b) filters on it).
pub const READINGS_SORT_BY: &str = "metric,area";

/// `READINGS_SORT_BY`, or `CRUSCOTTO_BENCH_SORT_BY` when set (comma-separated; empty: none).
pub fn readings_sort_by() -> Vec<String> {
    std::env::var("CRUSCOTTO_BENCH_SORT_BY")
        .unwrap_or_else(|_| READINGS_SORT_BY.to_string())
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The real binary, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    log: PathBuf,
    /// From the process start until `GET /readyz` first answered 200.
    pub ready_in: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `cruscotto --config dir/cruscotto.toml serve --listen 127.0.0.1:0`; returns once
    /// `GET /readyz` answers 200 (every table has a version to serve). Its log goes to
    /// `dir/server.log`, appended to by each start.
    pub fn start(dir: &Path) -> Server {
        let log = dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("server log");
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cruscotto"))
            .arg("--config")
            .arg(dir.join("cruscotto.toml"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start the server binary");
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
            ready_in: Duration::ZERO,
        };
        // Loading a large Parquet file and persisting the snapshot takes a while: poll /readyz.
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(3600);
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
                    "the server was not ready within an hour; its log:\n{}",
                    tail(&server.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server.ready_in = started.elapsed();
        println!(
            "server: {} ready in {:.1} s (pid {})",
            server.base,
            server.ready_in.as_secs_f64(),
            server.child.id()
        );
        server
    }

    /// A line of /proc/<pid>/status, e.g. `VmHWM`, in bytes.
    pub fn proc_status_bytes(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Resets the peak resident memory (`VmHWM`) to the current one, so the next reading is the
    /// peak of what follows; false where the kernel does not allow it.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }

    /// Stops the server as an operator would (SIGTERM), killing it if it has not exited within
    /// a minute.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("warning: the server did not exit within 60 s of SIGTERM; killed");
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The timed HTTP client: reqwest's async client driven on the calling thread by a
/// current-thread runtime, so the connection and the body are read where the time is taken
/// (the blocking client hands every body chunk over from a background thread).
pub struct HttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A body and the server's `Server-Timing` durations: (query ms, encode ms).
pub struct HttpAnswer {
    pub body: bytes::Bytes,
    pub server: Option<(f64, f64)>,
}

impl HttpClient {
    pub fn new() -> Self {
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

    pub fn query(&self, base: &str, sql: &str) -> Result<HttpAnswer, String> {
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
pub fn parse_server_timing(text: &str) -> Option<(f64, f64)> {
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
// Timing

pub fn median(mut samples: Vec<f64>) -> f64 {
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

/// How many timed runs: at least `min`, and more for a fast query until the two sides together
/// have run `min_time` (at most `max`), so that a 20 ms query's median is not left to a few
/// samples of a machine whose load changes from second to second.
#[derive(Clone, Copy)]
pub struct Runs {
    pub warmup: usize,
    pub min: usize,
    pub min_time: Duration,
    pub max: usize,
}

/// Milliseconds `run` took on the wall clock.
pub fn timed<T>(run: impl FnOnce() -> Result<T, String>) -> Result<f64, String> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Medians in ms of `a` and `b`, run alternately (and each first in turn), so that on a shared
/// machine whose load changes from one second to the next both are timed under the same load;
/// and the number of timed runs of each. Each returns the milliseconds its run took.
pub fn time_alternating(
    runs: Runs,
    mut a: impl FnMut() -> Result<f64, String>,
    mut b: impl FnMut() -> Result<f64, String>,
) -> Result<(f64, f64, usize), String> {
    for _ in 0..runs.warmup {
        a()?;
        b()?;
    }
    let (mut samples_a, mut samples_b) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut i = 0;
    while i < runs.min || (started.elapsed() < runs.min_time && i < runs.max) {
        if i % 2 == 0 {
            samples_a.push(a()?);
            samples_b.push(b()?);
        } else {
            samples_b.push(b()?);
            samples_a.push(a()?);
        }
        i += 1;
    }
    Ok((median(samples_a), median(samples_b), i))
}

pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| {
        format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
    })
}

/// The three load averages of /proc/loadavg, and the 1-minute one as a number.
pub fn load_average() -> (String, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one = text
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    (
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        one,
    )
}
