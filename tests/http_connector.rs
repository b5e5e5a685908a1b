//! The `http` connector against in-test APIs on 127.0.0.1: pagination, formats, authentication,
//! retries and timeouts (in process, through the `Connector` trait), then incremental pulls and
//! the shipped examples through the real binary.

mod common;
mod http_support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ConfigDir, REPO, Server};
use cruscotto::connectors::{
    Connector, ConnectorConfig, ConnectorError, LoadMode, LoadState, Loaded, LoadedTable,
};
use http_support::{FakeApi, Reply, Seen, wait_for};
use serde_json::{Value, json};

fn build(text: &str) -> Box<dyn Connector> {
    let file = Path::new("connectors/api.toml");
    let config = ConnectorConfig::parse(file, text).unwrap_or_else(|p| panic!("{p}"));
    let errors: Vec<String> = config
        .validate(file, Path::new("."))
        .into_iter()
        .filter(|p| !p.warning)
        .map(|p| p.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    config.build(Path::new("."))
}

async fn load(connector: &dyn Connector) -> BTreeMap<String, Result<LoadedTable, ConnectorError>> {
    connector
        .load(&LoadState::default())
        .await
        .into_iter()
        .map(|l| (l.table, l.result.map(whole)))
        .collect()
}

fn rows(table: &LoadedTable) -> Vec<Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &table.batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).unwrap()
    }
}

fn ids(table: &LoadedTable) -> Vec<i64> {
    rows(table)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

fn ok<'a>(
    loads: &'a BTreeMap<String, Result<LoadedTable, ConnectorError>>,
    table: &str,
) -> &'a LoadedTable {
    match &loads[table] {
        Ok(loaded) => loaded,
        Err(e) => panic!("{table}: {e}"),
    }
}

fn error(loads: &BTreeMap<String, Result<LoadedTable, ConnectorError>>, table: &str) -> String {
    match &loads[table] {
        Ok(_) => panic!("{table} should have failed"),
        Err(e) => e.to_string(),
    }
}

fn numbered(from: u64, to: u64) -> Vec<Value> {
    (from..=to)
        .map(|i| json!({"id": i, "nome": format!("punto {i}")}))
        .collect()
}

