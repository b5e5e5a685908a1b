//! Everything the service publishes below analyst, collected through the real binary: the public
//! dashboards' data (JSON and CSV) and map layers, and every partner dataset in every format
//! (JSON pages, CSV, Arrow IPC, Parquet). Also the check that no value lies under a NULL in the
//! raw buffers of a binary download.
#![allow(dead_code)]

use std::io::Cursor;

use arrow::array::{Array, ArrayData, RecordBatch};
use arrow::datatypes::DataType;
use serde_json::{Map, Value};

use crate::common::{ConfigDir, Server};

/// The demo with keys required, dashboards public, and `min_count` as given.
pub fn secured(min_count: u64) -> ConfigDir {
    let config = ConfigDir::demo();
    let toml = std::fs::read_to_string(config.config_file()).unwrap();
    assert!(toml.contains("min_count = 10"), "the demo sets min_count");
    assert!(
        toml.contains("timeout = \"30s\""),
        "the demo sets a query timeout"
    );
    // These tests compare every published cell with the raw rows of the demo's heaviest views
    // (the city summary plans the divide index three times), in the unoptimised test build on
    // a machine that may be busy: the time limit is not what they check.
    let toml = toml
        .replace("anonymous = \"analyst\"", "anonymous = \"none\"")
        .replace("min_count = 10", &format!("min_count = {min_count}"))
        .replace("timeout = \"30s\"", "timeout = \"300s\"");
    config.write("cruscotto.toml", &toml);
    // The simulated sensors keep their week of history but send nothing live: the tests compare
    // values published at one moment with raw rows read at another, and a probe's new reading
    // in between would change a connectivity score under them.
    let sensors = std::fs::read_to_string(config.path().join("connectors/sensori.toml")).unwrap();
    assert!(
        sensors.contains("\nrate = 5\n"),
        "the demo's sensors send 5 a second"
    );
    config.write(
        "connectors/sensori.toml",
        &sensors.replace("\nrate = 5\n", "\nrate = 0\n"),
    );
    config
}

/// The key alone (see `common::create_key`).
pub fn create_key(config: &ConfigDir, role: &str, datasets: &str) -> String {
    crate::common::create_key(config, role, datasets).1
}

/// The dataset names and their saved queries, from `datasets/*.toml`.
pub fn datasets(config: &ConfigDir) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(config.path().join("datasets")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        out.push((name, value["query"].as_str().unwrap().to_string()));
    }
    out.sort();
    out
}

pub fn fetch(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = server.client.get(format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().unwrap()
}

/// One published output: where it came from, the saved query behind it, its rows.
pub struct Output {
    pub name: String,
    pub query: String,
    pub rows: Vec<Map<String, Value>>,
}

/// Every output below analyst: the public dashboards (no key) and the partner's datasets.
pub fn published(server: &Server, config: &ConfigDir, partner: &str) -> Vec<Output> {
    let mut outputs = Vec::new();
    let list: Vec<Value> = fetch(server, "/api/v1/dashboards", None).json().unwrap();
    for dashboard in &list {
        let name = dashboard["name"].as_str().unwrap();
        let definition: Value = fetch(server, &format!("/api/v1/dashboards/{name}"), None)
            .json()
            .unwrap();
        let map = &definition["dashboard"]["map"];
        let mut layers: Vec<&str> = map["points"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["query"].as_str().unwrap())
            .collect();
        layers.extend(map["areas"]["query"].as_str());
        for query in definition["queries"].as_object().unwrap().keys() {
            let base = format!("/api/v1/dashboards/{name}/data/{query}");
            let response = fetch(server, &base, None);
            if response.status() == 400 {
                continue; // the view needs a source the demo does not have (sensors, logs)
            }
            assert_eq!(response.status(), 200, "{base}");
            let rows: Vec<Map<String, Value>> = response.json().unwrap();
            outputs.push(output(&base, query, rows));
            let csv = fetch(server, &format!("{base}?format=csv"), None)
                .text()
                .unwrap();
            outputs.push(output(&format!("{base}?format=csv"), query, csv_rows(&csv)));
        }
        for query in layers {
            let path = format!("/api/v1/dashboards/{name}/layers/{query}");
            let response = fetch(server, &path, None);
            if response.status() == 400 {
                continue;
            }
            let layer: Value = response.json().unwrap();
            let rows = layer["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["properties"].as_object().unwrap().clone())
                .collect();
            outputs.push(output(&path, query, rows));
        }
    }
    for (dataset, query) in datasets(config) {
        let base = format!("/api/v1/datasets/{dataset}");
        let mut rows = Vec::new();
        let mut next = Some(format!("{base}?limit=7"));
        while let Some(path) = next {
            let page: Value = fetch(server, &path, Some(partner)).json().unwrap();
            rows.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_object().unwrap().clone()),
            );
            next = page["links"]["next"].as_str().map(String::from);
        }
        outputs.push(output(&format!("{base} (json pages)"), &query, rows));
        let all = format!("{base}?limit=10000");
        let csv = fetch(server, &format!("{all}&format=csv"), Some(partner))
            .text()
            .unwrap();
        outputs.push(output(&format!("{all}&format=csv"), &query, csv_rows(&csv)));
        for format in ["arrow", "parquet"] {
            let path = format!("{all}&format={format}");
            let body = fetch(server, &path, Some(partner))
                .bytes()
                .unwrap()
                .to_vec();
            let batches = decode(format, &body);
            outputs.push(output(&path, &query, json_rows(&batches)));
        }
    }
    outputs
}

