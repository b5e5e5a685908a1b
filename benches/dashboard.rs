//! `cargo bench --bench dashboard`: time from navigation to the choropleth drawn with all 90 areas,
//! and bytes transferred, median of 5 runs in headless Chromium on localhost, against the release
//! binary serving the Bologna demo. Targets (issue 6): under 1.5 s and under 2 MB compressed.
//! The browser part is benches/dashboard.mjs (playwright-core from web/node_modules, Debian's
//! Chromium at /usr/bin/chromium or $CHROMIUM).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_cruscotto");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const RUNS: usize = 5;

fn main() {
    let repo = Path::new(REPO);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium`"
    );
    assert!(
        repo.join("web/node_modules/playwright-core").exists(),
        "web/node_modules is missing: `npm ci` in web/"
    );

    // The shipped demo configuration in a temporary folder, so the run leaves nothing behind.
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::copy(
        repo.join("cruscotto.toml"),
        dir.path().join("cruscotto.toml"),
    )
    .unwrap();
    for sub in ["connectors", "queries", "dashboards"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    std::os::unix::fs::symlink(repo.join("data"), dir.path().join("data")).unwrap();

    let mut server = Command::new(BINARY)
        .arg("--config")
        .arg(dir.path().join("cruscotto.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("cruscotto listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => panic!("the server exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(&url) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "cruscotto {} on {url}; load average {}",
        env!("CARGO_PKG_VERSION"),
        load_average()
    );

    let status = Command::new("node")
        .arg(repo.join("benches/dashboard.mjs"))
        .arg(&url)
        .arg(RUNS.to_string())
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs");
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "the browser benchmark failed");
}

fn ready(url: &str) -> bool {
    let address = url.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    use std::io::{Read, Write};
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
