//! PDND and ModI details of the `http` connector, in process against the strict fakes of
//! `http_support::pdnd`: AUDIT_REST_02's tracking evidence bound to the voucher, a client key
//! rotated without a restart, and voucher refusals told apart by their cause.

mod common;
mod http_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use http_support::pdnd::*;
use http_support::{build, closed_port, error, fixture, load, ok};

/// Key files in a folder of their own, written as an operator would.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file whole, then move it in place, as a key rotation should.
    fn put(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        let partial = self.path(&format!("{name}.partial"));
        std::fs::write(&partial, bytes).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        path
    }
}

/// A connector on the fake e-service; `auth` adds lines to `[auth]` (the key, the kid, audit).
fn connector(token_url: &str, eservice: &EService, auth: &str) -> String {
    format!(
        r#"kind = "http"
retry = {{ attempts = 2, initial_backoff = "10ms", max_backoff = "20ms" }}

[auth]
type = "pdnd"
token_url = "{token_url}"
client_id = "{CLIENT_ID}"
purpose_id = "{PURPOSE_ID}"
{auth}

[[table]]
name = "residenti"
url = "{url}"
json_pointer = "/residenti"
pagination = {{ type = "page", size_param = "size", size = 4, total = "/totale" }}
"#,
        url = eservice.url()
    )
}

fn key_lines(key: &Path, kid: &str) -> String {
    format!(
        "audience = \"{ASSERTION_AUDIENCE}\"\nprivate_key = \"{}\"\nkid = \"{kid}\"",
        key.display()
    )
}

