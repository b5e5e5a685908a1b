//! `/api/v1/sql` over HTTP against the real binary: formats, the read-only guard, the limits and
//! the problem+json errors.

mod common;

use common::{ConfigDir, Server};
use serde_json::Value;

fn small_table(config: &ConfigDir) {
    config.write(
        "data/t.csv",
        "id,name,value\n1,uno,1.5\n2,due,2.5\n3,tre,\n",
    );
    config.write(
        "connectors/demo.toml",
        "kind = \"file\"\n[[table]]\nname = \"t\"\npath = \"data/t.csv\"\n",
    );
}

fn problem(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    (status, response.json().unwrap())
}

#[test]
fn results_come_in_every_format() {
    let config = ConfigDir::empty();
    small_table(&config);
    let server = Server::start_ready(&config);
    let sql = "SELECT id, name, value FROM demo.t ORDER BY id";

    let rows = server.rows(sql);
    assert_eq!(
        rows[0],
        serde_json::json!({"id": 1, "name": "uno", "value": 1.5})
    );
    assert_eq!(rows[2]["value"], Value::Null);

    // JSON body instead of plain SQL.
    let response = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .json(&serde_json::json!({"sql": sql}))
        .send()
        .unwrap();
    assert_eq!(response.headers()["x-row-count"], "3");
    // The server's own time, split into running the query and encoding the result.
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_string();
    let duration = |name: &str| -> f64 {
        timing
            .split(',')
            .find_map(|metric| metric.trim().strip_prefix(&format!("{name};dur=")))
            .unwrap_or_else(|| panic!("no `{name}` in Server-Timing `{timing}`"))
            .parse()
            .unwrap()
    };
    assert!(duration("query") > 0.0, "{timing}");
    assert!(duration("encode") >= 0.0, "{timing}");
    assert_eq!(response.json::<Vec<Value>>().unwrap().len(), 3);

    // CSV by Accept header.
    let response = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .header("accept", "text/csv")
        .body(sql)
        .send()
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        response.text().unwrap(),
        "id,name,value\n1,uno,1.5\n2,due,2.5\n3,tre,\n"
    );

    // Arrow IPC stream by ?format=.
    let bytes = server
        .client
        .post(format!("{}/api/v1/sql?format=arrow", server.url))
        .body(sql)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    assert_eq!(batches[0].schema().field(1).name(), "name");

    // Parquet by Accept header.
    let response = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .header("accept", "application/vnd.apache.parquet")
        .body(sql)
        .send()
        .unwrap();
    let bytes = bytes::Bytes::from(response.bytes().unwrap().to_vec());
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);

    // GET with ?q= and NDJSON.
    let text = server
        .get(&format!(
            "/api/v1/sql?format=ndjson&q={}",
            "SELECT%201%20AS%20x"
        ))
        .text()
        .unwrap();
    assert_eq!(text.trim(), "{\"x\":1}");

    // A format we do not have.
    let (status, body) = problem(
        server
            .client
            .post(format!("{}/api/v1/sql", server.url))
            .header("accept", "image/png")
            .body(sql)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 406);
    assert!(body["detail"].as_str().unwrap().contains("text/csv"));
}

