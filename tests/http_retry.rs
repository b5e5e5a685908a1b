//! When an API is down or asks to be left alone: a host's `Retry-After` holds across pulls and
//! across connectors (no request reaches it before the time it gave), and a source that is down
//! when cruscotto starts is retried with backoff, not a whole refresh interval later.

mod common;
mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ConfigDir, Server};
use http_support::pdnd::*;
use http_support::{FakeApi, Reply, build, closed_port, error, fixture, load, ok, wait_for};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn two_tables(url: &str) -> String {
    format!(
        r#"kind = "http"
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "40ms", max_retry_after = "120s" }}
[[table]]
name = "limitata"
url = "{url}/limitata"
[[table]]
name = "vicina"
url = "{url}/vicina"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_retry_after_keeps_every_request_away_from_the_host_across_pulls() {
    // 429 and 503, with `Retry-After` in seconds and as an HTTP date, all beyond
    // `max_retry_after`: the pull fails, and until then nothing is sent to that host, not by the
    // next pull, not for another table, not by another connector reading the same API.
    for (status, as_date) in [(429, false), (429, true), (503, false), (503, true)] {
        let api = FakeApi::start(move |seen| {
            if seen.path == "/limitata" {
                let wait = if as_date {
                    (chrono::Utc::now() + chrono::Duration::seconds(300))
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string()
                } else {
                    "300".to_string()
                };
                Reply::problem(status, "Troppe richieste", "riprovare più tardi")
                    .header("retry-after", &wait)
            } else {
                Reply::json(json!([{"id": 1}]))
            }
        });
        let text = two_tables(&api.url);
        let connector = build(&text);
        let case = format!("{status}, date: {as_date}");
        let first = load(connector.as_ref()).await;
        assert!(
            error(&first, "limitata").contains(&format!("{status}")),
            "{case}: {}",
            error(&first, "limitata")
        );
        let host = api.url.trim_start_matches("http://").to_string();
        for loads in [
            first,
            load(connector.as_ref()).await,
            load(connector.as_ref()).await,
            load(build(&text).as_ref()).await,
        ]
        .iter()
        .skip(1)
        {
            for table in ["limitata", "vicina"] {
                let message = error(loads, table);
                assert!(
                    message.contains(&format!(
                        "not sent: {host} asked (Retry-After) not to be called before"
                    )) && message.contains("longer than `retry.max_retry_after` (120 s)"),
                    "{case}, {table}: {message}"
                );
            }
        }
        let seen = api.seen();
        assert_eq!(
            seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            ["/limitata"],
            "{case}: one request, then none before the time the host gave"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_retry_after_is_waited_for_by_the_next_pull() {
    // `Retry-After: 2` with `max_retry_after = "1s"`: the pull that got it fails; the pulls
    // after it send nothing before those 2 s are over, then load the table.
    let asked = Arc::new(AtomicBool::new(false));
    let api = FakeApi::start(move |_| {
        if !asked.swap(true, Ordering::SeqCst) {
            Reply::problem(429, "Too Many Requests", "quota").header("retry-after", "2")
        } else {
            Reply::json(json!([{"id": 7}]))
        }
    });
    let text = format!(
        r#"kind = "http"
retry = {{ attempts = 1, max_retry_after = "1s" }}
[[table]]
name = "prima"
url = "{url}/dati?prima=1"
[[table]]
name = "poi"
url = "{url}/dati"
"#,
        url = api.url
    );
    let connector = build(&text);
    let first = load(connector.as_ref()).await;
    assert!(error(&first, "prima").contains("429"));
    assert!(error(&first, "poi").contains("not sent"));
    // Pull again and again (a refresh loop with a short backoff) until the table loads.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let loads = load(connector.as_ref()).await;
        if loads["poi"].is_ok() {
            assert_eq!(ok(&loads, "poi").rows(), 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the table never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = api.seen();
    let refused_at = seen[0].at;
    for later in &seen[1..] {
        assert!(
            later.at.duration_since(refused_at) >= Duration::from_secs(2),
            "a request reached the host {:?} after its Retry-After: 2",
            later.at.duration_since(refused_at)
        );
    }
}

fn wait_fresh(server: &Server, table: &str) {
    wait_for(
        &format!("{table} loaded after the source came up"),
        LONG,
        || server.table_status(table)["state"] == "fresh",
    );
}

#[test]
fn a_source_down_at_start_is_retried_with_backoff_not_a_refresh_interval_later() {
    // Nothing listens at the API's address when cruscotto starts; a second table's API answers
    // 503 (no Retry-After). Both come up later; `refresh = "24h"`.
    let address = closed_port();
    let healthy = Arc::new(AtomicBool::new(false));
    let up = healthy.clone();
    let flaky = FakeApi::start(move |_| {
        if up.load(Ordering::SeqCst) {
            Reply::json(json!([{"id": 2}]))
        } else {
            Reply::problem(503, "Service Unavailable", "in avvio")
        }
    });
    let config = ConfigDir::empty();
    config.write(
        "connectors/api.toml",
        &format!(
            r#"kind = "http"
refresh = "24h"
retry = {{ attempts = 1 }}
[[table]]
name = "spenta"
url = "http://{address}/dati"
[[table]]
name = "in_avvio"
url = "{}/dati"
"#,
            flaky.url
        ),
    );
    let server = Server::start(&config);
    server.wait_until("both first loads failed", |s| {
        ["api.spenta", "api.in_avvio"]
            .iter()
            .all(|t| s.table_status(t)["last_error"].is_string())
    });
    let _api = FakeApi::start_at(&address.to_string(), |_| Reply::json(json!([{"id": 1}])));
    healthy.store(true, Ordering::SeqCst);
    wait_fresh(&server, "api.spenta");
    wait_fresh(&server, "api.in_avvio");
    assert_eq!(server.rows("SELECT id FROM api.spenta"), [json!({"id": 1})]);
}

#[test]
fn a_pdnd_e_service_down_at_start_is_retried_with_backoff() {
    let auth = AuthorizationServer::start(600);
    let eservice = EService::start(residents(6, 1), false);
    eservice.state.lock().unwrap().faults_always.insert(
        1,
        Fault::Problem {
            status: 503,
            title: "Servizio non disponibile".into(),
            detail: "manutenzione".into(),
        },
    );
    let config = ConfigDir::empty();
    config.write_bytes("keys/client.pem", &fixture("client.key.pem"));
    config.write(
        "connectors/anagrafe.toml",
        &format!(
            r#"kind = "http"
refresh = "24h"
retry = {{ attempts = 1 }}
[auth]
type = "pdnd"
token_url = "{token_url}"
audience = "{ASSERTION_AUDIENCE}"
client_id = "{CLIENT_ID}"
kid = "{KID}"
purpose_id = "{PURPOSE_ID}"
private_key = "keys/client.pem"
[[table]]
name = "residenti"
url = "{url}"
json_pointer = "/residenti"
pagination = {{ type = "page", size_param = "size", size = 4, total = "/totale" }}
"#,
            token_url = auth.token_url(),
            url = eservice.url()
        ),
    );
    let server = Server::start(&config);
    server.wait_until("the failed first load", |s| {
        s.table_status("anagrafe.residenti")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("manutenzione"))
    });
    eservice.state.lock().unwrap().faults_always.clear();
    wait_fresh(&server, "anagrafe.residenti");
    let ids: Vec<Value> = server
        .rows("SELECT id FROM anagrafe.residenti ORDER BY id")
        .into_iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, (1..=6).map(|i| json!(i)).collect::<Vec<_>>());
}
