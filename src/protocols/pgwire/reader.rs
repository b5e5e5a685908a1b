//! How the PostgreSQL protocol reads SQL. Clients' questions about the catalogue (`pg_catalog`,
//! `information_schema`) go through `datafusion-pg-catalog`'s parser, which rewrites what
//! DataFusion cannot plan; one of its rewrites answers a correlated subquery of the select list
//! with NULL, which is right for the catalogue questions it was made for and wrong for an
//! analyst's own query (`SELECT a.id, (SELECT max(x) FROM t WHERE t.id = a.id) FROM a` gave NULL
//! for every row). So a statement that reads no catalogue table takes every other rewrite of that
//! crate but not that one, and answers what HTTP answers.
//!
//! Catalogue statements get two rewrites more: a scalar subquery that is not aggregated reads
//! `max(...)` of its one column, which DataFusion can decorrelate (the catalogue's lookups by oid
//! give at most one row, where max is that row's value); and a subquery inside CASE, which
//! DataFusion cannot run at all, is NULL: SQLAlchemy's column reflection looks up column
//! defaults, identity and collations there, and this catalogue has none of them. And the
//! catalogue keeps PostgreSQL's vectors (`pg_index.indkey`, an int2vector, `"1 2"`;
//! `pg_constraint.conkey`, `"[1, 2]"`) as text: `unnest(indkey)` and `generate_subscripts(indkey,
//! 1)`, as SQLAlchemy's key and index reflection asks, read the numbers of that text.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query,
    SelectItem, SetExpr, Statement, Value, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

pub struct SqlReader {
    catalogue: PostgresCompatibilityParser,
    /// The catalogue parser's rewrites but the one that answers subqueries with NULL, in its
    /// order.
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for SqlReader {
    fn default() -> Self {
        Self {
            catalogue: PostgresCompatibilityParser::new(),
            rules: vec![
                Arc::new(AliasDuplicatedProjectionRewrite),
                Arc::new(ResolveUnqualifiedIdentifier),
                Arc::new(RewriteArrayAnyAllOperation),
                Arc::new(PrependUnqualifiedPgTableName),
                Arc::new(StripCallableQualifier),
                Arc::new(FixArrayLiteral),
                Arc::new(CurrentUserVariableToSessionUserFunctionCall),
                Arc::new(StripCollate),
                Arc::new(RewritePgCatalogOperator),
                Arc::new(RewriteRegCastToSubquery::new()),
                Arc::new(FixVersionColumnName),
            ],
        }
    }
}

impl SqlReader {
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let mut statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(statements) if !statements.iter().any(reads_catalogue) => statements
                .into_iter()
                .map(|s| self.rules.iter().fold(s, |s, rule| rule.rewrite(s)))
                .collect(),
            // A catalogue question, or what only the catalogue parser reads (`ABORT`).
            Ok(mut statements) => {
                // The catalogue parser's own answer to Grafana's search-path lookup is an empty
                // list: it does not get to see that lookup.
                let sql = if statements
                    .iter_mut()
                    .fold(false, |r, s| read_search_path(s) || r)
                {
                    let texts: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
                    texts.join("; ")
                } else {
                    sql.to_string()
                };
                self.read_catalogue(&sql)?
            }
            Err(_) => self.read_catalogue(sql)?,
        };
        statements
            .iter_mut()
            .for_each(super::regproc::compare_with_names);
        Ok(statements)
    }

    /// Through the catalogue parser, then this module's catalogue rewrites.
    fn read_catalogue(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let mut statements = self.catalogue.parse(sql)?;
        for statement in &mut statements {
            aggregate_scalar_subqueries(statement);
            read_vectors(statement);
            expand_arrays(statement);
            fields_of_composites(statement);
            postgresql_type_names(statement);
            missing_columns_are_null(statement);
        }
        Ok(statements)
    }
}

