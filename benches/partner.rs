//! `cargo bench --bench partner`: what a partner agency and the public dashboard cost, through the
//! real release binary.
//!
//! 1. A partner key pulls a 1,000,000-row published dataset page by page (`limit` = 100,000,
//!    following `Link: rel="next"`) as Arrow IPC, JSON and CSV: rows/s, bytes and MB/s, median of
//!    the timed runs.
//! 2. A dashboard panel endpoint (`/api/v1/dashboards/bench/data/panel_bench`, a GROUP BY over the
//!    same rows) under `wrk` with 64 connections, against ROAPI (PyPI `roapi`) serving the same
//!    Parquet file and answering the same query on `POST /api/sql`, in the same run: requests/s and
//!    p99 latency, and their ratios. Target: cruscotto ≥ ROAPI's requests/s.
//!
//! See benches/README.md.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

const ROWS: usize = 1_000_000;
const AREAS: i64 = 90;
const ZONES: [&str; 6] = [
    "Borgo Panigale",
    "Navile",
    "Porto",
    "San Donato",
    "Santo Stefano",
    "Savena",
];
/// Rows per page of the pull: ten pages.
const PAGE: usize = 100_000;
const WARMUP: usize = 1;
const RUNS: usize = 3;
const CONNECTIONS: u32 = 64;
const WRK_SECONDS: u32 = 15;
/// The dashboard panel's query, the same text for both servers (ROAPI names the table `righe`).
const PANEL_SQL: &str = "SELECT area, count(*) AS n, avg(quota) AS quota_media, sum(residenti) AS residenti FROM {table} GROUP BY area ORDER BY area";

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = tempfile::tempdir().expect("temporary folder");
    let parquet = work.path().join("righe.parquet");
    write_parquet(&parquet);
    println!(
        "cruscotto partner benchmark: {ROWS} rows, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average before start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    let config = write_config(work.path(), &parquet);
    let key = run_cli(
        &config,
        &[
            "keys",
            "create",
            "--name",
            "bench",
            "--role",
            "partner",
            "--datasets",
            "righe_bench",
        ],
    );
    let server = Process::cruscotto(&config);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("HTTP client");

    println!(
        "\n1. A partner pulls the {ROWS}-row dataset, pages of {PAGE} rows (median of {RUNS} runs after {WARMUP} warm-up)"
    );
    println!(
        "{:<8} {:>12} {:>14} {:>10} {:>10}",
        "format", "rows/s", "bytes", "MB/s", "seconds"
    );
    for format in ["arrow", "json", "csv"] {
        let mut runs: Vec<(f64, u64)> = Vec::new();
        for run in 0..WARMUP + RUNS {
            let started = Instant::now();
            let (rows, bytes) = pull(&client, &server.base, &key, format);
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(rows, ROWS as u64, "{format}: the pull returned {rows} rows");
            if run >= WARMUP {
                runs.push((seconds, bytes));
            }
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (seconds, bytes) = runs[runs.len() / 2];
        println!(
            "{format:<8} {:>12.0} {bytes:>14} {:>10.1} {seconds:>10.2}",
            ROWS as f64 / seconds,
            bytes as f64 / seconds / 1e6
        );
    }

    println!("\n2. The dashboard panel under wrk, {CONNECTIONS} connections, {WRK_SECONDS} s each");
    let panel = format!("{}/api/v1/dashboards/bench/data/panel_bench", server.base);
    let ours: Vec<Value> = client
        .get(&panel)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("the panel answers");
    let roapi = Process::roapi(&parquet);
    let roapi_sql = PANEL_SQL.replace("{table}", "righe");
    let theirs: Vec<Value> = client
        .post(format!("{}/api/sql", roapi.base))
        .body(roapi_sql.clone())
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("ROAPI answers");
    same_answer(&ours, &theirs);

    let script = work.path().join("post.lua");
    std::fs::write(&script, format!("wrk.method = \"POST\"\nwrk.body = {roapi_sql:?}\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n")).expect("wrk script");
    let cruscotto = wrk(&panel, None);
    let roapi_result = wrk(&format!("{}/api/sql", roapi.base), Some(&script));
    println!("{:<10} {:>12} {:>12}", "server", "requests/s", "p99 ms");
    println!(
        "{:<10} {:>12.0} {:>12.2}",
        "cruscotto", cruscotto.0, cruscotto.1
    );
    println!(
        "{:<10} {:>12.0} {:>12.2}",
        "ROAPI", roapi_result.0, roapi_result.1
    );
    let throughput = cruscotto.0 / roapi_result.0;
    println!(
        "ratios cruscotto/ROAPI: requests/s {throughput:.2}×, p99 latency {:.2}×",
        cruscotto.1 / roapi_result.1
    );
    println!(
        "target (requests/s ≥ ROAPI's): {}",
        if throughput >= 1.0 { "met" } else { "NOT met" }
    );
    drop(roapi);
    drop(server);
}

/// `righe`: an id (the dataset's key), a statistical area, its zone, a year, a count and a share.
fn write_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("area", DataType::Int64, false),
        Field::new("zona", DataType::Utf8, false),
        Field::new("anno", DataType::Int64, false),
        Field::new("residenti", DataType::Int64, false),
        Field::new("quota", DataType::Float64, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(
        File::create(path).expect("create the Parquet file"),
        schema.clone(),
        Some(properties),
    )
    .expect("Parquet writer");
    let mut state: u64 = 0x5eed_0007;
    let mut next = move || {
        // splitmix64: the same file every run.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for start in (0..ROWS).step_by(PAGE) {
        let ids: Vec<i64> = (start..start + PAGE).map(|i| i as i64).collect();
        let areas: Vec<i64> = ids.iter().map(|i| i % AREAS + 1).collect();
        let zones: Vec<&str> = areas
            .iter()
            .map(|a| ZONES[(*a as usize) % ZONES.len()])
            .collect();
        let years: Vec<i64> = ids.iter().map(|i| 2000 + i % 24).collect();
        let counts: Vec<i64> = ids.iter().map(|_| (next() % 5000) as i64).collect();
        let shares: Vec<f64> = ids
            .iter()
            .map(|_| (next() % 10_000) as f64 / 100.0)
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(areas)),
            Arc::new(StringArray::from(zones)),
            Arc::new(Int64Array::from(years)),
            Arc::new(Int64Array::from(counts)),
            Arc::new(Float64Array::from(shares)),
        ];
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).expect("batch"))
            .expect("write a row group");
    }
    writer.close().expect("close the Parquet file");
}

