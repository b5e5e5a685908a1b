//! The `http` connector against a PDND e-service, through the real binary: a strict fake
//! authorization server (signature, claims, audience, expiry, `jti` reuse) and a strict fake
//! e-service (voucher signature, audience, expiry, INTEGRITY_REST_02, paging, faults).

mod common;
mod http_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ConfigDir, Server};
use http_support::pdnd::*;
use http_support::{FakeApi, Reply, fixture, wait_for};
use serde_json::{Value, json};

const TABLE: &str = "anagrafe.residenti";
const LONG: Duration = Duration::from_secs(60);
/// What a PDND refusal that points at no cause in particular lists.
const USUAL_CAUSES: &str = "the clock (this machine's time must agree with PDND's within seconds: is it synchronised?); the audience (`audience` must be the one PDND publishes for client assertions, e.g. `auth.interop.pagopa.it/client-assertion`); the key (the private key and its `kid` must match a public key uploaded to this client on PDND); the purpose's state (`purpose_id` must be an active purpose, of an active agreement, with this client associated)";

fn connector(token_url: &str, eservice: &EService, refresh: &str, integrity: bool) -> String {
    let integrity = if integrity {
        format!("integrity = {{ audience = \"{INTEGRITY_AUDIENCE}\" }}")
    } else {
        String::new()
    };
    format!(
        r#"kind = "http"
description = "Residenti dall'e-service anagrafico (finto)"
refresh = "{refresh}"
retry = {{ attempts = 4, initial_backoff = "20ms", max_backoff = "100ms" }}

[auth]
type = "pdnd"
token_url = "{token_url}"
audience = "{ASSERTION_AUDIENCE}"
client_id = "{CLIENT_ID}"
kid = "{KID}"
purpose_id = "{PURPOSE_ID}"
private_key = "keys/client.pem"
{integrity}

[[table]]
name = "residenti"
url = "{url}"
json_pointer = "/residenti"
pagination = {{ type = "page", size_param = "size", size = 4, total = "/totale" }}
"#,
        url = eservice.url()
    )
}

fn config_dir(connector: &str) -> ConfigDir {
    let config = ConfigDir::empty();
    config.write_bytes("keys/client.pem", &fixture("client.key.pem"));
    config.write("connectors/anagrafe.toml", connector);
    config
}

fn last_error(server: &Server) -> Option<String> {
    server.table_status(TABLE)["last_error"]
        .as_str()
        .map(str::to_string)
}

fn versions(server: &Server) -> Vec<Value> {
    server
        .rows("SELECT DISTINCT versione FROM anagrafe.residenti ORDER BY versione")
        .into_iter()
        .map(|r| r["versione"].clone())
        .collect()
}

