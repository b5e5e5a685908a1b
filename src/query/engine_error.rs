//! DataFusion's internal errors ("… This issue was likely caused by a bug in DataFusion's code")
//! mean little to an analyst, and most of them come from a query applying a function to a column
//! of a type it does not handle (e.g. `sum` over a text column). What reaches the user instead
//! names the function calls of the query with their arguments' columns and types.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

/// At most this many calls are listed: enough to spot the wrong one, not a dump of the plan.
const MAX_CALLS: usize = 8;

/// The user-facing text of an internal error raised while planning or running `plan` (when the
/// plan exists): what failed, in one line, and the calls with their argument types.
pub fn explain(message: &str, plan: Option<&LogicalPlan>) -> String {
    let reason = first_line(message);
    let calls = plan.map(calls_with_types).unwrap_or_default();
    if calls.is_empty() {
        return format!(
            "the query engine could not run this query ({reason}); check the types of the columns \
             it computes with (`DESCRIBE <table>` shows them)"
        );
    }
    format!(
        "the query engine could not run this query ({reason}). It applies {}: check that each \
         argument has a type the function takes (a number held as text needs `CAST(column AS \
         DOUBLE)`, or a numeric type in its connector's `schema`)",
        calls.join(", ")
    )
}

/// "No function matches the given name and argument types 'sum(Utf8)'" says the types but not
/// which call of the SQL it is about: this adds the call as written, e.g. "the call `sum(nota)`
/// passes Utf8 (text)". `None` when the message is not about a call or the call is not found.
pub fn name_the_call(message: &str, sql: &str) -> Option<String> {
    static SIGNATURE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"argument types '(\w+)\(([^']*)\)'").expect("valid")
    });
    let found = SIGNATURE.captures(message)?;
    let function = found.get(1)?.as_str();
    let types = found.get(2)?.as_str();
    let call = call_in_sql(sql, function)?;
    let text = if types.split(", ").any(|t| t.contains("Utf8")) {
        format!(
            "{types}; text (Utf8) holding numbers needs `CAST(column AS DOUBLE)`, or a numeric type in its connector's `schema`"
        )
    } else {
        types.to_string()
    };
    Some(format!("the call `{call}` passes {text}"))
}

/// The first call of `function` in the SQL, as written (arguments up to the matching parenthesis).
fn call_in_sql(sql: &str, function: &str) -> Option<String> {
    let pattern = regex::Regex::new(&format!(r"(?i)\b{}\s*\(", regex::escape(function))).ok()?;
    let start = pattern.find(sql)?;
    let mut depth = 0usize;
    for (i, c) in sql[start.end() - 1..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let end = start.end() - 1 + i + 1;
                    let call: String = sql[start.start()..end]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Some(call.chars().take(120).collect());
                }
            }
            _ => {}
        }
    }
    None
}

/// DataFusion's first line, without its "Internal error: " prefix and its advice to report a bug.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line
        .split(". This issue was likely caused by a bug")
        .next()
        .unwrap_or(line);
    let line = line
        .trim_start_matches("Internal error: ")
        .trim_end_matches('.');
    line.chars().take(240).collect()
}

/// `sum(residenti: Utf8)`-style descriptions of the function calls of a plan, each evaluated
/// against its node's input, without repeats.
pub fn calls_with_types(plan: &LogicalPlan) -> Vec<String> {
    let mut calls: Vec<String> = Vec::new();
    let _ = plan.apply(|node| {
        let inputs = node.inputs();
        let Some(input) = inputs.first() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let schema = input.schema();
        for expression in node.expressions() {
            let _ = expression.apply(|e| {
                let (name, args) = match e {
                    Expr::ScalarFunction(f) => (f.name().to_string(), &f.args),
                    Expr::AggregateFunction(f) => (f.func.name().to_string(), &f.params.args),
                    Expr::WindowFunction(f) => (f.fun.name().to_string(), &f.params.args),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                let arguments: Vec<String> = args
                    .iter()
                    .map(|a| match a.get_type(schema.as_ref()) {
                        Ok(t) => format!("{}: {t}", short_name(a)),
                        Err(_) => short_name(a),
                    })
                    .collect();
                let call = format!("{name}({})", arguments.join(", "));
                if !calls.contains(&call) && calls.len() < MAX_CALLS {
                    calls.push(call);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    calls
}

/// A column by its name, anything else by its (bounded) SQL text.
fn short_name(expr: &Expr) -> String {
    match expr {
        Expr::Column(c) => c.name.clone(),
        Expr::Cast(c) => short_name(&c.expr),
        other => other.to_string().chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_error_names_the_call_as_written() {
        let message = "Error during planning: No function matches the given name and argument types 'sum(Utf8)'. You might need to add explicit type casts.";
        let sql = "SELECT codice,\n  SUM( nota ) AS totale, sum(residenti)\nFROM t GROUP BY codice";
        let named = name_the_call(message, sql).unwrap();
        assert!(named.starts_with("the call `SUM( nota )` passes Utf8; text (Utf8) holding numbers needs `CAST(column AS DOUBLE)`"), "{named}");
        assert_eq!(name_the_call("column x not found", sql), None);
        let nested = "No function matches the given name and argument types 'round(Utf8, Int64)'";
        assert_eq!(
            name_the_call(nested, "SELECT round(coalesce(a, 'x'), 2) FROM t")
                .unwrap()
                .split(" passes")
                .next(),
            Some("the call `round(coalesce(a, 'x'), 2)`")
        );
    }
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn calls_name_their_columns_and_types() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("area", DataType::Utf8, true),
            Field::new("residenti", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        let plan = ctx
            .state()
            .create_logical_plan("SELECT upper(area), sum(residenti) FROM t GROUP BY area")
            .await
            .unwrap();
        let calls = calls_with_types(&plan);
        assert!(
            calls.contains(&"upper(area: Utf8)".to_string()),
            "{calls:?}"
        );
        assert!(
            calls.contains(&"sum(residenti: Int64)".to_string()),
            "{calls:?}"
        );
        let text = explain(
            "Internal error: Min/Max accumulator not implemented for type Utf8.\nThis issue was likely caused by a bug in DataFusion's code.",
            Some(&plan),
        );
        assert!(text.starts_with("the query engine could not run this query (Min/Max accumulator not implemented for type Utf8)"), "{text}");
        assert!(text.contains("sum(residenti: Int64)"), "{text}");
        assert!(!text.contains("bug in DataFusion"), "{text}");
    }
}
