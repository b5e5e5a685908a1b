//! Readings published at QoS 1 end up, exactly once each, in `sensori.letture`; malformed
//! messages end up in the rejected table with their reason, and the good ones around them are
//! stored. Against a Mosquitto of the test's own and the real binary.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::{Broker, publish_all, reading, sensori_config, start_subscribed, wait_for};

fn count(server: &Server, sql: &str) -> i64 {
    server.rows(sql)[0]["n"].as_i64().unwrap()
}

#[test]
fn n_readings_published_are_n_rows_without_duplicates() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 50);
    let server = start_subscribed(&config);

    let total = 12_000;
    let messages: Vec<(String, Vec<u8>)> = (0..total).map(|n| reading(n, 50)).collect();
    publish_all(broker.port, "publisher-1", &messages);
    // A device that sends some readings twice (a QoS 1 redelivery looks the same): same sensor,
    // metric and time, so the same reading.
    publish_all(broker.port, "publisher-2", &messages[..500]);

    wait_for("every reading", Duration::from_secs(120), || {
        count(&server, "SELECT count(*) AS n FROM sensori.letture") >= total as i64
    });
    let distinct = server.rows(
        "SELECT (SELECT count(*) FROM sensori.letture) AS n, \
         (SELECT count(*) FROM (SELECT DISTINCT sensor_id, metric, ts FROM sensori.letture)) AS d, \
         (SELECT min(ts) FROM sensori.letture) AS first",
    );
    assert_eq!(distinct[0]["n"], total as i64, "{distinct:?}");
    assert_eq!(distinct[0]["d"], total as i64, "{distinct:?}");
    // The payload's time is the reading's time.
    assert!(
        distinct[0]["first"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:20"),
        "{distinct:?}"
    );
    let per_sensor = server.rows("SELECT sensor_id, count(*) AS n FROM sensori.letture GROUP BY sensor_id ORDER BY n DESC LIMIT 1");
    assert_eq!(per_sensor[0]["n"], (total / 50) as i64);

    // The WAL is compacted into day partitions, and the hourly rollups follow.
    wait_for("the hourly rollups", Duration::from_secs(60), || {
        count(
            &server,
            "SELECT coalesce(sum(readings), 0) AS n FROM sensori.letture_orarie",
        ) == total as i64
    });
    // Each rollup row (built up compaction by compaction) agrees with the raw rows of its hour.
    let check = server.rows(
        "WITH raw AS (SELECT sensor_id, metric, date_trunc('hour', ts) AS hour, count(*) AS c, \
         avg(value) AS a, min(value) AS lo, max(value) AS hi FROM sensori.letture GROUP BY 1, 2, 3) \
         SELECT (SELECT count(*) FROM raw) AS groups, (SELECT count(*) FROM sensori.letture_orarie) AS rollups, \
         (SELECT count(*) FROM raw JOIN sensori.letture_orarie o ON o.sensor_id = raw.sensor_id \
          AND o.metric = raw.metric AND o.hour = raw.hour WHERE o.readings = raw.c \
          AND abs(o.value_avg - raw.a) < 1e-9 AND o.value_min = raw.lo AND o.value_max = raw.hi) AS agreeing",
    );
    assert!(check[0]["groups"].as_i64().unwrap() > 50, "{check:?}");
    assert_eq!(check[0]["rollups"], check[0]["groups"], "{check:?}");
    assert_eq!(check[0]["agreeing"], check[0]["groups"], "{check:?}");
    let status = server.table_status("sensori.letture");
    assert_eq!(status["rows"], total as i64, "{status}");
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("cruscotto_mqtt_readings_duplicate_total"),
        "{metrics}"
    );

    // What was acknowledged is durable: a restart serves the same rows from disk.
    server.stop();
    let server = Server::start_ready(&config);
    assert_eq!(
        count(&server, "SELECT count(*) AS n FROM sensori.letture"),
        total as i64
    );
}

