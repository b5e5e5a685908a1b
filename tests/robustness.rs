//! No request can take the service down or hold it: statements nested past any stack, queries
//! that run away, functions asked to build huge values, and clients that connect and never finish.
//! Each is tried in many variants against the real binary, which must answer every one with a
//! problem+json when it refuses, and then still answer `SELECT 1`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{ConfigDir, Server};
use serde_json::Value;

fn config(query: &str, http: &str) -> ConfigDir {
    let config = ConfigDir::empty();
    config.write(
        "cruscotto.toml",
        &format!(
            "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\nrequests_per_minute = 100000\nburst = 100000\n[query]\n{query}\n{}",
            // Only the tests of the HTTP limits need the section.
            if http.is_empty() { String::new() } else { format!("[http]\n{http}\n") }
        ),
    );
    config
}

fn status_and_problem(response: reqwest::blocking::Response) -> (u16, Option<Value>) {
    let status = response.status().as_u16();
    let problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json");
    let text = response.text().unwrap_or_default();
    (
        status,
        problem.then(|| serde_json::from_str(&text).unwrap()),
    )
}

fn assert_select_1(server: &Server) {
    assert_eq!(server.rows("SELECT 1 AS ok")[0]["ok"], 1);
}

/// CPU seconds the process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Wait until the process uses less than a fifth of a core over a second: no query is running.
fn wait_until_idle(server: &Server, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = cpu_seconds(server.pid());
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(server.pid()) - before;
        if used < 0.2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the server still uses {used:.2} CPU s per second"
        );
    }
}

#[test]
fn deep_statements_are_answered_and_the_server_stays_up() {
    // A large SQL size limit, so the depth bound is what refuses the long chains.
    let config = config("max_sql_bytes = 4194304", "");
    let mut server = Server::start_ready(&config);
    let chains: &[(&str, &str, &str, &str)] = &[
        ("SELECT ", "1", "+", ""),
        ("SELECT ", "2", "*", ""),
        ("SELECT ", "'a'", " || ", ""),
        ("SELECT ", "true", " AND ", ""),
        ("SELECT ", "false", " OR ", ""),
        ("SELECT 1 WHERE ", "1 = 1", " AND ", ""),
        ("", "SELECT 1 AS x", " UNION ALL ", ""),
        ("SELECT ", "1", " - ", ""),
        ("SELECT ", "x", " = ", ""),
    ];
    for (prefix, term, operator, suffix) in chains {
        for terms in [10, 1000, 10_000, 100_000] {
            let sql = format!("{prefix}{}{suffix}", vec![*term; terms].join(operator));
            let (status, problem) = status_and_problem(server.sql(&sql));
            assert!(
                server.is_running(),
                "{terms} x {operator:?} killed the server"
            );
            match status {
                200 => assert!(terms <= 1000, "{terms} x {operator:?} ran"),
                400 => {
                    let problem = problem.expect("a problem+json");
                    if terms > 1000 {
                        assert_eq!(
                            problem["type"], "urn:cruscotto:problem:expression-depth",
                            "{terms} x {operator:?}: {problem}"
                        );
                        assert!(
                            problem["detail"]
                                .as_str()
                                .unwrap()
                                .contains("max_expression_depth"),
                            "{problem}"
                        );
                    }
                }
                other => panic!("{terms} x {operator:?}: status {other}"),
            }
            assert_select_1(&server);
        }
    }
    // A chain within the limit is planned and computed, not only survived.
    let sum = format!("SELECT {} AS n", vec!["1"; 999].join("+"));
    assert_eq!(server.rows(&sum)[0]["n"], 999);
    let union = format!(
        "SELECT count(*) AS n FROM ({})",
        vec!["SELECT 1 AS x"; 900].join(" UNION ALL ")
    );
    assert_eq!(server.rows(&union)[0]["n"], 900);
    let concat = format!("SELECT length({}) AS n", vec!["'ab'"; 999].join(" || "));
    assert_eq!(server.rows(&concat)[0]["n"], 1998);
    // Nested parentheses and nested function calls.
    for depth in [10, 100, 1000, 10_000, 100_000] {
        for (open, close) in [("(", ")"), ("abs(", ")"), ("(SELECT ", ")")] {
            let sql = format!("SELECT {}1{}", open.repeat(depth), close.repeat(depth));
            let (status, problem) = status_and_problem(server.sql(&sql));
            assert!(server.is_running(), "{depth} x {open:?} killed the server");
            assert!(
                status == 200 || (status == 400 && problem.is_some()),
                "{depth} x {open:?}: {status}"
            );
            assert_select_1(&server);
        }
    }
}

