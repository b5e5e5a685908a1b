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

/// The types a retention can be measured on: a date or a timestamp.
pub fn retention_type(ty: &Type) -> Result<CursorType, String> {
    match cursor_type(ty) {
        Ok(kind @ (CursorType::Date | CursorType::Timestamp | CursorType::TimestampTz)) => Ok(kind),
        _ => Err(format!(
            "type `{}` cannot measure a retention: use a date or a timestamp column",
            ty.name()
        )),
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl CursorType {
    /// A cell's time in µs since the epoch (UTC), for a date or timestamp cell.
    pub fn micros(cell: &Cell<'_>) -> Option<i64> {
        match cell {
            Cell::Date(days) => Some(*days as i64 * MICROS_PER_DAY),
            Cell::Micros(micros) => Some(*micros),
            _ => None,
        }
    }

    /// A time in µs since the epoch (UTC) as a parameter of this date or timestamp type (a date
    /// takes the time's day).
    pub fn time_parameter(self, micros: i64) -> Result<Box<dyn ToSql + Sync + Send>, String> {
        let cell = match self {
            CursorType::Date => Cell::Date(micros.div_euclid(MICROS_PER_DAY) as i32),
            _ => Cell::Micros(micros),
        };
        let text = self
            .text(&cell)
            .ok_or_else(|| format!("{micros} µs is not a representable time"))?;
        self.parameter(&text)
    }

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
/// is the table's cursor, `committed_rows` the source rows it holds up to it; for a table with a
/// retention, `window` is its time column and the time from which it holds the source's rows,
/// and only the source's rows in that window are counted.
pub async fn went_backwards(
    transaction: &tokio_postgres::Transaction<'_>,
    query: &str,
    column: &str,
    committed: &str,
    parameter: &(dyn ToSql + Sync),
    committed_rows: u64,
    window: Option<(&str, &(dyn ToSql + Sync))>,
) -> Result<Option<String>, String> {
    let c = quote_identifier(column);
    let in_window = match window {
        Some((time, _)) => format!(" AND {} >= $2", quote_identifier(time)),
        None => String::new(),
    };
    let mut parameters = vec![parameter];
    parameters.extend(window.map(|(_, from)| from));
    let row = transaction
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE {c} <= $1{in_window}), coalesce(bool_or({c} >= $1), false), max({c})::text \
                   FROM (\n{query}\n) AS cruscotto_source WHERE {c} IS NOT NULL"
            ),
            &parameters,
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
            "the source has {up_to} rows up to `{column}` {committed}{}, the table {committed_rows}",
            match window {
                Some((time, _)) => format!(" within the retention (by `{time}`)"),
                None => String::new(),
            }
        ))
    } else {
        None
    })
}