#[test]
fn malformed_messages_are_rejected_with_their_reason_and_the_rest_is_stored() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 10);
    let server = start_subscribed(&config);

    let message = |topic: &str, payload: &str| (topic.to_string(), payload.as_bytes().to_vec());
    let messages = vec![
        message(
            "city/probe/s-1/latency_ms",
            r#"{"v": 12.5, "t": 1700000000}"#,
        ),
        message("city/probe/s-1/latency_ms", "latency=12"),
        message("city/probe/s-2/latency_ms", r#"{"v": 13, "t": 1700000001}"#),
        message(
            "city/probe/s-2/latency_ms",
            r#"{"valore": 13, "t": 1700000002}"#,
        ),
        message(
            "city/probe/s-3/latency_ms",
            r#"{"v": "alta", "t": 1700000003}"#,
        ),
        message(
            "city/probe/ghost-9/latency_ms",
            r#"{"v": 1, "t": 1700000004}"#,
        ),
        message("senml/s-4", r#"{"n": "pm10", "v": 20}"#),
        message(
            "senml/s-4",
            r#"[{"bn": "s-4/", "bt": 1700000000, "bu": "ug/m3", "n": "pm10", "v": 21.5}, {"n": "pm2_5", "v": 11}]"#,
        ),
        message("city/probe/s-3/latency_ms", r#"{"v": 14, "t": 1700000005}"#),
        message("city/probe/s-5", r#"{"v": 1}"#),
    ];
    publish_all(broker.port, "publisher-bad", &messages);

    wait_for("the rejected messages", Duration::from_secs(60), || {
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.letture_scartate",
        ) + count(
            &server,
            "SELECT count(*) AS n FROM sensori.ambiente_scartate",
        ) == 6
    });
    wait_for("the good readings", Duration::from_secs(60), || {
        count(&server, "SELECT count(*) AS n FROM sensori.letture") == 3
    });
    let good = server.rows("SELECT sensor_id, value FROM sensori.letture ORDER BY ts");
    assert_eq!(
        good.iter()
            .map(|r| r["value"].as_f64().unwrap())
            .collect::<Vec<_>>(),
        vec![12.5, 13.0, 14.0]
    );
    let senml =
        server.rows("SELECT sensor_id, metric, value, unit FROM sensori.ambiente ORDER BY metric");
    assert_eq!(senml.len(), 2, "{senml:?}");
    assert_eq!(
        (senml[0]["metric"].as_str(), senml[0]["unit"].as_str()),
        (Some("pm10"), Some("ug/m3"))
    );
    assert_eq!(
        (
            senml[1]["metric"].as_str(),
            senml[1]["value"].as_f64(),
            senml[1]["unit"].as_str()
        ),
        (Some("pm2_5"), Some(11.0), Some("ug/m3"))
    );

    let rejected = server.rows(
        "SELECT topic, error_kind, reason, payload FROM sensori.letture_scartate \
         UNION ALL SELECT topic, error_kind, reason, payload FROM sensori.ambiente_scartate ORDER BY error_kind, topic",
    );
    let kinds: Vec<(&str, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["error_kind"].as_str().unwrap(),
                r["topic"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("missing_field", "city/probe/s-2/latency_ms"),
            ("not_json", "city/probe/s-1/latency_ms"),
            ("not_senml", "senml/s-4"),
            ("topic", "city/probe/s-5"),
            ("unknown_sensor", "city/probe/ghost-9/latency_ms"),
            ("wrong_type", "city/probe/s-3/latency_ms"),
        ]
    );
    let reason = |kind: &str| {
        rejected.iter().find(|r| r["error_kind"] == kind).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason("missing_field"), "missing field `value` (/v)");
    assert!(
        reason("wrong_type").contains("expected a number, found a string \"alta\""),
        "{}",
        reason("wrong_type")
    );
    assert!(
        reason("unknown_sensor").contains("`ghost-9`")
            && reason("unknown_sensor").contains("registro.sensori"),
        "{}",
        reason("unknown_sensor")
    );
    assert!(
        reason("not_json").starts_with("not JSON"),
        "{}",
        reason("not_json")
    );
    assert_eq!(
        rejected
            .iter()
            .find(|r| r["error_kind"] == "not_json")
            .unwrap()["payload"],
        "latency=12"
    );

    let status = server.table_status("sensori.letture");
    assert_eq!(
        (status["rows"].as_i64(), status["rejected"].as_i64()),
        (Some(3), Some(5)),
        "{status}"
    );
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cruscotto_mqtt_rejected_total")
                && l.contains("reason=\"unknown_sensor\"")),
        "{metrics}"
    );
}
