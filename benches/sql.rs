//! `cargo bench --bench sql`: three aggregate queries over a 10-million-row synthetic sensor table
//! in Parquet, run through `POST /api/v1/sql` of the real server binary, through in-process
//! DataFusion over the same data and partitioning, and through DuckDB (the Python package) on the
//! same file, in the same run. Prints the medians, the ratios and whether the targets are met:
//! HTTP ≤ 1.1× in-process DataFusion and ≤ 1.5× DuckDB.
//!
//! See benches/README.md for what each column measures.

#[path = "support/sensors.rs"]
mod sensors;

use sensors::*;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The server's allocator (src/main.rs), so that in-process DataFusion runs on the same footing
/// and HTTP / in-process is what the service adds, not what an allocator changes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// ---------------------------------------------------------------------------------------------
// Parameters

/// The rows of the sensors table this bench queries (the generator is in support/sensors.rs).
const ROWS: usize = 10_000_000;

const WARMUP: usize = 2;
/// Timed runs per query and engine: at least `RUNS`, and more for a fast query until HTTP and
/// in-process together have run `MIN_TIMED` (at most `MAX_RUNS`), so that a 20 ms query's
/// median is not left to 15 samples of a machine whose load changes from second to second.
const RUNS: usize = 15;
const MIN_TIMED: Duration = Duration::from_secs(6);
const MAX_RUNS: usize = 301;
const RUNS_POLICY: Runs = Runs {
    warmup: WARMUP,
    min: RUNS,
    min_time: MIN_TIMED,
    max: MAX_RUNS,
};
/// The server binary's rows per registered batch (`ROWS_PER_BATCH` in src/store/mod.rs).
const SERVER_ROWS_PER_BATCH: usize = 64 * 1024;
/// The `[query] memory_limit` given to the server, mirrored in process.
const MEMORY_LIMIT: usize = 4 * 1024 * 1024 * 1024;

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

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure.
    println!(
        "cruscotto SQL benchmark: {ROWS} rows, {} cores, {WARMUP} warm-up + at least {RUNS} timed runs per query and engine \
         (HTTP and in-process: more for a fast query, until the pair has run {} s; DuckDB: {RUNS})",
        cores(),
        MIN_TIMED.as_secs()
    );
    let (load, one) = load_average();
    println!("load average before start: {load}");
    if one > 0.5 {
        println!("warning: the machine is busy (1-minute load {one:.2}); timings will be noisy");
    }
    // reqwest is built with `rustls-no-provider` (the service's own HTTP connectors pick ring):
    // a client needs a process-wide provider, as in tests/common.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parquet = ensure_parquet(&data_folder(), ROWS);

    let dir = tempfile::Builder::new()
        .prefix("cruscotto-bench-")
        .tempdir()
        .expect("temporary folder");
    write_config(dir.path(), &[("readings", &parquet)], "24h");
    let server = Server::start(dir.path());
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
            RUNS_POLICY,
            || {
                timed(|| {
                    http.query(&server.base, &sql).map(|answer| {
                        body_bytes = answer.body.len();
                        server_times.extend(answer.server);
                    })
                })
            },
            || timed(|| local.query(&sql)),
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
        RUNS_POLICY,
        || timed(|| http.query(&server.base, trivial)),
        || timed(|| local.query(trivial)),
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
        drop(dir);
        std::process::exit(1);
    }
    drop(server);
}
