//! A message larger than `max_payload`, up to the 50 MB tried here, is acknowledged and
//! recorded in the rejected table (`too_large`, its first bytes kept), and the readings around
//! it are stored: no message can stop ingestion. Against a Mosquitto of the test's own and the
//! real binary.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::{Broker, publish_all, reading, sensori_config, start_subscribed, wait_for};

const MIB: usize = 1 << 20;

fn count(server: &Server, sql: &str) -> i64 {
    server.rows(sql)[0]["n"].as_i64().unwrap()
}

/// A payload of exactly `size` bytes: a valid reading padded with a field no column reads, or
/// bytes that are not even text.
fn payload(size: usize, n: usize, binary: bool) -> Vec<u8> {
    if binary {
        return (0..size).map(|i| (i * 7 + n) as u8 | 0x80).collect();
    }
    let head = format!(r#"{{"v": {n}.25, "t": {}, "pad": ""#, 1_700_500_000 + n);
    let mut bytes = head.into_bytes();
    bytes.resize(size - 2, b'x');
    bytes.extend_from_slice(b"\"}");
    bytes
}

#[test]
fn oversized_messages_are_rejected_and_ingestion_goes_on() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 10);
    let server = start_subscribed(&config);

    // (size, binary, topic): around the 1 MiB default limit, 2 MB and 50 MB, JSON and binary,
    // on the JSON table and on the SenML table.
    let json = |n: usize| format!("city/probe/s-{}/download_mbps", n % 10);
    let cases: Vec<(usize, bool, String)> = vec![
        (MIB + 1, false, json(1)),
        (2_000_000, false, json(2)),
        (2_000_000, true, json(3)),
        (MIB + 1, true, "senml/s-4".into()),
        (3 * MIB, false, "senml/s-5".into()),
        (50_000_000, false, json(6)),
        (50_000_000, true, json(7)),
    ];
    let mut messages = Vec::new();
    let mut valid = 0;
    // A reading exactly at the limit is read as usual.
    messages.push((json(0), payload(MIB, 999, false)));
    valid += 1;
    for (i, (size, binary, topic)) in cases.iter().enumerate() {
        messages.push(reading(i * 2, 10));
        messages.push((topic.clone(), payload(*size, i, *binary)));
        messages.push(reading(i * 2 + 1, 10));
        valid += 2;
    }
    publish_all(broker.port, "publisher-big", &messages);

    wait_for("the oversized messages", Duration::from_secs(120), || {
        count(
            &server,
            "SELECT count(*) AS n FROM (SELECT * FROM sensori.letture_scartate UNION ALL SELECT * FROM sensori.ambiente_scartate)",
        ) == cases.len() as i64
    });
    wait_for("the readings around them", Duration::from_secs(120), || {
        count(&server, "SELECT count(*) AS n FROM sensori.letture") == valid
    });
    let rejected = server.rows(
        "SELECT topic, error_kind, reason, payload FROM \
         (SELECT * FROM sensori.letture_scartate UNION ALL SELECT * FROM sensori.ambiente_scartate) \
         ORDER BY received_at",
    );
    for ((size, binary, topic), row) in cases.iter().zip(&rejected) {
        assert_eq!(row["topic"], topic.as_str(), "{row}");
        assert_eq!(row["error_kind"], "too_large", "{row}");
        let reason = row["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("payload of {size} bytes")) && reason.contains("max_payload"),
            "{reason}"
        );
        // Its first bytes are kept, and no more than the rejected table keeps of any payload.
        let kept = row["payload"].as_str().unwrap();
        assert!(
            kept.len() <= 2048 + 3 && kept.ends_with('…'),
            "{}",
            kept.len()
        );
        if !binary {
            let i = cases
                .iter()
                .position(|c| c.2 == *topic && c.0 == *size)
                .unwrap();
            let head = String::from_utf8(payload(*size, i, false)[..200].to_vec()).unwrap();
            assert!(kept.starts_with(&head), "{kept:.300}");
        }
    }
    // The reading exactly at the limit is stored; the session never broke.
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.letture WHERE value = 999.25"
        ),
        1
    );
    let status = server.table_status("sensori.letture");
    assert_eq!(status["state"], "fresh", "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cruscotto_mqtt_rejected_total") && l.contains("too_large")),
        "{metrics}"
    );

    // Acknowledged, not waiting in the session: a restart brings none of them back.
    server.stop();
    let server = Server::start_ready(&config);
    publish_all(broker.port, "publisher-after", &[reading(1_000, 10)]);
    wait_for(
        "a reading after the restart",
        Duration::from_secs(60),
        || count(&server, "SELECT count(*) AS n FROM sensori.letture") == valid + 1,
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.letture_scartate WHERE error_kind = 'too_large'"
        ),
        cases.iter().filter(|c| c.2.starts_with("city/")).count() as i64
    );
}
