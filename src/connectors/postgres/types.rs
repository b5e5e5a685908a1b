//! PostgreSQL column types → Arrow, decoded straight from the binary wire format into Arrow
//! builders, a batch of rows at a time.
//!
//! | PostgreSQL | Arrow |
//! | --- | --- |
//! | bool | Boolean |
//! | int2 / int4 / int8 | Int16 / Int32 / Int64 |
//! | float4 / float8 | Float32 / Float64 |
//! | numeric(p, s) | Decimal128(p, s); p ≤ 38 |
//! | numeric (unconstrained) | Decimal128(38, 10): a value with more than 10 decimals or 28 integer digits is rejected |
//! | text, varchar, bpchar, name, enums | Utf8 |
//! | date | Date32 |
//! | timestamp / timestamptz | Timestamp(µs) / Timestamp(µs, "UTC") |
//! | uuid | Utf8 (`8-4-4-4-12` hex) |
//! | json / jsonb | Utf8 (the JSON text) |
//! | text[] / varchar[], int2[] / int4[] / int8[] | List of Utf8 / Int16 / Int32 / Int64 (one dimension) |
//!
//! Domains load as their base type. Anything else is refused when the query is prepared, naming
//! the column and the type, so `cruscotto check` finds it before the service runs.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio_postgres::types::{FromSql, Kind, Type};

/// Precision and scale given to `numeric` columns declared without them.
pub const UNCONSTRAINED_NUMERIC: (u8, i8) = (38, 10);
/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How one column is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric { precision: u8, scale: i8 },
    Text,
    Jsonb,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    TextList,
    Int16List,
    Int32List,
    Int64List,
}

/// The decoding of a column, or why it cannot be loaded.
pub fn column_kind(ty: &Type, type_modifier: i32) -> Result<ColumnKind, String> {
    if let Kind::Domain(base) = ty.kind() {
        return column_kind(base, type_modifier);
    }
    if let Kind::Enum(_) = ty.kind() {
        return Ok(ColumnKind::Text);
    }
    let kind = match *ty {
        Type::BOOL => ColumnKind::Bool,
        Type::INT2 => ColumnKind::Int16,
        Type::INT4 => ColumnKind::Int32,
        Type::INT8 => ColumnKind::Int64,
        Type::FLOAT4 => ColumnKind::Float32,
        Type::FLOAT8 => ColumnKind::Float64,
        Type::NUMERIC => numeric_kind(type_modifier)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ColumnKind::Text,
        Type::JSON => ColumnKind::Text,
        Type::JSONB => ColumnKind::Jsonb,
        Type::UUID => ColumnKind::Uuid,
        Type::DATE => ColumnKind::Date,
        Type::TIMESTAMP => ColumnKind::Timestamp,
        Type::TIMESTAMPTZ => ColumnKind::TimestampTz,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => {
            ColumnKind::TextList
        }
        Type::INT2_ARRAY => ColumnKind::Int16List,
        Type::INT4_ARRAY => ColumnKind::Int32List,
        Type::INT8_ARRAY => ColumnKind::Int64List,
        _ => return Err(format!("type `{}` is not supported", ty.name())),
    };
    Ok(kind)
}