/// Whether `statement` reads a table of `pg_catalog` or `information_schema`.
fn reads_catalogue(statement: &Statement) -> bool {
    let catalogue = |name: &ObjectName| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        match parts.as_slice() {
            [table] => table.starts_with("pg_"),
            [.., schema, _] => schema == "pg_catalog" || schema == "information_schema",
            [] => false,
        }
    };
    visit_relations(statement, |name| {
        if catalogue(name) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Aggregate functions a subquery's column may already be.
const AGGREGATES: &[&str] = &[
    "max",
    "min",
    "count",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "json_agg",
];

/// `(SELECT e FROM …)` → `(SELECT max(e) FROM …)` where `e` is not aggregated and the subquery
/// has no GROUP BY; a subquery inside CASE → NULL.
fn aggregate_scalar_subqueries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if matches!(expr, Expr::Case { .. }) {
            let _ = visit_expressions_mut(expr, |inner| {
                if matches!(inner, Expr::Subquery(_)) {
                    *inner = Expr::value(Value::Null);
                }
                ControlFlow::<()>::Continue(())
            });
            return ControlFlow::<()>::Continue(());
        }
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && select.projection.len() == 1
            && matches!(
                select.group_by,
                datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(ref e, _) if e.is_empty()
            )
        {
            let column = match &mut select.projection[0] {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => return ControlFlow::<()>::Continue(()),
            };
            if !is_aggregate(column)
                && let Some(wrapped) = expression(&format!("max({column})"))
            {
                *column = wrapped;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Grafana's table and column pickers ask whether a schema is on the search path with
/// `x IN (SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END FROM
/// generate_series(array_lower(...), array_upper(...)) AS i, string_to_array(
/// current_setting('search_path'), ',') s)`, a join of two table functions DataFusion does not
/// have, also in ORDER BY where DataFusion takes no subquery: the same question without one,
/// `array_has(<the search path's schemas>, x)`. Whether it rewrote anything.
fn read_search_path(statement: &mut Statement) -> bool {
    let reads_search_path = |query: &Query| {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return false;
        };
        select.from.iter().any(|from| {
            from.relation
                .to_string()
                .to_ascii_lowercase()
                .starts_with("string_to_array(current_setting('search_path')")
        })
    };
    let mut rewritten = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::InSubquery {
            expr: schema,
            subquery,
            negated,
        } = expr
            && reads_search_path(subquery)
            && let Some(on_path) = expression(&format!(
                "{}array_has(string_to_array(btrim(regexp_replace(current_setting('search_path'), \
                 '\\s*,\\s*', ',', 'g')), ','), {schema})",
                if *negated { "NOT " } else { "" }
            ))
        {
            *expr = on_path;
            rewritten = true;
        }
        ControlFlow::<()>::Continue(())
    });
    rewritten
}

/// Columns of PostgreSQL's catalogue that this one does not have; none would hold anything
/// here (no table has storage options or privileges of its own).
const MISSING_COLUMNS: &[(&str, &str)] = &[("reloptions", "TEXT[]"), ("relacl", "TEXT[]")];

/// A reference to a column of [`MISSING_COLUMNS`] → a NULL of its type.
fn missing_columns_are_null(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some((_, kind)) = column_name(expr).and_then(|name| {
            MISSING_COLUMNS
                .iter()
                .find(|(column, _)| name.eq_ignore_ascii_case(column))
        }) && let Some(null) = expression(&format!("CAST(NULL AS {kind})"))
        {
            *expr = null;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Catalogue columns holding a vector or array as text.
const VECTOR_COLUMNS: &[&str] = &[
    "indkey",
    "indclass",
    "indcollation",
    "indoption",
    "conkey",
    "confkey",
    "conpfeqop",
    "conppeqop",
    "conffeqop",
    "conexclop",
    "proargtypes",
    "stxkeys",
];

/// `unnest(indkey)` → `unnest(<its numbers>)`; `generate_subscripts(indkey, 1)` → `unnest(1 ..=
/// <how many>)`.
fn read_vectors(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        let Expr::Function(function) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let name = function_name(function);
        let FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        let column = match list.args.first() {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(column))) => column,
            _ => return ControlFlow::Continue(()),
        };
        if !column_name(column)
            .is_some_and(|c| VECTOR_COLUMNS.contains(&c.to_ascii_lowercase().as_str()))
        {
            return ControlFlow::Continue(());
        }
        let numbers = format!(
            "CAST(string_to_array(btrim(regexp_replace({column}, '[^0-9]+', ' ', 'g')), ' ') AS BIGINT[])"
        );
        let rewritten = match name.as_deref() {
            Some("unnest") if list.args.len() == 1 => format!("unnest({numbers})"),
            // A vector has one dimension; the dimension asked stays in the statement, where
            // it may be a parameter the client binds.
            Some("generate_subscripts") if list.args.len() == 2 => {
                let dimension = &list.args[1];
                format!(
                    "unnest(generate_series(1, CASE WHEN {dimension} = 1 THEN CAST(cardinality({numbers}) AS BIGINT) ELSE 0 END))"
                )
            }
            _ => return ControlFlow::Continue(()),
        };
        if let Some(parsed) = expression(&rewritten) {
            *expr = parsed;
        }
        ControlFlow::Continue(())
    });
}

