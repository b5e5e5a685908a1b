//! PostgreSQL's text output of Arrow columns, for COPY's text and CSV forms and for DataRows in
//! text: each column's type is matched once per batch, not once per value, and the common types
//! (booleans, integers, floats, text, dates, timestamps) are written the way PostgreSQL writes
//! them with its default settings (`t`/`f`, shortest round-trip floats with its exponent rule
//! and `Infinity`, `2024-02-29 12:30:00.5`). Other types go through arrow-pg's per-value
//! encoding.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Field, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow_pg::encoder::{Encoder, encode_value};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{Datelike, NaiveDate};
use pgwire::api::results::FieldInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

/// How a value is made safe for the form it is sent in.
#[derive(Debug, Clone)]
pub enum Escaping {
    /// COPY's text form: backslash escapes for the delimiter and control characters.
    Text { delimiter: u8, null: Vec<u8> },
    /// CSV: a value is quoted when it holds the delimiter, the quote, a line break, or reads as
    /// the NULL marker; a quote inside is doubled.
    Csv {
        delimiter: u8,
        quote: u8,
        null: Vec<u8>,
    },
}

impl Escaping {
    fn delimiter(&self) -> u8 {
        match self {
            Escaping::Text { delimiter, .. } | Escaping::Csv { delimiter, .. } => *delimiter,
        }
    }

    fn null(&self) -> &[u8] {
        match self {
            Escaping::Text { null, .. } | Escaping::Csv { null, .. } => null,
        }
    }

    /// Escape what was just written from `start` on, in place; most values need nothing. A row
    /// of one column reading `\.` is quoted in CSV (unquoted, it would end the data).
    fn apply(&self, out: &mut BytesMut, start: usize, one_column: bool) {
        match self {
            Escaping::Text { delimiter, .. } => {
                let special = |b: &u8| {
                    matches!(b, b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0B | 0x0C)
                        || b == delimiter
                };
                if !out[start..].iter().any(special) {
                    return;
                }
                let value = out.split_off(start);
                for &byte in value.iter() {
                    let escaped: &[u8] = match byte {
                        b'\\' => b"\\\\",
                        b'\n' => b"\\n",
                        b'\r' => b"\\r",
                        b'\t' => b"\\t",
                        0x08 => b"\\b",
                        0x0B => b"\\v",
                        0x0C => b"\\f",
                        _ if byte == *delimiter => {
                            out.put_u8(b'\\');
                            out.put_u8(byte);
                            continue;
                        }
                        _ => {
                            out.put_u8(byte);
                            continue;
                        }
                    };
                    out.put_slice(escaped);
                }
            }
            Escaping::Csv {
                delimiter,
                quote,
                null,
            } => {
                let value = &out[start..];
                let quoted = value == null.as_slice()
                    || value
                        .iter()
                        .any(|b| b == delimiter || b == quote || *b == b'\n' || *b == b'\r')
                    || (one_column && value == b"\\.");
                if !quoted {
                    return;
                }
                let value = out.split_off(start);
                out.put_u8(*quote);
                for &byte in value.iter() {
                    if byte == *quote {
                        out.put_u8(byte);
                    }
                    out.put_u8(byte);
                }
                out.put_u8(*quote);
            }
        }
    }
}

/// Whether a session's settings are PostgreSQL's defaults as far as this writer goes: ISO dates
/// and shortest floats (`extra_float_digits` ≥ 1). Otherwise arrow-pg writes the values.
pub fn writes_for(options: &FormatOptions) -> bool {
    options
        .date_style
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("ISO")
        && options.extra_float_digits >= 1
}

fn columns<'a>(batch: &'a RecordBatch, fields: &'a [FieldInfo]) -> Vec<Column<'a>> {
    batch
        .columns()
        .iter()
        .zip(batch.schema_ref().fields())
        .zip(fields)
        .map(|((array, field), pg)| Column::new(array, field, pg))
        .collect()
}

