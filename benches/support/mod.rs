//! What the browser benches share: the shipped demo configuration in a temporary folder, the
//! release binary started on it, readiness and the load average.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_cruscotto");

/// The shipped demo configuration in a temporary folder (data/ linked), so a run leaves nothing
/// behind and starts with an empty data folder.
pub fn demo_config(repo: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::copy(
        repo.join("cruscotto.toml"),
        dir.path().join("cruscotto.toml"),
    )
    .unwrap();
    for sub in ["connectors", "queries", "dashboards", "datasets"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    std::os::unix::fs::symlink(repo.join("data"), dir.path().join("data")).unwrap();
    dir
}

/// `cruscotto serve` on a free port with the configuration in `dir`; returns once it listens,
/// with its URL.
pub fn serve(dir: &Path) -> (Child, String) {
    let mut server = Command::new(BINARY)
        .arg("--config")
        .arg(dir.join("cruscotto.toml"))
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
    (server, url)
}

/// Whether `GET /readyz` answers 200.
pub fn ready(url: &str) -> bool {
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

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
