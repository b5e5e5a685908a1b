//! The read-only guard: only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE reach the planner. The SQL
//! is parsed with DataFusion's own parser, so what is checked is exactly what would be planned.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;

/// Table functions that only generate values; any other (in particular one reading files) is refused.
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardError {
    #[error("the SQL does not parse: {0}")]
    Syntax(String),
    #[error("no statement to run")]
    Empty,
    #[error("{0} statements were sent; send one statement per request")]
    Several(usize),
    #[error(
        "`{0}` is not allowed: SQL here is read-only (allowed: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE)"
    )]
    NotReadOnly(String),
    #[error("the table function `{0}` is not allowed (allowed: {list})", list = ALLOWED_TABLE_FUNCTIONS.join(", "))]
    TableFunction(String),
}

/// Check that `sql` is one read-only statement; the statement, parsed, for the planner.
pub fn check(sql: &str) -> Result<DFStatement, GuardError> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| GuardError::Syntax(strip_prefix(e.to_string())))?;
    match statements.len() {
        0 => return Err(GuardError::Empty),
        1 => {}
        n => return Err(GuardError::Several(n)),
    }
    let statement = statements.pop_front().expect("one statement");
    check_statement(&statement)?;
    Ok(statement)
}

fn strip_prefix(message: String) -> String {
    message
        .strip_prefix("SQL error: ")
        .map(str::to_string)
        .unwrap_or(message)
}

fn check_statement(statement: &DFStatement) -> Result<(), GuardError> {
    match statement {
        DFStatement::Statement(inner) => check_sql_statement(inner),
        DFStatement::Explain(explain) => check_statement(&explain.statement),
        other => Err(GuardError::NotReadOnly(statement_name(&other.to_string()))),
    }
}

fn check_sql_statement(statement: &Statement) -> Result<(), GuardError> {
    match statement {
        Statement::Query(_) => check_table_functions(statement),
        Statement::Explain {
            statement: inner, ..
        } => check_sql_statement(inner),
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. } => Ok(()),
        Statement::ShowVariable { variable } if !variable.is_empty() => Ok(()),
        other => Err(GuardError::NotReadOnly(statement_name(&other.to_string()))),
    }
}

struct TableFunctionFinder(Option<String>);

impl Visitor for TableFunctionFinder {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let name = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => Some(name.to_string()),
            TableFactor::Function { name, .. } => Some(name.to_string()),
            TableFactor::TableFunction { expr, .. } => Some(expr.to_string()),
            _ => None,
        };
        match name {
            Some(name)
                if !ALLOWED_TABLE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) =>
            {
                self.0 = Some(name);
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn check_table_functions(statement: &Statement) -> Result<(), GuardError> {
    let mut finder = TableFunctionFinder(None);
    let _ = statement.visit(&mut finder);
    match finder.0 {
        Some(name) => Err(GuardError::TableFunction(name)),
        None => Ok(()),
    }
}

/// The leading keywords of a statement as the parser prints it: `CREATE EXTERNAL TABLE`, `COPY`,
/// `INSERT INTO`, `DROP TABLE`, `SET`.
fn statement_name(rendered: &str) -> String {
    let keywords: Vec<&str> = rendered
        .split_whitespace()
        .take_while(|word| word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if keywords.is_empty() {
        rendered.split_whitespace().next().unwrap_or("").to_string()
    } else {
        keywords.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        check(sql).expect_err(sql).to_string()
    }

    #[test]
    fn read_only_statements_pass() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW COLUMNS FROM bologna.aree",
            "DESCRIBE bologna.aree",
            "SELECT * FROM generate_series(1, 3)",
            "select * from range(5)",
        ] {
            assert!(check(sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn writes_and_file_access_are_refused_by_name() {
        assert!(
            refused("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'")
                .starts_with("`CREATE EXTERNAL TABLE` is not allowed")
        );
        assert!(refused("COPY (SELECT 1) TO '/tmp/x.csv'").starts_with("`COPY` is not allowed"));
        assert!(refused("CREATE TABLE t AS SELECT 1").starts_with("`CREATE TABLE` is not allowed"));
        assert!(refused("CREATE VIEW v AS SELECT 1").starts_with("`CREATE VIEW` is not allowed"));
        assert!(refused("INSERT INTO t VALUES (1)").starts_with("`INSERT INTO` is not allowed"));
        assert!(refused("UPDATE t SET a = 1").starts_with("`UPDATE` is not allowed"));
        assert!(refused("DELETE FROM t").starts_with("`DELETE FROM` is not allowed"));
        assert!(refused("DROP TABLE t").starts_with("`DROP TABLE` is not allowed"));
        assert!(
            refused("SET datafusion.execution.batch_size = 1").starts_with("`SET` is not allowed")
        );
        assert!(
            refused("EXPLAIN CREATE TABLE t AS SELECT 1")
                .starts_with("`CREATE TABLE` is not allowed")
        );
        assert!(
            refused("SELECT * FROM read_csv('/etc/passwd')")
                .contains("table function `read_csv` is not allowed")
        );
        assert!(
            refused("SELECT * FROM t JOIN parquet_metadata('/x') p ON true")
                .contains("`parquet_metadata`")
        );
    }

    #[test]
    fn one_statement_per_request() {
        assert_eq!(
            check("SELECT 1; DROP TABLE t").err(),
            Some(GuardError::Several(2))
        );
        assert_eq!(check("  ").err(), Some(GuardError::Empty));
        assert!(matches!(check("SELEC 1"), Err(GuardError::Syntax(_))));
    }
}
