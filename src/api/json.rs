//! JSON and NDJSON of results whose columns are all numbers, booleans, strings or timestamps
//! (most SQL results), written row by row straight into one buffer sized from the first rows.
//!
//! The bytes are exactly those of Arrow's JSON writer with explicit nulls (the tests compare the
//! two): the same float and integer formatting (lexical-core, which Arrow uses), the same string
//! escaping (serde_json's), `null` for NaN and infinities. Arrow's writer calls a boxed encoder
//! per value, copies each row through a staging buffer and grows its output by doubling; on the
//! 3,600-row result of `benches/sql.rs` that was most of the time between the query and the
//! response. Any other column type returns `None`, and the caller uses Arrow's writer.

use arrow::array::{Array, AsArray, BooleanArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;

use super::format::FastTimestamps;

/// Rows encoded before the output is sized for the rest.
const SAMPLE_ROWS: usize = 64;

/// One column's values, read without a dynamic call per value (timestamps through the same
/// `FastTimestamps` encoder Arrow's writer is given in `format.rs`).
enum Column<'a> {
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Bool(&'a BooleanArray),
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
    Timestamp(FastTimestamps),
}

impl<'a> Column<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Int8 => Column::I8(array.as_primitive()),
            DataType::Int16 => Column::I16(array.as_primitive()),
            DataType::Int32 => Column::I32(array.as_primitive()),
            DataType::Int64 => Column::I64(array.as_primitive()),
            DataType::UInt8 => Column::U8(array.as_primitive()),
            DataType::UInt16 => Column::U16(array.as_primitive()),
            DataType::UInt32 => Column::U32(array.as_primitive()),
            DataType::UInt64 => Column::U64(array.as_primitive()),
            DataType::Float32 => Column::F32(array.as_primitive()),
            DataType::Float64 => Column::F64(array.as_primitive()),
            DataType::Boolean => Column::Bool(array.as_boolean()),
            DataType::Utf8 => Column::Utf8(array.as_string()),
            DataType::LargeUtf8 => Column::LargeUtf8(array.as_string()),
            DataType::Utf8View => Column::Utf8View(array.as_string_view()),
            DataType::Timestamp(_, _) => Column::Timestamp(FastTimestamps::of(array)?),
            _ => return None,
        })
    }

    /// Writes the value at `row`, which is not null.
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        match self {
            Column::I8(a) => integer(a, row, out),
            Column::I16(a) => integer(a, row, out),
            Column::I32(a) => integer(a, row, out),
            Column::I64(a) => integer(a, row, out),
            Column::U8(a) => integer(a, row, out),
            Column::U16(a) => integer(a, row, out),
            Column::U32(a) => integer(a, row, out),
            Column::U64(a) => integer(a, row, out),
            Column::F32(a) => {
                let value = a.value(row);
                float(value, value.is_finite(), out)
            }
            Column::F64(a) => {
                let value = a.value(row);
                float(value, value.is_finite(), out)
            }
            Column::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
            Column::Utf8(a) => string(a.value(row), out),
            Column::LargeUtf8(a) => string(a.value(row), out),
            Column::Utf8View(a) => string(a.value(row), out),
            Column::Timestamp(t) => arrow::json::Encoder::encode(t, row, out),
        }
    }
}

fn integer<T>(array: &PrimitiveArray<T>, row: usize, out: &mut Vec<u8>)
where
    T: ArrowPrimitiveType,
    T::Native: lexical_core::ToLexical,
{
    let mut buffer = [0u8; lexical_core::BUFFER_SIZE];
    out.extend_from_slice(lexical_core::write(array.value(row), &mut buffer));
}

/// Arrow writes `null` for NaN and the infinities, which JSON cannot represent.
fn float<F: lexical_core::ToLexical>(value: F, finite: bool, out: &mut Vec<u8>) {
    if !finite {
        out.extend_from_slice(b"null");
        return;
    }
    let mut buffer = [0u8; lexical_core::BUFFER_SIZE];
    out.extend_from_slice(lexical_core::write(value, &mut buffer));
}

fn string(value: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
}

