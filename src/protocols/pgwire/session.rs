//! What a PostgreSQL session asks of the server itself rather than of the data: `SET` and `SHOW`
//! of settings, transactions, and cursors (`DECLARE`, `FETCH`, `CLOSE`). Clients send these
//! around every query (psycopg opens a transaction, JDBC sets `extra_float_digits`, psql asks for
//! the server version): they are answered here and never reach the engine, whose guard refuses
//! `SET`. A `SET` changes only what `SHOW` answers in this session; the query limits stay the
//! server's. A transaction is accepted and means nothing more: every statement only reads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{CloseCursor, FetchDirection, Statement};

/// A statement answered by the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    Set {
        name: String,
        value: String,
    },
    Reset(String),
    /// `SHOW` of a setting the session knows (others go to the engine: `SHOW TABLES`).
    Show(String),
    Discard,
    Deallocate,
    Close(Option<String>),
    /// `SAVEPOINT`, `RELEASE SAVEPOINT`, `ROLLBACK TO SAVEPOINT`: the transaction goes on.
    Savepoint(&'static str),
}

impl Command {
    /// The command tag a client expects back.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Rollback => "ROLLBACK",
            Command::Set { .. } => "SET",
            Command::Reset(_) => "RESET",
            Command::Show(_) => "SHOW",
            Command::Discard => "DISCARD ALL",
            Command::Deallocate => "DEALLOCATE",
            Command::Close(_) => "CLOSE CURSOR",
            Command::Savepoint(tag) => tag,
        }
    }
}

/// The session command a statement is, if it is one.
pub fn command(statement: &Statement) -> Option<Command> {
    match statement {
        Statement::StartTransaction { .. } => Some(Command::Begin),
        Statement::Commit { .. } => Some(Command::Commit),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Some(Command::Savepoint("ROLLBACK")),
        Statement::Rollback { .. } => Some(Command::Rollback),
        Statement::Savepoint { .. } => Some(Command::Savepoint("SAVEPOINT")),
        Statement::ReleaseSavepoint { .. } => Some(Command::Savepoint("RELEASE")),
        Statement::Discard { .. } => Some(Command::Discard),
        Statement::Deallocate { .. } => Some(Command::Deallocate),
        Statement::Close { cursor } => Some(Command::Close(match cursor {
            CloseCursor::All => None,
            CloseCursor::Specific { name } => Some(name.value.clone()),
        })),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            let name = match name.as_str() {
                "transaction isolation level" => "transaction_isolation".to_string(),
                "time zone" => "timezone".to_string(),
                _ => name,
            };
            is_setting(&name).then_some(Command::Show(name))
        }
        Statement::Set(_) => Some(set_command(&statement.to_string())),
        _ => {
            let text = statement.to_string();
            let upper = text.trim_start().to_ascii_uppercase();
            upper
                .starts_with("RESET ")
                .then(|| Command::Reset(text.trim()[6..].trim().to_ascii_lowercase()))
        }
    }
}

/// `SET [SESSION | LOCAL] name { = | TO } value` and `SET TIME ZONE value`, from the statement's
/// text (its forms are many; anything else is acknowledged as a setting of its own text).
fn set_command(text: &str) -> Command {
    let mut rest = text.trim();
    for prefix in ["SET ", "SESSION ", "LOCAL "] {
        if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
            rest = rest[prefix.len()..].trim_start();
        }
    }
    let unquote = |v: &str| v.trim().trim_matches('\'').trim_matches('"').to_string();
    if rest.len() > 10 && rest[..10].eq_ignore_ascii_case("TIME ZONE ") {
        return Command::Set {
            name: "timezone".into(),
            value: unquote(&rest[10..]),
        };
    }
    let split = rest
        .find(" = ")
        .map(|i| (i, 3))
        .or_else(|| rest.to_ascii_uppercase().find(" TO ").map(|i| (i, 4)))
        .or_else(|| rest.find('=').map(|i| (i, 1)));
    match split {
        Some((at, width)) => Command::Set {
            name: rest[..at].trim().trim_matches('"').to_ascii_lowercase(),
            value: unquote(&rest[at + width..]),
        },
        None => Command::Set {
            name: rest.to_ascii_lowercase(),
            value: String::new(),
        },
    }
}

