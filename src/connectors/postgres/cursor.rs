//! Cursors of append-only tables: the types a cursor can have, its committed text, and whether
//! the source still holds what was committed up to it. A source rewritten with fewer rows, or
//! whose largest cursor fell below the committed one, is reloaded in full instead of being
//! appended to (and silently served as fresh).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::types::{ToSql, Type};

use super::connect::describe;
use super::load::quote_identifier;
use super::types::Cell;

/// The types a cursor can have: they order rows and are compared exactly.
#[derive(Debug, Clone, Copy)]
pub enum CursorType {
    Int16,
    Int32,
    Int64,
    Date,
    Timestamp,
    TimestampTz,
}

pub fn cursor_type(ty: &Type) -> Result<CursorType, String> {
    Ok(match *ty {
        Type::INT2 => CursorType::Int16,
        Type::INT4 => CursorType::Int32,
        Type::INT8 => CursorType::Int64,
        Type::DATE => CursorType::Date,
        Type::TIMESTAMP => CursorType::Timestamp,
        Type::TIMESTAMPTZ => CursorType::TimestampTz,
        _ => {
            return Err(format!(
                "type `{}` cannot be a cursor: use an integer id, a date or a timestamp",
                ty.name()
            ));
        }
    })
}

impl CursorType {
    /// The committed text of a cursor value.
    pub fn text(self, cell: &Cell<'_>) -> Option<String> {
        match cell {
            Cell::Int16(v) => Some(v.to_string()),
            Cell::Int32(v) => Some(v.to_string()),
            Cell::Int64(v) => Some(v.to_string()),
            Cell::Date(days) => DateTime::from_timestamp(*days as i64 * 86_400, 0)
                .map(|d| d.date_naive().format("%Y-%m-%d").to_string()),
            Cell::Micros(micros) => DateTime::from_timestamp_micros(*micros).map(|d| match self {
                CursorType::TimestampTz => d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                _ => d.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            }),
            _ => None,
        }
    }

    /// The committed cursor as a query parameter of the column's type.
    pub fn parameter(self, text: &str) -> Result<Box<dyn ToSql + Sync + Send>, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match self {
            CursorType::Int16 => Box::new(text.parse::<i16>().map_err(|x| e(&x))?),
            CursorType::Int32 => Box::new(text.parse::<i32>().map_err(|x| e(&x))?),
            CursorType::Int64 => Box::new(text.parse::<i64>().map_err(|x| e(&x))?),
            CursorType::Date => {
                Box::new(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|x| e(&x))?)
            }
            CursorType::Timestamp => Box::new(
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map_err(|x| e(&x))?,
            ),
            CursorType::TimestampTz => Box::new(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|x| e(&x))?
                    .with_timezone(&Utc),
            ),
        })
    }
}

/// Why the source no longer continues what the table holds, or `None` when it does. `committed`
/// is the table's cursor, `committed_rows` the source rows it holds up to it.
pub async fn went_backwards(
    transaction: &tokio_postgres::Transaction<'_>,
    query: &str,
    column: &str,
    committed: &str,
    parameter: &(dyn ToSql + Sync),
    committed_rows: u64,
) -> Result<Option<String>, String> {
    let c = quote_identifier(column);
    let row = transaction
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE {c} <= $1), coalesce(bool_or({c} >= $1), false), max({c})::text \
                   FROM (\n{query}\n) AS cruscotto_source WHERE {c} IS NOT NULL"
            ),
            &[parameter],
        )
        .await
        .map_err(|e| describe(&e, None))?;
    let (up_to, reaches, largest): (i64, bool, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    Ok(if !reaches {
        Some(format!(
            "the largest `{column}` in the source is now {}, below the committed {committed}",
            largest.as_deref().unwrap_or("none (the source is empty)")
        ))
    } else if up_to as u64 != committed_rows {
        Some(format!(
            "the source has {up_to} rows up to `{column}` {committed}, the table {committed_rows}"
        ))
    } else {
        None
    })
}
