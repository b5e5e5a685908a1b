//! A real S3 server for the object-storage tests: moto's server mode (from PyPI, in a virtualenv
//! made on first use) on a free port, with authentication on, filled with boto3 (`s3.py`), a
//! client independent of the service's. Stopped by its PID when dropped.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::REPO;

/// The virtualenv's Python, with moto[server] and boto3 installed (the venv is made on first use).
pub fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        crate::common::virtualenv(
            "cruscotto-s3-venv",
            "moto.server, boto3, flask_cors",
            "tests/s3_support/requirements.txt",
            "S3 server (moto[server] and boto3)",
        )
    })
    .clone()
}

/// A running moto S3 server with one IAM user allowed `s3:*`, whose key every request must carry.
pub struct S3Server {
    child: Option<Child>,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Server {
    pub fn start() -> Self {
        let venv = venv();
        let port = free_port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut server = Self {
            child: Some(child),
            endpoint,
            key_id: String::new(),
            secret: String::new(),
        };
        let user: serde_json::Value =
            serde_json::from_str(&server.client(&["users"], None)).expect("the user's key as JSON");
        server.key_id = user["id"].as_str().unwrap().to_string();
        server.secret = user["secret"].as_str().unwrap().to_string();
        server
    }

    /// Run `s3.py <endpoint> <args>` signed with the user's key; returns its standard output.
    fn client(&self, args: &[&str], key: Option<(&str, &str)>) -> String {
        let mut command = Command::new(venv().join("bin/python"));
        command
            .arg(PathBuf::from(REPO).join("tests/s3_support/s3.py"))
            .arg(&self.endpoint)
            .args(args)
            .env_remove("AWS_PROFILE");
        if let Some((id, secret)) = key {
            command
                .env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let output = command.output().expect("s3.py runs");
        assert!(
            output.status.success(),
            "s3.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn signed(&self, args: &[&str]) {
        self.client(args, Some((&self.key_id, &self.secret)));
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.signed(&["mb", bucket]);
    }

    /// Upload a local file as `bucket/key` (replacing what was there).
    pub fn put_file(&self, bucket: &str, key: &str, file: &Path) {
        self.signed(&["put", bucket, key, file.to_str().unwrap()]);
    }

    /// Upload `bytes` as `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        self.put_file(bucket, key, file.path());
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        self.signed(&["rm", bucket, key]);
    }

    /// Stop the server (by its PID), as a server that went down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `[object_store]` for this server, the key given as `${CRUSCOTTO_S3_KEY_ID}` and
    /// `${CRUSCOTTO_S3_SECRET}` (set them with `key_env`).
    pub fn object_store_section(&self) -> String {
        format!(
            "[object_store]\nendpoint = \"{}\"\nregion = \"eu-south-1\"\nallow_http = true\n\
             access_key_id = \"${{CRUSCOTTO_S3_KEY_ID}}\"\n\
             secret_access_key = \"${{CRUSCOTTO_S3_SECRET}}\"\n",
            self.endpoint
        )
    }

    /// The environment `object_store_section` reads the user's key from.
    pub fn key_env(&self) -> [(&'static str, String); 2] {
        [
            ("CRUSCOTTO_S3_KEY_ID", self.key_id.clone()),
            ("CRUSCOTTO_S3_SECRET", self.secret.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
