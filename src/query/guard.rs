//! The read-only guard: only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE reach the planner. The SQL
//! is parsed with DataFusion's own parser, so what is checked is exactly what would be planned.
//!
//! Before parsing, the guard bounds how deep the statement's trees can be. The parser builds a
//! chain like `1+1+…+1` or `SELECT 1 UNION ALL SELECT 1 …` in a loop, but the tree it returns is as
//! deep as the chain is long, and everything after it (visiting, planning, optimising, dropping)
//! recurses over that tree: 2,000 terms were enough to overflow a thread's stack and abort the
//! process. The bound is computed from the tokens, without recursion, so no input can get past it
//! by being deep; the query threads' stacks are sized for the depth it allows (`query::runtime`).

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

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
    #[error(
        "the statement nests {depth} levels deep (a chain of {depth} operators, set operations or \
         parentheses); the limit is {limit} (`max_expression_depth` in [query]): split the chain, \
         e.g. `x IN (...)` instead of many ORs, or several queries"
    )]
    TooDeep { depth: usize, limit: usize },
}

/// Check that `sql` is one read-only statement no deeper than `max_depth`; the statement, parsed,
/// for the planner.
pub fn check(sql: &str, max_depth: usize) -> Result<DFStatement, GuardError> {
    check_depth(sql, max_depth)?;
    parse(sql)
}

/// Refuse `sql` when its trees would be deeper than `max_depth` (see [`nesting_depth`]). Reads
/// tokens only, so it is safe on any thread, before the statement is parsed.
pub fn check_depth(sql: &str, max_depth: usize) -> Result<(), GuardError> {
    let depth = nesting_depth(sql)?;
    if depth > max_depth {
        return Err(GuardError::TooDeep {
            depth,
            limit: max_depth,
        });
    }
    Ok(())
}

/// Parse `sql`, already checked by [`check_depth`], into its one read-only statement.
pub fn parse(sql: &str) -> Result<DFStatement, GuardError> {
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

/// An upper bound on the depth of the trees the parser and planner build for `sql`, from its tokens
/// alone: at each parenthesis level, the binary operators of the expression being read (a comma
/// or a clause keyword starts the next one) plus the set operations of that level, summed over the
/// open levels, plus the parentheses themselves. It over-counts (`a = 1 AND b = 2` counts 3 where
/// the tree is 2 deep) but never under-counts a chain, which is what overflows.
pub fn nesting_depth(sql: &str) -> Result<usize, GuardError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| GuardError::Syntax(e.to_string()))?;
    // Per open parenthesis: (operators in the current expression, set operations); `counted`
    // is their sum over the open levels, kept as the tokens go so the bound costs one pass.
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    let mut counted = 0usize;
    let mut deepest = 0;
    for token in &tokens {
        let level = levels.len() - 1;
        let reset = |levels: &mut Vec<(usize, usize)>, counted: &mut usize| {
            *counted -= levels[level].0;
            levels[level].0 = 0;
        };
        match token {
            Token::LParen | Token::LBracket => levels.push((0, 0)),
            Token::RParen | Token::RBracket => {
                if levels.len() > 1 {
                    let (ops, sets) = levels.pop().expect("a level");
                    counted -= ops + sets;
                }
            }
            Token::Comma | Token::SemiColon => reset(&mut levels, &mut counted),
            Token::Word(word) => match word.keyword {
                // A chain of set operations or joins is one tree however its parts are written:
                // not reset by the clauses inside each part.
                Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::MINUS
                | Keyword::JOIN => {
                    levels[level].1 += 1;
                    counted += 1;
                }
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT => {
                    levels[level].0 += 1;
                    counted += 1;
                }
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END
                | Keyword::ON
                | Keyword::USING
                | Keyword::QUALIFY
                | Keyword::WINDOW => reset(&mut levels, &mut counted),
                _ => {}
            },
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Period
            | Token::Placeholder(_)
            | Token::EOF => {}
            // Every other token is an operator: arithmetic, comparison, `||`, `::`, JSON arrows...
            _ => {
                levels[level].0 += 1;
                counted += 1;
            }
        }
        let depth = levels.len() + counted;
        deepest = deepest.max(depth);
    }
    Ok(deepest)
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

    const DEPTH: usize = 1000;

    fn refused(sql: &str) -> String {
        check(sql, DEPTH).expect_err(sql).to_string()
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
            assert!(check(sql, DEPTH).is_ok(), "{sql}");
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
            check("SELECT 1; DROP TABLE t", DEPTH).err(),
            Some(GuardError::Several(2))
        );
        assert_eq!(check("  ", DEPTH).err(), Some(GuardError::Empty));
        assert!(matches!(
            check("SELEC 1", DEPTH),
            Err(GuardError::Syntax(_))
        ));
    }

    /// Every chain the parser builds in a loop, at every length around the limit: the bound is
    /// never below the chain's length, so a chain over the limit is refused before it is parsed.
    #[test]
    fn chains_are_bounded_by_their_length() {
        let chains: &[(&str, &str, &str)] = &[
            ("SELECT ", "1", "+"),
            ("SELECT ", "1", "*"),
            ("SELECT ", "'a'", "||"),
            ("SELECT ", "true", " AND "),
            ("SELECT ", "false", " OR "),
            ("SELECT ", "1", "::BIGINT"),
            ("SELECT 1 WHERE ", "1 = 1", " AND "),
            ("", "SELECT 1", " UNION ALL "),
            ("", "SELECT 1, 2", " UNION "),
            ("", "SELECT 1", " EXCEPT "),
            ("SELECT * FROM ", "t", " CROSS JOIN "),
            ("SELECT * FROM ", "t", " JOIN t USING (x) JOIN "),
        ];
        for (prefix, term, operator) in chains {
            for terms in [10, 999, 1000, 1001, 5000] {
                let sql = if operator.starts_with("::") {
                    format!("{prefix}{term}{}", operator.repeat(terms - 1))
                } else {
                    format!("{prefix}{}", vec![*term; terms].join(operator))
                };
                let depth = nesting_depth(&sql).unwrap();
                assert!(depth >= terms - 1, "{terms} x {operator:?}: depth {depth}");
                let result = check(&sql, DEPTH);
                if depth > DEPTH {
                    assert!(
                        matches!(result, Err(GuardError::TooDeep { limit: DEPTH, .. })),
                        "{terms} x {operator:?}: {result:?}"
                    );
                } else {
                    assert!(result.is_ok(), "{terms} x {operator:?}: {result:?}");
                }
            }
        }
    }

    #[test]
    fn wide_statements_are_not_deep() {
        let columns: Vec<String> = (0..3000).map(|i| format!("{i} + 1 AS c{i}")).collect();
        let sql = format!("SELECT {} FROM t", columns.join(", "));
        assert!(nesting_depth(&sql).unwrap() < 10);
        let list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let sql = format!("SELECT * FROM t WHERE x IN ({})", list.join(", "));
        assert!(nesting_depth(&sql).unwrap() < 10);
        let whens: Vec<String> = (0..2000)
            .map(|i| format!("WHEN x = {i} THEN {i}"))
            .collect();
        let sql = format!("SELECT CASE {} END FROM t", whens.join(" "));
        assert!(nesting_depth(&sql).unwrap() < 10);
    }

    #[test]
    fn nested_parentheses_count() {
        for depth in [10, 500, 5000, 100_000] {
            let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
            assert!(nesting_depth(&sql).unwrap() > depth);
            let result = check(&sql, DEPTH);
            assert!(
                result.is_ok() == (depth < 40),
                "{depth} parentheses: {result:?}"
            );
        }
    }
}
