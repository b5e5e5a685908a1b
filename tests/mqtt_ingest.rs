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

#[test]
fn readings_sharing_a_key_are_stored_once_or_rejected_as_conflict() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 10);
    let server = start_subscribed(&config);

    // Each first reading, then for the same sensor, metric and time: another value (a conflict),
    // the same value in other bytes, or the very same bytes (both the same reading again).
    let total = 90;
    let mut messages = Vec::new();
    for n in 0..total {
        let topic = format!("city/probe/s-{}/latency_ms", n % 10);
        let t = 1_700_100_000 + n;
        let first = format!(r#"{{"seq": 1, "v": {n}, "t": {t}}}"#);
        let again = match n % 3 {
            0 => format!(r#"{{"seq": 2, "v": {}, "t": {t}}}"#, n + 1_000),
            1 => format!(r#"{{"seq": 2, "v": {n}, "t": {t}}}"#),
            _ => first.clone(),
        };
        messages.push((topic.clone(), first.into_bytes()));
        messages.push((topic, again.into_bytes()));
    }
    // The example of the report, last.
    messages.push((
        "city/probe/s-1/people".into(),
        br#"{"seq":1,"v":10,"t":1700000000}"#.to_vec(),
    ));
    messages.push((
        "city/probe/s-1/people".into(),
        br#"{"seq":2,"v":20,"t":1700000000}"#.to_vec(),
    ));
    publish_all(broker.port, "publisher-conflicts", &messages);

    let conflicts = (total / 3 + 1) as i64;
    wait_for("the conflicts", Duration::from_secs(60), || {
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.letture_scartate WHERE error_kind = 'conflict'",
        ) == conflicts
    });
    wait_for("the readings", Duration::from_secs(60), || {
        count(&server, "SELECT count(*) AS n FROM sensori.letture") == total as i64 + 1
    });
    // The first value of each reading is the one stored, once.
    let stored = server.rows(
        "SELECT count(*) AS n, count(DISTINCT ts) AS d, max(value) AS hi FROM sensori.letture",
    );
    assert_eq!(stored[0]["d"], total as i64 + 1, "{stored:?}");
    assert_eq!(
        stored[0]["hi"].as_f64(),
        Some((total - 1) as f64),
        "{stored:?}"
    );
    // Every conflicting message is in the rejected table, whole, with what it conflicts with.
    let rejected = server.rows(
        "SELECT topic, reason, payload FROM sensori.letture_scartate WHERE error_kind = 'conflict' ORDER BY received_at",
    );
    for (i, row) in rejected.iter().take(total / 3).enumerate() {
        let n = i * 3;
        assert_eq!(
            row["payload"],
            format!(
                r#"{{"seq": 2, "v": {}, "t": {}}}"#,
                n + 1_000,
                1_700_100_000 + n
            ),
            "{row}"
        );
        let reason = row["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("sensor `s-{}`", n % 10))
                && reason.contains("metric `latency_ms`")
                && reason.contains("other values"),
            "{reason}"
        );
    }
    assert_eq!(
        rejected.last().unwrap()["payload"],
        r#"{"seq":2,"v":20,"t":1700000000}"#
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.letture_scartate"
        ),
        conflicts,
        "the same reading again is not a rejection"
    );
}

