//! File tables read from S3-compatible object storage, through the real binary against a real S3
//! server (moto's server mode, with authentication on): CSV and Parquet objects load and answer
//! exactly; a replaced object is read at the next refresh and an unchanged one is not; a missing
//! bucket or key, a server that went down and refused credentials are said in /status while the
//! last good version stays served, stale.

mod common;
mod s3_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use common::{ConfigDir, Server};
use parquet::arrow::ArrowWriter;
use s3_support::S3Server;

const BUCKET: &str = "comune-bologna";

/// `rows` residents' areas: area `A<i>` has `i * 7` residents, i = 1..=rows.
fn residents_csv(rows: u64) -> String {
    let mut text = String::from("area,residenti\n");
    for i in 1..=rows {
        text.push_str(&format!("A{i:04},{}\n", i * 7));
    }
    text
}

fn residents_sum(rows: u64) -> u64 {
    7 * rows * (rows + 1) / 2
}

/// `rows` readings: id `i`, sensor `s<i % 50>`, value `i % 1000`, in row groups of 16k rows.
fn write_readings(path: &Path, rows: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    let step = 16 * 1024;
    for start in (0..rows).step_by(step) {
        let range = start..(start + step as i64).min(rows);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(range.clone())),
                Arc::new(StringArray::from_iter_values(
                    range.clone().map(|i| format!("s{}", i % 50)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    range.map(|i| (i % 1000) as f64),
                )),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
    }
    writer.close().unwrap();
}

/// A configuration reading from `s3`, with `connectors` as (file name, text).
fn config_for(s3: &S3Server, with_key: bool, connectors: &[(&str, &str)]) -> ConfigDir {
    let config = ConfigDir::empty();
    let mut section = s3.object_store_section();
    if !with_key {
        section = section
            .lines()
            .filter(|l| !l.starts_with("access_key_id") && !l.starts_with("secret_access_key"))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    config.write(
        "cruscotto.toml",
        &format!("data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n{section}"),
    );
    for (file, text) in connectors {
        config.write(&format!("connectors/{file}"), text);
    }
    config
}

fn env_of<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `cruscotto check` with environment variables; returns (exit code, stderr).
fn check(config: &ConfigDir, env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(common::BINARY)
        .arg("--config")
        .arg(config.config_file())
        .arg("check")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// No download is left in `<data_dir>/.objects` once the loads are done.
fn downloads_left(config: &ConfigDir) -> usize {
    std::fs::read_dir(config.path().join("var/.objects")).map_or(0, |dir| dir.count())
}

#[test]
fn csv_and_parquet_objects_load_and_answer_sql_exactly() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put(
        BUCKET,
        "anagrafe/residenti.csv",
        residents_csv(500).as_bytes(),
    );
    let parquet = tempfile::NamedTempFile::new().unwrap();
    write_readings(parquet.path(), 100_000);
    s3.put_file(BUCKET, "sensori/letture.parquet", parquet.path());

    let config = config_for(
        &s3,
        true,
        &[(
            "citta.toml",
            "kind = \"file\"\n\
             [[table]]\nname = \"residenti\"\npath = \"s3://comune-bologna/anagrafe/residenti.csv\"\n\
             [[table]]\nname = \"letture\"\npath = \"s3://comune-bologna/sensori/letture.parquet\"\n",
        )],
    );
    let env = s3.key_env();
    // `check` reads the objects' schemas too, and finds nothing wrong.
    let (code, stderr) = check(&config, &env_of(&env));
    assert_eq!(code, 0, "{stderr}");

    let server = Server::start_with_env(&config, &env_of(&env));
    server.wait_until_loaded();
    assert_eq!(server.get("/readyz").status(), 200);
    let residents = server.rows("SELECT count(*) AS n, sum(residenti) AS s FROM citta.residenti");
    assert_eq!(residents[0]["n"], 500);
    assert_eq!(residents[0]["s"], residents_sum(500));
    let readings = server.rows(
        "SELECT count(*) AS n, sum(value) AS s, count(DISTINCT sensor) AS sensors, max(id) AS last \
         FROM citta.letture",
    );
    assert_eq!(readings[0]["n"], 100_000);
    assert_eq!(readings[0]["s"], 100.0 * 499_500.0);
    assert_eq!(readings[0]["sensors"], 50);
    assert_eq!(readings[0]["last"], 99_999);

    for (table, url) in [
        (
            "citta.residenti",
            "s3://comune-bologna/anagrafe/residenti.csv",
        ),
        (
            "citta.letture",
            "s3://comune-bologna/sensori/letture.parquet",
        ),
    ] {
        let status = server.table_status(table);
        assert_eq!(status["state"], "fresh", "{status}");
        assert_eq!(status["source"], url, "{status}");
    }
    server.wait_until("the downloads to be removed", |_| {
        downloads_left(&config) == 0
    });
}

#[test]
fn a_replaced_object_is_read_and_an_unchanged_one_is_not() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put(
        BUCKET,
        "uffici/sportelli.csv",
        b"id,nome\n1,Navile\n2,Porto\n",
    );
    // The key from the usual AWS variables, not from the configuration.
    let config = config_for(
        &s3,
        false,
        &[(
            "uffici.toml",
            "kind = \"file\"\nrefresh = \"1s\"\n\
             [[table]]\nname = \"sportelli\"\npath = \"s3://comune-bologna/uffici/sportelli.csv\"\n",
        )],
    );
    let server = Server::start_with_env(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", s3.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret.as_str()),
        ],
    );
    server.wait_until_loaded();
    let loaded = server.table_status("uffici.sportelli");
    assert_eq!(loaded["rows"], 2, "{loaded}");
    assert!(loaded["unchanged_since"].is_null(), "{loaded}");
    let first_version = loaded["version"].as_u64().expect("a version");

    server.wait_until("a refresh that finds the object unchanged", |s| {
        s.table_status("uffici.sportelli")["unchanged_since"].is_string()
    });
    let unchanged = server.table_status("uffici.sportelli");
    assert_eq!(unchanged["state"], "fresh");
    assert_eq!(unchanged["version"], first_version, "{unchanged}");
    assert_ne!(unchanged["last_success"], loaded["last_success"]);

    // Replaced with the same size: the ETag tells.
    s3.put(
        BUCKET,
        "uffici/sportelli.csv",
        b"id,nome\n1,Navile\n2,Reno_\n",
    );
    server.wait_until("the replaced object to be read", |s| {
        s.rows("SELECT nome FROM uffici.sportelli WHERE id = 2")
            .first()
            .is_some_and(|r| r["nome"] == "Reno_")
    });
    let replaced = server.table_status("uffici.sportelli");
    assert!(
        replaced["version"].as_u64() > Some(first_version),
        "{replaced}"
    );
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM uffici.sportelli")[0]["n"],
        2
    );
    // More rows: read too, exactly.
    s3.put(
        BUCKET,
        "uffici/sportelli.csv",
        b"id,nome\n1,Navile\n2,Reno_\n3,Savena\n",
    );
    server.wait_until("the longer object to be read", |s| {
        s.rows("SELECT count(*) AS n FROM uffici.sportelli")[0]["n"] == 3
    });
}

