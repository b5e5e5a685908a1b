//! `cargo bench --bench runaway`: how fast the release binary recovers from queries that run away.
//! Five queries that would run for hours (cross joins of generate_series, a self-joining CTE) are
//! sent at once with `timeout = "2s"` and `max_concurrent = 4`; once all five have their 422, it
//! measures how long until the process uses less than a tenth of a core (its query threads are
//! free) and the latency of `SELECT 1` right then and over the next 20 requests. Prints each
//! against the targets of issue 17 (CPU free within 1 s of the answers, `SELECT 1` within 200 ms),
//! with the load average. The same, with a client that leaves instead of a time limit, is the
//! test `a_query_is_cancelled_when_its_client_goes_away` (tests/robustness.rs), without timings.

use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::{load_average, ready, serve};

const RUNAWAY: [&str; 4] = [
    "SELECT count(*) FROM generate_series(1,100000000) a CROSS JOIN generate_series(1,100000000) b",
    "WITH a AS (SELECT value AS v FROM generate_series(1, 30000000)), \
     b AS (SELECT x.v FROM a x JOIN a y ON x.v % 1000 = y.v % 1000) SELECT count(*) FROM b",
    "SELECT count(*) FROM generate_series(1,100000) a CROSS JOIN generate_series(1,100000000) b",
    "WITH a AS (SELECT value AS v FROM generate_series(1, 3000000)) \
     SELECT count(*) FROM a x JOIN a y ON x.v % 10 = y.v % 10",
];

/// CPU seconds the process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["connectors", "queries", "dashboards"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(
        dir.path().join("cruscotto.toml"),
        "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\nrequests_per_minute = 100000\n\
         burst = 100000\n[query]\ntimeout = \"2s\"\nmax_concurrent = 4\n",
    )
    .unwrap();
    let (server, url) = serve(dir.path());
    // Stopped however this ends, so a failed run leaves no server behind.
    let server = Stop(server);
    while !ready(&url) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("runaway queries; load average {}", load_average());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");
    let select_1 = |client: &reqwest::blocking::Client| {
        let started = Instant::now();
        let response = client
            .post(format!("{url}/api/v1/sql"))
            .body("SELECT 1 AS ok")
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        started.elapsed()
    };
    select_1(&client);

    let mut rounds = Vec::new();
    for round in 1..=3 {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let client = client.clone();
                let url = format!("{url}/api/v1/sql");
                std::thread::spawn(move || {
                    client
                        .post(url)
                        .body(RUNAWAY[i % RUNAWAY.len()])
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let answered = Instant::now();
        assert!(
            statuses.iter().all(|s| *s == 422),
            "every runaway query should get its 422: {statuses:?}"
        );
        let first = select_1(&client);
        // CPU free: less than a tenth of a core over a 100 ms window; the time reported is the
        // end of the first such window, an upper bound (the kernel counts CPU in 10 ms ticks).
        let pid = server.0.id();
        let cpu_free = loop {
            let before = cpu_seconds(pid);
            std::thread::sleep(Duration::from_millis(100));
            if cpu_seconds(pid) - before < 0.011 {
                break answered.elapsed();
            }
            assert!(answered.elapsed() < Duration::from_secs(60), "never idle");
        };
        let mut latencies: Vec<Duration> = (0..20).map(|_| select_1(&client)).collect();
        latencies.sort();
        println!(
            "round {round}: CPU free by {:>4} ms after the 422s; SELECT 1 right after {:>4} ms, \
             median of 20 {:>3} ms, slowest {:>3} ms; load average {}",
            cpu_free.as_millis(),
            first.as_millis(),
            latencies[10].as_millis(),
            latencies[19].as_millis(),
            load_average()
        );
        rounds.push((cpu_free, first, latencies[19]));
    }
    drop(server);
    let worst = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        rounds.iter().map(f).max().unwrap().as_millis()
    };
    println!(
        "\nworst of 3 rounds: CPU free by {} ms (target ≤ 1000), SELECT 1 right after {} ms and \
         slowest after {} ms (target ≤ 200)",
        worst(|r| r.0),
        worst(|r| r.1),
        worst(|r| r.2)
    );
}

struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