/// The rows of `batch` as DataRows with every field in text (`fields` all text).
pub fn data_rows(batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Vec<DataRow>> {
    let columns = columns(batch, fields);
    let mut out = BytesMut::with_capacity(batch.num_rows() * 20 * columns.len().max(1));
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            let at = out.len();
            out.put_i32(0);
            if !column.write(row, &mut out)? {
                out.truncate(at);
                out.put_i32(-1);
                continue;
            }
            let length = i32::try_from(out.len() - at - 4).map_err(|_| {
                PgWireError::ApiError("a value longer than 2 GiB cannot be sent".into())
            })?;
            out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        rows.push(DataRow::new(out.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// The rows of `batch` in COPY's text or CSV form, one `Bytes` per row (each ends in `\n`).
pub fn rows(
    batch: &RecordBatch,
    fields: &[FieldInfo],
    escaping: &Escaping,
) -> PgWireResult<Vec<Bytes>> {
    let columns = columns(batch, fields);
    let mut out = BytesMut::with_capacity(batch.num_rows() * 16 * columns.len().max(1));
    let mut ends = Vec::with_capacity(batch.num_rows());
    let delimiter = escaping.delimiter();
    for row in 0..batch.num_rows() {
        for (index, column) in columns.iter().enumerate() {
            if index > 0 {
                out.put_u8(delimiter);
            }
            let start = out.len();
            if !column.write(row, &mut out)? {
                out.truncate(start);
                out.put_slice(escaping.null());
                continue;
            }
            if column.may_need_escaping {
                escaping.apply(&mut out, start, columns.len() == 1);
            }
        }
        out.put_u8(b'\n');
        ends.push(out.len());
    }
    let all = out.freeze();
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let row = all.slice(start..end);
            start = end;
            row
        })
        .collect())
}

/// A column of a batch, its type matched once.
struct Column<'a> {
    array: &'a ArrayRef,
    nulls: Option<NullBuffer>,
    kind: Kind<'a>,
    /// Numbers, dates and timestamps never hold a delimiter PostgreSQL allows, a quote or a line
    /// break; text and what arrow-pg writes may.
    may_need_escaping: bool,
}