#[test]
fn every_page_is_loaded_with_a_voucher_through_retries_and_integrity_checks() {
    let auth = AuthorizationServer::start(600);
    // The first voucher request fails after the server has recorded its jti: the retry must
    // carry a new assertion, or the server would refuse it as a replay.
    auth.state.lock().unwrap().fail_after_accepting = 1;
    let eservice = EService::start(residents(10, 1), true);
    {
        let mut state = eservice.state.lock().unwrap();
        state.faults_once.insert(
            2,
            [Fault::TooManyRequests {
                retry_after_seconds: 1,
            }]
            .into(),
        );
        let problem = Fault::Problem {
            status: 500,
            title: "Internal Server Error".into(),
            detail: "timeout del database".into(),
        };
        state.faults_once.insert(3, [problem].into());
    }
    let config = config_dir(&connector(&auth.token_url(), &eservice, "1h", true));
    let server = Server::start_ready(&config);

    let rows = server
        .rows("SELECT id, codice_fiscale, zona, eta, versione FROM anagrafe.residenti ORDER BY id");
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        rows[6],
        json!({"id": 7, "codice_fiscale": "RSSMRA07A01A9447", "zona": "Porto-Saragozza", "eta": 27, "versione": 1})
    );
    let status = server.table_status(TABLE);
    assert_eq!(status["state"], "fresh", "{status}");
    assert_eq!(status["rows"], 10);
    assert_eq!(status["source"], eservice.url());

    // Pages 1, 2 (429, then after Retry-After), 3 (problem 500, then 200): every page once in
    // the end, and nothing after the short last page.
    let requests = eservice.requests();
    let exchanges: Vec<(u64, u16)> = requests.iter().map(|r| (r.page, r.status)).collect();
    assert_eq!(
        exchanges,
        [(1, 200), (2, 429), (2, 200), (3, 500), (3, 200)]
    );
    let waited = requests[2].at - requests[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: retried after {waited:?}"
    );
    let vouchers: BTreeSet<_> = requests
        .iter()
        .map(|r| r.voucher_jti.clone().unwrap())
        .collect();
    assert_eq!(vouchers.len(), 1, "one cached voucher serves every page");
    assert!(
        eservice.state.lock().unwrap().refusals.is_empty(),
        "the e-service refused: {:?}",
        eservice.state.lock().unwrap().refusals
    );

    let auth_state = auth.state.lock().unwrap();
    assert!(auth_state.refusals.is_empty(), "{:?}", auth_state.refusals);
    assert_eq!(
        auth_state.assertions.len(),
        2,
        "the first accepted assertion got a 503, the retry a voucher"
    );
    let jtis: BTreeSet<_> = auth_state
        .assertions
        .iter()
        .map(|(_, claims)| claims["jti"].to_string())
        .collect();
    assert_eq!(jtis.len(), 2, "each attempt signs a new assertion");
    let (header, claims) = &auth_state.assertions[1];
    assert_eq!(
        Value::Object(header.clone()),
        json!({"alg": "RS256", "kid": KID, "typ": "JWT"})
    );
    let keys: BTreeSet<&str> = claims.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["aud", "exp", "iat", "iss", "jti", "purposeId", "sub"])
    );
    assert_eq!(auth_state.vouchers.len(), 1);
}

#[test]
fn an_expired_voucher_is_renewed_without_a_failed_pull() {
    // Vouchers live 3 s; the connector renews them 2 s before they expire, i.e. after 1 s.
    let auth = AuthorizationServer::start(3);
    let eservice = EService::start(residents(6, 1), false);
    let config = config_dir(&connector(&auth.token_url(), &eservice, "150ms", false));
    let server = Server::start_ready(&config);
    wait_for("three vouchers, each used by the e-service", LONG, || {
        assert_eq!(last_error(&server), None, "a pull failed");
        let used: BTreeSet<_> = eservice
            .requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| r.voucher_jti)
            .collect();
        used.len() >= 3
    });
    assert!(
        eservice.requests().iter().all(|r| r.status == 200),
        "no request went out with an expired voucher"
    );
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        6
    );
}

