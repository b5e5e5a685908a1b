//! Exactly once for every mapping: readings timed in the payload (JSON `t`, SenML absolute
//! time), readings timed at arrival (JSON without `t`, SenML without a time) and rejected
//! messages. cruscotto is killed with SIGKILL after storing messages it has not acknowledged, so
//! the broker delivers them again; each must still be stored once. Against a Mosquitto of the
//! test's own (from the repository's mosquitto.conf) and the real binary.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::{
    AckWithholdingRelay, Broker, publish_all, sensori_config, start_subscribed, wait_for,
};

/// The mapping kinds, each with the SQL that counts its messages and their distinct sequence
/// numbers (every message carries its own).
const KINDS: [(&str, &str); 5] = [
    (
        "json, time in the payload",
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM sensori.letture WHERE metric = 'download_mbps'",
    ),
    (
        "json, time at arrival",
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM sensori.letture WHERE metric = 'upload_mbps'",
    ),
    (
        "senml, absolute time",
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM sensori.ambiente WHERE metric = 'pm10'",
    ),
    (
        "senml, time at arrival",
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM sensori.ambiente WHERE metric = 'pm2_5'",
    ),
    (
        "rejected",
        "SELECT count(*) AS n, count(DISTINCT payload) AS d FROM sensori.letture_scartate",
    ),
];

/// Message `seq` of mapping kind `kind` (an index into KINDS).
fn message(kind: usize, seq: usize) -> (String, Vec<u8>) {
    let sensor = format!("s-{}", seq % 10);
    let t = 1_700_000_000 + seq;
    let (topic, payload) = match kind {
        0 => (
            format!("city/probe/{sensor}/download_mbps"),
            format!(r#"{{"v": {seq}, "t": {t}}}"#),
        ),
        1 => (
            format!("city/probe/{sensor}/upload_mbps"),
            format!(r#"{{"v": {seq}}}"#),
        ),
        2 => (
            format!("senml/{sensor}"),
            format!(r#"[{{"bn": "{sensor}/", "bt": {t}, "n": "pm10", "v": {seq}}}]"#),
        ),
        3 => (
            format!("senml/{sensor}"),
            format!(r#"[{{"bn": "{sensor}/", "n": "pm2_5", "v": {seq}}}]"#),
        ),
        _ => (
            format!("city/probe/{sensor}/latency_ms"),
            format!("not json {seq}"),
        ),
    };
    (topic, payload.into_bytes())
}

fn counts(server: &Server, sql: &str) -> (i64, i64) {
    let row = &server.rows(sql)[0];
    (row["n"].as_i64().unwrap(), row["d"].as_i64().unwrap())
}

/// Publish a last reading and wait until it is stored: the broker delivers a session's messages
/// in order, so everything before it (redeliveries included) has been handled.
fn drain(server: &Server, port: u16, n: usize) {
    let sentinel = (
        "city/probe/s-0/sentinel".to_string(),
        // Its own time: the same sensor, metric and time with another value is a conflict.
        format!(r#"{{"v": {n}, "t": {}}}"#, 1_600_000_000 + n).into_bytes(),
    );
    publish_all(port, &format!("publisher-sentinel-{n}"), &[sentinel]);
    wait_for("the sentinel reading", Duration::from_secs(120), || {
        server.rows(&format!(
            "SELECT count(*) AS n FROM sensori.letture WHERE metric = 'sentinel' AND value = {n}"
        ))[0]["n"]
            == 1
    });
}

fn assert_each_kind_once(server: &Server, per_kind: usize) {
    let found: Vec<(&str, (i64, i64))> = KINDS
        .iter()
        .map(|(name, sql)| (*name, counts(server, sql)))
        .collect();
    for (name, (n, distinct)) in &found {
        assert_eq!(
            (*n, *distinct),
            (per_kind as i64, per_kind as i64),
            "{name}: {n} rows for {distinct} messages of {per_kind}; all kinds: {found:?}"
        );
    }
}

/// `cruscotto_mqtt_redeliveries_total` as /metrics shows it now (0 before the first).
fn redeliveries(server: &Server) -> u64 {
    let metrics = server.get("/metrics").text().unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("cruscotto_mqtt_redeliveries_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn messages_redelivered_after_sigkill_are_stored_once_for_every_mapping() {
    let broker = Broker::start();
    let relay = AckWithholdingRelay::start(broker.port);
    let config = sensori_config(&relay.url(), 10);
    let server = start_subscribed(&config);

    // Stored, but not acknowledged: the broker still has every one of them in flight (150 of
    // each kind: 750, within mosquitto.conf's max_inflight_messages).
    relay.withhold_acks(true);
    let per_kind = 150;
    let messages: Vec<(String, Vec<u8>)> = (0..per_kind)
        .flat_map(|seq| (0..KINDS.len()).map(move |kind| message(kind, seq)))
        .collect();
    publish_all(broker.port, "publisher-1", &messages);
    wait_for("every message stored", Duration::from_secs(120), || {
        KINDS
            .iter()
            .all(|(_, sql)| counts(&server, sql).0 >= per_kind as i64)
    });
    assert_each_kind_once(&server, per_kind);
    server.stop(); // SIGKILL
    // The killed session's last PUBACKs may still sit in the relay's socket: let the relay read
    // them (and leave them out) before it lets acknowledgements through again, or the broker
    // would take them and not deliver those messages again.
    wait_for(
        "the killed session's connection to close",
        Duration::from_secs(30),
        || relay.open_sessions() == 0,
    );
    relay.withhold_acks(false);

    // The next session receives the 750 again, marked as redeliveries.
    let server = Server::start_ready(&config);
    drain(&server, broker.port, 1);
    assert_each_kind_once(&server, per_kind);
    // The broker resends its in-flight messages beside the sentinel, not strictly before it, and
    // a session that drops before its acknowledgements reach the broker gets some once more: the
    // relay counts what the broker really sent again, and each of those must be recognised.
    let expected = (per_kind * KINDS.len()) as u64;
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (sent, recognised) = (relay.redelivered(), redeliveries(&server));
        if sent >= expected && recognised == sent {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the broker sent {sent} messages again ({expected} were in flight); \
             {recognised} were recognised as redeliveries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_each_kind_once(&server, per_kind);

    // Acknowledged now: a restart brings nothing back.
    server.stop();
    let server = Server::start_ready(&config);
    drain(&server, broker.port, 2);
    assert_each_kind_once(&server, per_kind);
}

#[test]
fn sigkill_mid_stream_stores_every_mapping_once() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 10);
    let mut server = start_subscribed(&config);

    let per_kind = 3_000;
    let messages: Vec<(String, Vec<u8>)> = (0..per_kind)
        .flat_map(|seq| (0..KINDS.len()).map(move |kind| message(kind, seq)))
        .collect();
    let port = broker.port;
    let publisher = std::thread::spawn(move || publish_all(port, "publisher-stream", &messages));
    let stored = |server: &Server| {
        KINDS
            .iter()
            .map(|(_, sql)| counts(server, sql).0)
            .sum::<i64>()
    };
    // Three kills at different points of the stream, each followed by a restart.
    for threshold in [1_500, 5_000, 9_000] {
        wait_for("readings to stream in", Duration::from_secs(120), || {
            stored(&server) > threshold
        });
        server.stop(); // SIGKILL
        server = Server::start_ready(&config);
    }
    publisher.join().unwrap();
    drain(&server, broker.port, 1);
    assert_each_kind_once(&server, per_kind);
}
