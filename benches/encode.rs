//! JSON encoding of a query result: cruscotto's encoder (`api::format::encode`) against Arrow's
//! own JSON writer, on a result shaped like query (b) of `benches/sql.rs` (hour, metric, average).
//! `cargo bench --bench encode [-- ROWS]`.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use cruscotto::api::format::{Format, encode};
use cruscotto::query::QueryResult;

const RUNS: usize = 200;

fn result(rows: usize) -> QueryResult {
    let metrics = [
        "clients",
        "download_mbps",
        "upload_mbps",
        "latency_ms",
        "people",
    ];
    let hours = TimestampMicrosecondArray::from_iter_values(
        (0..rows as i64).map(|i| 1_709_251_200_000_000 + (i / 5) * 3_600_000_000),
    );
    let metric = StringArray::from_iter_values((0..rows).map(|i| metrics[i % 5]));
    let value = Float64Array::from_iter_values((0..rows).map(|i| 1.0 / 3.0 + i as f64 * 1.7));
    let batch = RecordBatch::try_from_iter([
        ("hour", Arc::new(hours) as ArrayRef),
        ("metric", Arc::new(metric) as ArrayRef),
        ("avg_value", Arc::new(value) as ArrayRef),
    ])
    .expect("batch");
    QueryResult {
        schema: batch.schema(),
        batches: vec![batch],
    }
}

fn median_micros(mut run: impl FnMut() -> usize) -> (f64, usize) {
    let mut bytes = 0;
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            bytes = std::hint::black_box(run());
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[RUNS / 2], bytes)
}

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3_600);
    let result = result(rows);
    let batch = &result.batches[0];
    let (ours, ours_bytes) = median_micros(|| encode(&result, Format::Json).expect("encode").len());
    let (arrow, arrow_bytes) = median_micros(|| {
        let mut out = Vec::new();
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut out);
        writer.write(batch).expect("write");
        writer.finish().expect("finish");
        drop(writer);
        out.len()
    });
    println!("JSON encoding of {rows} rows (hour, metric, avg_value), median of {RUNS} runs:");
    println!(
        "  cruscotto encode:   {ours:>8.1} µs  ({:.0} ns/row, {ours_bytes} bytes)",
        ours * 1000.0 / rows as f64
    );
    println!(
        "  arrow_json writer:  {arrow:>8.1} µs  ({:.0} ns/row, {arrow_bytes} bytes)",
        arrow * 1000.0 / rows as f64
    );
    println!("  ratio: {:.2}×", ours / arrow);
}