/// `data_type` (of `information_schema.columns`, `.routines`, `.parameters`) →
/// `pg_data_type(data_type)`: PostgreSQL's type names; a selected `data_type` keeps its name.
fn postgresql_type_names(statement: &mut Statement) {
    let is_data_type =
        |expr: &Expr| column_name(expr).is_some_and(|c| c.eq_ignore_ascii_case("data_type"));
    let named = |expr: &Expr| expression(&format!("pg_data_type({expr})"));
    let _ = visit_expressions_mut(statement, |expr| {
        if is_data_type(expr)
            && let Some(parsed) = named(expr)
        {
            *expr = parsed;
        }
        ControlFlow::<()>::Continue(())
    });
    // The select list's `data_type`, now `pg_data_type(data_type)`, is still called `data_type`.
    let _ = datafusion::sql::sqlparser::ast::visit_statements_mut(statement, |statement| {
        if let Statement::Query(query) = statement {
            name_type_columns(query);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn name_type_columns(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(Expr::Function(function)) = item
            && function_name(function).as_deref() == Some("pg_data_type")
            && let FunctionArguments::List(list) = &function.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(column))) = list.args.first()
            && let Some(name) = column_name(column)
        {
            let alias = datafusion::sql::sqlparser::ast::Ident::new(name);
            *item = SelectItem::ExprWithAlias {
                expr: Expr::Function(function.clone()),
                alias,
            };
        }
    }
}

/// `_pg_expandarray(v)`, a set-returning function in PostgreSQL, → `unnest(_pg_expandarray(v))`:
/// here it returns the list of `(x, n)` and `unnest` makes the rows (several in one select list
/// are zipped, as PostgreSQL does).
fn expand_arrays(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function_name(function).as_deref() == Some("_pg_expandarray")
            && let Some(parsed) = expression(&format!("unnest({expr})"))
        {
            *expr = parsed;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `(expr).field`, PostgreSQL's field of a composite value (PgJDBC's
/// `(information_schema._pg_expandarray(i.indkey)).n`) → `get_field(expr, 'field')`.
fn fields_of_composites(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && let Expr::Nested(inner) = root.as_ref()
            && let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice()
            && let Some(parsed) = expression(&format!(
                "get_field({inner}, '{}')",
                field.value.to_ascii_lowercase().replace('\'', "''")
            ))
        {
            *expr = parsed;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_aggregate(expr: &Expr) -> bool {
    let Expr::Function(function) = expr else {
        return false;
    };
    function_name(function).is_some_and(|name| AGGREGATES.contains(&name.as_str()))
}

/// A function's name without its schema, in lower case.
fn function_name(function: &Function) -> Option<String> {
    function
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
}

/// The column an identifier names, without its table or schema.
pub(super) fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Identifier(ident) => Some(&ident.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.as_str()),
        _ => None,
    }
}

/// An expression written in PostgreSQL's SQL.
fn expression(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> String {
        SqlReader::default()
            .parse(sql)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn an_analysts_correlated_subquery_is_kept() {
        let sql = "SELECT a.id, (SELECT max(t.x) FROM t WHERE t.id = a.id) AS m FROM a";
        assert_eq!(read(sql), sql);
    }

    #[test]
    fn catalogue_subqueries_are_aggregated_and_regproc_compared_with_names() {
        let sql = read(
            "SELECT c.relname, CASE WHEN c.relhasindex THEN (SELECT d.description FROM pg_catalog.pg_description d WHERE d.objoid = c.oid) ELSE NULL END FROM pg_catalog.pg_class c",
        );
        assert!(sql.contains("THEN NULL ELSE NULL END"), "{sql}");
        let sql = read(
            "SELECT c.relname, (SELECT d.description FROM pg_catalog.pg_description d WHERE d.objoid = c.oid LIMIT 1) IS NULL FROM pg_catalog.pg_class c",
        );
        assert!(sql.contains("(SELECT max(d.description) FROM"), "{sql}");
        let types = read("SELECT oid FROM pg_type WHERE typreceive != 0");
        assert!(types.ends_with("WHERE typreceive <> '-'"), "{types}");
    }

    #[test]
    fn catalogue_vectors_are_read_as_numbers() {
        let sql = read(
            "SELECT unnest(pg_catalog.pg_index.indkey) AS attnum, generate_subscripts(pg_catalog.pg_index.indkey, 1) AS ord FROM pg_catalog.pg_index",
        );
        assert!(
            sql.contains(
                "unnest(CAST(string_to_array(btrim(regexp_replace(pg_catalog.pg_index.indkey,"
            ) && sql
                .contains("unnest(generate_series(1, CASE WHEN 1 = 1 THEN CAST(cardinality(CAST("),
            "{sql}"
        );
        // Not a vector column, not the catalogue: as written.
        let sql = "SELECT unnest(t.tags) FROM t";
        assert_eq!(read(sql), sql);
    }

    #[test]
    fn pgjdbcs_expanded_arrays_and_composite_fields() {
        let sql = read(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n AS key_seq FROM pg_catalog.pg_index i",
        );
        assert!(
            sql.starts_with("SELECT get_field(unnest(_pg_expandarray(i.indkey)), 'n')"),
            "{sql}"
        );
        // Outside the catalogue, an analyst's own statement is as written.
        let sql = "SELECT (s).n FROM t";
        assert_eq!(read(sql), sql);
    }

    #[test]
    fn what_only_the_catalogue_parser_reads_still_reads() {
        assert_eq!(read("ABORT"), "ROLLBACK");
    }
}