const RUNAWAY: &str =
    "SELECT count(*) FROM generate_series(1,100000000) a CROSS JOIN generate_series(1,100000000) b";
const SELF_JOIN: &str = "WITH a AS (SELECT value AS v FROM generate_series(1, 30000000)), \
    b AS (SELECT x.v FROM a x JOIN a y ON x.v % 1000 = y.v % 1000) SELECT count(*) FROM b";

/// Runaway queries that hold little memory and only burn CPU: a small side crossed with a huge
/// one, and a self-join on a key of few values.
const CPU_CROSS: &str =
    "SELECT count(*) FROM generate_series(1,100000) a CROSS JOIN generate_series(1,100000000) b";
const CPU_SELF_JOIN: &str = "WITH a AS (SELECT value AS v FROM generate_series(1, 3000000)) \
    SELECT count(*) FROM a x JOIN a y ON x.v % 10 = y.v % 10";

#[test]
fn runaway_queries_are_cancelled_at_their_time_limit() {
    let config = config("timeout = \"2s\"\nmax_concurrent = 4", "");
    let server = Server::start_ready(&config);
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let client = server.client.clone();
            let url = format!("{}/api/v1/sql", server.url);
            let sql = [RUNAWAY, SELF_JOIN, CPU_CROSS, CPU_SELF_JOIN][i % 4];
            std::thread::spawn(move || {
                let response = client.post(url).body(sql).send().unwrap();
                status_and_problem(response)
            })
        })
        .collect();
    for handle in handles {
        let (status, problem) = handle.join().unwrap();
        let problem = problem.expect("a problem+json");
        assert!(
            (status == 422 && problem["type"] == "urn:cruscotto:problem:time-limit")
                || (status == 422 && problem["type"] == "urn:cruscotto:problem:memory-limit"),
            "{status} {problem}"
        );
    }
    // Their threads are free: the process goes idle and queries run again.
    wait_until_idle(&server, "after five timed-out queries");
    assert_select_1(&server);
    let ready = server.get_json("/readyz");
    assert_eq!(ready["running_queries"], 0, "{ready}");
    assert_eq!(ready["query_pool"], "ok", "{ready}");
}

#[test]
fn a_query_is_cancelled_when_its_client_goes_away() {
    // A long time limit: only the client's leaving can stop these queries.
    let config = config("timeout = \"10m\"", "");
    let server = Server::start_ready(&config);
    for sql in [CPU_CROSS, CPU_SELF_JOIN] {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let sent = client
            .post(format!("{}/api/v1/sql", server.url))
            .body(sql)
            .send();
        if let Ok(response) = sent {
            panic!(
                "the query should still be running, but it answered {}: {}",
                response.status(),
                response.text().unwrap_or_default()
            );
        }
        drop(client);
        server.wait_until("the query to be cancelled", |s| {
            s.get_json("/readyz")["running_queries"] == 0
        });
        wait_until_idle(&server, "after the client left");
        assert_select_1(&server);
    }
}

/// A pool whose slots stay taken while queries wait is not ready: a balancer sends the next
/// visitor elsewhere instead of letting it time out; it is ready again once the slots turn over.
#[test]
fn readyz_reports_a_saturated_query_pool() {
    let config = config("timeout = \"10m\"\nmax_concurrent = 2", "");
    let server = Server::start_ready(&config);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let url = format!("{}/api/v1/sql", server.url);
            std::thread::spawn(move || {
                // The client gives up after 30 s, which cancels its query.
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                client.post(url).body(CPU_CROSS).send().is_err()
            })
        })
        .collect();
    let readyz = |s: &Server| status_and_problem(s.get("/readyz"));
    server.wait_until("/readyz to report the saturated pool", |s| {
        let (status, problem) = readyz(s);
        status == 503
            && problem.is_some_and(|p| {
                p["type"] == "urn:cruscotto:problem:not-ready"
                    && p["query_pool"]
                        .as_str()
                        .is_some_and(|why| why.contains("all 2 query slots"))
            })
    });
    let (_, problem) = readyz(&server);
    assert_eq!(problem.unwrap()["running_queries"], 2);
    for client in clients {
        assert!(
            client.join().unwrap(),
            "the runaway query should not have answered"
        );
    }
    server.wait_until("/readyz to recover", |s| readyz(s).0 == 200);
    assert_select_1(&server);
}