/// One file connector over the Parquet file, the dataset and the dashboard that read it, keys
/// required, and rate limits and page sizes out of the way.
fn write_config(dir: &Path, parquet: &Path) -> PathBuf {
    let write = |relative: &str, text: &str| {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).expect("folder");
        std::fs::write(path, text).expect("write the configuration");
    };
    write(
        "cruscotto.toml",
        &format!(
            "data_dir = {:?}\n[access]\nanonymous = \"none\"\ndashboard = \"public\"\nrequests_per_minute = 100000000\nburst = 100000000\nmax_page = {PAGE}\n\
             [query]\ntimeout = \"300s\"\nmemory_limit = \"4 GiB\"\nmax_rows = 2000000\n",
            dir.join("var").display().to_string()
        ),
    );
    write(
        "connectors/bench.toml",
        &format!(
            "kind = \"file\"\nrefresh = \"24h\"\n\n[[table]]\nname = \"righe\"\npath = {:?}\n",
            parquet.display().to_string()
        ),
    );
    write(
        "queries/righe_bench.sql",
        "-- title: Righe\nSELECT * FROM bench.righe\n",
    );
    write(
        "queries/panel_bench.sql",
        &format!(
            "-- title: Pannello\n{}\n",
            PANEL_SQL.replace("{table}", "bench.righe")
        ),
    );
    write(
        "datasets/righe_bench.toml",
        "title = \"Righe\"\ndescription = \"Banco di prova\"\nquery = \"righe_bench\"\nlicence = \"https://creativecommons.org/licenses/by/4.0/\"\n\
         publisher = \"Comune\"\nupdate_frequency = \"IRREG\"\nspatial = \"Bologna\"\nkey = \"id\"\nfilters = [\"area\"]\n",
    );
    write(
        "dashboards/bench.toml",
        "title = \"Bench\"\n\n[[panels]]\nkind = \"table\"\nquery = \"panel_bench\"\n",
    );
    dir.join("cruscotto.toml")
}