/// Up to 10,000 rows a result is encoded whole and sent with its length; over it, JSON is
/// streamed in chunks and the other formats are encoded off the async workers. Either way every
/// row arrives, in order.
#[test]
fn small_and_large_results_arrive_whole_in_each_format() {
    let config = ConfigDir::empty();
    small_table(&config);
    let server = Server::start_ready(&config);
    let fetch = |rows: usize, format: &str| {
        let response = server
            .client
            .post(format!("{}/api/v1/sql?format={format}", server.url))
            .body(format!(
                "SELECT value AS i, 'riga ' || value AS label FROM generate_series(1, {rows}) ORDER BY i"
            ))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{rows} rows as {format}");
        assert_eq!(response.headers()["x-row-count"], rows.to_string().as_str());
        let length = response.headers().get("content-length").cloned();
        (length, response.bytes().unwrap())
    };
    for rows in [10_000, 10_001, 25_000] {
        let (length, body) = fetch(rows, "json");
        // One body with its length up to the threshold, chunked over it.
        assert_eq!(length.is_some(), rows <= 10_000, "{rows} rows: {length:?}");
        let values: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(values.len(), rows);
        for (k, value) in values.iter().enumerate() {
            let i = k as i64 + 1;
            assert_eq!(
                value,
                &serde_json::json!({"i": i, "label": format!("riga {i}")})
            );
        }

        let (_, body) = fetch(rows, "ndjson");
        let lines: Vec<Value> = std::str::from_utf8(&body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines, values, "{rows} rows as NDJSON");

        let (length, body) = fetch(rows, "csv");
        assert!(
            length.is_some(),
            "{rows} rows as CSV: one body with its length"
        );
        let mut lines = std::str::from_utf8(&body).unwrap().lines();
        assert_eq!(lines.next(), Some("i,label"));
        let expected: Vec<String> = (1..=rows).map(|i| format!("{i},riga {i}")).collect();
        assert_eq!(lines.collect::<Vec<_>>(), expected, "{rows} rows as CSV");

        let (_, body) = fetch(rows, "parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(body.to_vec()),
        )
        .unwrap()
        .build()
        .unwrap();
        let ids: Vec<i64> = reader
            .flat_map(|batch| {
                use arrow::array::AsArray;
                let batch = batch.unwrap();
                batch
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(
            ids,
            (1..=rows as i64).collect::<Vec<_>>(),
            "{rows} rows as Parquet"
        );
    }
}

#[test]
fn writes_and_file_access_are_refused_naming_the_statement() {
    let config = ConfigDir::empty();
    small_table(&config);
    let server = Server::start_ready(&config);
    let cases = [
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("COPY (SELECT 1) TO '/tmp/cruscotto-copy.csv'", "COPY"),
        (
            "INSERT INTO demo.t VALUES (4, 'quattro', 4.0)",
            "INSERT INTO",
        ),
        ("UPDATE demo.t SET value = 0", "UPDATE"),
        ("DELETE FROM demo.t", "DELETE FROM"),
        ("DROP TABLE demo.t", "DROP TABLE"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ];
    for (sql, named) in cases {
        let (status, body) = problem(server.sql(sql));
        assert_eq!(status, 400, "{sql}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("`{named}`")),
            "{sql}: {body}"
        );
        assert_eq!(body["status"], 400);
    }
    // A path given as a table name reaches no file.
    let (status, body) = problem(server.sql("SELECT * FROM '/etc/passwd'"));
    assert_eq!(status, 400, "{body}");
    assert!(
        !body["detail"].as_str().unwrap().contains("root:"),
        "{body}"
    );
    // Nothing was changed, nothing was written.
    assert_eq!(server.rows("SELECT count(*) AS n FROM demo.t")[0]["n"], 3);
    assert!(!std::path::Path::new("/tmp/cruscotto-copy.csv").exists());
    // The read-only statements all work.
    for sql in [
        "SHOW TABLES",
        "DESCRIBE demo.t",
        "EXPLAIN SELECT * FROM demo.t",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
    ] {
        assert_eq!(server.sql(sql).status(), 200, "{sql}");
    }
}

#[test]
fn invalid_sql_carries_datafusions_message() {
    let config = ConfigDir::empty();
    small_table(&config);
    let server = Server::start_ready(&config);
    let (status, body) = problem(server.sql("SELECT nope FROM demo.t"));
    assert_eq!(status, 400);
    assert_eq!(body["type"], "urn:cruscotto:problem:invalid-query");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("nope"), "{detail}");
    let (status, body) = problem(server.sql("SELEC 1"));
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("SELEC"), "{body}");
    let (status, _) = problem(server.sql("SELECT 1; SELECT 2"));
    assert_eq!(status, 400);
    // A function over a column of a type it does not take: the call and the type are named, not
    // DataFusion's "Internal error … likely caused by a bug" with every signature of `sum`.
    let (status, body) = problem(server.sql("SELECT sum(name) FROM demo.t"));
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("the call `sum(name)` passes Utf8; text (Utf8) holding numbers needs `CAST(column AS DOUBLE)`"),
        "{detail}"
    );
    assert!(
        !detail.contains("bug in DataFusion") && !detail.contains("Candidate functions"),
        "{detail}"
    );
    // Malformed JSON body: same problem shape.
    let response = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .header("content-type", "application/json")
        .body("{\"sq\": 1}")
        .send()
        .unwrap();
    let (status, body) = problem(response);
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("{\"sql\": \"...\"}"),
        "{body}"
    );
}

#[test]
fn each_limit_gives_its_error_and_the_next_query_succeeds() {
    let config = ConfigDir::empty();
    small_table(&config);
    config.write(
        "cruscotto.toml",
        "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n[query]\ntimeout = \"1s\"\nmemory_limit = \"16 MiB\"\nmax_rows = 1000\nmax_sql_bytes = 2000\n",
    );
    let server = Server::start_ready(&config);

    let (status, body) =
        problem(server.sql("SELECT sum(value % 7) FROM generate_series(1, 100000000000)"));
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (422, "urn:cruscotto:problem:time-limit"),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("1s"), "{body}");
    assert_eq!(server.rows("SELECT 1 AS ok")[0]["ok"], 1);

    let (status, body) = problem(server.sql("SELECT value % 1000003 AS k, count(*) AS n FROM generate_series(1, 5000000) GROUP BY k ORDER BY n DESC LIMIT 5"));
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (422, "urn:cruscotto:problem:memory-limit"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("16.0 MiB"),
        "{body}"
    );
    assert_eq!(server.rows("SELECT 1 AS ok")[0]["ok"], 1);

    let (status, body) = problem(server.sql("SELECT * FROM generate_series(1, 5000)"));
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (422, "urn:cruscotto:problem:row-limit"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("1000 rows"),
        "{body}"
    );
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM generate_series(1, 5000)")[0]["n"],
        5000
    );

    let long = format!("SELECT 1 AS x{}", " ".repeat(3000));
    let (status, body) = problem(server.sql(&long));
    assert_eq!(status, 413, "{body}");
    assert_eq!(server.rows("SELECT 1 AS ok")[0]["ok"], 1);
}

#[test]
fn operations_endpoints() {
    let config = ConfigDir::empty();
    small_table(&config);
    let server = Server::start_ready(&config);
    assert_eq!(server.get("/healthz").status(), 200);
    assert_eq!(server.get_json("/readyz")["ready"], true);
    let table = server.table_status("demo.t");
    assert_eq!(table["state"], "fresh");
    assert_eq!(table["rows"], 3);
    assert!(table["last_success"].is_string());
    server.rows("SELECT 1");
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("cruscotto_table_rows{schema=\"demo\",table=\"t\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cruscotto_queries_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    let (status, _) = problem(server.get("/no/such/thing"));
    assert_eq!(status, 404);
    // The catalog lists the table with its columns; system tables are queryable.
    let tables = server.get_json("/api/v1/tables");
    assert!(
        tables
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["table_name"] == "t" && c["column_name"] == "value")
    );
    let system =
        server.rows("SELECT state, row_count FROM system.tables WHERE schema_name = 'demo'");
    assert_eq!(system[0]["row_count"], 3);
}
