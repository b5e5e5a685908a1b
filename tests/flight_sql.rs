//! Arrow Flight SQL with a real client, the ADBC Flight SQL driver (pyarrow, pandas): statements,
//! a prepared statement with a parameter, the catalogue, TLS, and the errors (a refused
//! statement, a wrong key, a partner key, a timed-out and a cancelled query).

mod common;
mod pgwire_support;

use pgwire_support::{SLOW, Service, python_script};
use serde_json::{Value, json};

const WRONG_KEY: &str = "ck_000000000000_000000000000000000000000000000000000000000000000";

fn client(service: &Service, uri: &str, mode: &str, ca: Option<&str>) -> Value {
    let script = std::fs::read_to_string(format!(
        "{}/tests/pgwire_support/adbc_flightsql_client.py",
        common::REPO
    ))
    .unwrap();
    let mut args = vec![
        uri,
        service.analyst.as_str(),
        WRONG_KEY,
        service.partner.as_str(),
        service.http.as_str(),
        SLOW,
        mode,
    ];
    args.extend(ca);
    let output = python_script(&script, &args).ok("adbc_flightsql_client.py");
    let last = output.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", output.stdout, output.stderr))
}

fn assert_error(seen: &Value, what: &str, status: &str, words: &str) {
    let error = &seen[what];
    assert_eq!(error["status"], status, "{what}: {error}");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains(words)),
        "{what}: `{words}` not in {error}"
    );
}

#[test]
fn adbc_flight_sql_into_pandas_with_the_catalogue_and_errors() {
    let service = Service::start("3s");
    let uri = format!("grpc://127.0.0.1:{}", service.flight_port);
    let seen = client(&service, &uri, "main", None);
    assert_eq!(seen["schema"], pgwire_support::types_arrow_schema());
    assert_eq!(seen["rows"], 3);
    assert_eq!(
        seen["pandas"],
        json!({"nome": ["Bologna", "Imola", "Sasso Marconi"], "importo": [392203.5, 69936.25, 14729.0]})
    );
    assert_eq!(seen["prepared"], json!([["Sasso Marconi"]]));
    assert_eq!(seen["catalogs"], json!(["city"]));
    let tables = seen["tables"].as_array().unwrap();
    assert!(tables.contains(&json!("prova.tipi")), "{seen}");
    assert!(tables.contains(&json!("queries.tipi_attivi")), "{seen}");
    assert_error(
        &seen,
        "refused",
        "INVALID_ARGUMENT",
        "`DROP TABLE` is not allowed",
    );
    assert_error(&seen, "timeout", "TIMEOUT", "time limit of 3s");
    assert_error(&seen, "wrong_key", "UNAUTHENTICATED", "unknown API key");
    assert_error(
        &seen,
        "partner_key",
        "UNAUTHORIZED",
        "a partner key cannot use this endpoint",
    );

    let audit = service.audit();
    for (outcome, target) in [
        ("ok", "prova.tipi"),
        ("invalid", "DROP TABLE"),
        ("invalid", "generate_series"),
        ("denied", "login"),
    ] {
        assert!(
            audit.iter().any(|e| e["action"] == "sql:flight-sql"
                && e["outcome"] == outcome
                && e["target"].as_str().is_some_and(|t| t.contains(target))),
            "no sql:flight-sql entry `{outcome}` for `{target}` in {audit:#?}"
        );
    }
}

#[test]
fn adbc_flight_sql_cancel_stops_the_query() {
    let service = Service::start("10m");
    let uri = format!("grpc://127.0.0.1:{}", service.flight_port);
    let seen = client(&service, &uri, "cancel", None);
    assert_eq!(seen["cancelled"]["status"], "CANCELLED", "{seen}");
    service.wait_until("the query to stop", |s| s.running_queries() == 0);
    let audit = service.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "sql:flight-sql" && e["outcome"] == "cancelled"),
        "{audit:#?}"
    );
}