fn output(name: &str, query: &str, rows: Vec<Map<String, Value>>) -> Output {
    Output {
        name: name.to_string(),
        query: query.to_string(),
        rows,
    }
}

/// CSV cells as JSON values: empty = null, numbers as numbers.
pub fn csv_rows(text: &str) -> Vec<Map<String, Value>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, cell)| {
                    let value = if cell.is_empty() {
                        Value::Null
                    } else if let Ok(n) = cell.parse::<f64>() {
                        serde_json::json!(n)
                    } else {
                        Value::String(cell.to_string())
                    };
                    (h.to_string(), value)
                })
                .collect()
        })
        .collect()
}

/// An Arrow IPC stream or a Parquet file, decoded.
pub fn decode(format: &str, body: &[u8]) -> Vec<RecordBatch> {
    match format {
        "arrow" => arrow::ipc::reader::StreamReader::try_new(Cursor::new(body.to_vec()), None)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        "parquet" => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(body.to_vec()),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect(),
        other => panic!("not a binary format: {other}"),
    }
}

/// Values a Parquet file holds that no cell shows: a column chunk's statistics (min, max) that
/// are not among the non-NULL values of that column, as `column: value`. A Parquet page stores
/// no value for a NULL (its definition level says NULL), so the statistics are where a hidden
/// value could still be written; the decoded arrays cannot tell, since the reader leaves its own
/// padding in NULL slots.
pub fn parquet_hidden_values(body: &[u8]) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    let batches = decode("parquet", body);
    let reader = SerializedFileReader::new(bytes::Bytes::from(body.to_vec())).unwrap();
    let visible = |column: usize| -> Vec<f64> {
        batches
            .iter()
            .flat_map(|b| {
                let cast = arrow::compute::cast(b.column(column), &DataType::Float64).unwrap();
                let values =
                    arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(&cast)
                        .clone();
                values.iter().flatten().collect::<Vec<f64>>()
            })
            .collect()
    };
    let mut hidden = Vec::new();
    for group in reader.metadata().row_groups() {
        for (column, chunk) in group.columns().iter().enumerate() {
            let bounds = match chunk.statistics() {
                Some(Statistics::Int32(s)) => [
                    s.min_opt().map(|v| *v as f64),
                    s.max_opt().map(|v| *v as f64),
                ],
                Some(Statistics::Int64(s)) => [
                    s.min_opt().map(|v| *v as f64),
                    s.max_opt().map(|v| *v as f64),
                ],
                Some(Statistics::Double(s)) => [s.min_opt().copied(), s.max_opt().copied()],
                _ => continue,
            };
            let shown = visible(column);
            for bound in bounds.into_iter().flatten() {
                if !shown.contains(&bound) {
                    hidden.push(format!("{}: {bound}", chunk.column_path()));
                }
            }
        }
    }
    hidden
}

/// Rows as JSON objects (binary columns, i.e. geometries, left out), nulls explicit.
pub fn json_rows(batches: &[RecordBatch]) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for batch in batches {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|i| {
                !matches!(
                    batch.schema().field(*i).data_type(),
                    DataType::Binary | DataType::LargeBinary
                )
            })
            .collect();
        let batch = batch.project(&keep).unwrap();
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(Vec::new());
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let text = writer.into_inner();
        if text.is_empty() {
            continue;
        }
        let values: Vec<Map<String, Value>> = serde_json::from_slice(&text).unwrap();
        rows.extend(values);
    }
    rows
}

/// The rows of `column` whose slot in the raw buffers holds something although the cell is NULL.
pub fn values_under_nulls(column: &dyn Array) -> Vec<usize> {
    let data: ArrayData = column.to_data();
    let offset = data.offset();
    let nulls = (0..data.len()).filter(|i| data.is_null(*i));
    match data.data_type() {
        DataType::Null => Vec::new(),
        DataType::Boolean => {
            let bits = data.buffers()[0].as_slice();
            nulls
                .filter(|i| bits[(offset + i) / 8] & (1 << ((offset + i) % 8)) != 0)
                .collect()
        }
        DataType::Utf8 | DataType::Binary => {
            let offsets: &[i32] = data.buffers()[0].typed_data();
            nulls
                .filter(|i| offsets[offset + i] != offsets[offset + i + 1])
                .collect()
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            let offsets: &[i64] = data.buffers()[0].typed_data();
            nulls
                .filter(|i| offsets[offset + i] != offsets[offset + i + 1])
                .collect()
        }
        DataType::Utf8View | DataType::BinaryView => {
            let views: &[u128] = data.buffers()[0].typed_data();
            nulls.filter(|i| views[offset + i] != 0).collect()
        }
        other => {
            let width = other
                .primitive_width()
                .unwrap_or_else(|| panic!("no raw-buffer check for {other}"));
            let bytes = data.buffers()[0].as_slice();
            nulls
                .filter(|i| {
                    bytes[(offset + i) * width..(offset + i + 1) * width]
                        .iter()
                        .any(|b| *b != 0)
                })
                .collect()
        }
    }
}