enum Kind<'a> {
    Boolean(&'a BooleanArray),
    Integer(Box<dyn Fn(usize, &mut BytesMut) + 'a>),
    Float4(&'a PrimitiveArray<Float32Type>),
    Float8(&'a PrimitiveArray<Float64Type>),
    Text(Box<dyn Fn(usize) -> &'a str + 'a>),
    Date(&'a PrimitiveArray<Date32Type>),
    /// Microseconds since the epoch, and the zone suffix (`+00`) of a UTC timestamp.
    Timestamp(Box<dyn Fn(usize) -> i64 + 'a>, &'static str),
    /// Anything else, written by arrow-pg as a DataRow's text would be.
    Other(&'a Field, &'a FieldInfo),
}

fn integer<'a, T>(array: &'a ArrayRef) -> Kind<'a>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let values = array.as_primitive::<T>();
    Kind::Integer(Box::new(move |row, out| {
        out.put_slice(itoa::Buffer::new().format(values.value(row)).as_bytes())
    }))
}

fn micros<'a, T: ArrowPrimitiveType<Native = i64>>(
    array: &'a ArrayRef,
    to_micros: fn(i64) -> i64,
) -> Box<dyn Fn(usize) -> i64 + 'a> {
    let values = array.as_primitive::<T>();
    Box::new(move |row| to_micros(values.value(row)))
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, field: &'a Field, pg: &'a FieldInfo) -> Self {
        let kind = match array.data_type() {
            DataType::Boolean => Kind::Boolean(array.as_boolean()),
            DataType::Int8 => integer::<Int8Type>(array),
            DataType::Int16 => integer::<Int16Type>(array),
            DataType::Int32 => integer::<Int32Type>(array),
            DataType::Int64 => integer::<Int64Type>(array),
            DataType::UInt8 => integer::<UInt8Type>(array),
            DataType::UInt16 => integer::<UInt16Type>(array),
            DataType::UInt32 => integer::<UInt32Type>(array),
            DataType::UInt64 => integer::<UInt64Type>(array),
            DataType::Float32 => Kind::Float4(array.as_primitive()),
            DataType::Float64 => Kind::Float8(array.as_primitive()),
            DataType::Utf8 => {
                let values = array.as_string::<i32>();
                Kind::Text(Box::new(move |row| values.value(row)))
            }
            DataType::LargeUtf8 => {
                let values = array.as_string::<i64>();
                Kind::Text(Box::new(move |row| values.value(row)))
            }
            DataType::Utf8View => {
                let values = array.as_string_view();
                Kind::Text(Box::new(move |row| values.value(row)))
            }
            DataType::Date32 => Kind::Date(array.as_primitive()),
            DataType::Timestamp(unit, zone) if zone.as_deref().is_none_or(is_utc) => {
                let values = match unit {
                    TimeUnit::Second => micros::<TimestampSecondType>(array, |s| s * 1_000_000),
                    TimeUnit::Millisecond => {
                        micros::<TimestampMillisecondType>(array, |ms| ms * 1_000)
                    }
                    TimeUnit::Microsecond => micros::<TimestampMicrosecondType>(array, |us| us),
                    // PostgreSQL keeps microseconds; nanoseconds are cut, as arrow-pg cuts them.
                    TimeUnit::Nanosecond => {
                        micros::<TimestampNanosecondType>(array, |ns| ns.div_euclid(1_000))
                    }
                };
                Kind::Timestamp(values, if zone.is_some() { "+00" } else { "" })
            }
            _ => Kind::Other(field, pg),
        };
        let may_need_escaping = matches!(kind, Kind::Text(_) | Kind::Other(..));
        Column {
            array,
            // Logical: a column of type Null has no null buffer, yet every value is NULL.
            nulls: array.logical_nulls(),
            kind,
            may_need_escaping,
        }
    }

    /// Write the value of `row`; false when it is NULL (and nothing was written).
    fn write(&self, row: usize, out: &mut BytesMut) -> PgWireResult<bool> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return Ok(false);
        }
        match &self.kind {
            Kind::Boolean(values) => out.put_u8(if values.value(row) { b't' } else { b'f' }),
            Kind::Integer(write) => write(row, out),
            Kind::Float4(values) => float(f64::from(values.value(row)), true, out),
            Kind::Float8(values) => float(values.value(row), false, out),
            Kind::Text(value) => out.put_slice(value(row).as_bytes()),
            Kind::Date(values) => date(values.value(row), out),
            Kind::Timestamp(micros, zone) => {
                timestamp(micros(row), out);
                out.put_slice(zone.as_bytes());
            }
            Kind::Other(field, pg) => {
                let mut value = OneValue { out, null: false };
                encode_value(&mut value, self.array, row, field, pg)?;
                return Ok(!value.null);
            }
        }
        Ok(true)
    }
}

fn is_utc(zone: &str) -> bool {
    matches!(
        zone.to_ascii_uppercase().as_str(),
        "UTC" | "Z" | "+00:00" | "+00" | "+0000" | "ETC/UTC" | "GMT"
    )
}

/// A float the way PostgreSQL's `float8out`/`float4out` write it (extra_float_digits = 1, the
/// default): the shortest digits that read back as the same number, in fixed notation when the
/// decimal exponent is from -4 to below 15 (6 for float4), otherwise as `1.5e-05`, `1e+20`.
fn float(value: f64, single: bool, out: &mut BytesMut) {
    if value.is_nan() {
        return out.put_slice(b"NaN");
    }
    if value.is_infinite() {
        return out.put_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    }
    if value == 0.0 {
        return out.put_slice(if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        });
    }
    let mut buffer = ryu::Buffer::new();
    // The shortest digits of the value in its own width: an f32 widened to f64 would show
    // digits the f32 does not have.
    let shortest = if single {
        buffer.format_finite(value as f32)
    } else {
        buffer.format_finite(value)
    };
    let (negative, shortest) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exponent) = match shortest.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (shortest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    // Where the decimal point falls in `digits`.
    let mut point = whole.len() as i32 + exponent;
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading);
    point -= leading as i32;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if negative {
        out.put_u8(b'-');
    }
    let scientific = point - 1;
    let limit = if single { 6 } else { 15 };
    if !(-4..limit).contains(&scientific) {
        out.put_u8(digits[0]);
        if digits.len() > 1 {
            out.put_u8(b'.');
            out.put_slice(&digits[1..]);
        }
        out.put_u8(b'e');
        out.put_u8(if scientific < 0 { b'-' } else { b'+' });
        let magnitude = scientific.unsigned_abs();
        if magnitude < 10 {
            out.put_u8(b'0');
        }
        out.put_slice(itoa::Buffer::new().format(magnitude).as_bytes());
    } else if point <= 0 {
        out.put_slice(b"0.");
        out.put_bytes(b'0', point.unsigned_abs() as usize);
        out.put_slice(&digits);
    } else if point as usize >= digits.len() {
        out.put_slice(&digits);
        out.put_bytes(b'0', point as usize - digits.len());
    } else {
        out.put_slice(&digits[..point as usize]);
        out.put_u8(b'.');
        out.put_slice(&digits[point as usize..]);
    }
}