#[test]
fn a_voucher_the_e_service_already_considers_expired_is_renewed_at_once() {
    // A long-lived voucher stays cached; the e-service's clock runs ahead, so it refuses it.
    let auth = AuthorizationServer::start(600);
    let eservice = EService::start(residents(6, 1), false);
    let config = config_dir(&connector(&auth.token_url(), &eservice, "150ms", false));
    let server = Server::start_ready(&config);
    // The refresh loop's connector gets its voucher at its first pull, then keeps it.
    wait_for("the refresh loop's voucher in use", LONG, || {
        let vouchers = auth.vouchers();
        vouchers.len() == 2
            && eservice
                .requests()
                .iter()
                .any(|r| r.voucher_jti.as_deref() == Some(vouchers[1].jti.as_str()))
    });
    let cached = auth.vouchers()[1].jti.clone();
    let marked_at = {
        let mut state = eservice.state.lock().unwrap();
        state
            .expired_early
            .extend(auth.vouchers().into_iter().map(|v| v.jti));
        state.requests.len()
    };
    wait_for(
        "a refused voucher followed by successful pulls",
        LONG,
        || {
            assert_eq!(last_error(&server), None, "a pull failed");
            let requests = eservice.requests();
            let refused = requests[marked_at..].iter().position(|r| r.status == 401);
            refused.is_some_and(|i| {
                requests[marked_at + i + 1..]
                    .iter()
                    .filter(|r| r.status == 200)
                    .count()
                    >= 3
            })
        },
    );
    let requests = eservice.requests()[marked_at..].to_vec();
    let refused = requests.iter().position(|r| r.status == 401).unwrap();
    assert_eq!(
        requests[refused].voucher_jti.as_deref(),
        Some(cached.as_str())
    );
    let retry = &requests[refused + 1];
    assert_eq!(
        (retry.page, retry.status),
        (requests[refused].page, 200),
        "the same page, at once, with a new voucher"
    );
    assert_ne!(retry.voucher_jti.as_deref(), Some(cached.as_str()));
    assert_eq!(
        requests.iter().filter(|r| r.status == 401).count(),
        1,
        "the renewed voucher is kept"
    );
    assert_eq!(auth.vouchers().len(), 3);
}

#[test]
fn a_wrong_key_is_a_clear_authentication_error_and_the_last_snapshot_stays() {
    // Vouchers shorter than the renewal margin are never reused: each pull asks for one.
    let auth = AuthorizationServer::start(2);
    let eservice = EService::start(residents(6, 1), false);
    let config = config_dir(&connector(&auth.token_url(), &eservice, "150ms", false));
    let server = Server::start_ready(&config);
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        6
    );

    // The key file is rotated to a key PDND does not know.
    config.replace(
        "keys/client.pem",
        &String::from_utf8(fixture("wrong_client.key.pem")).unwrap(),
    );
    wait_for("the authentication error in /status", LONG, || {
        last_error(&server).is_some_and(|e| e.contains("authentication failed"))
    });
    let error = last_error(&server).unwrap();
    let expected = format!(
        "authentication failed: the PDND authorization server refused the voucher request (client_id `{CLIENT_ID}`, kid `{KID}`, purposeId `{PURPOSE_ID}`): 401 Unauthorized: invalid_client: the client assertion's signature does not match the public key registered as `{KID}`; likely cause: the key (the private key and its `kid` must match a public key uploaded to this client on PDND)"
    );
    assert_eq!(error, expected);
    assert!(
        !error.contains("eyJ") && !error.contains("PRIVATE"),
        "no token or key in /status: {error}"
    );
    assert!(
        auth.refusals()
            .iter()
            .any(|r| r.contains("signature does not match")),
        "{:?}",
        auth.refusals()
    );

    let status = server.table_status(TABLE);
    assert_eq!(status["state"], "stale", "{status}");
    assert_eq!(status["stale"], true);
    assert_eq!(status["rows"], 6);
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        6
    );
    assert_eq!(server.get_json("/status")["status"], "degraded");
}