fn numeric_kind(type_modifier: i32) -> Result<ColumnKind, String> {
    if type_modifier < 4 {
        let (precision, scale) = UNCONSTRAINED_NUMERIC;
        return Ok(ColumnKind::Numeric { precision, scale });
    }
    let packed = type_modifier - 4;
    let precision = (packed >> 16) & 0xffff;
    // The scale is an 11-bit signed number since PostgreSQL 15 (it may be negative).
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    if precision > 38 {
        return Err(format!(
            "numeric({precision},{scale}) has more than the 38 digits Arrow's Decimal128 holds"
        ));
    }
    if !(-38..=38).contains(&scale) {
        return Err(format!(
            "numeric({precision},{scale}) has a scale Arrow's Decimal128 cannot hold"
        ));
    }
    Ok(ColumnKind::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

impl ColumnKind {
    pub fn data_type(self) -> DataType {
        let item = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        match self {
            ColumnKind::Bool => DataType::Boolean,
            ColumnKind::Int16 => DataType::Int16,
            ColumnKind::Int32 => DataType::Int32,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Float32 => DataType::Float32,
            ColumnKind::Float64 => DataType::Float64,
            ColumnKind::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnKind::Text | ColumnKind::Jsonb | ColumnKind::Uuid => DataType::Utf8,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnKind::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnKind::TextList => item(DataType::Utf8),
            ColumnKind::Int16List => item(DataType::Int16),
            ColumnKind::Int32List => item(DataType::Int32),
            ColumnKind::Int64List => item(DataType::Int64),
        }
    }
}

/// The raw bytes of a value, whatever its type: decoding is ours.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One decoded value, borrowing from the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal(i128),
    Text(&'a str),
    Owned(String),
    Date(i32),
    Micros(i64),
    TextList(Vec<Option<&'a str>>),
    IntList(Vec<Option<i64>>),
}

fn take<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// Decode one value. An error says what is wrong with the value, for the rejected-records table.
pub fn decode(kind: ColumnKind, raw: Option<&[u8]>) -> Result<Cell<'_>, String> {
    let Some(raw) = raw else {
        return Ok(Cell::Null);
    };
    Ok(match kind {
        ColumnKind::Bool => Cell::Bool(take::<1>(raw)?[0] != 0),
        ColumnKind::Int16 => Cell::Int16(i16::from_be_bytes(take(raw)?)),
        ColumnKind::Int32 => Cell::Int32(i32::from_be_bytes(take(raw)?)),
        ColumnKind::Int64 => Cell::Int64(i64::from_be_bytes(take(raw)?)),
        ColumnKind::Float32 => Cell::Float32(f32::from_be_bytes(take(raw)?)),
        ColumnKind::Float64 => Cell::Float64(f64::from_be_bytes(take(raw)?)),
        ColumnKind::Numeric { precision, scale } => {
            Cell::Decimal(numeric_to_i128(raw, precision, scale)?)
        }
        ColumnKind::Text => Cell::Text(utf8(raw)?),
        ColumnKind::Jsonb => match raw.split_first() {
            Some((1, text)) => Cell::Text(utf8(text)?),
            _ => return Err("unknown jsonb format version".into()),
        },
        ColumnKind::Uuid => Cell::Owned(uuid_text(&take::<16>(raw)?)),
        ColumnKind::Date => {
            let days = i32::from_be_bytes(take(raw)?);
            if days == i32::MAX || days == i32::MIN {
                return Err("the date is ±infinity, which Arrow cannot hold".into());
            }
            Cell::Date(
                days.checked_add(PG_EPOCH_DAYS)
                    .ok_or("the date is out of range")?,
            )
        }
        ColumnKind::Timestamp | ColumnKind::TimestampTz => {
            let micros = i64::from_be_bytes(take(raw)?);
            if micros == i64::MAX || micros == i64::MIN {
                return Err("the timestamp is ±infinity, which Arrow cannot hold".into());
            }
            Cell::Micros(
                micros
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("the timestamp is out of range")?,
            )
        }
        ColumnKind::TextList => Cell::TextList(
            array_elements(raw)?
                .into_iter()
                .map(|e| e.map(utf8).transpose())
                .collect::<Result<_, _>>()?,
        ),
        ColumnKind::Int16List | ColumnKind::Int32List | ColumnKind::Int64List => Cell::IntList(
            array_elements(raw)?
                .into_iter()
                .map(|e| {
                    e.map(|b| match b.len() {
                        2 => Ok(i16::from_be_bytes(take(b)?) as i64),
                        4 => Ok(i32::from_be_bytes(take(b)?) as i64),
                        8 => Ok(i64::from_be_bytes(take(b)?)),
                        n => Err(format!("an array element of {n} bytes is not an integer")),
                    })
                    .transpose()
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))
}

fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Elements of a one-dimensional array in the binary format.
fn array_elements(raw: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    let int = |at: usize| -> Result<i32, String> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
            .ok_or_else(|| "truncated array".to_string())
    };
    let dimensions = int(0)?;
    if dimensions == 0 {
        return Ok(Vec::new());
    }
    if dimensions != 1 {
        return Err(format!(
            "a {dimensions}-dimensional array: only one-dimensional arrays load as lists"
        ));
    }
    let length = int(12)?.max(0) as usize;
    let mut at = 20;
    let mut elements = Vec::with_capacity(length);
    for _ in 0..length {
        let size = int(at)?;
        at += 4;
        if size < 0 {
            elements.push(None);
        } else {
            let end = at + size as usize;
            elements.push(Some(raw.get(at..end).ok_or("truncated array")?));
            at = end;
        }
    }
    Ok(elements)
}

/// A `numeric` in the binary format as an integer scaled by `10^scale`, checked against the
/// precision. Refuses NaN, infinities and values needing more digits than the column type has.
pub fn numeric_to_i128(raw: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    let field = |i: usize| -> Result<u16, String> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let digits = field(0)? as usize;
    let weight = field(1)? as i16 as i64;
    let sign = field(2)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN does not fit a Decimal128 column".into()),
        _ => return Err("±Infinity does not fit a Decimal128 column".into()),
    }
    let too_big = || {
        format!(
            "{} does not fit numeric({precision},{scale}) as loaded (Decimal128({precision},{scale})); \
             round or cast it in the query, e.g. `round(x, {scale})` or `x::numeric(p,s)`",
            numeric_text(raw).unwrap_or_else(|_| "the value".into())
        )
    };
    let mut value: i128 = 0;
    for i in 0..digits {
        value = value
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(field(4 + i).ok()? as i128))
            .ok_or_else(too_big)?;
    }
    // `value` is the number times 10^exponent.
    let exponent = 4 * (digits as i64 - 1 - weight);
    let shift = scale as i64 - exponent;
    if shift >= 0 {
        let factor = 10i128.checked_pow(shift as u32).ok_or_else(too_big)?;
        value = value.checked_mul(factor).ok_or_else(too_big)?;
    } else {
        let divisor = 10i128.checked_pow((-shift) as u32);
        match divisor {
            Some(d) if value % d == 0 => value /= d,
            None if value == 0 => {}
            _ => return Err(too_big()),
        }
    }
    if value.unsigned_abs() >= 10u128.pow(precision as u32) {
        return Err(too_big());
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

/// The decimal text of a binary `numeric`, for error messages.
pub fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let field = |i: usize| -> Result<u16, String> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let digits = field(0)? as usize;
    let weight = field(1)? as i16 as i64;
    let sign = field(2)?;
    let dscale = field(3)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let group = |g: i64| -> Result<u16, String> {
        if g >= 0 && (g as usize) < digits {
            field(4 + g as usize)
        } else {
            Ok(0)
        }
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for g in 0..=weight {
            let d = group(g)?;
            if g == 0 {
                text.push_str(&d.to_string())
            } else {
                text.push_str(&format!("{d:04}"))
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut g = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", group(g)?));
            g += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// A cell as text, for the raw column of a rejected record.
pub fn cell_text(cell: &Cell<'_>) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Bool(v) => v.to_string(),
        Cell::Int16(v) => v.to_string(),
        Cell::Int32(v) => v.to_string(),
        Cell::Int64(v) => v.to_string(),
        Cell::Float32(v) => v.to_string(),
        Cell::Float64(v) => v.to_string(),
        Cell::Decimal(v) => v.to_string(),
        Cell::Text(v) => (*v).to_string(),
        Cell::Owned(v) => v.clone(),
        Cell::Date(v) => chrono::DateTime::from_timestamp(*v as i64 * 86_400, 0)
            .map_or(v.to_string(), |d| d.date_naive().to_string()),
        Cell::Micros(v) => chrono::DateTime::from_timestamp_micros(*v)
            .map_or(v.to_string(), |d| d.naive_utc().to_string()),
        Cell::TextList(v) => format!("{v:?}"),
        Cell::IntList(v) => format!("{v:?}"),
    }
}

/// Arrow builders for the columns of a result, turned into a record batch every `batch_rows`.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Date(Date32Builder),
    Micros(TimestampMicrosecondBuilder, Option<Arc<str>>),
    TextList(ListBuilder<StringBuilder>),
    Int16List(ListBuilder<Int16Builder>),
    Int32List(ListBuilder<Int32Builder>),
    Int64List(ListBuilder<Int64Builder>),
}

impl ColumnBuilder {
    fn new(kind: ColumnKind, capacity: usize) -> Self {
        match kind {
            ColumnKind::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnKind::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            ColumnKind::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            ColumnKind::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            ColumnKind::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            ColumnKind::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            ColumnKind::Numeric { precision, scale } => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), precision, scale)
            }
            ColumnKind::Text | ColumnKind::Jsonb | ColumnKind::Uuid => {
                Self::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnKind::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            ColumnKind::Timestamp => {
                Self::Micros(TimestampMicrosecondBuilder::with_capacity(capacity), None)
            }
            ColumnKind::TimestampTz => Self::Micros(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                Some("UTC".into()),
            ),
            ColumnKind::TextList => Self::TextList(ListBuilder::new(StringBuilder::new())),
            ColumnKind::Int16List => Self::Int16List(ListBuilder::new(Int16Builder::new())),
            ColumnKind::Int32List => Self::Int32List(ListBuilder::new(Int32Builder::new())),
            ColumnKind::Int64List => Self::Int64List(ListBuilder::new(Int64Builder::new())),
        }
    }

    /// Append a cell decoded for this column's kind (so the variants always match).
    fn append(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::Int16(b), Cell::Int16(v)) => b.append_value(*v),
            (Self::Int32(b), Cell::Int32(v)) => b.append_value(*v),
            (Self::Int64(b), Cell::Int64(v)) => b.append_value(*v),
            (Self::Float32(b), Cell::Float32(v)) => b.append_value(*v),
            (Self::Float64(b), Cell::Float64(v)) => b.append_value(*v),
            (Self::Decimal(b, ..), Cell::Decimal(v)) => b.append_value(*v),
            (Self::Text(b), Cell::Text(v)) => b.append_value(v),
            (Self::Text(b), Cell::Owned(v)) => b.append_value(v),
            (Self::Date(b), Cell::Date(v)) => b.append_value(*v),
            (Self::Micros(b, _), Cell::Micros(v)) => b.append_value(*v),
            (Self::TextList(b), Cell::TextList(items)) => {
                for item in items {
                    b.values().append_option(*item);
                }
                b.append(true);
            }
            (Self::Int16List(b), Cell::IntList(items)) => {
                for item in items {
                    b.values().append_option(item.map(|v| v as i16));
                }
                b.append(true);
            }
            (Self::Int32List(b), Cell::IntList(items)) => {
                for item in items {
                    b.values().append_option(item.map(|v| v as i32));
                }
                b.append(true);
            }
            (Self::Int64List(b), Cell::IntList(items)) => {
                for item in items {
                    b.values().append_option(*item);
                }
                b.append(true);
            }
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Micros(b, _) => b.append_null(),
            Self::TextList(b) => b.append(false),
            Self::Int16List(b) => b.append(false),
            Self::Int32List(b) => b.append(false),
            Self::Int64List(b) => b.append(false),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, precision, scale) => {
                Arc::new(b.finish().with_precision_and_scale(*precision, *scale)?)
            }
            Self::Text(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Micros(b, timezone) => Arc::new(b.finish().with_timezone_opt(timezone.clone())),
            Self::TextList(b) => Arc::new(b.finish()),
            Self::Int16List(b) => Arc::new(b.finish()),
            Self::Int32List(b) => Arc::new(b.finish()),
            Self::Int64List(b) => Arc::new(b.finish()),
        })
    }
}