/// Settings `SHOW` answers, with their values when the session has not set them.
pub(super) const SETTINGS: &[(&str, &str)] = &[
    ("server_version", super::SERVER_VERSION),
    ("server_version_num", super::SERVER_VERSION_NUM),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("search_path", super::SEARCH_PATH),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("application_name", ""),
    ("integer_datetimes", "on"),
    ("is_superuser", "off"),
    ("max_identifier_length", "63"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("statement_timeout", "0"),
    ("lock_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("block_size", "8192"),
    ("max_index_keys", "32"),
    ("default_table_access_method", "heap"),
];

fn is_setting(name: &str) -> bool {
    SETTINGS.iter().any(|(n, _)| *n == name)
}

/// The value `SHOW name` answers: what the session set, else what the client said at start-up,
/// else the server's.
pub fn setting(name: &str, metadata: &HashMap<String, String>) -> String {
    if let Some(value) = metadata.get(&format!("set:{name}")) {
        return value.clone();
    }
    if matches!(name, "client_encoding" | "application_name")
        && let Some(value) = metadata.get(name)
    {
        return value.clone();
    }
    SETTINGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// The metadata key under which a session's `SET name` is kept.
pub fn set_key(name: &str) -> String {
    format!("set:{name}")
}

/// The rows a `FETCH` asks for: a count, or all that remain.
pub fn fetch_count(direction: &FetchDirection) -> Result<Option<usize>, String> {
    let count = |limit: &dyn std::fmt::Display| {
        limit
            .to_string()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("FETCH count `{limit}` is not a whole number"))
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            count(limit)
        }
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        other => Err(format!(
            "`FETCH {other}` is not supported: cursors here only move forward (FETCH n, FETCH ALL, FETCH NEXT)"
        )),
    }
}

/// A cursor's rows not fetched yet.
pub struct Cursor {
    pub schema: SchemaRef,
    rows: VecDeque<RecordBatch>,
}

impl Cursor {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            rows: batches.into_iter().filter(|b| b.num_rows() > 0).collect(),
        }
    }

    /// The next `count` rows (all that remain with `None`).
    pub fn take(&mut self, count: Option<usize>) -> Vec<RecordBatch> {
        let mut wanted = count.unwrap_or(usize::MAX);
        let mut taken = Vec::new();
        while wanted > 0 {
            let Some(batch) = self.rows.pop_front() else {
                break;
            };
            if batch.num_rows() <= wanted {
                wanted -= batch.num_rows();
                taken.push(batch);
            } else {
                taken.push(batch.slice(0, wanted));
                self.rows
                    .push_front(batch.slice(wanted, batch.num_rows() - wanted));
                wanted = 0;
            }
        }
        taken
    }
}

/// The open cursors of a session, by name.
#[derive(Default)]
pub struct Cursors(pub Mutex<HashMap<String, Cursor>>);

impl Cursors {
    pub fn of(extensions: &pgwire::api::SessionExtensions) -> Arc<Cursors> {
        extensions.get_or_insert_with(Cursors::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_forms_are_read() {
        assert_eq!(
            set_command("SET extra_float_digits = 3"),
            Command::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            }
        );
        assert_eq!(
            set_command("SET SESSION TIME ZONE 'Europe/Rome'"),
            Command::Set {
                name: "timezone".into(),
                value: "Europe/Rome".into()
            }
        );
        assert_eq!(
            set_command("SET application_name TO 'pgcli'"),
            Command::Set {
                name: "application_name".into(),
                value: "pgcli".into()
            }
        );
    }

    #[test]
    fn a_cursor_hands_out_its_rows_in_order() {
        use arrow::array::Int64Array;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        let batch = |from: i64, to: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(from..to))],
            )
            .unwrap()
        };
        let mut cursor = Cursor::new(schema.clone(), vec![batch(0, 5), batch(5, 8)]);
        let rows = |batches: Vec<RecordBatch>| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        assert_eq!(rows(cursor.take(Some(3))), vec![0, 1, 2]);
        assert_eq!(rows(cursor.take(Some(3))), vec![3, 4, 5]);
        assert_eq!(rows(cursor.take(None)), vec![6, 7]);
        assert!(cursor.take(Some(1)).is_empty());
    }
}