fn ids(loads: &http_support::Loads) -> Vec<i64> {
    http_support::rows(ok(loads, "residenti"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_rest_02_binds_the_tracking_evidence_to_the_voucher() {
    let auth = AuthorizationServer::start(600);
    // INTEGRITY_REST_02 too: the two patterns go together on the same requests.
    let eservice = EService::start(residents(10, 1), true);
    eservice.state.lock().unwrap().audit = true;
    let keys = Keys::new();
    let key = keys.put("client.pem", &fixture("client.key.pem"));
    let integrity = format!("integrity = {{ audience = \"{INTEGRITY_AUDIENCE}\" }}");

    // Without it, the e-service refuses every request, and says why.
    let plain = build(&connector(
        &auth.token_url(),
        &eservice,
        &format!("{}\n{integrity}", key_lines(&key, KID)),
    ));
    let refused = error(&load(plain.as_ref()).await, "residenti");
    assert!(
        refused.ends_with(
            "?page=1&size=4: 400 Bad Request: AUDIT_REST_02 check failed: no Agid-JWT-TrackingEvidence header"
        ),
        "{refused}"
    );
    eservice.state.lock().unwrap().refusals.clear();

    let audited = build(&connector(
        &auth.token_url(),
        &eservice,
        &format!(
            "{}\n{integrity}\naudit = {{ audience = \"{AUDIT_AUDIENCE}\", user_id = \"ufficio-statistica\", user_location = \"cruscotto-01\", loa = \"LoA3\" }}",
            key_lines(&key, KID)
        ),
    ));
    for _ in 0..2 {
        let loads = load(audited.as_ref()).await;
        assert_eq!(ids(&loads), (1..=10).collect::<Vec<_>>());
    }
    let state = eservice.state.lock().unwrap();
    assert!(state.refusals.is_empty(), "{:?}", state.refusals);
    // Three pages a pull, two pulls, one voucher: its evidence went with every page.
    assert_eq!(state.tracking_evidence.len(), 6);
    let evidence = &state.tracking_evidence[0];
    assert_eq!(evidence["userID"], "ufficio-statistica");
    assert_eq!(evidence["userLocation"], "cruscotto-01");
    assert_eq!(evidence["LoA"], "LoA3");
    assert_eq!(evidence["iss"], CLIENT_ID);
    assert_eq!(evidence["aud"], AUDIT_AUDIENCE);
    assert_eq!(evidence["purposeId"], PURPOSE_ID);
    let claims: BTreeSet<&str> = evidence.keys().map(String::as_str).collect();
    assert_eq!(
        claims,
        BTreeSet::from([
            "LoA",
            "aud",
            "dnonce",
            "exp",
            "iat",
            "iss",
            "jti",
            "purposeId",
            "userID",
            "userLocation"
        ])
    );
    let (_, assertion) = auth.last_assertion();
    assert_eq!(assertion["digest"]["alg"], "SHA256");
    assert_eq!(
        assertion["digest"].as_object().unwrap().len(),
        2,
        "PDND allows digest.alg and digest.value only"
    );
    assert_eq!(
        auth.vouchers().len(),
        2,
        "one voucher for the refused pull, one after"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_and_its_kid_are_read_at_the_next_voucher_request() {
    for variant in ["kid_file", "jwk"] {
        // Two-second vouchers are never reused: every request asks for one.
        let auth = AuthorizationServer::start(2);
        let eservice = EService::start(residents(6, 1), false);
        let keys = Keys::new();
        let lines = if variant == "jwk" {
            let key = keys.put("client.jwk", &fixture("client.key.jwk"));
            format!(
                "audience = \"{ASSERTION_AUDIENCE}\"\nprivate_key = \"{}\"",
                key.display()
            )
        } else {
            let key = keys.put("client.pem", &fixture("client.key.pem"));
            let kid = keys.put("client.kid", format!("{KID}\n").as_bytes());
            format!(
                "audience = \"{ASSERTION_AUDIENCE}\"\nprivate_key = \"{}\"\nkid_file = \"{}\"",
                key.display(),
                kid.display()
            )
        };
        let connector = build(&connector(&auth.token_url(), &eservice, &lines));
        assert_eq!(ids(&load(connector.as_ref()).await), [1, 2, 3, 4, 5, 6]);
        assert_eq!(auth.last_assertion().0["kid"], KID, "{variant}");

        // The operator uploads the new public key, puts the new key (and its kid) in place and
        // deletes the old key from the client. No restart.
        auth.register_key(ROTATED_KID, fixture("wrong_client.pub.pem"));
        if variant == "jwk" {
            keys.put("client.jwk", &fixture("wrong_client.key.jwk"));
        } else {
            keys.put("client.pem", &fixture("wrong_client.key.pem"));
            keys.put("client.kid", format!("{ROTATED_KID}\n").as_bytes());
        }
        auth.revoke_key(KID);
        assert_eq!(ids(&load(connector.as_ref()).await), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            auth.last_assertion().0["kid"],
            ROTATED_KID,
            "{variant}: the new key signs, under its own kid"
        );
        assert!(
            auth.refusals().is_empty(),
            "{variant}: {:?}",
            auth.refusals()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwk_whose_kid_disagrees_with_the_configured_one_is_refused_before_signing() {
    let auth = AuthorizationServer::start(600);
    let eservice = EService::start(residents(2, 1), false);
    let keys = Keys::new();
    let key = keys.put("client.jwk", &fixture("client.key.jwk"));
    let connector = build(&connector(
        &auth.token_url(),
        &eservice,
        &key_lines(&key, ROTATED_KID),
    ));
    let message = error(&load(connector.as_ref()).await, "residenti");
    assert!(
        message.contains(&format!(
            "the JWK's `kid` is `{KID}`, the configured one `{ROTATED_KID}`"
        )),
        "{message}"
    );
    assert!(auth.api.seen().is_empty(), "nothing was sent");
}

const CAUSES: [(&str, &str); 4] = [
    ("clock", "the clock ("),
    ("audience", "the audience ("),
    ("key", "the key ("),
    ("purpose", "the purpose's state ("),
];

#[tokio::test(flavor = "multi_thread")]
async fn voucher_refusals_are_told_apart_and_name_the_likely_cause() {
    let eservice = EService::start(residents(2, 1), false);
    let keys = Keys::new();
    let key = keys.put("client.pem", &fixture("client.key.pem"));
    let wrong_key = keys.put("wrong.pem", &fixture("wrong_client.key.pem"));

    // Unreachable and failing servers did not judge the credentials: no "authentication failed".
    let closed = format!("http://{}/token.oauth2", closed_port());
    let unreachable = error(
        &load(build(&connector(&closed, &eservice, &key_lines(&key, KID))).as_ref()).await,
        "residenti",
    );
    assert!(
        unreachable.starts_with(&format!(
            "{closed}: the authorization server cannot be reached (the credentials were not judged): no answer after 2 attempt(s)"
        )),
        "{unreachable}"
    );
    let failing = AuthorizationServer::start(600);
    failing.state.lock().unwrap().fail_after_accepting = u32::MAX;
    let failed = error(
        &load(
            build(&connector(
                &failing.token_url(),
                &eservice,
                &key_lines(&key, KID),
            ))
            .as_ref(),
        )
        .await,
        "residenti",
    );
    assert_eq!(
        failed,
        format!(
            "{}: the authorization server failed (the credentials were not judged): 503 Service Unavailable: Service Unavailable: try again",
            failing.token_url()
        )
    );

    // Refusals: each names the likely cause, and only that one.
    type Setup = fn(&AuthorizationServer);
    let cases: Vec<(&str, &str, String, Setup)> = vec![
        ("clock", "this clock is behind", key_lines(&key, KID), |a| {
            a.state.lock().unwrap().clock_offset = 3600
        }),
        ("clock", "this clock is ahead", key_lines(&key, KID), |a| {
            a.state.lock().unwrap().clock_offset = -3600
        }),
        (
            "audience",
            "a wrong audience",
            key_lines(&key, KID).replace(ASSERTION_AUDIENCE, "auth.interop.fake/altro"),
            |_| {},
        ),
        (
            "key",
            "a key PDND does not know",
            key_lines(&wrong_key, KID),
            |_| {},
        ),
        (
            "key",
            "an unknown kid",
            key_lines(&key, "kid-sconosciuto"),
            |_| {},
        ),
        (
            "purpose",
            "a suspended purpose",
            key_lines(&key, KID),
            |a| a.state.lock().unwrap().purpose_state = "SUSPENDED".into(),
        ),
    ];
    for (cause, case, lines, setup) in cases {
        let auth = AuthorizationServer::start(600);
        setup(&auth);
        let message = error(
            &load(build(&connector(&auth.token_url(), &eservice, &lines)).as_ref()).await,
            "residenti",
        );
        assert!(
            message.starts_with(
                "authentication failed: the PDND authorization server refused the voucher request (client_id"
            ) && message.contains(": 40"),
            "{case}: {message}"
        );
        let likely = message.split("; likely cause: ").nth(1).unwrap_or_default();
        for (name, label) in CAUSES {
            assert_eq!(likely.contains(label), name == cause, "{case}: {message}");
        }
        assert_eq!(auth.refusals().len(), 1, "{case}: a refusal is not retried");
    }
    assert!(
        eservice.requests().is_empty(),
        "without a voucher nothing reaches the e-service"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voucher_refused_after_renewal_is_dropped_from_the_cache() {
    let auth = AuthorizationServer::start(600);
    let eservice = EService::start(residents(4, 1), false);
    eservice.state.lock().unwrap().refuse_vouchers =
        Some("the purpose is suspended by the provider".into());
    let keys = Keys::new();
    let key = keys.put("client.pem", &fixture("client.key.pem"));
    let connector = build(&connector(
        &auth.token_url(),
        &eservice,
        &key_lines(&key, KID),
    ));
    for _ in 0..2 {
        let message = error(&load(connector.as_ref()).await, "residenti");
        assert!(
            message.starts_with("authentication failed: ")
                && message.ends_with(
                    "refused the credentials: 401 Unauthorized: Unauthorized: the purpose is suspended by the provider"
                ),
            "{message}"
        );
    }
    let used: Vec<String> = eservice
        .requests()
        .into_iter()
        .map(|r| r.voucher_jti.unwrap())
        .collect();
    let distinct: BTreeSet<&String> = used.iter().collect();
    assert_eq!(
        (used.len(), distinct.len()),
        (4, 4),
        "each pull: a voucher, refused, a new one, refused too and dropped; never one spent twice"
    );
    assert_eq!(auth.vouchers().len(), 4);
}