#[test]
fn a_missing_object_and_a_stopped_server_leave_the_last_version_served_and_stale() {
    let mut s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put(
        BUCKET,
        "anagrafe/residenti.csv",
        residents_csv(40).as_bytes(),
    );
    let config = config_for(
        &s3,
        true,
        &[
            (
                "anagrafe.toml",
                "kind = \"file\"\nrefresh = \"1s\"\n\
                 [[table]]\nname = \"residenti\"\npath = \"s3://comune-bologna/anagrafe/residenti.csv\"\n",
            ),
            (
                "assenti.toml",
                "kind = \"file\"\nrefresh = \"1s\"\n\
                 [[table]]\nname = \"senza_bucket\"\npath = \"s3://archivio-assente/a.csv\"\n\
                 [[table]]\nname = \"senza_oggetto\"\npath = \"s3://comune-bologna/mai/caricato.csv\"\n",
            ),
        ],
    );
    let server = Server::start_with_env(&config, &env_of(&s3.key_env()));
    server.wait_until_loaded();
    let sum = || server.rows("SELECT sum(residenti) AS s FROM anagrafe.residenti")[0]["s"].clone();
    assert_eq!(sum(), residents_sum(40));

    // Failures from the start: the table and the URL named, and what is missing.
    let no_bucket = server.table_status("assenti.senza_bucket");
    assert_eq!(no_bucket["state"], "failed", "{no_bucket}");
    let error = no_bucket["last_error"].as_str().unwrap();
    assert!(
        error.contains("`senza_bucket`")
            && error.contains("s3://archivio-assente/a.csv")
            && error.contains("there is no bucket `archivio-assente`"),
        "{error}"
    );
    let no_key = server.table_status("assenti.senza_oggetto");
    assert_eq!(no_key["state"], "failed", "{no_key}");
    let error = no_key["last_error"].as_str().unwrap();
    assert!(
        error.contains("s3://comune-bologna/mai/caricato.csv")
            && error.contains("there is no object `mai/caricato.csv` in bucket `comune-bologna`"),
        "{error}"
    );
    assert_eq!(server.get("/readyz").status(), 503);

    // The object removed: said, and the version read before stays served.
    s3.delete(BUCKET, "anagrafe/residenti.csv");
    server.wait_until("the missing object to be reported", |s| {
        s.table_status("anagrafe.residenti")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("there is no object `anagrafe/residenti.csv`"))
    });
    let missing = server.table_status("anagrafe.residenti");
    assert_eq!(missing["state"], "stale", "{missing}");
    assert_eq!(missing["stale"], true);
    assert_eq!(sum(), residents_sum(40));

    // The server gone: said, and still the same version served.
    s3.stop();
    server.wait_until("the unreachable server to be reported", |s| {
        s.table_status("anagrafe.residenti")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be reached"))
    });
    let down = server.table_status("anagrafe.residenti");
    assert_eq!(down["state"], "stale", "{down}");
    let error = down["last_error"].as_str().unwrap();
    assert!(
        error.contains("`residenti`")
            && error.contains("s3://comune-bologna/anagrafe/residenti.csv")
            && error.contains(&s3.endpoint),
        "{error}"
    );
    assert_eq!(sum(), residents_sum(40));
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        40
    );
}