#[test]
fn adbc_flight_sql_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    pgwire_support::certificates(dir.path());
    let extra = format!(
        "[protocols.flight_sql.tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\n",
        dir.path().display()
    );
    let service = Service::start_with("3s", &extra);
    let uri = format!("grpc+tls://localhost:{}", service.flight_port);
    let ca = format!("{}/ca.pem", dir.path().display());
    let seen = client(&service, &uri, "main", Some(&ca));
    assert_eq!(seen["rows"], 3, "{seen}");
}

/// A statement's result waits under its ticket: fetched once, by the key that ran it. Its
/// `FlightInfo` carries the row count when the statement ended before it was answered.
#[test]
fn a_statement_ticket_is_fetched_once_by_its_own_key() {
    let service = Service::start("10s");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut analyst = flight_client(&service, &service.analyst).await;
        let mut admin = flight_client(&service, &service.admin).await;

        let sql = "SELECT id FROM prova.tipi ORDER BY id";
        let info = analyst.execute(sql.into(), None).await.expect("execute");
        assert!(matches!(info.total_records, -1 | 3), "{info:?}");
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        assert_eq!(rows(&mut analyst, ticket.clone()).await, 3);
        let again = analyst
            .do_get(ticket)
            .await
            .err()
            .expect("a second fetch fails");
        assert!(again.to_string().contains("fetched already"), "{again}");

        let info = analyst.execute(sql.into(), None).await.expect("execute");
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        let other = admin
            .do_get(ticket.clone())
            .await
            .err()
            .expect("another key's fetch fails");
        assert!(other.to_string().contains("another key"), "{other}");
        // The ticket still waits for its own key.
        assert_eq!(rows(&mut analyst, ticket).await, 3);
    });
}

/// A Flight SQL client of the service with `key` as its bearer token.
async fn flight_client(
    service: &Service,
    key: &str,
) -> arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        service.flight_port
    ))
    .unwrap()
    .connect()
    .await
    .expect("connect to Flight SQL");
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.set_token(key.to_string());
    client
}

/// The rows a ticket's fetch returns.
async fn rows(
    client: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    ticket: arrow_flight::Ticket,
) -> usize {
    use futures::TryStreamExt;
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    batches.iter().map(|b| b.num_rows()).sum()
}

/// `GetFlightInfo` answers once the statement is planned, and the statement runs on while the
/// client asks for its ticket: a long one is still running (its rows unknown, -1) when its
/// `FlightInfo` is back. The fetch waits for it, and a fetch given up on aborts it, audited as
/// cancelled.
#[test]
fn a_statement_runs_on_after_its_flight_info_and_an_abandoned_fetch_stops_it() {
    // A limit the statement would reach if its `FlightInfo` waited for it to end.
    let service = Service::start("30s");
    // A worker thread of its own: the client's connection keeps running between the calls
    // (it sends the abandoned fetch's reset while the test waits outside the runtime).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (mut analyst, info) = runtime.block_on(async {
        let mut analyst = flight_client(&service, &service.analyst).await;
        let info = analyst.execute(SLOW.into(), None).await.expect("execute");
        (analyst, info)
    });
    assert_eq!(info.total_records, -1, "{info:?}");
    assert_eq!(
        info.clone()
            .try_decode_schema()
            .expect("a schema")
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>(),
        ["count(*)"]
    );
    assert_eq!(service.running_queries(), 1, "the statement runs on");
    runtime.block_on(async {
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        let fetch = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            analyst.do_get(ticket),
        )
        .await;
        assert!(fetch.is_err(), "the fetch waits for the statement");
    });
    service.wait_until("the abandoned statement to stop", |s| {
        s.running_queries() == 0
    });
    let audit = service.audit();
    assert!(
        audit.iter().any(|e| e["action"] == "sql:flight-sql"
            && e["target"] == SLOW
            && e["outcome"] == "cancelled"),
        "{audit:#?}"
    );
}
