//! `cargo bench --bench protocols`: the analysts' protocols against their peers, on the same
//! machine in the same run, over the synthetic sensor readings of benches/support/sensors.rs
//! (`CRUSCOTTO_BENCH_ROWS`, default 1M):
//!
//! - **pgwire vs PostgreSQL**: a 1M-row result (`SELECT *`) and the three sensor aggregates,
//!   each fetched with psql's `\copy (...) TO '/dev/null'` from cruscotto's PostgreSQL port and
//!   from the real PostgreSQL on 127.0.0.1:5432 (user postgres, database `test`), into which the
//!   same rows are loaded first (copied out of cruscotto over pgwire). Target: pgwire ≥ 1.0× of
//!   PostgreSQL's rows per second.
//! - **Flight SQL vs HTTP Arrow**: the same four queries through Flight SQL (arrow-flight's
//!   client, batches decoded) and through `POST /api/v1/sql?format=arrow` (the IPC stream
//!   decoded). Target: Flight SQL ≥ HTTP Arrow.
//!
//! Runs alternate between the two sides of each pair, each side first in turn; medians of
//! `CRUSCOTTO_BENCH_RUNS` (default 5) after one warm-up each, and for Flight SQL / HTTP as many
//! more as fit in 3 s (their small queries take milliseconds; the run count is printed). Every answer is checked: the same row count on both sides, and for
//! the aggregates the same text out of psql.

#[path = "support/sensors.rs"]
mod sensors;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::ipc::reader::StreamReader;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use sensors::{QUERIES, data_folder, ensure_parquet, median, parse_rows, rows_label, write_config};

const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const TABLE_PG: &str = "cruscotto_bench_readings";

struct Case {
    label: String,
    /// The SQL on cruscotto and on PostgreSQL.
    cruscotto: String,
    postgres: String,
}

/// The server binary on free ports; kills it when dropped.
struct Server {
    child: Child,
    base: String,
    pgwire_port: u16,
    flight_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `serve --listen 127.0.0.1:0` (the protocols take free ports too); returns once
    /// `/readyz` answers 200. Its log goes to `dir/server.log`.
    fn start(dir: &Path) -> Server {
        let log = std::fs::File::create(dir.join("server.log")).expect("server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cruscotto"))
            .arg("--config")
            .arg(dir.join("cruscotto.toml"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the server binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut pgwire, mut flight, mut base) = (None, None, None);
        while base.is_none() {
            let line = lines.next().and_then(Result::ok).unwrap_or_else(|| {
                panic!(
                    "the server exited before listening; see {}/server.log",
                    dir.display()
                )
            });
            let port = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.trim().parse::<u16>().ok())
            };
            pgwire = pgwire.or(port("cruscotto pgwire listening on "));
            flight = flight.or(port("cruscotto flight-sql listening on "));
            base = line
                .strip_prefix("cruscotto listening on ")
                .map(|u| u.trim().to_string());
        }
        std::thread::spawn(move || for _ in lines {});
        let server = Server {
            child,
            base: base.unwrap(),
            pgwire_port: pgwire.expect("the pgwire address"),
            flight_port: flight.expect("the Flight SQL address"),
        };
        let started = Instant::now();
        while reqwest::blocking::get(format!("{}/readyz", server.base))
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(3600),
                "the server was not ready within an hour"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "server: {} ready in {:.1} s",
            server.base,
            started.elapsed().as_secs_f64()
        );
        server
    }
}