#[test]
fn refused_credentials_are_reported_as_access_denied() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put(
        BUCKET,
        "anagrafe/residenti.csv",
        residents_csv(10).as_bytes(),
    );
    let connector = [(
        "anagrafe.toml",
        "kind = \"file\"\n\
         [[table]]\nname = \"residenti\"\npath = \"s3://comune-bologna/anagrafe/residenti.csv\"\n",
    )];

    // The right key id with a wrong secret.
    let config = config_for(&s3, true, &connector);
    let server = Server::start_with_env(
        &config,
        &[
            ("CRUSCOTTO_S3_KEY_ID", s3.key_id.as_str()),
            ("CRUSCOTTO_S3_SECRET", "not-the-secret"),
        ],
    );
    server.wait_until_loaded();
    let status = server.table_status("anagrafe.residenti");
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("access denied")
            && error.contains("secret access key")
            && error.contains("s3://comune-bologna/anagrafe/residenti.csv"),
        "{error}"
    );
    drop(server);

    // A key id the server does not know, from the AWS variables.
    let config = config_for(&s3, false, &connector);
    let server = Server::start_with_env(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000"),
            ("AWS_SECRET_ACCESS_KEY", "whatever"),
        ],
    );
    server.wait_until_loaded();
    let status = server.table_status("anagrafe.residenti");
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("access denied") && error.contains("access key id"),
        "{error}"
    );
    // The right key loads the same table: the refusals were the credentials'.
    drop(server);
    let config = config_for(&s3, true, &connector);
    let server = Server::start_with_env(&config, &env_of(&s3.key_env()));
    server.wait_until_loaded();
    assert_eq!(
        server.rows("SELECT sum(residenti) AS s FROM anagrafe.residenti")[0]["s"],
        residents_sum(10)
    );
}

#[test]
fn object_store_settings_and_urls_are_checked_with_their_key() {
    let config = ConfigDir::empty();
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[object_store]\nendpoint = \"http://127.0.0.1:9\"\naccess_key_id = \"x\"\n",
    );
    config.write(
        "connectors/dati.toml",
        "kind = \"file\"\n[[table]]\nname = \"a\"\npath = \"gs://bucket/a.csv\"\n\
         [[table]]\nname = \"b\"\npath = \"s3://bucket-only\"\n",
    );
    let (code, stderr) = check(&config, &[]);
    assert_ne!(code, 0);
    for expected in [
        "object_store.endpoint: `http://127.0.0.1:9` is plain http",
        "object_store.secret_access_key: `access_key_id` is set without `secret_access_key`",
        "table[0].path: `gs://bucket/a.csv`: `gs://` is not a source this reads",
        "table[1].path: `s3://bucket-only` names no object",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }

    // An unknown key is refused with its line, like the rest of the configuration.
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[object_store]\nendpoint = \"https://s3.example.org\"\nbucket = \"x\"\n",
    );
    config.write(
        "connectors/dati.toml",
        "kind = \"file\"\n[[table]]\nname = \"a\"\npath = \"s3://b/a.csv\"\n",
    );
    let (code, stderr) = check(&config, &[]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cruscotto.toml: line 4") && stderr.contains("unknown field `bucket`"),
        "{stderr}"
    );
}
