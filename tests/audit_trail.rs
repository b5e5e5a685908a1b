//! The audit trail and the keys, through the real binary: files private to their owner, key
//! headers that cannot be read refused (never the anonymous role), refusals audited under the
//! right key id, refused requests written without their body and aggregated, and rotation with
//! retention, `system.audit` reading every file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{ConfigDir, Server, create_key};
use reqwest::header::HeaderValue;
use serde_json::Value;

/// The demo with `anonymous` as given, extra lines in `[access]`, `audit` as the body of
/// `[access.audit]` (empty: the shipped one), plus a second dataset held by another body.
fn config(anonymous: &str, extra_access: &str, audit: &str) -> ConfigDir {
    let config = ConfigDir::demo();
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    let mut toml = toml
        .replace("requests_per_minute = 1200\n", "")
        .replace("burst = 600\n", "")
        .replace(
            "anonymous = \"analyst\"",
            &format!("anonymous = \"{anonymous}\"\n{extra_access}"),
        );
    if !audit.is_empty() {
        let start = toml
            .find("[access.audit]\n")
            .expect("the shipped [access.audit]");
        let end = start + toml[start..].find("\n\n").unwrap();
        toml.replace_range(start..end, &format!("[access.audit]\n{audit}"));
    }
    config.write("cruscotto.toml", &toml);
    config.write(
        "datasets/certificati_anpr.toml",
        r#"title = "Certificati ANPR"
description = "Certificati online per comune"
query = "anpr_certificati_per_1000"
licence = "https://creativecommons.org/publicdomain/zero/1.0/"
publisher = "Ministero dell'Interno"
publisher_ipa = "m_it"
update_frequency = "IRREG"
spatial = "Città metropolitana di Bologna"
key = "cod_istat_comune"
"#,
    );
    config
}

fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server.client.get(format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

fn sql(server: &Server, text: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server
        .client
        .post(format!("{}/api/v1/sql", server.url))
        .header("content-type", "text/plain")
        .body(text.to_string());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().unwrap()
}

/// Rows of `system.audit` for an admin key.
fn audit(server: &Server, admin: &str, sql_text: &str) -> Vec<Value> {
    let response = sql(server, sql_text, Some(admin));
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("audit") && name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn keys_and_audit_files_are_created_readable_by_their_owner_only() {
    let config = config("none", "", "rotate_size = \"4 KiB\"\nmax_files = 100");
    let (_, analyst) = create_key(&config, "analyst", "");
    let var = config.path().join("var");
    assert_eq!(mode(&var.join("keys.json")), 0o600);
    let server = Server::start_ready(&config);
    for i in 0..100 {
        assert_eq!(
            sql(&server, &format!("SELECT {i} AS n"), Some(&analyst)).status(),
            200
        );
    }
    // Created by the server, rewritten by the command line (revocation), rotated: all 0600.
    let (admin_id, _) = create_key(&config, "admin", "");
    let (code, _, stderr) = config.run(&["keys", "revoke", &admin_id]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode(&var.join("keys.json")), 0o600);
    let files = audit_files(&var);
    assert!(files.len() >= 3, "the log did not rotate: {files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert!(
        !std::fs::read_dir(&var).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "a temporary key file was left behind"
    );
}

/// Key headers that are not visible ASCII: UTF-8 text, Latin-1 bytes, a valid key with one
/// such character added, each as `X-API-Key` and as a bearer token.
fn unreadable_keys(valid: &str) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        "é",
        "ck_é_1",
        "ключ",
        "ck_abc_秘密",
        "🔑",
        "ck_ab\u{a0}c_def",
        "ck_abc_def\u{200b}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    keys.extend((0x80..=0xffu8).step_by(7).map(|b| vec![b]));
    keys.extend([0x80u8, 0xa9, 0xe9, 0xff].iter().map(|b| {
        let mut key = valid.as_bytes().to_vec();
        key.push(*b);
        key
    }));
    let mut inside = valid.as_bytes().to_vec();
    inside.insert(5, 0xe9);
    keys.push(inside);
    keys.push(format!("{valid}é").into_bytes());
    keys
}

#[test]
fn a_key_header_that_is_not_ascii_is_a_401_never_the_anonymous_role() {
    // Anonymous requests act as analysts here: falling back to them would answer 200.
    let config = config("analyst", "", "");
    let (_, analyst) = create_key(&config, "analyst", "");
    let (_, admin) = create_key(&config, "admin", "");
    let server = Server::start_ready(&config);
    assert_eq!(sql(&server, "SELECT 42 AS probe", None).status(), 200);
    let keys = unreadable_keys(&analyst);
    let mut sent = 0;
    for key in &keys {
        let value = HeaderValue::from_bytes(key).unwrap();
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(key);
        let bearer = HeaderValue::from_bytes(&bearer).unwrap();
        for (header, value) in [("x-api-key", value.clone()), ("authorization", bearer)] {
            for (method, path) in [
                ("POST", "/api/v1/sql"),
                ("GET", "/api/v1/sql?q=SELECT%201"),
                ("GET", "/api/v1/datasets"),
                ("GET", "/api/v1/datasets/residenti_per_area"),
                ("GET", "/status"),
            ] {
                let response = server
                    .client
                    .request(method.parse().unwrap(), format!("{}{path}", server.url))
                    .header(header, value.clone())
                    .body("SELECT 1")
                    .send()
                    .unwrap();
                sent += 1;
                assert_eq!(
                    response.status(),
                    401,
                    "{method} {path} with {header}: {:?}",
                    String::from_utf8_lossy(key)
                );
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
            }
        }
    }
    // The trail has them as refused keys, none as the anonymous role.
    let rows = audit(
        &server,
        &admin,
        "SELECT key_id, outcome, CAST(sum(count) AS BIGINT) AS n FROM system.audit \
         WHERE status = 401 GROUP BY key_id, outcome",
    );
    let expected = keys.len() as i64 * 2 * 4; // the four audited paths, two headers
    assert_eq!(
        rows,
        vec![serde_json::json!({"key_id": "invalid", "outcome": "denied", "n": expected})],
        "{sent} requests sent"
    );
    let anonymous = audit(
        &server,
        &admin,
        "SELECT count(*) AS n FROM system.audit WHERE key_id = 'anonymous'",
    );
    assert_eq!(
        anonymous[0]["n"], 1,
        "a refused key was served as anonymous"
    );
}

#[test]
fn out_of_scope_reads_and_revoked_keys_are_audited_as_denied_with_the_key_id() {
    let config = config("none", "", "");
    let (partner_id, partner) = create_key(&config, "partner", "residenti_per_area");
    let (revoked_id, revoked) = create_key(&config, "partner", "residenti_per_area");
    let (revoked_analyst_id, revoked_analyst) = create_key(&config, "analyst", "");
    let (_, admin) = create_key(&config, "admin", "");
    let server = Server::start_ready(&config);
    assert_eq!(
        get(
            &server,
            "/api/v1/datasets/residenti_per_area",
            Some(&revoked)
        )
        .status(),
        200
    );
    assert_eq!(
        sql(&server, "SELECT 1", Some(&revoked_analyst)).status(),
        200
    );

    let out_of_scope = [
        "/api/v1/datasets/certificati_anpr",
        "/api/v1/datasets/certificati_anpr?format=csv",
        "/api/v1/datasets/certificati_anpr?format=arrow",
        "/api/v1/datasets/certificati_anpr?limit=1",
        "/api/v1/datasets/certificati_anpr?cod_istat_comune=037006",
        "/api/v1/datasets/certificati_anpr?fields=cod_istat_comune",
        "/api/v1/datasets/certificati_anpr?cursor=AAAA",
    ];
    for path in out_of_scope {
        // The same answer as for a dataset that does not exist: nothing learnt.
        assert_eq!(get(&server, path, Some(&partner)).status(), 404, "{path}");
    }
    assert_eq!(
        get(&server, "/api/v1/datasets/nessuno", Some(&partner)).status(),
        404
    );

    for id in [&revoked_id, &revoked_analyst_id] {
        let (code, _, stderr) = config.run(&["keys", "revoke", id]);
        assert_eq!(code, 0, "{stderr}");
    }
    let revoked_uses = [
        ("GET", "/api/v1/datasets/residenti_per_area", &revoked),
        ("GET", "/api/v1/datasets", &revoked),
        ("POST", "/api/v1/sql", &revoked),
        ("POST", "/api/v1/sql", &revoked_analyst),
        ("GET", "/api/v1/sql?q=SELECT%202", &revoked_analyst),
        ("GET", "/api/v1/datasets/certificati_anpr", &revoked_analyst),
    ];
    for (method, path, key) in revoked_uses {
        let response = server
            .client
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .bearer_auth(key)
            .body("SELECT 3")
            .send()
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert!(response.text().unwrap().contains("revoked"));
    }

    let denied = audit(
        &server,
        &admin,
        &format!(
            "SELECT target, status FROM system.audit WHERE key_id = '{partner_id}' \
             AND outcome = 'denied' AND action = 'dataset' ORDER BY time"
        ),
    );
    assert_eq!(denied.len(), out_of_scope.len(), "{denied:?}");
    for (row, path) in denied.iter().zip(out_of_scope) {
        let name = path.trim_start_matches("/api/v1/datasets/");
        assert!(
            row["target"]
                .as_str()
                .unwrap()
                .starts_with(name.split('?').next().unwrap()),
            "{row} for {path}"
        );
        assert_eq!(row["status"], 404);
    }
    // A dataset that does not exist is a mistake, not a refusal.
    let invalid = audit(
        &server,
        &admin,
        &format!(
            "SELECT outcome FROM system.audit WHERE key_id = '{partner_id}' AND target = 'nessuno'"
        ),
    );
    assert_eq!(invalid, vec![serde_json::json!({"outcome": "invalid"})]);

    for (id, role, uses) in [
        (&revoked_id, "partner", 3),
        (&revoked_analyst_id, "analyst", 3),
    ] {
        let rows = audit(
            &server,
            &admin,
            &format!(
                "SELECT role, outcome, status, CAST(sum(count) AS BIGINT) AS n FROM system.audit \
                 WHERE key_id = '{id}' AND status = 401 GROUP BY role, outcome, status"
            ),
        );
        assert_eq!(
            rows,
            vec![serde_json::json!({"role": role, "outcome": "denied", "status": 401, "n": uses})],
            "revoked {role} key"
        );
    }
    let unnamed = audit(
        &server,
        &admin,
        "SELECT count(*) AS n FROM system.audit WHERE status = 401 AND key_id = 'none'",
    );
    assert_eq!(
        unnamed[0]["n"], 0,
        "a revoked key was audited without its id"
    );
}

/// Bodies and query strings an anonymous client can send to be refused: large and distinct,
/// large and repeated, SQL, JSON, binary-looking text, and dataset filters.
fn refused_requests(server: &Server, round: usize) -> Vec<reqwest::blocking::RequestBuilder> {
    let url = |path: &str| format!("{}{path}", server.url);
    let client = &server.client;
    let mut requests = Vec::new();
    for i in 0..12 {
        let big = format!("SELECT '{}' AS r{round}_{i}", "x".repeat(60_000 + i * 97));
        requests.push(
            client
                .post(url("/api/v1/sql"))
                .header("content-type", "text/plain")
                .body(big),
        );
        let json = serde_json::json!({"sql": format!("SELECT '{}'", "é".repeat(20_000 + i))});
        requests.push(client.post(url("/api/v1/sql")).json(&json));
        requests.push(
            client
                .post(url("/api/v1/sql"))
                .header("content-type", "text/plain")
                .body("SELECT 'the same body every time'"),
        );
        let q = format!("SELECT%20{}%20AS%20n{round}{i}", "1%2B".repeat(800));
        requests.push(client.get(url(&format!("/api/v1/sql?q={q}"))));
        let filter = format!("zona={}", "Z".repeat(3000 + i));
        requests.push(client.get(url(&format!(
            "/api/v1/datasets/residenti_per_area?{filter}"
        ))));
        requests.push(
            client
                .get(url("/api/v1/datasets"))
                .bearer_auth(format!("ck_{i}_{}", "f".repeat(4000))),
        );
    }
    requests
}

#[test]
fn refused_requests_are_audited_without_their_body_and_aggregated() {
    // Keys required; a small burst, so the later rounds are rate limited (429) too.
    let config = config("none", "requests_per_minute = 1\nburst = 40", "");
    let (_, admin) = create_key(&config, "admin", "");
    let server = Server::start_ready(&config);
    // The admin key verified now, so it has its own bucket when the client's is empty.
    audit(&server, &admin, "SELECT 1");
    let audit_file = config.path().join("var/audit.jsonl");
    let before = std::fs::metadata(&audit_file).map_or(0, |m| m.len());

    let mut sent_bytes = 0u64;
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for round in 0..3 {
        for request in refused_requests(&server, round) {
            let request = request.build().unwrap();
            sent_bytes += request
                .body()
                .and_then(|b| b.as_bytes())
                .map_or(0, |b| b.len() as u64)
                + request.url().as_str().len() as u64;
            let response = server.client.execute(request).unwrap();
            *statuses.entry(response.status().as_u16()).or_default() += 1;
        }
    }
    assert!(statuses[&401] > 0 && statuses[&429] > 0, "{statuses:?}");
    let refused: u64 = statuses.values().sum();

    // Megabytes sent, a few lines written: one per kind of refusal, the repeats still counted.
    let grown = std::fs::metadata(&audit_file).unwrap().len() - before;
    assert!(
        grown < 4096,
        "{grown} bytes of audit for {refused} refused requests ({sent_bytes} bytes sent)"
    );
    let text = std::fs::read_to_string(&audit_file).unwrap();
    for needle in [
        "xxxxxxxx",
        "éééé",
        "the same body",
        "ZZZZZZZZ",
        "1+1+",
        "ffffffff",
    ] {
        assert!(
            !text.contains(needle),
            "a refused body reached the audit log: {needle}"
        );
    }

    // Every refused request is accounted for in system.audit, by a digest and a length.
    let rows = audit(
        &server,
        &admin,
        "SELECT status, CAST(sum(count) AS BIGINT) AS n, CAST(max(length(target)) AS BIGINT) AS longest, \
         CAST(sum(target_bytes) AS BIGINT) AS bytes FROM system.audit \
         WHERE role <> 'admin' GROUP BY status ORDER BY status",
    );
    let counted: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    assert_eq!(counted, refused, "{rows:?} for {statuses:?}");
    for row in &rows {
        assert!(row["longest"].as_u64().unwrap() < 120, "{row}");
        assert!(row["bytes"].as_u64().unwrap() > 0, "{row}");
    }
    let shapes = audit(
        &server,
        &admin,
        "SELECT DISTINCT CASE WHEN target LIKE 'sha256:%' THEN 'digest' \
         WHEN target LIKE '% distinct, last sha256:%' THEN 'aggregate' ELSE target END AS shape \
         FROM system.audit WHERE role <> 'admin' ORDER BY shape",
    );
    assert!(
        shapes
            .iter()
            .all(|s| s["shape"] == "digest" || s["shape"] == "aggregate"),
        "{shapes:?}"
    );
}

#[test]
fn the_audit_log_rotates_keeps_its_retention_and_system_audit_reads_every_file() {
    let settings = "rotate_size = \"8 KiB\"\nmax_files = 1000";
    let config = config("none", "", settings);
    let (analyst_id, analyst) = create_key(&config, "analyst", "");
    let (_, admin) = create_key(&config, "admin", "");
    let var = config.path().join("var");
    let server = Server::start_ready(&config);
    let queries = 150;
    for i in 0..queries {
        let text = format!("SELECT {i} AS n, '{}' AS padding", "p".repeat(100));
        assert_eq!(sql(&server, &text, Some(&analyst)).status(), 200);
    }
    let files = audit_files(&var);
    assert!(files.len() > 4, "{files:?}");
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size < 8 * 1024 + 1024, "{} is {size} bytes", file.display());
    }
    let count = |server: &Server| {
        audit(
            server,
            &admin,
            &format!(
                "SELECT count(*) AS n FROM system.audit \
                 WHERE key_id = '{analyst_id}' AND status = 200"
            ),
        )
    };
    let all = count(&server);
    assert_eq!(all[0]["n"], queries, "{all:?}");
    server.stop();

    // Fewer rotated files allowed: the oldest are deleted, the newest entries stay readable.
    let toml = std::fs::read_to_string(config.config_file())
        .unwrap()
        .replace("max_files = 1000", "max_files = 2");
    config.write("cruscotto.toml", &toml);
    let server = Server::start_ready(&config);
    let rotated: Vec<PathBuf> = audit_files(&var)
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "audit.jsonl")
        .collect();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let kept = count(&server);
    let n = kept[0]["n"].as_u64().unwrap();
    assert!(n > 0 && n < queries, "{kept:?}");
    let last = audit(
        &server,
        &admin,
        &format!(
            "SELECT count(*) AS n FROM system.audit WHERE target LIKE 'SELECT {} AS n,%'",
            queries - 1
        ),
    );
    assert_eq!(last[0]["n"], 1);
}