/// Every function whose output size an argument sets is refused over the memory limit, and the
/// process's peak memory stays within what the limits allow.
#[test]
fn functions_cannot_build_values_over_the_memory_limit() {
    let config = config(
        "memory_limit = \"256 MiB\"\nmax_concurrent = 2\ntimeout = \"60s\"",
        "",
    );
    let server = Server::start_ready(&config);
    let huge = [
        "SELECT length(repeat('x', 1000000000))",
        "SELECT length(repeat('x', 2147483647))",
        "SELECT length(repeat('ab', n)) FROM (VALUES (1), (1500000000)) t(n)",
        "SELECT length(lpad('x', 1000000000, 'y'))",
        "SELECT length(rpad('x', 1000000000, 'y'))",
        "SELECT length(lpad('x', 2147483647))",
        "SELECT cardinality(array_repeat(1, 200000000))",
        "SELECT cardinality(array_repeat('abcdefgh', 100000000))",
        "SELECT cardinality(array_resize([1], 500000000, 0))",
        "SELECT cardinality(range(0, 3000000000))",
        "SELECT cardinality(generate_series(1, 3000000000))",
        "SELECT length(replace(repeat('x', 100000), 'x', repeat('y', 100000)))",
        "SELECT length(regexp_replace(repeat('x', 20000), '', repeat('y', 20000), 'g'))",
        "SELECT length(array_to_string(array_repeat(1, 1000000), repeat('-', 1000)))",
        "SELECT length(concat(repeat('x', 100000000), repeat('x', 100000000), repeat('x', 100000000)))",
        "SELECT length(repeat(repeat('x', 20000), 20000))",
        "SELECT length(string_agg(repeat('x', 1000), '')) FROM generate_series(1, 10000000)",
        "SELECT cardinality(array_agg(repeat('x', 1000))) FROM generate_series(1, 10000000)",
        "SELECT length(repeat('x', 1000) || repeat('y', 400000000))",
        "SELECT length(s || s || s || s || s) FROM (SELECT repeat('x', 100000000) AS s)",
    ];
    // Two at a time, as many as `max_concurrent` lets run together: the peak below is of both.
    let refused = |sql: &str| {
        let (status, problem) = status_and_problem(server.sql(sql));
        let problem = problem.unwrap_or_else(|| panic!("{sql}: {status} without problem+json"));
        assert_eq!(
            (status, problem["type"].as_str().unwrap()),
            (422, "urn:cruscotto:problem:memory-limit"),
            "{sql}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("256"),
            "{sql}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("(`memory_limit` in [query])"),
            "{sql}: {problem}"
        );
    };
    let (odd, even): (Vec<_>, Vec<_>) = huge.iter().enumerate().partition(|(i, _)| i % 2 == 1);
    let refused = &refused;
    std::thread::scope(|scope| {
        for half in [odd, even] {
            scope.spawn(move || half.iter().for_each(|(_, sql)| refused(sql)));
        }
    });
    assert_select_1(&server);
    // Within the limit they work.
    assert_eq!(
        server.rows("SELECT length(repeat('x', 10000000)) AS n")[0]["n"],
        10_000_000
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    let allowed_kib = (2 * 256 + 1024) * 1024;
    assert!(
        peak_kib < allowed_kib,
        "peak RSS {peak_kib} KiB over {allowed_kib} KiB"
    );
}

fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server has closed `stream` (EOF or reset), without blocking for long.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn problem_of(raw: &str) -> (u16, Value) {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {raw:?}"));
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn slow_and_idle_clients_are_bounded() {
    let config = config(
        "",
        "header_read_timeout = \"20s\"\nkeep_alive_timeout = \"2s\"\nmax_connections = 200",
    );
    let server = Server::start_ready(&config);
    let address = server.url.trim_start_matches("http://").to_string();
    // 600 clients that send half a request head and then nothing.
    let connecting = Instant::now();
    let mut slow: Vec<(TcpStream, Vec<u8>)> = (0..600)
        .map(|i| {
            let mut stream = TcpStream::connect(&address).unwrap();
            let partial = format!("GET /healthz?client={i} HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            stream.write_all(partial.as_bytes()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            (stream, Vec::new())
        })
        .collect();
    // A slot frees no sooner than `header_read_timeout` after it was taken: however slowly
    // this machine opened the 600, at most this many can have been served.
    let generations = 1 + connecting.elapsed().as_secs().div_ceil(20) as usize;
    let served_at_most = (200 * generations).min(600);
    // Those over the limit are told so at once; the rest are closed after the header timeout.
    // Each connection is read until the server closes it; what it sent is then judged whole.
    let mut refused = 0;
    let mut timed_out = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !slow.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} slow clients still open",
            slow.len()
        );
        slow.retain_mut(|(stream, received)| {
            let mut buf = [0u8; 4096];
            let closed = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        break false;
                    }
                    Err(_) => break true,
                }
            };
            if !closed {
                return true;
            }
            if received.is_empty() {
                timed_out += 1;
            } else {
                let (status, problem) = problem_of(&String::from_utf8_lossy(received));
                assert_eq!(status, 503);
                assert_eq!(
                    problem["type"],
                    "urn:cruscotto:problem:too-many-connections"
                );
                let head = String::from_utf8_lossy(received).to_ascii_lowercase();
                assert!(head.contains("\r\nretry-after: "), "no Retry-After: {head}");
                refused += 1;
            }
            false
        });
    }
    // The 600 are opened within one header timeout: some must have been refused.
    assert!(
        served_at_most < 600,
        "opening 600 sockets took {:?}",
        connecting.elapsed()
    );
    assert!(
        refused >= 600 - served_at_most && timed_out <= served_at_most,
        "{refused} of 600 were refused over 200 connections, {timed_out} timed out \
         (at most {served_at_most} could be served)"
    );
    assert_select_1(&server);

    // An idle kept-alive connection is closed after `keep_alive_timeout`.
    let mut idle = TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !closed_by_server(&mut idle) {
        assert!(
            Instant::now() < deadline,
            "the idle connection is still open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_select_1(&server);
}

/// A kept-alive connection idle for longer than `header_read_timeout` (but not
/// `keep_alive_timeout`) still carries the client's next request; a head that takes longer than
/// `header_read_timeout` from its first byte is still cut off.
#[test]
fn an_idle_kept_alive_connection_outlives_the_header_timeout() {
    let config = config(
        "",
        "header_read_timeout = \"1s\"\nkeep_alive_timeout = \"30s\"",
    );
    let server = Server::start_ready(&config);
    let address = server.url.trim_start_matches("http://").to_string();
    let request = b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nSELECT 1";
    let mut kept = TcpStream::connect(&address).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for round in 0..2 {
        kept.write_all(request).unwrap();
        let mut head = [0u8; 12];
        kept.read_exact(&mut head).unwrap_or_else(|e| {
            panic!("round {round}: no answer on the kept-alive connection: {e}")
        });
        assert_eq!(&head, b"HTTP/1.1 200", "round {round}");
        // Idle for more than twice the header timeout (the rest of the answer is read and
        // dropped by the check): the connection must still be open.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !closed_by_server(&mut kept),
            "round {round}: the idle connection was closed before keep_alive_timeout"
        );
        kept.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }

    // A head begun and not finished is cut off after the header timeout.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    while !closed_by_server(&mut slow) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a half-sent head is still open after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_select_1(&server);
}

