//! Messages to rows: JSON fields, SenML columns, rejections, the plausible time window.
use super::*;
use crate::connectors::ConnectorConfig;
use std::path::Path;

fn table(extra: &str) -> MqttTableConfig {
    let text = format!(
        "kind = \"mqtt\"\nbroker = \"mqtt://h\"\nclient_id = \"c\"\n[[table]]\nname = \"letture\"\ntopics = [\"b/#\"]\n{extra}"
    );
    let ConnectorConfig::Mqtt(config) = ConnectorConfig::parse(Path::new("s.toml"), &text).unwrap()
    else {
        panic!()
    };
    config.tables[0].clone()
}

fn json_layout() -> Layout {
    Layout::new(&table(
        "topic_pattern = \"b/+/{sensor_id}/{metric}\"\nformat = \"json\"\n\
         fields = { value = { pointer = \"/v\", type = \"float\" }, ts = { pointer = \"/t\", type = \"timestamp\", optional = true }, \
         unit = { pointer = \"/meta/u\", type = \"text\", optional = true } }\n",
    ))
    .unwrap()
}

const ARRIVAL: i64 = 1_700_000_000_000_000;

#[test]
fn json_fields_and_topic_levels_become_columns() {
    let layout = json_layout();
    let names: Vec<String> = layout
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        vec!["sensor_id", "metric", "unit", "value", "ts", "received_at"]
    );
    assert_eq!(layout.dedupe_columns(), vec!["sensor_id", "metric", "ts"]);
    let rows = layout
        .decode(
            "b/probe/sonda-1/latency_ms",
            br#"{"v": 12, "t": 1700000001.5, "meta": {"u": "ms"}}"#,
            ARRIVAL,
        )
        .unwrap();
    assert_eq!(
        rows[0],
        vec![
            Cell::Text("sonda-1".into()),
            Cell::Text("latency_ms".into()),
            Cell::Text("ms".into()),
            Cell::Float(12.0),
            Cell::Time(1_700_000_001_500_000),
            Cell::Time(ARRIVAL)
        ]
    );
    // No time in the payload: the arrival time. RFC 3339 times are read too.
    let rows = layout
        .decode("b/probe/sonda-1/latency_ms", br#"{"v": 1.5}"#, ARRIVAL)
        .unwrap();
    assert_eq!(
        (rows[0][2].clone(), rows[0][4].clone()),
        (Cell::Null, Cell::Time(ARRIVAL))
    );
    let rows = layout
        .decode(
            "b/probe/s/m",
            br#"{"v": 1, "t": "2023-11-14T22:13:20Z"}"#,
            ARRIVAL + 1,
        )
        .unwrap();
    assert_eq!(rows[0][4], Cell::Time(ARRIVAL));
    let batch = layout.batch(&rows).unwrap();
    assert_eq!(batch.num_rows(), 1);
}

