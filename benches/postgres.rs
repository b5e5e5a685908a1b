//! `cargo bench --bench postgres`: the PostgreSQL connector pulling 5,000,000 service-event rows,
//! against `psql -c "\copy (same query) to '/dev/null'"` on the same database in the same run.
//! Prints rows/s of both, the ratio, and the connector's peak resident memory next to the size of
//! the Arrow table it produced, for a 1M-row and the 5M-row pull, so that the memory the pull needs
//! beyond its result can be seen not to grow with the table.
//!
//! Needs the PostgreSQL of the README (127.0.0.1:5432, user postgres, trust) or `BENCH_PG_URL`
//! pointing at a server where it may create the database `cruscotto_bench`. See benches/README.md.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cruscotto::connectors::{ConnectorConfig, LoadState};

const EVENTS: u64 = 5_000_000;
const SMALL: u64 = 1_000_000;
const SEED: u64 = 7;
const RUNS: usize = 3;
const DATABASE: &str = "cruscotto_bench";
/// The shipped service-log query (connectors.compose/service_logs.toml), without its cursor.
const QUERY: &str =
    "SELECT id, ts, servizio, canale, area_statistica, fascia_eta FROM servizi.eventi";

fn server_url() -> String {
    std::env::var("BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

fn database_url() -> String {
    format!("{}/{DATABASE}", server_url())
}

fn psql(database: &str, command: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!("{}/{database}", server_url()),
            "-c",
            command,
        ])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "psql -c {command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Creates and fills `cruscotto_bench` with the simulator unless it already holds the events.
fn ensure_database() {
    let exists = psql(
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
    )
    .expect("ask PostgreSQL")
        == "1";
    if !exists {
        psql("postgres", &format!("CREATE DATABASE {DATABASE}"))
            .expect("create the bench database");
    }
    let count = psql(DATABASE, "SELECT count(*) FROM servizi.eventi").ok();
    if count.as_deref() == Some(&EVENTS.to_string()) {
        println!("data: {DATABASE}: servizi.eventi holds {EVENTS} events (cached)");
        return;
    }
    println!("data: filling {DATABASE} with the simulator ({EVENTS} events) …");
    let options = cruscotto::simulate::Options {
        url: database_url(),
        seed: SEED,
        events: EVENTS,
        year: 2023,
        fragility: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/bologna/indici-di-fragilita-dal-2021.csv"),
        replace: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let summary = runtime
        .block_on(cruscotto::simulate::postgres(&options))
        .expect("simulate");
    println!(
        "data: {} events loaded in {:.1} s",
        summary.events,
        (summary.generate + summary.load).as_secs_f64()
    );
    psql(DATABASE, "VACUUM ANALYZE servizi.eventi").expect("vacuum");
}

fn proc_status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// In a child process (a fresh peak RSS): one pull through the connector, printed as one line.
fn child_pull(limit: u64) {
    let text = format!(
        "kind = \"postgres\"\nurl = \"{}\"\npool_size = 1\nquery_timeout = \"30m\"\n\n[[table]]\nname = \"eventi\"\nquery = \"{QUERY} LIMIT {limit}\"\n",
        database_url()
    );
    let config = ConnectorConfig::parse(Path::new("bench.toml"), &text).expect("bench connector");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let connector = config.build(Path::new("."));
    let before = proc_status_kib("VmHWM");
    let started = Instant::now();
    // The pull read to its end, as the store reads a streamed load.
    let table = runtime.block_on(async {
        let loads = connector.load(&LoadState::default()).await;
        let loaded = loads
            .into_iter()
            .next()
            .expect("one table")
            .result
            .expect("the pull succeeds");
        loaded
            .collect()
            .await
            .expect("the pull reads to its end")
            .expect("a first pull is never unchanged")
    });
    let seconds = started.elapsed().as_secs_f64();
    let arrow_bytes: usize = table
        .batches
        .iter()
        .map(|b| b.get_array_memory_size())
        .sum();
    println!(
        "{{\"rows\": {}, \"seconds\": {seconds}, \"hwm_before_kib\": {before}, \"hwm_kib\": {}, \"arrow_bytes\": {arrow_bytes}, \"batches\": {}}}",
        table.rows(),
        proc_status_kib("VmHWM"),
        table.batches.len()
    );
}

struct Pull {
    rows: u64,
    seconds: f64,
    hwm_before: f64,
    hwm: f64,
    arrow: f64,
    batches: u64,
}

fn run_child(limit: u64) -> Pull {
    let output = Command::new(std::env::current_exe().expect("bench executable"))
        .env("CRUSCOTTO_BENCH_PULL", limit.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the pull in a child process");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the pull printed {text:?} ({e}); {}", output.status));
    let number = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
    Pull {
        rows: number("rows") as u64,
        seconds: number("seconds"),
        hwm_before: number("hwm_before_kib") * 1024.0,
        hwm: number("hwm_kib") * 1024.0,
        arrow: number("arrow_bytes"),
        batches: number("batches") as u64,
    }
}

fn psql_copy_seconds(limit: u64) -> f64 {
    let command = format!("\\copy ({QUERY} LIMIT {limit}) to '/dev/null'");
    let started = Instant::now();
    let status = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &database_url(),
            "-c",
            &command,
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql \\copy failed");
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
}

fn main() {
    if let Ok(limit) = std::env::var("CRUSCOTTO_BENCH_PULL") {
        child_pull(limit.parse().expect("a row count"));
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "cruscotto PostgreSQL pull benchmark: {EVENTS} service events, {RUNS} runs each, medians"
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
    ensure_database();
    println!("query: {QUERY}");
    println!();

    let mut summary = Vec::new();
    for limit in [SMALL, EVENTS] {
        // Alternate the two so that both see the same machine.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..RUNS {
            ours.push(run_child(limit));
            theirs.push(psql_copy_seconds(limit));
        }
        for pull in &ours {
            assert_eq!(
                pull.rows, limit,
                "the connector pulled {} rows, expected {limit}",
                pull.rows
            );
        }
        let seconds = median(ours.iter().map(|p| p.seconds).collect());
        let psql_seconds = median(theirs);
        let hwm = median(ours.iter().map(|p| p.hwm).collect());
        let before = median(ours.iter().map(|p| p.hwm_before).collect());
        let arrow = median(ours.iter().map(|p| p.arrow).collect());
        summary.push((
            limit,
            limit as f64 / seconds,
            limit as f64 / psql_seconds,
            hwm,
            before,
            arrow,
            ours[0].batches,
        ));
    }

    println!(
        "| rows      | connector rows/s | psql \\copy rows/s | ratio | peak RSS | RSS before | Arrow result | peak − before − result | batches |"
    );
    println!(
        "|-----------|-----------------:|------------------:|------:|---------:|-----------:|-------------:|-----------------------:|--------:|"
    );
    for (rows, ours, theirs, hwm, before, arrow, batches) in &summary {
        println!(
            "| {rows:>9} | {ours:>16.0} | {theirs:>17.0} | {:>4.2}× | {:>8} | {:>10} | {:>12} | {:>22} | {batches:>7} |",
            ours / theirs,
            mib(*hwm),
            mib(*before),
            mib(*arrow),
            mib(hwm - before - arrow)
        );
    }
    let (_, ours, theirs, ..) = summary[1];
    let overhead = |i: usize| summary[i].3 - summary[i].4 - summary[i].5;
    println!();
    println!(
        "target: ≥ 0.7× psql's rate on {EVENTS} rows: {:.2}× — {}",
        ours / theirs,
        if ours >= 0.7 * theirs {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "memory beyond the result: {} at {SMALL} rows, {} at {EVENTS} rows (the result itself grows {:.1}×)",
        mib(overhead(0)),
        mib(overhead(1)),
        summary[1].5 / summary[0].5
    );
    let _ = std::io::stdout().flush();
}
