//! `regproc` columns compared with 0. In PostgreSQL, `pg_type.typreceive` and its siblings are
//! `regproc` values, and clients test them against the oid 0 ("no function"): the ADBC
//! PostgreSQL driver's first query reads `WHERE (typreceive != 0 OR typsend != 0)`. The catalogue
//! served here (`datafusion-pg-catalog`) holds these columns as the functions' names, with `-`
//! for none, as PostgreSQL displays them; comparing a name with 0 fails (`Cannot cast string
//! 'boolrecv' to value of Int64 type`). Such a comparison is rewritten to one with `'-'`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Statement, Value, ValueWithSpan, visit_expressions_mut,
};

/// The catalogue's `regproc` columns, held as names.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// Rewrite `<regproc column> = 0` / `!= 0` / `<> 0` (either side) in `statement`.
pub fn compare_with_names(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
        {
            if is_regproc_column(left) && is_zero(right) {
                **right = none();
            } else if is_regproc_column(right) && is_zero(left) {
                **left = none();
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_regproc_column(expr: &Expr) -> bool {
    super::reader::column_name(expr)
        .is_some_and(|name| REGPROC_COLUMNS.contains(&name.to_ascii_lowercase().as_str()))
}

fn is_zero(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) if n == "0")
}

/// What the catalogue holds for "no function".
fn none() -> Expr {
    Expr::value(Value::SingleQuotedString("-".into()))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        compare_with_names(&mut statement);
        statement.to_string()
    }

    #[test]
    fn regproc_columns_compared_with_zero_compare_with_the_name_of_none() {
        assert_eq!(
            rewritten(
                "SELECT oid FROM pg_catalog.pg_type WHERE (typreceive != 0 OR 0 <> t.typsend) AND typtype != 'r'"
            ),
            "SELECT oid FROM pg_catalog.pg_type WHERE (typreceive <> '-' OR '-' <> t.typsend) AND typtype <> 'r'"
        );
        // Other columns and other numbers are left as they are.
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE typlen != 0 AND typreceive = 1"),
            "SELECT 1 FROM t WHERE typlen <> 0 AND typreceive = 1"
        );
    }
}
