//! `LIKE … ESCAPE 'c'` with an escape character other than the backslash. DataFusion plans the
//! clause but runs only the backslash (`LIKE does not support escape_char other than the
//! backslash`), while PostgreSQL clients send others: SQLAlchemy's reflection sends
//! `nspname NOT LIKE $1::VARCHAR || '%' ESCAPE '/'` with `pg/_` bound. Such a `LIKE` is planned
//! as `LIKE like_escape(pattern, 'c')`: PostgreSQL's own `like_escape`, which writes the pattern
//! with backslash escapes, so it matches the same strings whatever the pattern is (a literal is
//! folded while planning, a column or a parameter converted as the query runs).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};
use datafusion::prelude::SessionContext;

/// Register `like_escape(pattern, escape)` and plan every `LIKE` with another escape character
/// through it.
pub fn register(ctx: &SessionContext) {
    let function = Arc::new(ScalarUDF::new_from_impl(LikeEscape::default()));
    ctx.register_udf(function.as_ref().clone());
    ctx.state_ref()
        .write()
        .register_function_rewrite(Arc::new(EscapeRewrite { function }))
        .expect("registering a function rewrite cannot fail");
}

#[derive(Debug)]
struct EscapeRewrite {
    function: Arc<ScalarUDF>,
}

impl FunctionRewrite for EscapeRewrite {
    fn name(&self) -> &str {
        "like_escape_rewrite"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        match expr {
            Expr::Like(like) if like.escape_char.is_some_and(|c| c != '\\') => {
                let escape = like.escape_char.map(String::from).unwrap_or_default();
                Ok(Transformed::yes(Expr::Like(Like {
                    pattern: Box::new(self.function.call(vec![*like.pattern, lit(escape)])),
                    escape_char: None,
                    ..like
                })))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// `like_escape(pattern, escape)`: `pattern`, whose escape character is `escape` (empty: none,
/// every character literal but the wildcards), written with backslash escapes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LikeEscape {
    signature: Signature,
}

impl Default for LikeEscape {
    fn default() -> Self {
        Self {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for LikeEscape {
    fn name(&self) -> &str {
        "like_escape"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(like_escape, vec![])(&args.args)
    }
}

/// The patterns of `arrays[0]` written with backslash escapes in place of the escape
/// characters of `arrays[1]`.
fn like_escape(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let (patterns, escapes) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
    let mut out = StringBuilder::with_capacity(patterns.len(), patterns.value_data().len());
    for row in 0..patterns.len() {
        if patterns.is_null(row) || escapes.is_null(row) {
            out.append_null();
            continue;
        }
        let mut escape = escapes.value(row).chars();
        let escape = match (escape.next(), escape.next()) {
            (None, _) => None,
            (Some(c), None) => Some(c),
            _ => {
                return exec_err!(
                    "invalid escape string `{}`: an escape string must be empty or one character",
                    escapes.value(row)
                );
            }
        };
        match escaped_with_backslash(patterns.value(row), escape) {
            Some(pattern) => out.append_value(pattern),
            None => {
                return exec_err!(
                    "LIKE pattern `{}` must not end with the escape character",
                    patterns.value(row)
                );
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `pattern` with backslash escapes in place of `escape`; `None` when it ends in a lone escape
/// character, which PostgreSQL refuses too.
fn escaped_with_backslash(pattern: &str, escape: Option<char>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            out.push('\\');
            out.push(chars.next()?);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;

    use super::*;

    #[test]
    fn other_escape_characters_become_backslashes() {
        let cases = [
            ("pg/_%", Some('/'), Some("pg\\_%")),
            ("a//b\\c!%", Some('/'), Some("a\\/b\\\\c!%")),
            ("50!%", Some('!'), Some("50\\%")),
            ("a\\_", None, Some("a\\\\_")),
            ("ends/", Some('/'), None),
        ];
        for (pattern, escape, expected) in cases {
            assert_eq!(
                escaped_with_backslash(pattern, escape).as_deref(),
                expected,
                "{pattern}"
            );
        }
    }

    async fn rows(ctx: &SessionContext, sql: String, params: Vec<ScalarValue>) -> Vec<String> {
        let frame = ctx
            .sql(&sql)
            .await
            .unwrap()
            .with_param_values(params)
            .unwrap();
        let batches = frame.collect().await.unwrap();
        let column = arrow::compute::cast(batches[0].column(0), &DataType::Utf8).unwrap();
        let strings = column.as_string::<i32>();
        (0..strings.len())
            .map(|i| strings.value(i).to_string())
            .collect()
    }

    /// On a session with the rewrite: the rows PostgreSQL gives, for a literal pattern, a
    /// column of patterns and a bound parameter (as the extended protocol sends it).
    #[tokio::test]
    async fn like_with_another_escape_matches_what_postgresql_matches() {
        let ctx = SessionContext::new();
        register(&ctx);
        let names = "(SELECT * FROM (VALUES ('pg_catalog'), ('pgx'), ('pg_toast'), ('public'), ('50%'), ('500')) AS t(n))";
        let not_pg = ["50%", "500", "pgx", "public"];
        let sql = format!("SELECT n FROM {names} WHERE n NOT LIKE 'pg/_%' ESCAPE '/' ORDER BY n");
        assert_eq!(rows(&ctx, sql, vec![]).await, not_pg);
        let sql = format!("SELECT n FROM {names} WHERE n LIKE '50!%' ESCAPE '!'");
        assert_eq!(rows(&ctx, sql, vec![]).await, ["50%"]);
        let sql = format!(
            "SELECT n FROM {names} CROSS JOIN (VALUES ('pg#_' || '%')) AS p(p) WHERE n LIKE p ESCAPE '#' ORDER BY n"
        );
        assert_eq!(rows(&ctx, sql, vec![]).await, ["pg_catalog", "pg_toast"]);
        let sql = format!("SELECT n FROM {names} WHERE n NOT LIKE $1 || '%' ESCAPE '/' ORDER BY n");
        assert_eq!(
            rows(&ctx, sql, vec![ScalarValue::from("pg/_")]).await,
            not_pg
        );
        let error = ctx
            .sql("SELECT 'a' LIKE 'a/' ESCAPE '/'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("must not end with the escape character"),
            "{error}"
        );
    }
}
