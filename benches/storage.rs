//! `cargo bench --bench storage`: issue 18's benchmark of snapshot tables stored as Parquet
//! versions. For each size of the sensor readings (`CRUSCOTTO_BENCH_ROWS`, default `10M,100M`),
//! the real binary with one file connector on the readings' Parquet file: the first load (time to
//! /readyz, peak RSS), a refresh after the file is replaced, a restart on the data present, and
//! the three queries of `benches/sql.rs` over HTTP against DuckDB reading the same file with
//! `read_parquet`, run by run. Then a table holding more than 4 GiB of text. Prints one table
//! with the targets (peak RSS ≤ 2 GiB, restart ≤ 5 s, HTTP ≤ 1.2× DuckDB); exits non-zero only
//! when an answer is wrong.
//!
//! See benches/README.md for what each line measures.

#[path = "support/sensors.rs"]
mod sensors;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use sensors::*;

const DEFAULT_ROWS: &str = "10M,100M";
/// The connector's refresh interval: short, so a replaced file is read again within seconds
/// (an unchanged one is only looked at: size, time, inode and a hash of its ends).
const REFRESH: &str = "2s";
const TABLE: &str = "bench.readings";
const GIB: u64 = 1024 * 1024 * 1024;
const RSS_TARGET: u64 = 2 * GIB;
const RESTART_TARGET: Duration = Duration::from_secs(5);
const RATIO_TARGET: f64 = 1.2;
/// Sizes above this need room for the file, its copy and the server's versions.
const LARGE_ROWS: usize = 100_000_000;
const LARGE_FREE_BYTES: u64 = 30_000_000_000;

/// The text table: 4.5M rows of 960 to 1,088 characters (1,024 on average), 4.29 GiB of text.
const TEXT_ROWS: usize = 4_500_000;
const TEXT_ROWS_PER_GROUP: usize = 64 * 1024;
const TEXT_GENERATOR: &str = "cruscotto-bench-notes-v1";
const TEXT_GENERATOR_KEY: &str = "cruscotto.bench.generator";

// ---------------------------------------------------------------------------------------------
// What the server says