/// Days since 1970-01-01 as PostgreSQL's ISO date: `2024-02-29`, `0044-03-15 BC`.
fn date(days: i32, out: &mut BytesMut) {
    // 719_163 days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
    match NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
        Some(day) => write_date(day, out),
        None => out.put_slice(itoa::Buffer::new().format(days).as_bytes()),
    }
}

fn write_date(day: NaiveDate, out: &mut BytesMut) {
    // PostgreSQL has no year 0: astronomical year 0 is 1 BC.
    let year = day.year();
    let shown = if year <= 0 { 1 - year } else { year };
    padded(shown as u32, 4, out);
    out.put_u8(b'-');
    padded(day.month(), 2, out);
    out.put_u8(b'-');
    padded(day.day(), 2, out);
    if year <= 0 {
        out.put_slice(b" BC");
    }
}

/// Microseconds since the epoch as PostgreSQL's ISO timestamp: `2024-02-29 12:30:00`, with the
/// fraction only when there is one and without its trailing zeros (`12:30:00.25`).
fn timestamp(micros: i64, out: &mut BytesMut) {
    const DAY: i64 = 86_400_000_000;
    let days = micros.div_euclid(DAY);
    let of_day = micros.rem_euclid(DAY);
    let Some(day) = i32::try_from(days)
        .ok()
        .and_then(|d| NaiveDate::from_num_days_from_ce_opt(d.saturating_add(719_163)))
    else {
        return out.put_slice(itoa::Buffer::new().format(micros).as_bytes());
    };
    let bc = day.year() <= 0;
    let day = if bc {
        // Written as the date is, with " BC" after the time, as PostgreSQL does.
        day.with_year(1 - day.year()).unwrap_or(day)
    } else {
        day
    };
    write_date(day, out);
    out.put_u8(b' ');
    let seconds = of_day / 1_000_000;
    padded((seconds / 3600) as u32, 2, out);
    out.put_u8(b':');
    padded((seconds / 60 % 60) as u32, 2, out);
    out.put_u8(b':');
    padded((seconds % 60) as u32, 2, out);
    let mut fraction = (of_day % 1_000_000) as u32;
    if fraction > 0 {
        let mut width = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        out.put_u8(b'.');
        padded(fraction, width, out);
    }
    if bc {
        out.put_slice(b" BC");
    }
}

/// `value` in decimal, zero-padded to `width` digits.
fn padded(value: u32, width: usize, out: &mut BytesMut) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    out.put_bytes(b'0', width.saturating_sub(digits.len()));
    out.put_slice(digits.as_bytes());
}

/// arrow-pg's encoder for one value in text, for the types written here no faster way.
struct OneValue<'o> {
    out: &'o mut BytesMut,
    null: bool,
}

impl Encoder for OneValue<'_> {
    type Item = ();

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let written = value
            .to_sql_text(pg_field.datatype(), self.out, pg_field.format_options())
            .map_err(PgWireError::ApiError)?;
        self.null = matches!(written, IsNull::Yes);
        Ok(())
    }

    fn take_row(&mut self) -> Self::Item {}
}