#[test]
fn a_malformed_page_or_a_problem_publishes_nothing_of_that_pull() {
    let auth = AuthorizationServer::start(600);
    let eservice = EService::start(residents(10, 1), false);
    let config = config_dir(&connector(&auth.token_url(), &eservice, "150ms", false));
    let server = Server::start_ready(&config);
    assert_eq!(versions(&server), [json!(1)]);

    // Version 2 of the data, but its page 2 is cut in the middle of the JSON.
    let switched = eservice.requests().len();
    {
        let mut state = eservice.state.lock().unwrap();
        state.residents = residents(10, 2);
        state.faults_always.insert(2, Fault::Malformed);
    }
    wait_for("the malformed page in /status", LONG, || {
        last_error(&server).is_some_and(|e| e.contains("invalid JSON"))
    });
    let error = last_error(&server).unwrap();
    let page_2 = format!(
        "{}?page=2&size=4: page 2: invalid JSON: EOF while parsing",
        eservice.url()
    );
    assert!(error.starts_with(&page_2), "{error}");
    assert!(
        eservice.requests()[switched..]
            .iter()
            .any(|r| r.page == 1 && r.status == 200),
        "page 1 of version 2 was read, and must not have been published"
    );
    assert_eq!(versions(&server), [json!(1)]);
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        10
    );
    assert_eq!(server.table_status(TABLE)["state"], "stale");

    // Now the e-service answers page 2 with a problem, every time: its title and detail show.
    let problem = Fault::Problem {
        status: 503,
        title: "Servizio temporaneamente non disponibile".into(),
        detail: "L'anagrafe è in manutenzione fino alle 18:00".into(),
    };
    eservice
        .state
        .lock()
        .unwrap()
        .faults_always
        .insert(2, problem);
    wait_for("the problem in /status", LONG, || {
        last_error(&server).is_some_and(|e| e.contains("manutenzione"))
    });
    assert_eq!(
        last_error(&server).unwrap(),
        format!(
            "{}?page=2&size=4: 503 Service Unavailable: Servizio temporaneamente non disponibile: L'anagrafe è in manutenzione fino alle 18:00",
            eservice.url()
        )
    );
    assert_eq!(versions(&server), [json!(1)]);

    // The source recovers: version 2 replaces version 1 whole.
    eservice.state.lock().unwrap().faults_always.clear();
    wait_for("version 2", LONG, || versions(&server) == [json!(2)]);
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        10
    );
    wait_for("a fresh table", LONG, || {
        server.table_status(TABLE)["state"] == "fresh"
    });
}

#[test]
fn a_replayed_client_assertion_is_refused_by_the_authorization_server_and_reported() {
    // Vouchers cached for 1 s: the first pull gets one, a later pull asks again.
    let auth = AuthorizationServer::start(3);
    // A broken egress cache between us and PDND: it replays the first voucher request it saw.
    // The first request's content type and body.
    type Recorded = Option<(String, Vec<u8>)>;
    let first_request: Arc<Mutex<Recorded>> = Arc::new(Mutex::new(None));
    let forward = common::http_client();
    let token_url = auth.token_url();
    let proxy = FakeApi::start(move |seen| {
        let (content_type, body) = first_request
            .lock()
            .unwrap()
            .get_or_insert_with(|| {
                (
                    seen.header("content-type").unwrap_or_default().to_string(),
                    seen.body.to_vec(),
                )
            })
            .clone();
        let response = forward
            .post(&token_url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        Reply::new(status, &content_type, response.bytes().unwrap().to_vec())
    });
    let eservice = EService::start(residents(6, 1), false);
    let config = config_dir(&connector(
        &format!("{}/token.oauth2", proxy.url),
        &eservice,
        "150ms",
        false,
    ));
    let server = Server::start_ready(&config);
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        6
    );

    wait_for("the refused replay in /status", LONG, || {
        last_error(&server).is_some_and(|e| e.contains("already been used"))
    });
    let error = last_error(&server).unwrap();
    let jti = auth.state.lock().unwrap().assertions[0].1["jti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        error,
        format!(
            "authentication failed: the PDND authorization server refused the voucher request (client_id `{CLIENT_ID}`, kid `{KID}`, purposeId `{PURPOSE_ID}`): 400 Bad Request: invalid_grant: the client assertion's jti `{jti}` has already been used; usual causes: {USUAL_CAUSES}"
        )
    );
    assert_eq!(
        auth.refusals().first().map(String::as_str),
        Some(
            format!("invalid_grant: the client assertion's jti `{jti}` has already been used")
                .as_str()
        )
    );
    assert_eq!(
        auth.vouchers().len(),
        1,
        "only the original request got a voucher"
    );
    assert_eq!(server.table_status(TABLE)["state"], "stale");
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM anagrafe.residenti")[0]["n"],
        6
    );
}
