//! Shared by tests/pgwire.rs and tests/flight_sql.rs: the real binary with both protocols on
//! free ports, a small table of every type, API keys of each role, and the real clients (psql
//! from Debian; psycopg, pgcli, SQLAlchemy, ADBC, pandas and pyarrow from PyPI, in their own
//! virtualenv under $HOME/.cache, created here or by .ci/run when missing).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{BINARY, ConfigDir, create_key};

/// A query that only burns CPU (no memory) for far longer than any test: it ends by its time
/// limit or by being cancelled.
pub const SLOW: &str =
    "SELECT count(*) FROM generate_series(1,100000) a CROSS JOIN generate_series(1,100000000) b";

/// The virtualenv's Python, with every client installed (the venv is made on first use).
pub fn python() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        crate::common::virtualenv(
            "cruscotto-protocols-venv",
            "psycopg, pgcli, sqlalchemy, adbc_driver_flightsql.dbapi, adbc_driver_postgresql.dbapi, pandas, pyarrow",
            "tests/pgwire_support/requirements.txt",
            "protocol test clients",
        )
    })
    .join("bin/python")
}

/// The running service with pgwire and Flight SQL on free ports; killed when dropped.
pub struct Service {
    child: Child,
    pub config: ConfigDir,
    pub http: String,
    pub pgwire_port: u16,
    pub flight_port: u16,
    /// Keys: analyst, admin, partner.
    pub analyst: String,
    pub admin: String,
    pub partner: String,
}

/// The table every client reads: one column of each type the issue lists.
const TYPES_CSV: &str = "\
id,nome,quota,attivo,giorno,istante,importo
1,Bologna,0.25,true,2024-03-01,2024-03-01T10:00:00,392203.5
2,Imola,1.5,false,2023-12-31,2023-12-31T23:59:59,69936.25
3,Sasso Marconi,,true,2024-02-29,2024-02-29T12:30:00,14729
";

/// The Arrow schema the clients see for `SELECT id, nome, quota, attivo, giorno, istante FROM
/// prova.tipi`, as pyarrow prints it.
pub fn types_arrow_schema() -> serde_json::Value {
    serde_json::json!([
        "id:int64",
        "nome:string",
        "quota:double",
        "attivo:bool",
        "giorno:date32[day]",
        "istante:timestamp[us]"
    ])
}

impl Service {
    /// The service over a table `prova.tipi` (see `TYPES_CSV`) and a view over it, with a
    /// query time limit of `timeout` and no access without a key.
    pub fn start(timeout: &str) -> Self {
        Self::start_with(timeout, "")
    }

    /// `start`, with more text appended to cruscotto.toml (e.g. TLS settings).
    pub fn start_with(timeout: &str, extra: &str) -> Self {
        let config = ConfigDir::empty();
        config.write("data/tipi.csv", TYPES_CSV);
        config.write(
            "connectors/prova.toml",
            r#"kind = "file"
[[table]]
name = "tipi"
path = "data/tipi.csv"
schema = { id = "int", nome = "text", quota = "float", attivo = "bool", giorno = "date", istante = "timestamp", importo = "float" }
"#,
        );
        config.write(
            "queries/tipi_attivi.sql",
            "-- title: Active rows\nSELECT id, nome FROM prova.tipi WHERE attivo\n",
        );
        // A partner key is scoped to a published dataset.
        config.write(
            "datasets/tipi_attivi.toml",
            "title = \"Righe attive\"\ndescription = \"Le righe attive di prova.tipi.\"\n\
             query = \"tipi_attivi\"\nlicence = \"https://creativecommons.org/licenses/by/4.0/\"\n\
             publisher = \"Comune di prova\"\nupdate_frequency = \"IRREG\"\nspatial = \"Prova\"\nkey = \"id\"\n",
        );
        config.write(
            "cruscotto.toml",
            &format!(
                "data_dir = \"var\"\n[access]\nanonymous = \"none\"\n[query]\ntimeout = \"{timeout}\"\n\
                 [protocols.pgwire]\nlisten = \"127.0.0.1:0\"\n[protocols.flight_sql]\nlisten = \"127.0.0.1:0\"\n{extra}"
            ),
        );
        let (_, analyst) = create_key(&config, "analyst", "");
        let (_, admin) = create_key(&config, "admin", "");
        let (_, partner) = create_key(&config, "partner", "tipi_attivi");
        let mut child = Command::new(BINARY)
            .arg("--config")
            .arg(config.config_file())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut pgwire, mut flight, mut http) = (None, None, None);
        while http.is_none() {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("the server exited before listening (see its log above)"),
            };
            let port = |prefix: &str| -> Option<u16> {
                line.strip_prefix(prefix)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.trim().parse().ok())
            };
            pgwire = pgwire.or(port("cruscotto pgwire listening on "));
            flight = flight.or(port("cruscotto flight-sql listening on "));
            http = line
                .strip_prefix("cruscotto listening on ")
                .map(|u| u.trim().to_string());
        }
        std::thread::spawn(move || for _ in lines {});
        let service = Self {
            child,
            config,
            http: http.unwrap(),
            pgwire_port: pgwire
                .expect("a `cruscotto pgwire listening on` line before the HTTP one"),
            flight_port: flight
                .expect("a `cruscotto flight-sql listening on` line before the HTTP one"),
            analyst,
            admin,
            partner,
        };
        service.wait_until("the first load", |s| {
            s.readyz()["initial_load_done"] == true
        });
        service
    }

    pub fn readyz(&self) -> serde_json::Value {
        crate::common::http_client()
            .get(format!("{}/readyz", self.http))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default()
    }

    /// Queries running now, as /readyz counts them.
    pub fn running_queries(&self) -> u64 {
        self.readyz()["running_queries"].as_u64().unwrap_or(0)
    }

    pub fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A libpq connection string for `key` (psql, psycopg, ADBC PostgreSQL).
    pub fn dsn(&self, key: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=city user=analyst password={key} sslmode=disable",
            self.pgwire_port
        )
    }

    /// The same as a URI.
    pub fn uri(&self, key: &str) -> String {
        format!(
            "postgresql://analyst:{key}@127.0.0.1:{}/city?sslmode=disable",
            self.pgwire_port
        )
    }

    /// The audit trail's entries, as an admin reads them over HTTP.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        crate::common::http_client()
            .post(format!("{}/api/v1/sql", self.http))
            .header("x-api-key", &self.admin)
            .body("SELECT key_id, role, action, target, rows, status, outcome FROM system.audit ORDER BY time")
            .send()
            .and_then(|r| r.json())
            .expect("the audit trail")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of a program run to its end.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics naming the command when it failed.
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code, 0,
            "{what} failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Run a program with `stdin` and wait for it (at most two minutes).
pub fn run(program: &mut Command, stdin: &str) -> Output {
    let mut child = program
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client program starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run a Python script (its text) in the clients' virtualenv, with `args`.
pub fn python_script(script: &str, args: &[&str]) -> Output {
    let mut command = Command::new(python());
    command.arg("-c").arg(script).args(args);
    run(&mut command, "")
}

/// Make a certificate authority and a server certificate for 127.0.0.1/localhost in `dir`
/// (ca.pem, server.pem, server.key) with openssl.
pub fn certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=cruscotto test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}