fn run_cli(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cruscotto"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cruscotto");
    assert!(
        output.status.success(),
        "cruscotto {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Every page of the dataset in one format: (rows, bytes received).
fn pull(client: &reqwest::blocking::Client, base: &str, key: &str, format: &str) -> (u64, u64) {
    let mut url = format!("{base}/api/v1/datasets/righe_bench?format={format}&limit={PAGE}");
    let (mut rows, mut bytes) = (0u64, 0u64);
    loop {
        let response = client
            .get(&url)
            .bearer_auth(key)
            .send()
            .expect("GET a page");
        assert_eq!(response.status(), 200, "{url}");
        rows += response
            .headers()
            .get("x-row-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("X-Row-Count");
        let next = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix('<'))
            .and_then(|v| v.split_once('>'))
            .map(|(link, _)| format!("{base}{link}"));
        bytes += response.bytes().expect("the page's body").len() as u64;
        match next {
            Some(next) => url = next,
            None => return (rows, bytes),
        }
    }
}

/// Both servers give the same rows: areas, counts, sums, and means within 1e-9.
fn same_answer(ours: &[Value], theirs: &[Value]) {
    assert_eq!(
        ours.len(),
        AREAS as usize,
        "cruscotto's panel has {} rows",
        ours.len()
    );
    assert_eq!(
        ours.len(),
        theirs.len(),
        "ROAPI answered {} rows",
        theirs.len()
    );
    for (a, b) in ours.iter().zip(theirs) {
        for column in ["area", "n", "residenti"] {
            assert_eq!(
                a[column].as_i64(),
                b[column].as_i64(),
                "{column}: {a} vs {b}"
            );
        }
        let (x, y) = (
            a["quota_media"].as_f64().unwrap(),
            b["quota_media"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "quota_media: {a} vs {b}"
        );
    }
}

/// `wrk --latency`: (requests/s, p99 latency in ms).
fn wrk(url: &str, script: Option<&Path>) -> (f64, f64) {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{WRK_SECONDS}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec:\n{text}"));
    let p99 = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("99%"))
        .and_then(|v| milliseconds(v.trim()))
        .unwrap_or_else(|| panic!("no 99% latency:\n{text}"));
    (rps, p99)
}

/// wrk's durations: `512.00us`, `12.34ms`, `1.02s`, `2.00m`.
fn milliseconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

/// A server started for the bench, killed by its PID when dropped.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    fn cruscotto(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cruscotto"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cruscotto");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("cruscotto listening on ")
                    .map(|a| a.trim().to_string())
            })
            .expect("cruscotto prints its address");
        std::thread::spawn(move || for _ in lines {});
        let process = Self { child, base };
        process.wait_for("/readyz", Duration::from_secs(600));
        process
    }

    fn roapi(parquet: &Path) -> Self {
        // ROAPI also serves PostgreSQL (5432 by default, taken on a machine running the tests) and
        // FlightSQL: every endpoint gets a free port.
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (port, postgres, flight) = (free(), free(), free());
        let child = Command::new(std::env::var("ROAPI").unwrap_or_else(|_| "roapi".into()))
            .args([
                "-a",
                &format!("127.0.0.1:{port}"),
                "-p",
                &format!("127.0.0.1:{postgres}"),
                "--addr-flight-sql",
                &format!("127.0.0.1:{flight}"),
            ])
            .args(["-t", &format!("righe={}", parquet.display())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start roapi (pip install roapi)");
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        process.wait_for("/api/schema", Duration::from_secs(120));
        process
    }

    fn wait_for(&self, path: &str, within: Duration) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + within;
        while !client
            .get(format!("{}{path}", self.base))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "{} did not answer {path} in time",
                self.base
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::io::stdout().flush();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