impl BatchBuilder {
    pub fn new(names: &[String], kinds: &[ColumnKind], capacity: usize) -> Self {
        let fields: Vec<Field> = names
            .iter()
            .zip(kinds)
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns = kinds
            .iter()
            .map(|k| ColumnBuilder::new(*k, capacity))
            .collect();
        Self {
            schema,
            columns,
            rows: 0,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append a row whose cells were all decoded without error.
    pub fn append(&mut self, cells: &[Cell<'_>]) {
        for (builder, cell) in self.columns.iter_mut().zip(cells) {
            builder.append(cell);
        }
        self.rows += 1;
    }

    pub fn finish(&mut self) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
        let arrays = self
            .columns
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        self.rows = 0;
        arrow::record_batch::RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric in the binary format: digits in base 10000.
    fn numeric(weight: i16, negative: bool, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            digits.len() as u16,
            weight as u16,
            if negative { 0x4000 } else { 0 },
            dscale,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_keep_their_scale_and_refuse_what_does_not_fit() {
        // 12345.678 as numeric(10,3): groups 1|2345|6780, weight 1.
        let raw = numeric(1, false, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_to_i128(&raw, 10, 3).unwrap(), 12_345_678);
        assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
        // -0.05 at scale 2.
        let raw = numeric(-1, true, 2, &[500]);
        assert_eq!(numeric_to_i128(&raw, 5, 2).unwrap(), -5);
        // 1e20 (weight 5, one group) at scale 0.
        let raw = numeric(5, false, 0, &[1]);
        assert_eq!(numeric_to_i128(&raw, 38, 0).unwrap(), 10i128.pow(20));
        // Too many decimals for the unconstrained default.
        let raw = numeric(-1, false, 12, &[1234, 5678, 9012]);
        let error = numeric_to_i128(&raw, 38, 10).unwrap_err();
        assert!(
            error.contains("0.123456789012 does not fit numeric(38,10)"),
            "{error}"
        );
        // Too many integer digits for the precision.
        let raw = numeric(1, false, 0, &[12, 3456]);
        assert!(numeric_to_i128(&raw, 5, 0).is_err());
        assert_eq!(numeric_to_i128(&raw, 6, 0).unwrap(), 123_456);
    }

    #[test]
    fn numeric_type_modifiers() {
        assert_eq!(
            numeric_kind(-1).unwrap(),
            ColumnKind::Numeric {
                precision: 38,
                scale: 10
            }
        );
        assert_eq!(
            numeric_kind(((12 << 16) | 4) + 4).unwrap(),
            ColumnKind::Numeric {
                precision: 12,
                scale: 4
            }
        );
        assert!(
            numeric_kind(((50 << 16) | 2) + 4)
                .unwrap_err()
                .contains("numeric(50,2)")
        );
    }
}