/// The body Arrow's JSON writer (`lines` false: a JSON array; true: NDJSON) would write for these
/// batches, or `None` when a column has a type this writer does not cover.
pub fn encode(batches: &[RecordBatch], lines: bool) -> Option<Vec<u8>> {
    // What the format is for no rows (Arrow's JSON writer writes nothing; the API answers `[]`).
    let empty = || Some(if lines { Vec::new() } else { b"[]".to_vec() });
    let Some(first) = batches.first() else {
        return empty();
    };
    // `"name":` for each column, escaped as Arrow escapes it.
    let keys: Vec<Vec<u8>> = first
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let mut key = serde_json::to_vec(f.name()).expect("a string serializes");
            key.push(b':');
            key
        })
        .collect();
    // Each column with its null mask, read once per batch rather than once per value.
    let mut columns_per_batch = Vec::with_capacity(batches.len());
    for batch in batches {
        let columns: Option<Vec<(Column, Option<&NullBuffer>)>> = batch
            .columns()
            .iter()
            .map(|c| Some((Column::of(c.as_ref())?, c.nulls())))
            .collect();
        columns_per_batch.push(columns?);
    }
    let total_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut out = Vec::with_capacity(16 * 1024);
    let mut written_rows = 0;
    for (batch, mut columns) in batches.iter().zip(columns_per_batch) {
        for row in 0..batch.num_rows() {
            if !lines {
                out.push(if written_rows == 0 { b'[' } else { b',' });
            }
            out.push(b'{');
            for (i, ((column, nulls), key)) in columns.iter_mut().zip(&keys).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                if nulls.is_some_and(|n| n.is_null(row)) {
                    out.extend_from_slice(b"null");
                } else {
                    column.write(row, &mut out);
                }
            }
            out.push(b'}');
            if lines {
                out.push(b'\n');
            }
            written_rows += 1;
            if written_rows == SAMPLE_ROWS && total_rows > SAMPLE_ROWS {
                // The rest will look like the rows so far: one allocation instead of doubling.
                let per_row = out.len() / SAMPLE_ROWS;
                out.reserve((total_rows - SAMPLE_ROWS) * per_row * 9 / 8 + 1);
            }
        }
    }
    if written_rows == 0 {
        return empty();
    }
    if !lines {
        out.push(b']');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int64Array,
        LargeStringArray, StringArray, StringViewArray, TimestampMillisecondArray, UInt64Array,
    };
    use arrow::record_batch::RecordBatch;

    use crate::api::format::Format;

    fn arrow_writes(batches: &[RecordBatch], lines: bool) -> String {
        let format = if lines { Format::Ndjson } else { Format::Json };
        String::from_utf8(crate::api::format::tests::arrow_writes(batches, format)).unwrap()
    }

    fn every_covered_type(rows: usize) -> RecordBatch {
        let floats = [
            Some(1.5),
            Some(1.0 / 3.0),
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(-0.0),
            Some(1e20),
            Some(1e-7),
            Some(123_456_789.125),
            Some(f64::MAX),
            Some(5e-324),
        ];
        let texts = [
            Some("a \"q\" \\ \n \u{1} città"),
            None,
            Some(""),
            Some("\u{7f}\u{2028}/"),
        ];
        let pick = |i: usize, n: usize| i % n;
        RecordBatch::try_from_iter([
            (
                "i8",
                Arc::new(Int8Array::from_iter(
                    (0..rows).map(|i| (i % 5 != 1).then_some((i % 256) as u8 as i8)),
                )) as ArrayRef,
            ),
            (
                "i64",
                Arc::new(Int64Array::from_iter((0..rows).map(|i| match i % 4 {
                    0 => Some(i64::MIN),
                    1 => Some(i64::MAX),
                    2 => None,
                    _ => Some(i as i64 * 7919),
                }))),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from_iter(
                    (0..rows).map(|i| (i % 3 != 0).then_some(u64::MAX - i as u64)),
                )),
            ),
            (
                "f64",
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| floats[pick(i, floats.len())]),
                )),
            ),
            (
                "f32",
                Arc::new(Float32Array::from_iter(
                    (0..rows).map(|i| floats[pick(i + 1, floats.len())].map(|f| f as f32)),
                )),
            ),
            (
                "b",
                Arc::new(BooleanArray::from_iter(
                    (0..rows).map(|i| (i % 3 != 2).then_some(i % 2 == 0)),
                )),
            ),
            (
                "s \"key\"",
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| texts[pick(i, texts.len())]),
                )),
            ),
            (
                "large",
                Arc::new(LargeStringArray::from_iter(
                    (0..rows).map(|i| texts[pick(i + 1, texts.len())]),
                )),
            ),
            (
                "view",
                Arc::new(StringViewArray::from_iter(
                    (0..rows).map(|i| texts[pick(i + 2, texts.len())]),
                )),
            ),
            (
                "t",
                Arc::new(
                    TimestampMillisecondArray::from_iter(
                        (0..rows).map(|i| {
                            (i % 6 != 5).then_some(1_709_287_200_000 + i as i64 * 1_800_123)
                        }),
                    )
                    .with_timezone("UTC"),
                ),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn writes_what_arrow_writes() {
        // 200 rows: past the sample after which the output is sized for the rest.
        let batch = every_covered_type(200);
        for batches in [
            vec![batch.clone()],
            vec![batch.slice(0, 3), batch.slice(3, 0), batch.slice(3, 197)],
            vec![batch.slice(0, 0)],
            vec![],
        ] {
            for lines in [false, true] {
                let mut expected = arrow_writes(&batches, lines);
                if expected.is_empty() && !lines {
                    expected = "[]".into();
                }
                let ours = super::encode(&batches, lines).expect("every column type is covered");
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    expected,
                    "{} batches, lines {lines}",
                    batches.len()
                );
            }
        }
    }

    #[test]
    fn leaves_other_types_to_arrow() {
        use arrow::array::Date32Array;
        let batch = RecordBatch::try_from_iter([
            ("i", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("d", Arc::new(Date32Array::from(vec![19_000]))),
        ])
        .unwrap();
        assert!(super::encode(&[batch], false).is_none());
        // A time zone other than UTC: Arrow writes the offset.
        let local = RecordBatch::try_from_iter([(
            "t",
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("+01:00")) as ArrayRef,
        )])
        .unwrap();
        assert!(super::encode(&[local], false).is_none());
    }
}