/// Requests hyper cannot parse or will not read are answered with problem+json too.
#[test]
fn malformed_and_oversized_heads_get_problem_json() {
    let config = config("", "max_header_bytes = 16384\nmax_uri_bytes = 2048");
    let server = Server::start_ready(&config);
    let address = server.url.trim_start_matches("http://").to_string();
    let send = |raw: &[u8]| -> (u16, Value) {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(raw);
        problem_of(&read_all(&mut stream))
    };
    let mut cases: Vec<(Vec<u8>, u16)> = Vec::new();
    for size in [3000usize, 10_000, 15_000, 60_000] {
        let uri = format!(
            "GET /api/v1/datasets?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(size)
        );
        // Over `max_uri_bytes` but within `max_header_bytes`: the URI is refused (414); past the head
        // limit, the head as a whole (431).
        cases.push((uri.into_bytes(), if size < 16_000 { 414 } else { 431 }));
    }
    for (count, size) in [(1usize, 20_000usize), (10, 2000), (150, 10), (400, 10)] {
        let headers: String = (0..count)
            .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(size)))
            .collect();
        cases.push((
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes(),
            431,
        ));
    }
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ] {
        cases.push((garbage.to_vec(), 400));
    }
    for (raw, expected) in cases {
        let (status, problem) = send(&raw);
        assert_eq!(
            status,
            expected,
            "{:?}: {problem}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        );
        assert_eq!(problem["status"], expected);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:cruscotto:problem:")
        );
    }
    assert_select_1(&server);
}