fn number(seen: &Seen, name: &str) -> Option<u64> {
    seen.param(name).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("`{name}` = `{v}` is not a number"))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn page_offset_cursor_and_link_pagination_each_load_every_record() {
    let api = FakeApi::start(|seen| {
        if seen.header("x-api-key") != Some("k-123") {
            return Reply::problem(401, "Unauthorized", "API key missing or wrong");
        }
        match seen.path.as_str() {
            "/pagine" => {
                assert_eq!(seen.param("per"), Some("3"));
                let page = number(seen, "p").unwrap();
                let from = (page - 1) * 3 + 1;
                Reply::json(json!({"data": numbered(from, (from + 2).min(8))}))
            }
            "/offset" => {
                let (offset, limit) = (
                    number(seen, "offset").unwrap(),
                    number(seen, "limit").unwrap(),
                );
                Reply::json(Value::Array(numbered(offset + 1, (offset + limit).min(8))))
            }
            "/cursore" => {
                let after = seen
                    .param("dopo")
                    .map_or(0, |c| c.trim_start_matches('c').parse::<u64>().unwrap());
                let end = (after + 3).min(8);
                let next = if end < 8 {
                    json!(format!("c{end}"))
                } else {
                    Value::Null
                };
                Reply::json(json!({"items": numbered(after + 1, end), "meta": {"prossimo": next}}))
            }
            "/link" => {
                let page = number(seen, "page").unwrap_or(1);
                let from = (page - 1) * 3 + 1;
                let reply = Reply::json(Value::Array(numbered(from, (from + 2).min(8))));
                if from + 2 < 8 {
                    let next = format!(
                        "</link?page={}>; rel=\"next\", </link?page=3>; rel=\"last\"",
                        page + 1
                    );
                    reply.header("link", &next)
                } else {
                    reply
                }
            }
            _ => Reply::problem(404, "Not Found", "no such path"),
        }
    });
    let connector = build(&format!(
        r#"kind = "http"
auth = {{ type = "api_key", header = "X-API-Key", value = "k-123" }}
[[table]]
name = "per_pagina"
url = "{url}/pagine"
json_pointer = "/data"
pagination = {{ type = "page", param = "p", size_param = "per", size = 3 }}
[[table]]
name = "per_offset"
url = "{url}/offset"
pagination = {{ type = "offset", limit = 3 }}
[[table]]
name = "per_cursore"
url = "{url}/cursore"
json_pointer = "/items"
pagination = {{ type = "cursor", next = "/meta/prossimo", param = "dopo" }}
[[table]]
name = "per_link"
url = "{url}/link"
pagination = {{ type = "link" }}
"#,
        url = api.url
    ));
    let loads = load(connector.as_ref()).await;
    for table in ["per_pagina", "per_offset", "per_cursore", "per_link"] {
        assert_eq!(
            ids(ok(&loads, table)),
            (1..=8).collect::<Vec<_>>(),
            "{table}"
        );
        assert_eq!(ok(&loads, table).mode, LoadMode::Replace);
    }
    assert_eq!(
        rows(ok(&loads, "per_link"))[7],
        json!({"id": 8, "nome": "punto 8"})
    );
    let asked = |path: &str, param: &str| -> Vec<Option<String>> {
        api.seen_at(path)
            .iter()
            .map(|s| s.param(param).map(str::to_string))
            .collect()
    };
    let some = |values: &[&str]| {
        values
            .iter()
            .map(|v| Some(v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        asked("/pagine", "p"),
        some(&["1", "2", "3"]),
        "a short page ends the pull"
    );
    assert_eq!(asked("/offset", "offset"), some(&["0", "3", "6"]));
    assert_eq!(
        asked("/cursore", "dopo"),
        vec![None, Some("c3".into()), Some("c6".into())]
    );
    assert_eq!(
        asked("/link", "page"),
        vec![None, Some("2".into()), Some("3".into())]
    );
    assert!(api.seen().iter().all(|s| s.status == 200));
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_csv_and_a_declared_schema() {
    let api = FakeApi::start(|seen| match seen.path.as_str() {
        "/letture.ndjson" => {
            assert!(
                seen.header("accept")
                    .unwrap()
                    .starts_with("application/x-ndjson")
            );
            Reply::new(
                200,
                "application/x-ndjson",
                "{\"sensore\": \"A\", \"valore\": 1.5}\nnon json\n{\"sensore\": \"B\", \"valore\": 2}\n",
            )
        }
        "/comuni.csv" => {
            assert!(seen.header("accept").unwrap().starts_with("text/csv"));
            Reply::new(
                200,
                "text/csv; charset=iso-8859-1",
                &b"Citt\xe0;Popolazione;Superficie\nBologna;392.203;140,86\nImola;69.936;abc\n"[..],
            )
        }
        "/eventi" => Reply::json(json!({"eventi": [
            {"Quando": "2024-05-01T10:00:00+02:00", "Giorno": "2024-05-01", "Conteggio": "12", "Note": 5, "Ignorato": true},
            {"Quando": "2024-05-02T09:30:00Z", "Giorno": "2024-05-02", "Conteggio": 7, "Note": null}
        ]})),
        _ => Reply::problem(404, "Not Found", "no such path"),
    });
    let connector = build(&format!(
        r#"kind = "http"
[[table]]
name = "letture"
url = "{url}/letture.ndjson"
format = "ndjson"
[[table]]
name = "comuni"
url = "{url}/comuni.csv"
format = "csv"
csv = {{ delimiter = ";", encoding = "latin1", decimal = ",", thousands = "." }}
schema = {{ citta = "text", popolazione = "int", superficie = "float" }}
[[table]]
name = "eventi"
url = "{url}/eventi"
json_pointer = "/eventi"
schema = {{ quando = "timestamp", giorno = "date", conteggio = "int", note = "text" }}
"#,
        url = api.url
    ));
    let loads = load(connector.as_ref()).await;
    let letture = ok(&loads, "letture");
    assert_eq!(
        rows(letture),
        [
            json!({"sensore": "A", "valore": 1.5}),
            json!({"sensore": "B", "valore": 2.0})
        ]
    );
    assert_eq!(letture.rejected.len(), 1);
    assert_eq!(letture.rejected[0].line, Some(2));
    assert!(
        letture.rejected[0].reason.starts_with("invalid JSON"),
        "{:?}",
        letture.rejected
    );
    assert_eq!(
        letture.rejected[0].source,
        format!("{}/letture.ndjson", api.url)
    );

    let comuni = ok(&loads, "comuni");
    assert_eq!(
        rows(comuni),
        [json!({"citta": "Bologna", "popolazione": 392203, "superficie": 140.86})]
    );
    assert_eq!(
        comuni.rejected[0].reason,
        "column `superficie`: `abc` is not a number"
    );
    assert_eq!(comuni.rejected[0].line, Some(3));

    let eventi = ok(&loads, "eventi");
    let columns: Vec<String> = eventi
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        columns,
        [
            "quando Timestamp(µs)",
            "giorno Date32",
            "conteggio Int64",
            "note Utf8"
        ]
    );
    assert_eq!(
        rows(eventi),
        [
            json!({"quando": "2024-05-01T08:00:00", "giorno": "2024-05-01", "conteggio": 12, "note": "5"}),
            json!({"quando": "2024-05-02T09:30:00", "giorno": "2024-05-02", "conteggio": 7}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_tokens_are_cached_and_renewed_when_refused() {
    #[derive(Default)]
    struct Tokens {
        issued: u32,
        valid: HashSet<String>,
        refuse_all: bool,
    }
    let tokens = Arc::new(Mutex::new(Tokens::default()));
    let state = tokens.clone();
    let api = FakeApi::start(move |seen| {
        let mut tokens = state.lock().unwrap();
        match seen.path.as_str() {
            "/token" => {
                // cruscotto:s3cret
                if seen.header("authorization") != Some("Basic Y3J1c2NvdHRvOnMzY3JldA==") {
                    return Reply::status_json(401, json!({"error": "invalid_client"}));
                }
                let form = seen.form();
                if form
                    != [
                        ("grant_type".to_string(), "client_credentials".to_string()),
                        ("scope".to_string(), "letture".to_string()),
                    ]
                {
                    return Reply::status_json(
                        400,
                        json!({"error": "invalid_request", "error_description": format!("{form:?}")}),
                    );
                }
                tokens.issued += 1;
                let token = format!("tok-{}", tokens.issued);
                tokens.valid.insert(token.clone());
                Reply::json(
                    json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}),
                )
            }
            "/dati" => {
                let token = seen
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .unwrap_or_default();
                if tokens.refuse_all || !tokens.valid.contains(token) {
                    return Reply::problem(401, "Unauthorized", "token revoked")
                        .header("www-authenticate", "Bearer error=\"invalid_token\"");
                }
                Reply::json(Value::Array(numbered(1, 2)))
            }
            _ => Reply::problem(404, "Not Found", "no such path"),
        }
    });
    let connector = build(&format!(
        r#"kind = "http"
auth = {{ type = "oauth2", token_url = "{url}/token", client_id = "cruscotto", client_secret = "s3cret", scope = "letture" }}
[[table]]
name = "dati"
url = "{url}/dati"
"#,
        url = api.url
    ));
    for _ in 0..2 {
        assert_eq!(ids(ok(&load(connector.as_ref()).await, "dati")), [1, 2]);
    }
    assert_eq!(
        api.seen_at("/token").len(),
        1,
        "the token is reused by the next pull"
    );

    tokens.lock().unwrap().valid.clear();
    assert_eq!(ids(ok(&load(connector.as_ref()).await, "dati")), [1, 2]);
    let statuses: Vec<u16> = api.seen_at("/dati").iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 401, 200],
        "a refused token is renewed and the page asked again"
    );
    assert_eq!(api.seen_at("/token").len(), 2);

    tokens.lock().unwrap().refuse_all = true;
    let loads = load(connector.as_ref()).await;
    assert_eq!(
        error(&loads, "dati"),
        format!(
            "authentication failed: {}/dati refused the credentials: 401 Unauthorized: Unauthorized: token revoked",
            api.url
        )
    );
    assert!(
        !error(&loads, "dati").contains("tok-"),
        "no token in the error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_honour_retry_after_and_failures_say_why() {
    let flaky = Arc::new(Mutex::new(0));
    let api = FakeApi::start(move |seen| match seen.path.as_str() {
        "/instabile" => {
            let mut calls = flaky.lock().unwrap();
            *calls += 1;
            match *calls {
                1 => Reply::problem(429, "Too Many Requests", "quota").header("retry-after", "1"),
                2 => Reply::new(503, "text/html", "<h1>Bad gateway</h1>"),
                _ => Reply::json(Value::Array(numbered(1, 3))),
            }
        }
        "/giu" => Reply::problem(503, "Manutenzione", "Torniamo alle 18"),
        "/mancante" => Reply::problem(404, "Not Found", "Il dataset `residenti_2031` non esiste"),
        "/lento" => Reply::json(Value::Array(numbered(1, 1))).after(Duration::from_secs(3)),
        _ => Reply::problem(404, "Not Found", "no such path"),
    });
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let connector = build(&format!(
        r#"kind = "http"
read_timeout = "300ms"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "40ms" }}
[[table]]
name = "instabile"
url = "{url}/instabile"
[[table]]
name = "giu"
url = "{url}/giu"
[[table]]
name = "mancante"
url = "{url}/mancante"
[[table]]
name = "lento"
url = "{url}/lento"
[[table]]
name = "chiuso"
url = "http://{closed}/dati"
"#,
        url = api.url
    ));
    let loads = load(connector.as_ref()).await;

    assert_eq!(ids(ok(&loads, "instabile")), [1, 2, 3]);
    let attempts = api.seen_at("/instabile");
    assert_eq!(
        attempts.iter().map(|s| s.status).collect::<Vec<_>>(),
        [429, 503, 200]
    );
    let waited = attempts[1].at - attempts[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 not honoured ({waited:?})"
    );
    assert!(
        attempts[2].at - attempts[1].at < Duration::from_millis(500),
        "without Retry-After, the backoff is short"
    );

    assert_eq!(
        error(&loads, "giu"),
        format!(
            "{}/giu: 503 Service Unavailable: Manutenzione: Torniamo alle 18",
            api.url
        )
    );
    assert_eq!(
        api.seen_at("/giu").len(),
        3,
        "5xx is retried up to `attempts`"
    );
    assert_eq!(
        error(&loads, "mancante"),
        format!(
            "{}/mancante: 404 Not Found: Not Found: Il dataset `residenti_2031` non esiste",
            api.url
        )
    );
    assert_eq!(api.seen_at("/mancante").len(), 1, "a 404 is not retried");
    let slow = error(&loads, "lento");
    assert!(
        slow.starts_with(&format!(
            "{}/lento: no answer after 3 attempt(s): timed out",
            api.url
        )),
        "{slow}"
    );
    assert_eq!(api.seen_at("/lento").len(), 3);
    let refused = error(&loads, "chiuso");
    assert!(
        refused.starts_with(&format!(
            "http://{closed}/dati: no answer after 3 attempt(s)"
        )) && refused.contains("Connection refused"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_cannot_be_trusted_returns_nothing() {
    let api = FakeApi::start(|seen| match (seen.path.as_str(), number(seen, "page")) {
        ("/misti", Some(1)) => {
            Reply::json(json!([{"id": 1, "valore": 1.5}, {"id": 2, "valore": 2}]))
        }
        ("/misti", Some(2)) => {
            Reply::json(json!([{"id": 3, "valore": 3}, {"id": "quattro", "valore": 4}]))
        }
        ("/misti", _) => Reply::json(json!([])),
        ("/vuoto", _) => Reply::json(json!({"risultati": []})),
        ("/altrove", _) => Reply::json(json!([{"id": 1}])).header(
            "link",
            "<https://elsewhere.example.com/altrove?page=2>; rel=\"next\"",
        ),
        ("/grande", _) => Reply::json(Value::Array(numbered(1, 200))),
        _ => Reply::problem(404, "Not Found", "no such path"),
    });
    let connector = build(&format!(
        r#"kind = "http"
max_response_size = "4 KiB"
[[table]]
name = "misti"
url = "{url}/misti"
pagination = {{ type = "page", size = 2 }}
[[table]]
name = "vuoto"
url = "{url}/vuoto"
json_pointer = "/risultati"
[[table]]
name = "vuoto_dichiarato"
url = "{url}/vuoto"
json_pointer = "/risultati"
schema = {{ id = "int", nome = "text" }}
[[table]]
name = "altrove"
url = "{url}/altrove"
pagination = {{ type = "link" }}
[[table]]
name = "grande"
url = "{url}/grande"
"#,
        url = api.url
    ));
    let loads = load(connector.as_ref()).await;
    let mixed = error(&loads, "misti");
    assert!(
        mixed.starts_with(&format!(
            "{}/misti?page=2: page 2: it does not fit the schema inferred from the first page (declare `schema` to fix the columns and their types): record 2:",
            api.url
        )),
        "{mixed}"
    );
    assert_eq!(
        error(&loads, "vuoto"),
        format!(
            "{}/vuoto: the source returned no records, so there are no columns to infer: declare `schema` to load an empty answer as an empty table",
            api.url
        )
    );
    let empty = ok(&loads, "vuoto_dichiarato");
    assert_eq!(empty.rows(), 0);
    assert_eq!(
        empty
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "nome"]
    );
    assert!(error(&loads, "altrove").contains(
        "the next page is on another origin (https://elsewhere.example.com): not followed"
    ));
    assert_eq!(
        error(&loads, "grande"),
        format!(
            "{}/grande: the response is larger than `max_response_size` (4096 bytes)",
            api.url
        )
    );
}

#[test]
fn incremental_pulls_advance_their_cursor_only_once_the_rows_are_committed() {
    let token = "tok-sportello-42";
    let published: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let add = |records: &Mutex<Vec<Value>>, ids: std::ops::RangeInclusive<u64>| {
        for id in ids {
            let kind = if id % 2 == 0 {
                "certificato"
            } else {
                "cambio_residenza"
            };
            records.lock().unwrap().push(
                json!({"id": id, "tipo": kind, "aggiornato": format!("2024-05-{id:02}T10:00:00Z")}),
            );
        }
    };
    add(&published, 1..=3);
    let records = published.clone();
    let api = FakeApi::start(move |seen| {
        if seen.header("authorization") != Some("Bearer tok-sportello-42") {
            return Reply::problem(401, "Unauthorized", "bearer token missing");
        }
        let since = seen
            .param("dal")
            .expect("every page carries the cursor")
            .to_string();
        let (offset, limit) = (
            number(seen, "offset").unwrap() as usize,
            number(seen, "limit").unwrap() as usize,
        );
        let newer: Vec<Value> = records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["aggiornato"].as_str().unwrap() > since.as_str())
            .cloned()
            .collect();
        Reply::json(json!({"dati": newer.into_iter().skip(offset).take(limit).collect::<Vec<_>>()}))
    });
    let config = ConfigDir::empty();
    config.write(
        "connectors/sportello.toml",
        &format!(
            r#"kind = "http"
refresh = "150ms"
auth = {{ type = "bearer", token = "${{CRUSCOTTO_TEST_SPORTELLO_TOKEN}}" }}
[[table]]
name = "richieste"
url = "{url}/richieste"
json_pointer = "/dati"
pagination = {{ type = "offset", limit = 2 }}
schema = {{ id = "int", tipo = "text", aggiornato = "timestamp" }}
incremental = {{ param = "dal", column = "aggiornato", start = "2024-01-01T00:00:00Z" }}
"#,
            url = api.url
        ),
    );
    let env = [("CRUSCOTTO_TEST_SPORTELLO_TOKEN", token)];
    let server = Server::start_with_env(&config, &env);
    server.wait_until("ready", |s| s.get("/readyz").status() == 200);
    let ids = |server: &Server| -> Vec<i64> {
        server
            .rows("SELECT id FROM sportello.richieste ORDER BY id")
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let cursors = |from: usize| -> Vec<String> {
        api.seen()[from..]
            .iter()
            .filter(|s| s.param("offset") == Some("0"))
            .map(|s| s.param("dal").unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&server), [1, 2, 3]);
    assert_eq!(cursors(0)[0], "2024-01-01T00:00:00Z");
    let c3 = "2024-05-03T10:00:00Z";
    wait_for(
        "two pulls from the committed cursor",
        Duration::from_secs(30),
        || cursors(0).iter().filter(|c| *c == c3).count() >= 2,
    );
    assert_eq!(
        ids(&server),
        [1, 2, 3],
        "pulls with nothing new append nothing"
    );
    let status = server.table_status("sportello.richieste");
    assert_eq!(status["state"], "fresh", "{status}");
    assert!(!status.to_string().contains(token));

    // The store cannot write: a file stands where the table's segments go.
    let segments = config.path().join("var/snapshots/sportello/richieste");
    let moved = config
        .path()
        .join("var/snapshots/sportello/richieste.moved");
    std::fs::rename(&segments, &moved).unwrap();
    std::fs::write(&segments, "not a folder").unwrap();
    let broken_at = api.seen().len();
    add(&published, 4..=5);
    wait_for("failed commits", Duration::from_secs(30), || {
        server.table_status("sportello.richieste")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot persist"))
            && cursors(broken_at).len() >= 3
    });
    assert!(
        cursors(broken_at).iter().all(|c| c == c3),
        "the cursor moved without a commit: {:?}",
        cursors(broken_at)
    );
    assert_eq!(ids(&server), [1, 2, 3]);

    std::fs::remove_file(&segments).unwrap();
    std::fs::rename(&moved, &segments).unwrap();
    wait_for("the new rows", Duration::from_secs(30), || {
        ids(&server) == [1, 2, 3, 4, 5]
    });
    let healed_at = api.seen().len();
    let c5 = "2024-05-05T10:00:00Z";
    wait_for("pulls from the new cursor", Duration::from_secs(30), || {
        cursors(healed_at).iter().any(|c| c == c5)
    });
    assert_eq!(ids(&server), [1, 2, 3, 4, 5], "nothing lost, nothing twice");
    server.stop();

    // A restart resumes from the committed cursor, with the rows it committed.
    let restarted_at = api.seen().len();
    let server = Server::start_with_env(&config, &env);
    wait_for(
        "the first pull after the restart",
        Duration::from_secs(30),
        || !cursors(restarted_at).is_empty(),
    );
    assert_eq!(cursors(restarted_at)[0], c5);
    assert_eq!(ids(&server), [1, 2, 3, 4, 5]);
    add(&published, 6..=6);
    wait_for(
        "the row added after the restart",
        Duration::from_secs(30),
        || ids(&server) == [1, 2, 3, 4, 5, 6],
    );
}

/// An incremental table with a retention holds only the rows of that period: older rows the API
/// returns are dropped before they are stored.
#[test]
fn an_incremental_table_with_a_retention_keeps_only_recent_rows() {
    let recent = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let records = json!([
        {"id": 1, "aggiornato": "2024-05-01T10:00:00Z"},
        {"id": 2, "aggiornato": recent},
        {"id": 3, "aggiornato": "2025-01-01T00:00:00Z"},
    ]);
    let api = FakeApi::start(move |seen| match seen.param("offset") {
        Some("0") | None => Reply::json(json!({ "dati": records })),
        Some(_) => Reply::json(json!({ "dati": [] })),
    });
    let config = ConfigDir::empty();
    config.write(
        "connectors/sportello.toml",
        &format!(
            r#"kind = "http"
[[table]]
name = "richieste"
url = "{url}/richieste"
json_pointer = "/dati"
pagination = {{ type = "offset", limit = 10 }}
schema = {{ id = "int", aggiornato = "timestamp" }}
incremental = {{ param = "dal", column = "aggiornato", start = "2024-01-01T00:00:00Z", retention = "30d" }}
"#,
            url = api.url
        ),
    );
    let server = Server::start_ready(&config);
    let ids: Vec<i64> = server
        .rows("SELECT id FROM sportello.richieste ORDER BY id")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2], "rows older than the retention were stored");
    server.stop();
}

#[test]
fn the_shipped_examples_pass_check_and_are_not_loaded_by_default() {
    let examples = Path::new(REPO).join("connectors/examples");
    let config = ConfigDir::empty();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            config.write(
                &format!("connectors/{name}"),
                &std::fs::read_to_string(&path).unwrap(),
            );
            files.push(name);
        }
    }
    files.sort();
    assert_eq!(files, ["bologna_opendata.toml", "pdnd_anpr.toml"]);
    let (code, stdout, stderr) = config.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    // The PDND example is disabled: it declares no table and needs no key yet.
    assert!(stdout.contains("ok (2 connectors, 2 tables"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // Enabled, it wants its private key.
    let pdnd = std::fs::read_to_string(examples.join("pdnd_anpr.toml")).unwrap();
    assert!(pdnd.contains("\nenabled = false\n"));
    config.write(
        "connectors/pdnd_anpr.toml",
        &pdnd.replace("\nenabled = false\n", "\nenabled = true\n"),
    );
    let (code, stdout, stderr) = config.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (2 connectors, 3 tables"), "{stdout}");
    assert!(
        stderr.contains("connectors/pdnd_anpr.toml: auth.private_key:")
            && stderr.contains("does not exist"),
        "{stderr}"
    );

    // The service reads `connectors/*.toml`, not the examples folder beside them.
    let default = ConfigDir::empty();
    for name in &files {
        default.write(
            &format!("connectors/examples/{name}"),
            &std::fs::read_to_string(examples.join(name)).unwrap(),
        );
    }
    let (code, stdout, stderr) = default.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (0 connectors, 0 tables"), "{stdout}");
}

/// A load's rows, which this connector returns in memory.
fn whole(loaded: Loaded) -> LoadedTable {
    loaded.into_whole().expect("rows in memory")
}

/// A whole table answered in one response is asked for with `If-None-Match` and
/// `If-Modified-Since` from the version held: a 304 keeps that version (/status says since when
/// the source is unchanged), and a changed answer is read.
#[test]
fn an_unchanged_answer_is_not_read_again() {
    let content = Arc::new(Mutex::new((1u32, json!([{"id": 1, "nome": "Navile"}]))));
    let served = content.clone();
    let api = FakeApi::start(move |seen| {
        let (etag_number, records) = served.lock().unwrap().clone();
        let etag = format!("\"v{etag_number}\"");
        if seen.header("if-none-match") == Some(etag.as_str()) {
            return Reply::new(304, "application/json", "").header("etag", &etag);
        }
        Reply::json(records)
            .header("etag", &etag)
            .header("last-modified", "Mon, 07 Dec 2026 00:00:00 GMT")
    });
    let config = ConfigDir::empty();
    config.write(
        "connectors/uffici.toml",
        &format!(
            "kind = \"http\"\nrefresh = \"300ms\"\n[[table]]\nname = \"sportelli\"\nurl = \"{}/sportelli\"\n",
            api.url
        ),
    );
    let server = Server::start_ready(&config);
    assert_eq!(server.table_status("uffici.sportelli")["rows"], 1);
    server.wait_until("a refresh answered 304", |s| {
        s.table_status("uffici.sportelli")["unchanged_since"].is_string()
    });
    let conditional = api
        .seen()
        .into_iter()
        .find(|seen| seen.status == 304)
        .expect("a request answered 304");
    assert_eq!(conditional.header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        conditional.header("if-modified-since"),
        Some("Mon, 07 Dec 2026 00:00:00 GMT")
    );
    let version = server.table_status("uffici.sportelli")["version"].clone();

    *content.lock().unwrap() = (
        2,
        json!([{"id": 1, "nome": "Navile"}, {"id": 2, "nome": "Porto"}]),
    );
    server.wait_until("the changed answer to be read", |s| {
        s.table_status("uffici.sportelli")["rows"] == 2
    });
    assert_ne!(server.table_status("uffici.sportelli")["version"], version);
}
