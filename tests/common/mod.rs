//! The real binary, started on 127.0.0.1:0 against a configuration in a temporary folder.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_cruscotto");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A folder holding a configuration: `cruscotto.toml` and the folders beside it.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

/// Create an API key with `cruscotto keys create`; returns (key id, key).
pub fn create_key(config: &ConfigDir, role: &str, datasets: &str) -> (String, String) {
    let mut args = vec!["keys", "create", "--name", "test", "--role", role];
    if !datasets.is_empty() {
        args.extend(["--datasets", datasets]);
    }
    let (code, stdout, stderr) = config.run(&args);
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim().to_string();
    let id = key.split('_').nth(1).unwrap().to_string();
    (id, key)
}

impl ConfigDir {
    /// An empty configuration (no connectors, no queries).
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        for sub in ["connectors", "queries", "dashboards"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let this = Self { dir };
        this.write(
            "cruscotto.toml",
            "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n",
        );
        this
    }

    /// The shipped demo configuration, with the repository's data/ linked in and its own data_dir.
    pub fn demo() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = Path::new(REPO);
        std::fs::copy(
            repo.join("cruscotto.toml"),
            dir.path().join("cruscotto.toml"),
        )
        .unwrap();
        for sub in ["connectors", "queries", "dashboards", "datasets", "plans"] {
            copy_dir(&repo.join(sub), &dir.path().join(sub));
        }
        std::os::unix::fs::symlink(repo.join("data"), dir.path().join("data")).unwrap();
        Self { dir }
    }

    /// The demo without its simulated sources (service logs, sensors): the indicators that need
    /// them have no source, as in an installation whose connector is not configured yet.
    pub fn demo_without_simulators() -> Self {
        let this = Self::demo();
        for file in ["connectors/service_logs.toml", "connectors/sensori.toml"] {
            std::fs::remove_file(this.path().join(file)).unwrap();
        }
        this
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("cruscotto.toml")
    }

    pub fn write(&self, relative: &str, text: &str) {
        self.write_bytes(relative, text.as_bytes());
    }

    pub fn write_bytes(&self, relative: &str, bytes: &[u8]) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Replace a file atomically (write a temporary file, then rename), as a publisher should.
    pub fn replace(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        let temporary = path.with_extension("partial");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(temporary, path).unwrap();
    }

    /// Run `cruscotto <args>` with this configuration and return (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config_file();
        let mut all = vec!["--config", config.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        run(&all)
    }
}

/// Run `cruscotto <args>` and return (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    if !from.exists() {
        return;
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A running `cruscotto serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub client: reqwest::blocking::Client,
}

impl Server {
    pub fn start(config: &ConfigDir) -> Self {
        Self::start_config_file_with_env(&config.config_file(), &[])
    }

    /// Start the binary on a configuration file anywhere (e.g. one `cruscotto init` wrote).
    pub fn start_config_file(config: &Path) -> Self {
        Self::start_config_file_with_env(config, &[])
    }

    fn start_config_file_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BINARY)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
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
        let client = http_client();
        Self { child, url, client }
    }

    /// Start and wait until the first load of every source is done (whether or not every table
    /// loaded: a table that failed makes /readyz 503).
    pub fn start_ready(config: &ConfigDir) -> Self {
        let server = Self::start(config);
        server.wait_until_loaded();
        server
    }

    /// Wait until the first load of every source is done.
    pub fn wait_until_loaded(&self) {
        self.wait_until("the first load", |s| {
            let body: serde_json::Value = s.get("/readyz").json().unwrap_or_default();
            body["initial_load_done"] == true
                && body["loading"].as_array().is_some_and(Vec::is_empty)
        });
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .expect("GET")
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).json().expect("JSON")
    }

    /// POST SQL as the body; returns the response.
    pub fn sql(&self, sql: &str) -> reqwest::blocking::Response {
        self.client
            .post(format!("{}/api/v1/sql", self.url))
            .header("content-type", "text/plain")
            .body(sql.to_string())
            .send()
            .expect("POST")
    }

    /// Run SQL that must succeed and return its rows as JSON objects.
    pub fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let response = self.sql(sql);
        let status = response.status();
        let text = response.text().unwrap();
        assert_eq!(status, 200, "{sql}\n{text}");
        serde_json::from_str::<Vec<serde_json::Value>>(&text).expect("a JSON array")
    }

    /// Wait for a condition with a deadline, never a fixed sleep.
    pub fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn table_status(&self, name: &str) -> serde_json::Value {
        let status = self.get_json("/status");
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no table {name} in /status: {status}"))
    }

    /// The server process's id, to read its resource use from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `start`, with extra environment variables for the binary (e.g. secrets that connector
    /// files reference as `${VAR}`).
    pub fn start_with_env(config: &ConfigDir, env: &[(&str, &str)]) -> Self {
        Self::start_config_file_with_env(&config.config_file(), env)
    }
}

/// A blocking HTTP client for the tests. reqwest is built without a bundled crypto provider (the
/// service chooses ring explicitly), so the tests install ring as the process default first.
/// The virtualenv `$HOME/.cache/<name>` (the same one .ci/run makes up front), made from
/// `requirements` (a path in the repository) unless `imports` already import in it; its folder.
/// Callers run this once per process (a `OnceLock`): pip must not run twice at the same time.
pub fn virtualenv(name: &str, imports: &str, requirements: &str, what: &str) -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache").join(name);
    let ready = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {imports}")])
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return venv;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| {
            panic!("python3 (Debian's python3 and python3-venv) makes the {what}'s virtualenv: {e}")
        });
    assert!(made.success(), "python3 -m venv {}", venv.display());
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(Path::new(REPO).join(requirements))
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install of the {what} failed");
    venv
}

pub fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The rows of `tests/golden/<name>`, each a map of column name to text.
pub fn golden(name: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let path = format!("{REPO}/tests/golden/{name}");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}