/// `bench.readings` (or another table) in `/status`.
fn table_status(
    client: &reqwest::blocking::Client,
    base: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let status: serde_json::Value = client
        .get(format!("{base}/status"))
        .send()
        .ok()?
        .json()
        .ok()?;
    status["tables"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
}

fn version_of(status: &Option<serde_json::Value>) -> Option<u64> {
    status.as_ref()?["version"].as_u64()
}

/// Polls `/status` until `done` holds for the table; its last status, or `None` at the deadline.
fn wait_for_status(
    client: &reqwest::blocking::Client,
    server: &mut Server,
    name: &str,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "the server exited ({status}); its log:\n{}",
                server.log_tail()
            );
        }
        if let Some(status) = table_status(client, &server.base, name) {
            if done(&status) {
                return Some(status);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn describe(status: &Option<serde_json::Value>) -> String {
    match status {
        Some(s) => format!(
            "state {}, version {}, storage {}, rows {}, unchanged_since {}",
            s["state"], s["version"], s["storage"], s["rows"], s["unchanged_since"]
        ),
        None => "not in /status".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// DuckDB, one persistent session

/// `benches/duckdb_bench.py --serve`: one DuckDB session driven over stdin/stdout, so its
/// start is not timed and every run is timed inside it, between two HTTP runs.
struct DuckDb {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    version: String,
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PYTHON`, else the bench's virtual environment (`~/.cache/cruscotto-bench-venv`) if there is
/// one, else `python3`.
fn python() -> String {
    if let Ok(python) = std::env::var("PYTHON") {
        return python;
    }
    let venv = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/cruscotto-bench-venv/bin/python"));
    match venv {
        Some(path) if path.exists() => path.display().to_string(),
        _ => "python3".to_string(),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl DuckDb {
    fn start() -> Result<Self, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_bench.py");
        let python = python();
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--serve", &cores().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start `{python} {}`: {e}", script.display()))?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut this = Self {
            child,
            input,
            output,
            version: String::new(),
        };
        let hello = this.read_reply()?;
        this.version = format!(
            "{} ({} threads, {python})",
            hello["version"].as_str().unwrap_or("?"),
            hello["threads"]
        );
        Ok(this)
    }

    fn read_reply(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let reply: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|e| format!("the DuckDB script answered no JSON ({e}): {line:?}"))?;
        match reply.get("error").and_then(|e| e.as_str()) {
            Some(error) => Err(error.to_string()),
            None => Ok(reply),
        }
    }

    /// Runs `sql`; the milliseconds DuckDB took, and the rows when `rows`.
    fn run(&mut self, sql: &str, rows: bool) -> Result<(f64, serde_json::Value), String> {
        let request = serde_json::json!({"sql": sql, "rows": rows});
        writeln!(self.input, "{request}").map_err(|e| e.to_string())?;
        self.input.flush().map_err(|e| e.to_string())?;
        let reply = self.read_reply()?;
        let ms = reply["ms"].as_f64().ok_or("no time in the DuckDB reply")?;
        Ok((ms, reply["rows"].clone()))
    }
}

fn duckdb_table(parquet: &Path) -> String {
    format!(
        "read_parquet('{}')",
        parquet.display().to_string().replace('\'', "''")
    )
}

// ---------------------------------------------------------------------------------------------
// One size of the sensor readings

/// What one phase cost: its time and the server's peak resident memory (`VmHWM`) during it.
#[derive(Clone, Copy, Default)]
struct Phase {
    time: Option<Duration>,
    peak_rss: Option<u64>,
}

struct QueryTimes {
    label: &'static str,
    runs: usize,
    http_ms: f64,
    duckdb_ms: f64,
}

struct SizeResult {
    rows: usize,
    file_bytes: u64,
    storage: String,
    load: Phase,
    refresh: Phase,
    restart: Phase,
    queries: Vec<QueryTimes>,
}

fn runs_policy() -> Runs {
    let min = std::env::var("CRUSCOTTO_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    Runs {
        warmup: 1,
        min,
        min_time: Duration::from_secs(6),
        max: 101,
    }
}

fn measure_size(rows: usize, failures: &mut Vec<String>) -> SizeResult {
    let label = rows_label(rows);
    println!();
    println!("== {label} readings ==");
    let parquet = ensure_parquet(&data_folder(), rows);
    let file_bytes = std::fs::metadata(&parquet).map(|m| m.len()).unwrap_or(0);
    let dir = tempfile::Builder::new()
        .prefix("cruscotto-storage-")
        .tempdir_in(data_folder())
        .expect("temporary folder");
    write_config(dir.path(), &[("readings", &parquet)], REFRESH);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");

    // 1. The first load: from the process start to /readyz 200.
    let mut server = Server::start(dir.path());
    let load = Phase {
        time: Some(server.ready_in),
        peak_rss: server.proc_status_bytes("VmHWM"),
    };
    let first = table_status(&client, &server.base, TABLE);
    println!("load: {}", describe(&first));
    let storage = first
        .as_ref()
        .and_then(|s| s["storage"].as_str())
        .unwrap_or("?")
        .to_string();
    let loaded_version = version_of(&first);

    // The unchanged file is looked at again every refresh, not read.
    let unchanged = wait_for_status(&client, &mut server, TABLE, Duration::from_secs(60), |s| {
        !s["unchanged_since"].is_null()
    });
    match (&unchanged, version_of(&unchanged) == loaded_version) {
        (Some(s), true) => println!(
            "unchanged source: not read again (unchanged_since {}, version still {})",
            s["unchanged_since"], s["version"]
        ),
        _ => println!(
            "WARNING: the unchanged source was not reported unchanged within 60 s: {}",
            describe(&table_status(&client, &server.base, TABLE))
        ),
    }

    // 2. A refresh: the file replaced by a copy of itself (new inode and time of change).
    let reset = server.reset_peak_rss();
    let copy = parquet.with_extension("parquet.copy");
    std::fs::copy(&parquet, &copy).expect("copy the readings");
    let started = Instant::now();
    std::fs::rename(&copy, &parquet).expect("replace the readings by their copy");
    let refreshed = wait_for_status(
        &client,
        &mut server,
        TABLE,
        Duration::from_secs(3600),
        |s| s["version"].as_u64() > loaded_version && s["state"] == "fresh",
    );
    let refresh = Phase {
        time: refreshed.as_ref().map(|_| started.elapsed()),
        peak_rss: server.proc_status_bytes("VmHWM").filter(|_| reset),
    };
    println!(
        "refresh: {} after the rename (the connector looks every {REFRESH}){}",
        describe(&refreshed),
        if reset {
            ""
        } else {
            "; the peak RSS could not be reset (/proc/<pid>/clear_refs), so it is not reported"
        }
    );
    let refreshed_version = version_of(&refreshed);

    // 3. A restart on the data present.
    server.stop();
    let restarted_at = chrono::Utc::now();
    let mut server = Server::start(dir.path());
    let restart_ready = server.ready_in;
    let at_ready = table_status(&client, &server.base, TABLE);
    println!("restart: ready with {}", describe(&at_ready));
    if version_of(&at_ready) != refreshed_version {
        println!(
            "WARNING: after the restart the table serves version {:?}, not {refreshed_version:?}",
            version_of(&at_ready)
        );
    }
    // Its first look at the source (unchanged: not read) belongs to the restart's memory.
    let checked = wait_for_status(&client, &mut server, TABLE, Duration::from_secs(600), |s| {
        ["last_success", "last_attempt"].iter().any(|key| {
            s[*key]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > restarted_at)
        })
    });
    match &checked {
        Some(s) => println!(
            "restart: after the first refresh (last_success {}) {}",
            s["last_success"],
            describe(&checked)
        ),
        None => println!("WARNING: no refresh reported within 600 s of the restart"),
    }
    let restart = Phase {
        time: Some(restart_ready),
        peak_rss: server.proc_status_bytes("VmHWM"),
    };

    // 4. The queries, over HTTP and in DuckDB on the same file.
    let queries = compare_and_time(&server, &parquet, rows, failures);
    drop(server);
    SizeResult {
        rows,
        file_bytes,
        storage,
        load,
        refresh,
        restart,
        queries,
    }
}

fn compare_and_time(
    server: &Server,
    parquet: &Path,
    rows: usize,
    failures: &mut Vec<String>,
) -> Vec<QueryTimes> {
    let label = rows_label(rows);
    let http = HttpClient::new();
    let mut duckdb = match DuckDb::start() {
        Ok(d) => d,
        Err(e) => {
            failures.push(format!("{label}: DuckDB did not start: {e}"));
            return Vec::new();
        }
    };
    println!("DuckDB {}", duckdb.version);
    let file = duckdb_table(parquet);

    // Same answers first.
    let count = BenchQuery {
        name: "count",
        label: "count",
        sql: "SELECT count(*) AS n FROM {table}",
        columns: &[("n", Kind::Int)],
    };
    let mut agreed = Vec::new();
    for query in std::iter::once(&count).chain(QUERIES) {
        let served = http
            .query(&server.base, &query.sql.replace("{table}", TABLE))
            .and_then(|a| rows_from_server_json(&a.body, query));
        let reference = duckdb
            .run(&query.sql.replace("{table}", &file), true)
            .and_then(|(_, r)| rows_from_duckdb_json(&r, query));
        match (served, reference) {
            (Ok(served), Ok(reference)) => match compare(query, &reference, &served) {
                None if query.name == "count"
                    && reference != vec![vec![Cell::Int(rows as i64)]] =>
                {
                    failures.push(format!("{label}: count(*) is {reference:?}, not {rows}"))
                }
                None => {
                    println!("  {}: {} rows, HTTP = DuckDB", query.label, reference.len());
                    agreed.push(query);
                }
                Some(diff) => failures.push(format!(
                    "{label} {}: HTTP differs from DuckDB: {diff}",
                    query.label
                )),
            },
            (Err(e), _) => failures.push(format!("{label} {}: HTTP failed: {e}", query.label)),
            (_, Err(e)) => failures.push(format!("{label} {}: DuckDB failed: {e}", query.label)),
        }
    }

    // Then the timing, HTTP and DuckDB run by run.
    let mut times = Vec::new();
    for query in agreed.into_iter().filter(|q| q.name != "count") {
        let served_sql = query.sql.replace("{table}", TABLE);
        let duckdb_sql = query.sql.replace("{table}", &file);
        let timed_pair = time_alternating(
            runs_policy(),
            || timed(|| http.query(&server.base, &served_sql)),
            || duckdb.run(&duckdb_sql, false).map(|(ms, _)| ms),
        );
        match timed_pair {
            Ok((http_ms, duckdb_ms, runs)) => {
                println!(
                    "  {}: HTTP {http_ms:.1} ms, DuckDB {duckdb_ms:.1} ms ({runs} runs each)",
                    query.label
                );
                times.push(QueryTimes {
                    label: query.label,
                    runs,
                    http_ms,
                    duckdb_ms,
                });
            }
            Err(e) => failures.push(format!("{label} {}: timing failed: {e}", query.label)),
        }
    }
    times
}

// ---------------------------------------------------------------------------------------------
// More than 4 GiB of text

/// Row `i`'s note: 960 to 1,088 characters of words cut from a fixed corpus.
fn note_length(i: usize) -> usize {
    960 + (random(i as u64) % 129) as usize
}

/// 1 MiB of lower-case ASCII words (so characters are bytes), the same every time.
fn corpus() -> String {
    const WORDS: [&str; 24] = [
        "sportello",
        "anagrafe",
        "certificato",
        "residenza",
        "quartiere",
        "biblioteca",
        "connessione",
        "facilitatore",
        "richiesta",
        "pagamento",
        "servizio",
        "scuola",
        "volontario",
        "domanda",
        "assistenza",
        "spid",
        "digitale",
        "prenotazione",
        "comune",
        "cittadino",
        "tessera",
        "sanitaria",
        "modulo",
        "ufficio",
    ];
    let mut text = String::with_capacity((1 << 20) + 16);
    let mut n = 1u64 << 40;
    while text.len() < 1 << 20 {
        text.push_str(WORDS[(random(n) % WORDS.len() as u64) as usize]);
        text.push(' ');
        n += 1;
    }
    text
}

/// The text table's file (`notes.parquet`: `id`, `note`), generated once and cached; its rows and
/// the characters of all its notes.
fn ensure_text_parquet(dir: &Path) -> (PathBuf, usize, u64) {
    let chars: u64 = (0..TEXT_ROWS).map(|i| note_length(i) as u64).sum();
    let path = dir.join("notes.parquet");
    let cached = File::open(&path)
        .ok()
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok())
        .is_some_and(|b| {
            let meta = b.metadata().file_metadata();
            meta.num_rows() as usize == TEXT_ROWS
                && meta.key_value_metadata().is_some_and(|kv| {
                    kv.iter().any(|kv| {
                        kv.key == TEXT_GENERATOR_KEY && kv.value.as_deref() == Some(TEXT_GENERATOR)
                    })
                })
        });
    if cached {
        println!("data: {} (cached)", path.display());
        return (path, TEXT_ROWS, chars);
    }
    let started = Instant::now();
    let corpus = corpus();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(TEXT_ROWS_PER_GROUP))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            TEXT_GENERATOR_KEY.to_string(),
            TEXT_GENERATOR.to_string(),
        )]))
        .build();
    let temporary = path.with_extension("parquet.tmp");
    let file = File::create(&temporary).expect("create the Parquet file");
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).expect("Parquet writer");
    for first in (0..TEXT_ROWS).step_by(TEXT_ROWS_PER_GROUP) {
        let range = first..(first + TEXT_ROWS_PER_GROUP).min(TEXT_ROWS);
        let notes = StringArray::from_iter_values(range.clone().map(|i| {
            let start = (random(!(i as u64)) % (corpus.len() - 1_100) as u64) as usize;
            &corpus[start..start + note_length(i)]
        }));
        let ids = Int64Array::from_iter_values(range.map(|i| i as i64));
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(notes)];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("generated columns");
        writer.write(&batch).expect("write a row group");
        writer.flush().expect("close the row group");
    }
    writer.close().expect("finish the Parquet file");
    std::fs::rename(&temporary, &path).expect("move the Parquet file into place");
    println!(
        "data: generated {} ({TEXT_ROWS} rows, {:.2} GiB of text, {:.0} MB) in {:.1} s",
        path.display(),
        chars as f64 / GIB as f64,
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    (path, TEXT_ROWS, chars)
}

struct TextResult {
    chars: u64,
    load: Phase,
    state: String,
    query: Phase,
}

fn measure_text(failures: &mut Vec<String>) -> TextResult {
    println!();
    println!("== more than 4 GiB of text ==");
    let (parquet, rows, chars) = ensure_text_parquet(&data_folder());
    let dir = tempfile::Builder::new()
        .prefix("cruscotto-storage-")
        .tempdir_in(data_folder())
        .expect("temporary folder");
    write_config(dir.path(), &[("notes", &parquet)], "1h");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let server = Server::start(dir.path());
    let load = Phase {
        time: Some(server.ready_in),
        peak_rss: server.proc_status_bytes("VmHWM"),
    };
    let status = table_status(&client, &server.base, "bench.notes");
    println!("load: {}", describe(&status));
    let state = status
        .as_ref()
        .and_then(|s| s["state"].as_str())
        .unwrap_or("?")
        .to_string();
    if state != "fresh" {
        failures.push(format!(
            "text table: state {state} after loading, not fresh: {}",
            describe(&status)
        ));
    }
    let query = BenchQuery {
        name: "text",
        label: "count and characters",
        sql: "SELECT count(*) AS n, sum(length(note)) AS chars FROM bench.notes",
        columns: &[("n", Kind::Int), ("chars", Kind::Int)],
    };
    let http = HttpClient::new();
    let started = Instant::now();
    let answer = http
        .query(&server.base, query.sql)
        .and_then(|a| rows_from_server_json(&a.body, &query));
    let query_time = started.elapsed();
    let expected = vec![vec![Cell::Int(rows as i64), Cell::Int(chars as i64)]];
    match answer {
        Ok(found) if found == expected => {
            println!(
                "  {}: {rows} rows, {chars} characters, as generated",
                query.sql
            )
        }
        Ok(found) => failures.push(format!(
            "text table: {} answered {found:?}, expected {expected:?}",
            query.sql
        )),
        Err(e) => failures.push(format!("text table: {} failed: {e}", query.sql)),
    }
    let query = Phase {
        time: Some(query_time),
        peak_rss: server.proc_status_bytes("VmHWM"),
    };
    drop(server);
    TextResult {
        chars,
        load,
        state,
        query,
    }
}

// ---------------------------------------------------------------------------------------------
// The report

fn seconds(d: Option<Duration>) -> String {
    d.map_or("n/a".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "n/a",
    }
}

/// One line of the table: a value per size, and a verdict per size where there is a target.
struct Line {
    measure: String,
    values: Vec<String>,
    target: &'static str,
    met: Vec<Option<bool>>,
}

fn print_table(results: &[SizeResult]) {
    let rss_line = |measure: &str, phase: fn(&SizeResult) -> Phase| Line {
        measure: measure.to_string(),
        values: results.iter().map(|r| mib(phase(r).peak_rss)).collect(),
        target: "≤ 2 GiB",
        met: results
            .iter()
            .map(|r| phase(r).peak_rss.map(|b| b <= RSS_TARGET))
            .collect(),
    };
    let time_line = |measure: &str, phase: fn(&SizeResult) -> Phase| Line {
        measure: measure.to_string(),
        values: results.iter().map(|r| seconds(phase(r).time)).collect(),
        target: "",
        met: Vec::new(),
    };
    let mut lines = vec![
        Line {
            measure: "Parquet file".to_string(),
            values: results
                .iter()
                .map(|r| format!("{:.0} MB", r.file_bytes as f64 / 1e6))
                .collect(),
            target: "",
            met: Vec::new(),
        },
        Line {
            measure: "served from".to_string(),
            values: results.iter().map(|r| r.storage.clone()).collect(),
            target: "",
            met: Vec::new(),
        },
        time_line("load: start to /readyz 200", |r| r.load),
        rss_line("load: peak RSS", |r| r.load),
        time_line("refresh: rename to new version", |r| r.refresh),
        rss_line("refresh: peak RSS", |r| r.refresh),
        Line {
            measure: "restart: start to /readyz 200".to_string(),
            values: results.iter().map(|r| seconds(r.restart.time)).collect(),
            target: "≤ 5 s",
            met: results
                .iter()
                .map(|r| r.restart.time.map(|t| t <= RESTART_TARGET))
                .collect(),
        },
        rss_line("restart: peak RSS", |r| r.restart),
    ];
    let labels: Vec<&str> = QUERIES.iter().map(|q| q.label).collect();
    for label in labels {
        let find = |r: &SizeResult| {
            r.queries
                .iter()
                .find(|q| q.label == label)
                .map(|q| (q.http_ms, q.duckdb_ms, q.runs))
        };
        lines.push(Line {
            measure: format!("{label}: HTTP ms (runs)"),
            values: results
                .iter()
                .map(|r| find(r).map_or("n/a".into(), |(h, _, n)| format!("{h:.1} ({n})")))
                .collect(),
            target: "",
            met: Vec::new(),
        });
        lines.push(Line {
            measure: format!("{label}: DuckDB ms"),
            values: results
                .iter()
                .map(|r| find(r).map_or("n/a".into(), |(_, d, _)| format!("{d:.1}")))
                .collect(),
            target: "",
            met: Vec::new(),
        });
        lines.push(Line {
            measure: format!("{label}: HTTP / DuckDB"),
            values: results
                .iter()
                .map(|r| find(r).map_or("n/a".into(), |(h, d, _)| format!("{:.2}×", h / d)))
                .collect(),
            target: "≤ 1.2× (10M, 100M)",
            met: results
                .iter()
                .map(|r| {
                    find(r)
                        .filter(|_| r.rows <= LARGE_ROWS)
                        .map(|(h, d, _)| h <= RATIO_TARGET * d)
                })
                .collect(),
        });
    }
    let width = lines
        .iter()
        .map(|l| l.measure.chars().count())
        .max()
        .unwrap_or(10);
    let column = 14;
    let mut header = format!("| {:<width$} |", "measure");
    let mut rule = format!("|{}|", "-".repeat(width + 2));
    for r in results {
        header.push_str(&format!(" {:>column$} |", rows_label(r.rows)));
        rule.push_str(&format!("{}:|", "-".repeat(column + 1)));
    }
    header.push_str(" target               |");
    rule.push_str("----------------------|");
    println!("{header}");
    println!("{rule}");
    for line in &lines {
        let mut text = format!("| {:<width$} |", line.measure);
        for value in &line.values {
            text.push_str(&format!(" {value:>column$} |"));
        }
        let target = if line.target.is_empty() {
            String::new()
        } else {
            format!(
                "{}: {}",
                line.target,
                line.met
                    .iter()
                    .map(|m| verdict(*m))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        text.push_str(&format!(" {target:<20} |"));
        println!("{text}");
    }
}

/// Bytes free on the file system of `path` (`df`), if it can be told.
fn free_bytes(path: &Path) -> Option<u64> {
    let output = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; the sizes come from CRUSCOTTO_BENCH_ROWS.
    let sizes: Vec<usize> = match std::env::var("CRUSCOTTO_BENCH_ROWS")
        .unwrap_or_else(|_| DEFAULT_ROWS.to_string())
        .split(',')
        .map(parse_rows)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(sizes) => sizes,
        Err(e) => {
            eprintln!("CRUSCOTTO_BENCH_ROWS: {e}");
            std::process::exit(2);
        }
    };
    let text = std::env::var("CRUSCOTTO_BENCH_TEXT").map_or(true, |v| v != "0");
    let runs = runs_policy();
    let (load_start, one) = load_average();
    println!(
        "cruscotto storage benchmark: {} readings{}, {} cores; per query {} warm-up + at least {} timed runs of HTTP and DuckDB alternating (more until the pair has run {} s)",
        sizes
            .iter()
            .map(|&r| rows_label(r))
            .collect::<Vec<_>>()
            .join(", "),
        if text {
            " and 4.5M notes (> 4 GiB of text)"
        } else {
            ""
        },
        cores(),
        runs.warmup,
        runs.min,
        runs.min_time.as_secs()
    );
    println!("load average at start: {load_start}");
    if one > 0.5 {
        println!("warning: the machine is busy (1-minute load {one:.2}); timings will be noisy");
    }
    // reqwest is built with `rustls-no-provider`: a client needs a process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(data_folder()).expect("create the bench data folder");

    let mut failures = Vec::new();
    let mut results = Vec::new();
    for rows in sizes {
        if rows > LARGE_ROWS {
            match free_bytes(&data_folder()) {
                Some(free) if free < LARGE_FREE_BYTES => {
                    println!(
                        "skipping {}: {:.0} GB free under {}, less than {:.0} GB",
                        rows_label(rows),
                        free as f64 / 1e9,
                        data_folder().display(),
                        LARGE_FREE_BYTES as f64 / 1e9
                    );
                    continue;
                }
                _ => {}
            }
        }
        results.push(measure_size(rows, &mut failures));
    }
    let text = text.then(|| measure_text(&mut failures));
    let (load_end, _) = load_average();

    println!();
    println!("load average at start: {load_start}; at the end: {load_end}");
    print_table(&results);
    if let Some(t) = text {
        println!();
        println!(
            "> 4 GiB of text ({TEXT_ROWS} rows, {:.2} GiB): load {} (state {}), peak RSS {} (≤ 2 GiB: {}); \
             count(*) and sum(length(note)) over HTTP {}, peak RSS by then {}",
            t.chars as f64 / GIB as f64,
            seconds(t.load.time),
            t.state,
            mib(t.load.peak_rss),
            verdict(t.load.peak_rss.map(|b| b <= RSS_TARGET)),
            seconds(t.query.time),
            mib(t.query.peak_rss)
        );
    }
    if !failures.is_empty() {
        println!();
        for failure in &failures {
            println!("ERROR: {failure}");
        }
        std::process::exit(1);
    }
}