#[test]
fn senml_packs_are_read_by_the_rules_of_rfc_8428() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 10);
    let server = start_subscribed(&config);

    let pack = |json: &str| ("senml/s-1".to_string(), json.as_bytes().to_vec());
    // 13 records, several sharing name and time: all are readings.
    let mut thirteen = vec![r#"{"bn":"s-1/","bt":1700300000,"n":"pm10","v":0}"#.to_string()];
    for i in 1..13 {
        thirteen.push(format!(
            r#"{{"n":"{}","v":{i}}}"#,
            ["pm10", "pm2_5", "no2"][i % 3]
        ));
    }
    let valid = [
        // The base name alone is the name (§4.5.1).
        pack(r#"[{"bn":"s-1","bt":1700300100,"u":"Cel","v":23.1}]"#),
        pack(&format!("[{}]", thirteen.join(","))),
        // A data value and a string value with the same text (§4.2).
        pack(r#"[{"bn":"s-1/","bt":1700300200,"n":"blob","vd":"AQID"},{"n":"note","vs":"AQID"}]"#),
    ];
    let invalid = [
        (pack(r#"[{"bn":"s-1/","n":"pm 10","v":1}]"#), "not_senml"),
        (pack(r#"[{"bn":"s-1/","n":"pm10#","v":1}]"#), "not_senml"),
        (
            pack(r#"[{"bn":"s-1/","bver":11,"n":"pm10","v":1}]"#),
            "not_senml",
        ),
        (
            pack(r#"[{"bn":"s-1/","bver":0,"n":"pm10","v":1}]"#),
            "not_senml",
        ),
        (
            pack(r#"[{"bn":"s-1/","n":"pm10","v":1,"vs":"1"}]"#),
            "not_senml",
        ),
        (
            pack(r#"[{"bn":"s-1/","n":"pm10","vb":true,"vd":"AA"}]"#),
            "not_senml",
        ),
        (
            pack(r#"[{"bn":"s-1/","n":"pm10","vd":"AQ=="}]"#),
            "not_senml",
        ),
        // −1,700,000,005 s from now is relative (§4.5.3), and lands in 1969.
        (
            pack(r#"[{"bn":"s-1/","n":"pm10","t":-1700000005,"v":1}]"#),
            "implausible_time",
        ),
        (
            pack(r#"[{"bn":"s-1/","n":"pm10","bt":4102444800,"v":1}]"#),
            "implausible_time",
        ),
    ];
    let mut messages: Vec<(String, Vec<u8>)> = valid.to_vec();
    messages.extend(invalid.iter().map(|(m, _)| m.clone()));
    publish_all(broker.port, "publisher-senml", &messages);

    wait_for("the rejected packs", Duration::from_secs(60), || {
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.ambiente_scartate",
        ) == invalid.len() as i64
    });
    wait_for("the readings", Duration::from_secs(60), || {
        count(&server, "SELECT count(*) AS n FROM sensori.ambiente") == 1 + 13 + 2
    });
    let alone = server.rows(
        "SELECT sensor_id, metric, name, value, unit FROM sensori.ambiente WHERE name = 's-1'",
    );
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert_eq!(
        (
            alone[0]["sensor_id"].as_str(),
            alone[0]["metric"].as_str(),
            alone[0]["value"].as_f64(),
            alone[0]["unit"].as_str()
        ),
        (Some("s-1"), Some(""), Some(23.1), Some("Cel"))
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) AS n FROM sensori.ambiente WHERE ts = to_timestamp(1700300000) AND metric = 'pm10'"
        ),
        5
    );
    let data = server.rows(
        "SELECT metric, value_text, value_data FROM sensori.ambiente WHERE ts = to_timestamp(1700300200) ORDER BY metric",
    );
    assert_eq!(
        (
            data[0]["value_data"].as_str(),
            data[0]["value_text"].as_str()
        ),
        (Some("AQID"), None),
        "{data:?}"
    );
    assert_eq!(
        (
            data[1]["value_data"].as_str(),
            data[1]["value_text"].as_str()
        ),
        (None, Some("AQID")),
        "{data:?}"
    );
    let rejected = server
        .rows("SELECT error_kind, payload FROM sensori.ambiente_scartate ORDER BY received_at");
    for ((message, kind), row) in invalid.iter().zip(&rejected) {
        assert_eq!(
            (row["error_kind"].as_str(), row["payload"].as_str()),
            (Some(*kind), std::str::from_utf8(&message.1).ok()),
            "{row}"
        );
    }
}
