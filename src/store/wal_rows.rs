//! The compact payload of a WAL record: the rows of one group commit in a few bytes more than
//! their values (a sensor reading of ~60 bytes of values takes ~70), where an Arrow IPC stream
//! spends a schema and padded buffers, ~2 KB, on every commit of one reading.
//!
//! `[2][schema u32][rows][messages][keys u64…]` then per column `[0 | 1 + null bitmap]` and the
//! non-null values: text as length + bytes, 32-bit integers and dates zigzag, 64-bit integers
//! and times zigzag as differences from the value before, floats as their 8 or 4 bytes,
//! booleans as a bitmap. Counts and lengths are LEB128 varints. The schema word is a
//! CRC32 of the columns' names and types, so a record is never read under other columns. A
//! batch with a column of another type is written as an IPC stream instead (see `wal`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float32Array, Float64Array, Int32Array,
    Int64Array, StringArray, StringBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

/// The first byte of a compact record; an IPC stream starts with 0xFF.
pub const TAG: u8 = 2;

/// The CRC32 of the columns' names and types.
pub fn schema_word(schema: &SchemaRef) -> u32 {
    let described: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    crc32fast::hash(described.join(",").as_bytes())
}

fn supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::Int64
            | DataType::Int32
            | DataType::Float64
            | DataType::Float32
            | DataType::Boolean
            | DataType::Timestamp(_, _)
            | DataType::Date32
    )
}

/// The compact payload of `batch`, or `None` if a column's type has no compact form.
pub fn encode(batch: &RecordBatch, messages: &[u64]) -> Option<Vec<u8>> {
    if !batch
        .schema()
        .fields()
        .iter()
        .all(|f| supported(f.data_type()))
    {
        return None;
    }
    let rows = batch.num_rows();
    let mut out = Vec::with_capacity(16 + rows * 64);
    out.push(TAG);
    out.extend_from_slice(&schema_word(&batch.schema()).to_le_bytes());
    put_varint(&mut out, rows as u64);
    put_varint(&mut out, messages.len() as u64);
    for key in messages {
        out.extend_from_slice(&key.to_le_bytes());
    }
    for column in batch.columns() {
        encode_column(&mut out, column)?;
    }
    Some(out)
}

fn encode_column(out: &mut Vec<u8>, column: &ArrayRef) -> Option<()> {
    let rows = column.len();
    match column.nulls().filter(|n| n.null_count() > 0) {
        None => out.push(0),
        Some(nulls) => {
            out.push(1);
            out.extend(bitmap((0..rows).map(|i| nulls.is_valid(i))));
        }
    }
    let valid = |i: usize| column.is_valid(i);
    match column.data_type() {
        DataType::Utf8 => {
            let array = column.as_any().downcast_ref::<StringArray>()?;
            for i in (0..rows).filter(|&i| valid(i)) {
                let value = array.value(i).as_bytes();
                put_varint(out, value.len() as u64);
                out.extend_from_slice(value);
            }
        }
        DataType::Float64 => {
            let array = column.as_any().downcast_ref::<Float64Array>()?;
            for i in (0..rows).filter(|&i| valid(i)) {
                out.extend_from_slice(&array.value(i).to_le_bytes());
            }
        }
        DataType::Float32 => {
            let array = column.as_any().downcast_ref::<Float32Array>()?;
            for i in (0..rows).filter(|&i| valid(i)) {
                out.extend_from_slice(&array.value(i).to_le_bytes());
            }
        }
        DataType::Boolean => {
            let array = column.as_any().downcast_ref::<BooleanArray>()?;
            out.extend(bitmap(
                (0..rows).filter(|&i| valid(i)).map(|i| array.value(i)),
            ));
        }
        DataType::Int32 | DataType::Date32 => {
            let values = arrow::compute::cast(column, &DataType::Int32).ok()?;
            let array = values.as_any().downcast_ref::<Int32Array>()?;
            for i in (0..rows).filter(|&i| valid(i)) {
                put_varint(out, zigzag(i64::from(array.value(i))));
            }
        }
        DataType::Int64 | DataType::Timestamp(_, _) => {
            // Each value as its difference from the one before: the times of one group commit
            // are close together, a few bytes apart instead of eight.
            let values = arrow::compute::cast(column, &DataType::Int64).ok()?;
            let array = values.as_any().downcast_ref::<Int64Array>()?;
            let mut previous = 0i64;
            for i in (0..rows).filter(|&i| valid(i)) {
                let value = array.value(i);
                put_varint(out, zigzag(value.wrapping_sub(previous)));
                previous = value;
            }
        }
        _ => return None,
    }
    Some(())
}