/// psql with `args`; panics with its stderr when it fails.
fn psql(dsn: &str, args: &[&str]) -> String {
    let output = Command::new("psql")
        .arg(dsn)
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .expect("psql (Debian's postgresql-client) runs");
    assert!(
        output.status.success(),
        "psql {args:?} on `{dsn}`: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Seconds for psql to fetch the result of `sql` into /dev/null with `\copy`.
fn copy_to_null(dsn: &str, sql: &str) -> f64 {
    let started = Instant::now();
    psql(dsn, &["-c", &format!("\\copy ({sql}) TO '/dev/null'")]);
    started.elapsed().as_secs_f64()
}

/// Rows and seconds of `sql` through Flight SQL, every batch decoded.
async fn flight(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> (usize, f64) {
    let started = Instant::now();
    let info = client
        .execute(sql.to_string(), None)
        .await
        .expect("Flight SQL execute");
    let mut rows = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let batches: Vec<_> = client
            .do_get(ticket)
            .await
            .expect("Flight SQL do_get")
            .try_collect()
            .await
            .expect("Flight SQL batches");
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    (rows, started.elapsed().as_secs_f64())
}

/// Rows and seconds of `sql` through HTTP as an Arrow IPC stream, decoded.
async fn http_arrow(client: &reqwest::Client, base: &str, sql: &str) -> (usize, f64) {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/v1/sql?format=arrow"))
        .header("content-type", "text/plain")
        .body(sql.to_string())
        .send()
        .await
        .expect("HTTP request");
    assert!(response.status().is_success(), "HTTP {}", response.status());
    let body = response.bytes().await.expect("HTTP body");
    let reader = StreamReader::try_new(std::io::Cursor::new(body), None).expect("an Arrow stream");
    let rows = reader.map(|b| b.expect("a batch").num_rows()).sum();
    (rows, started.elapsed().as_secs_f64())
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rows = std::env::var("CRUSCOTTO_BENCH_ROWS")
        .map(|r| parse_rows(&r).expect("CRUSCOTTO_BENCH_ROWS"))
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("CRUSCOTTO_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    println!(
        "protocols bench: {} readings, {runs} runs per side, load {}",
        rows_label(rows),
        load()
    );
    let data = ensure_parquet(&data_folder(), rows);

    let dir = tempfile::tempdir().expect("temporary folder");
    write_config(dir.path(), &[("readings", data.as_path())], "24h");
    let mut config = std::fs::read_to_string(dir.path().join("cruscotto.toml")).unwrap();
    config.push_str("\n[protocols.pgwire]\nlisten = \"127.0.0.1:0\"\n[protocols.flight_sql]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(dir.path().join("cruscotto.toml"), config).unwrap();
    let server = Server::start(dir.path());
    let (pgwire_port, flight_port) = (server.pgwire_port, server.flight_port);
    let cruscotto =
        format!("host=127.0.0.1 port={pgwire_port} user=anonymous dbname=city sslmode=disable");

    load_postgres(&cruscotto, dir.path(), rows);

    let mut cases = vec![Case {
        label: format!("{} rows, SELECT *", rows_label(rows)),
        cruscotto: "SELECT sensor_id, area, metric, ts, value FROM bench.readings".into(),
        postgres: format!("SELECT sensor_id, area, metric, ts, value FROM {TABLE_PG}"),
    }];
    for query in QUERIES {
        cases.push(Case {
            label: query.label.into(),
            cruscotto: query.sql.replace("{table}", "bench.readings"),
            postgres: query.sql.replace("{table}", TABLE_PG),
        });
    }

    // The answers first: same rows on both sides (the aggregates' text compared as psql prints
    // it, floats rounded to 6 digits by the comparison query).
    for case in &cases[1..] {
        let ours = psql(
            &cruscotto,
            &[
                "-A",
                "-t",
                "-c",
                &format!("SELECT count(*) FROM ({}) q", case.cruscotto),
            ],
        );
        let theirs = psql(
            POSTGRES,
            &[
                "-A",
                "-t",
                "-c",
                &format!("SELECT count(*) FROM ({}) q", case.postgres),
            ],
        );
        assert_eq!(ours, theirs, "{}: row counts differ", case.label);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut flight_client = runtime.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}"))
                .unwrap()
                .connect()
                .await
                .expect("connect to Flight SQL");
        FlightSqlServiceClient::new(channel)
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    println!();
    println!(
        "{:<28} {:>9} {:>9} {:>7} {:>8} | {:>9} {:>9} {:>7} {:>8} {:>5}",
        "query", "pgwire", "postgres", "rows/s×", "target", "flight", "http", "×", "target", "runs"
    );
    let mut all_met = true;
    for case in &cases {
        let (mut ours, mut theirs, mut flights, mut https) = (vec![], vec![], vec![], vec![]);
        let mut result_rows = (0, 0);
        // Each pair interleaved run by run, each side first in turn; the first run of each is
        // a warm-up. The Flight SQL / HTTP pair runs at least `runs` times and until it has run
        // 3 s: its small queries take milliseconds.
        for run in 0..=runs {
            let (a, b) = if run % 2 == 0 {
                let a = copy_to_null(&cruscotto, &case.cruscotto);
                (a, copy_to_null(POSTGRES, &case.postgres))
            } else {
                let b = copy_to_null(POSTGRES, &case.postgres);
                (copy_to_null(&cruscotto, &case.cruscotto), b)
            };
            if run > 0 {
                ours.push(a);
                theirs.push(b);
            }
        }
        let started = Instant::now();
        let mut run = 0;
        while run <= runs || started.elapsed() < Duration::from_secs(3) {
            let flight_first = run % 2 == 0;
            let mut timed = |first: bool| {
                if first {
                    runtime.block_on(flight(&mut flight_client, &case.cruscotto))
                } else {
                    runtime.block_on(http_arrow(&http, &server.base, &case.cruscotto))
                }
            };
            let one = timed(flight_first);
            let other = timed(!flight_first);
            let ((flight_rows, c), (http_rows, d)) = if flight_first {
                (one, other)
            } else {
                (other, one)
            };
            assert_eq!(
                flight_rows, http_rows,
                "{}: Flight SQL and HTTP differ in rows",
                case.label
            );
            result_rows = (flight_rows, http_rows);
            if run > 0 {
                flights.push(c);
                https.push(d);
            }
            run += 1;
        }
        let flight_runs = flights.len();
        let (ours, theirs, flights, https) =
            (median(ours), median(theirs), median(flights), median(https));
        // Same rows on both sides: the ratio of rows per second is the inverse ratio of times.
        let pg_ratio = theirs / ours;
        let flight_ratio = https / flights;
        all_met &= pg_ratio >= 1.0 && flight_ratio >= 1.0;
        println!(
            "{:<28} {:>8.0}ms {:>8.0}ms {:>7.2} {:>8} | {:>8.1}ms {:>8.1}ms {:>7.2} {:>8} {:>5}",
            case.label,
            ours * 1000.0,
            theirs * 1000.0,
            pg_ratio,
            if pg_ratio >= 1.0 { "met" } else { "missed" },
            flights * 1000.0,
            https * 1000.0,
            flight_ratio,
            if flight_ratio >= 1.0 { "met" } else { "missed" },
            flight_runs,
        );
        let _ = result_rows;
    }
    println!();
    println!(
        "rows/s× = PostgreSQL's time / pgwire's (psql \\copy to /dev/null, process start included on both sides); \
         × = HTTP Arrow's time / Flight SQL's. Targets: both ≥ 1.0. {}",
        if all_met { "All met." } else { "Not all met." }
    );
    println!("load after: {}", load());
    drop(server);
}

/// Copy the readings out of cruscotto (over pgwire, COPY CSV) into PostgreSQL's `test` database,
/// unless a table of the same row count is already there.
fn load_postgres(cruscotto: &str, dir: &Path, rows: usize) {
    let present = Command::new("psql")
        .arg(POSTGRES)
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            &format!("SELECT count(*) FROM {TABLE_PG}"),
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<usize>()
                .ok()
        });
    if present == Some(rows) {
        println!("postgres: {TABLE_PG} already holds {rows} rows");
        return;
    }
    let started = Instant::now();
    let csv = dir.join("readings.csv");
    psql(
        cruscotto,
        &[
            "-c",
            &format!(
                "\\copy (SELECT sensor_id, area, metric, ts, value FROM bench.readings) TO '{}' WITH CSV",
                csv.display()
            ),
        ],
    );
    psql(
        POSTGRES,
        &[
            "-c",
            &format!(
                "DROP TABLE IF EXISTS {TABLE_PG}; CREATE TABLE {TABLE_PG} (sensor_id text NOT NULL, area bigint NOT NULL, \
                 metric text NOT NULL, ts timestamp NOT NULL, value double precision NOT NULL)"
            ),
        ],
    );
    psql(
        POSTGRES,
        &[
            "-c",
            &format!("\\copy {TABLE_PG} FROM '{}' WITH CSV", csv.display()),
        ],
    );
    psql(POSTGRES, &["-c", &format!("VACUUM ANALYZE {TABLE_PG}")]);
    let _ = std::fs::remove_file(&csv);
    println!(
        "postgres: loaded {rows} rows into {TABLE_PG} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