#[test]
fn json_rejections_name_the_field() {
    let layout = json_layout();
    let reject = |topic: &str, payload: &[u8]| layout.decode(topic, payload, ARRIVAL).unwrap_err();
    let not_json = reject("b/p/s/m", b"v=12");
    assert_eq!(not_json.kind, RejectKind::NotJson);
    let missing = reject("b/p/s/m", br#"{"valore": 12}"#);
    assert_eq!(
        (missing.kind, missing.reason.as_str()),
        (RejectKind::MissingField, "missing field `value` (/v)")
    );
    let wrong = reject("b/p/s/m", br#"{"v": "dodici"}"#);
    assert_eq!(wrong.kind, RejectKind::WrongType);
    assert_eq!(
        wrong.reason,
        "field `value` (/v): expected a number, found a string \"dodici\""
    );
    assert_eq!(reject("b/p/s/m", b"[1,2]").kind, RejectKind::WrongType);
    assert_eq!(reject("b/p/s", br#"{"v": 1}"#).kind, RejectKind::Topic);
    assert_eq!(
        reject("b/p/s/m", br#"{"v": 1, "t": "ieri"}"#).kind,
        RejectKind::WrongType
    );
}

#[test]
fn senml_records_become_rows_per_sensor_and_metric() {
    let layout = Layout::new(&table(
        "topic_pattern = \"b/{zona}/#\"\nformat = \"senml\"\n",
    ))
    .unwrap();
    let names: Vec<String> = layout
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        vec![
            "zona",
            "sensor_id",
            "metric",
            "name",
            "value",
            "value_text",
            "value_bool",
            "value_data",
            "unit",
            "ts",
            "received_at"
        ]
    );
    let rows = layout
        .decode("b/navile/x", br#"[{"bn":"amb-3/","bt":1700000000,"bu":"ug/m3","n":"pm10","v":21.5},{"n":"pm2_5","v":12}]"#, ARRIVAL)
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1][..5],
        [
            Cell::Text("navile".into()),
            Cell::Text("amb-3".into()),
            Cell::Text("pm2_5".into()),
            Cell::Text("amb-3/pm2_5".into()),
            Cell::Float(12.0)
        ]
    );
    assert_eq!(rows[1][8], Cell::Text("ug/m3".into()));
    assert_eq!(rows[1][9], Cell::Time(1_700_000_000_000_000));
    // Without a base name and without `{sensor_id}` in the topic, there is no sensor.
    let error = layout
        .decode("b/navile", br#"[{"n":"pm10","v":1}]"#, ARRIVAL)
        .unwrap_err();
    assert_eq!(error.kind, RejectKind::MissingField);
}

fn senml_layout() -> Layout {
    Layout::new(&table(
        "topic_pattern = \"b/{sensor_id}\"\nformat = \"senml\"\n",
    ))
    .unwrap()
}

fn column(layout: &Layout, row: &[Cell], name: &str) -> Cell {
    row[layout.schema().index_of(name).unwrap()].clone()
}

#[test]
fn a_senml_base_name_alone_names_the_record() {
    let layout = senml_layout();
    let rows = layout
        .decode("b/amb-3", br#"[{"bn":"amb-3","v":21.5}]"#, ARRIVAL)
        .unwrap();
    assert_eq!(
        column(&layout, &rows[0], "sensor_id"),
        Cell::Text("amb-3".into())
    );
    assert_eq!(
        column(&layout, &rows[0], "metric"),
        Cell::Text(String::new())
    );
    assert_eq!(
        column(&layout, &rows[0], "name"),
        Cell::Text("amb-3".into())
    );
    assert_eq!(column(&layout, &rows[0], "value"), Cell::Float(21.5));
    // With `{metric}` in the topic, that is the metric.
    let layout = Layout::new(&table(
        "topic_pattern = \"b/{sensor_id}/{metric}\"\nformat = \"senml\"\n",
    ))
    .unwrap();
    let rows = layout
        .decode("b/amb-3/pm10", br#"[{"bn":"amb-3/","v":21.5}]"#, ARRIVAL)
        .unwrap();
    assert_eq!(
        column(&layout, &rows[0], "metric"),
        Cell::Text("pm10".into())
    );
    assert_eq!(
        column(&layout, &rows[0], "name"),
        Cell::Text("amb-3/".into())
    );
}

#[test]
fn senml_data_and_string_values_land_in_their_own_columns() {
    let layout = senml_layout();
    let rows = layout
        .decode(
            "b/d",
            br#"[{"bn":"d/","n":"x","vd":"AQID"},{"n":"x","vs":"AQID"}]"#,
            ARRIVAL,
        )
        .unwrap();
    assert_eq!(
        (
            column(&layout, &rows[0], "value_data"),
            column(&layout, &rows[0], "value_text")
        ),
        (Cell::Text("AQID".into()), Cell::Null)
    );
    assert_eq!(
        (
            column(&layout, &rows[1], "value_data"),
            column(&layout, &rows[1], "value_text")
        ),
        (Cell::Null, Cell::Text("AQID".into()))
    );
    assert_eq!(layout.batch(&rows).unwrap().num_rows(), 2);
}

#[test]
fn times_outside_the_plausible_window_are_rejected() {
    const SECOND: i64 = 1_000_000;
    let hour = 3_600 * SECOND;
    let year = 365 * 86_400 * SECOND;
    let json = json_layout();
    let senml = senml_layout();
    // Offsets from the arrival: the window is [-10 years, +1 hour] by default.
    for (offset, plausible) in [
        (0, true),
        (-SECOND, true),
        (hour, true),
        (hour + SECOND, false),
        (2 * hour, false),
        (-9 * year, true),
        (-10 * year - SECOND, false),
        (-ARRIVAL - 5 * SECOND, false), // 1969-12-31T23:59:55
    ] {
        let seconds = (ARRIVAL + offset) as f64 / 1e6;
        let payload = format!(r#"{{"v": 1, "t": {seconds}}}"#);
        let result = json.decode("b/p/s/m", payload.as_bytes(), ARRIVAL);
        assert_eq!(result.is_ok(), plausible, "json {payload}: {result:?}");
        if let Err(rejection) = result {
            assert_eq!(rejection.kind, RejectKind::ImplausibleTime);
            assert!(
                rejection.reason.contains("plausible window"),
                "{}",
                rejection.reason
            );
        }
        // SenML: absolute times, and the same offsets as relative times (§4.5.3).
        // (An absolute time is at least 2^28 s: 1969 can only be reached relatively.)
        let absolute =
            (seconds >= 268_435_456.0).then(|| format!(r#"[{{"bn":"s","bt":{seconds},"v":1}}]"#));
        let relative = format!(r#"[{{"bn":"s","t":{},"v":1}}]"#, offset as f64 / 1e6);
        for pack in absolute.into_iter().chain([relative]) {
            let result = senml.decode("b/s", pack.as_bytes(), ARRIVAL);
            assert_eq!(result.is_ok(), plausible, "senml {pack}: {result:?}");
            if let Err(rejection) = result {
                assert_eq!(rejection.kind, RejectKind::ImplausibleTime, "{pack}");
            }
        }
    }
    // The window is the table's to set.
    let narrow = Layout::new(&table(
        "topic_pattern = \"b/{sensor_id}\"\nformat = \"senml\"\nmax_age = \"1h\"\nmax_ahead = \"0s\"\n",
    ))
    .unwrap();
    assert!(
        narrow
            .decode("b/s", br#"[{"bn":"s","t":-3599,"v":1}]"#, ARRIVAL)
            .is_ok()
    );
    assert!(
        narrow
            .decode("b/s", br#"[{"bn":"s","t":-3601,"v":1}]"#, ARRIVAL)
            .is_err()
    );
    assert!(
        narrow
            .decode("b/s", br#"[{"bn":"s","t":1,"v":1}]"#, ARRIVAL)
            .is_err()
    );
}

#[test]
fn pointers_read_as_serde_json_reads_them() {
    let document: Value = serde_json::json!({
        "v": 1.5, "a/b": 2, "m~n": 3, "list": [10, 20, {"x": "y"}], "": 4, "nested": {"deep": {"k": true}}
    });
    for p in [
        "",
        "/v",
        "/a~1b",
        "/m~0n",
        "/list/0",
        "/list/2/x",
        "/list/01",
        "/list/+1",
        "/list/3",
        "/list/x",
        "/",
        "/nested/deep/k",
        "/nested/missing",
        "v",
        "/v/0",
    ] {
        assert_eq!(pointer(&document, p), document.pointer(p), "{p}");
    }
}