/// The rows and message keys of a compact payload, under `schema`.
pub fn decode(payload: &[u8], schema: &SchemaRef) -> Result<(RecordBatch, Vec<u64>), String> {
    let mut input = Input {
        bytes: payload,
        at: 0,
    };
    if input.byte()? != TAG {
        return Err("not a compact record".into());
    }
    let word = u32::from_le_bytes(input.take(4)?.try_into().expect("4 bytes"));
    if word != schema_word(schema) {
        return Err(format!(
            "the record was written for other columns than the table's ({})",
            schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let rows = input.varint()? as usize;
    let count = input.varint()? as usize;
    let mut messages = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        messages.push(u64::from_le_bytes(
            input.take(8)?.try_into().expect("8 bytes"),
        ));
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        columns.push(decode_column(&mut input, field.data_type(), rows)?);
    }
    if input.at != payload.len() {
        return Err(format!(
            "{} bytes left after the last column",
            payload.len() - input.at
        ));
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    Ok((batch, messages))
}

fn decode_column(input: &mut Input, data_type: &DataType, rows: usize) -> Result<ArrayRef, String> {
    let validity: Vec<bool> = match input.byte()? {
        0 => vec![true; rows],
        1 => read_bitmap(input.take(rows.div_ceil(8))?, rows),
        other => return Err(format!("null marker {other}")),
    };
    let present = validity.iter().filter(|v| **v).count();
    let nulls = NullBuffer::from(validity.clone());
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    // Values of the present rows, spread over all rows (absent ones take a default).
    let spread = |values: Vec<i64>| -> Vec<i64> {
        let mut values = values.into_iter();
        validity
            .iter()
            .map(|v| if *v { values.next().unwrap_or(0) } else { 0 })
            .collect()
    };
    let array: ArrayRef = match data_type {
        DataType::Utf8 => {
            let mut builder = StringBuilder::with_capacity(rows, rows * 16);
            for valid in &validity {
                if *valid {
                    let length = input.varint()? as usize;
                    let bytes = input.take(length)?;
                    builder.append_value(
                        std::str::from_utf8(bytes).map_err(|e| format!("text: {e}"))?,
                    );
                } else {
                    builder.append_null();
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Float64 | DataType::Float32 => {
            let width = if *data_type == DataType::Float64 {
                8
            } else {
                4
            };
            let mut values = Vec::with_capacity(present);
            for _ in 0..present {
                let bytes = input.take(width)?;
                values.push(match width {
                    8 => f64::from_le_bytes(bytes.try_into().expect("8 bytes")),
                    _ => f64::from(f32::from_le_bytes(bytes.try_into().expect("4 bytes"))),
                });
            }
            let mut values = values.into_iter();
            let all: Vec<f64> = validity
                .iter()
                .map(|v| {
                    if *v {
                        values.next().unwrap_or(0.0)
                    } else {
                        0.0
                    }
                })
                .collect();
            let array = Float64Array::new(all.into(), nulls.clone());
            arrow::compute::cast(&array, data_type).map_err(|e| e.to_string())?
        }
        DataType::Boolean => {
            let values = read_bitmap(input.take(present.div_ceil(8))?, present);
            let mut values = values.into_iter();
            let mut builder = BooleanBuilder::with_capacity(rows);
            for valid in &validity {
                match valid {
                    true => builder.append_value(values.next().unwrap_or(false)),
                    false => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Int32 | DataType::Date32 | DataType::Int64 | DataType::Timestamp(_, _) => {
            let deltas = matches!(data_type, DataType::Int64 | DataType::Timestamp(_, _));
            let mut values = Vec::with_capacity(present);
            let mut previous = 0i64;
            for _ in 0..present {
                let read = unzigzag(input.varint()?);
                let value = match deltas {
                    true => previous.wrapping_add(read),
                    false => read,
                };
                values.push(value);
                previous = value;
            }
            let array = Int64Array::new(spread(values).into(), nulls.clone());
            let narrow = match data_type {
                DataType::Date32 => {
                    arrow::compute::cast(&array, &DataType::Int32).map_err(|e| e.to_string())?
                }
                _ => Arc::new(array),
            };
            arrow::compute::cast(&narrow, data_type).map_err(|e| e.to_string())?
        }
        other => return Err(format!("no compact form for {other}")),
    };
    Ok(array)
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("the record ends at byte {}", self.bytes.len()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than 64 bits".into())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn bitmap(bits: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, bit) in bits.enumerate() {
        if i % 8 == 0 {
            out.push(0);
        }
        if bit {
            *out.last_mut().expect("a byte") |= 1 << (i % 8);
        }
    }
    out
}

fn read_bitmap(bytes: &[u8], bits: usize) -> Vec<bool> {
    (0..bits)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn readings() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("unit", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(
                "received_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("n", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["ap-0001", "ap-0002", "ap-0003"])),
                Arc::new(StringArray::from(vec!["download_mbps"; 3])),
                Arc::new(Float64Array::from(vec![Some(93.5), None, Some(-0.25)])),
                Arc::new(StringArray::from(vec![Some("Mbit/s"), None, Some("")])),
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![i64::MAX, i64::MIN, -5])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![1_765_065_601_000_000; 3])
                        .with_timezone("UTC"),
                ),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(arrow::array::Date32Array::from(vec![
                    Some(20_429),
                    None,
                    Some(-1),
                ])),
                Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(0), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_come_back_exactly_with_their_message_keys() {
        let batch = readings();
        let payload = encode(&batch, &[7, u64::MAX]).expect("compact");
        let (decoded, messages) = decode(&payload, &batch.schema()).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(messages, vec![7, u64::MAX]);
    }

    /// A reading takes little more than its values: within 2× of the same reading as JSON (the
    /// WAL of the IPC format took ~2 KB for one).
    #[test]
    fn one_reading_takes_about_its_own_size() {
        let batch = readings().slice(0, 1);
        let payload = encode(&batch, &[42]).expect("compact");
        let mut json = arrow::json::LineDelimitedWriter::new(Vec::new());
        json.write(&batch).unwrap();
        json.finish().unwrap();
        let json = json.into_inner();
        assert!(
            payload.len() + 8 <= json.len() * 2,
            "{} bytes of WAL (with the frame) for {} bytes of JSON",
            payload.len() + 8,
            json.len()
        );
        assert!(payload.len() < 100, "{} bytes", payload.len());
    }

    #[test]
    fn a_record_of_other_columns_or_cut_short_is_refused() {
        let batch = readings();
        let payload = encode(&batch, &[]).unwrap();
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
        assert!(
            decode(&payload, &other)
                .unwrap_err()
                .contains("other columns")
        );
        for cut in [1, 5, payload.len() - 1] {
            assert!(
                decode(&payload[..cut], &batch.schema()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_list_column_has_no_compact_form() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )]));
        let batch = RecordBatch::new_empty(schema);
        assert!(encode(&batch, &[]).is_none());
    }
}
