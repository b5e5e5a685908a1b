//! `||` on strings, bounded like every scalar function (see `bounded`). DataFusion evaluates
//! `a || b` on strings as a binary operator, not a function, so the function wrapper never sees it:
//! a chain `s || s || … || s` over a large `s` could build a value hundreds of times the memory
//! limit. This rewrite plans the operator as `string_concat`, a function with the operator's
//! meaning (a NULL operand gives NULL; any other operand is cast to text), which the wrapper
//! then bounds before it allocates.

use std::sync::Arc;

use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray, LargeStringArray, LargeStringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

/// Plans `||` between operands that are not lists as `string_concat`.
#[derive(Debug)]
pub struct StringConcatRewrite {
    function: Arc<ScalarUDF>,
}

impl StringConcatRewrite {
    /// `function` is the registered (bounded) `string_concat`.
    pub fn new(function: Arc<ScalarUDF>) -> Self {
        Self { function }
    }
}

fn is_list(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
    )
}

impl FunctionRewrite for StringConcatRewrite {
    fn name(&self) -> &str {
        "string_concat_rewrite"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::StringConcat,
            right,
        }) = expr
        else {
            return Ok(Transformed::no(expr));
        };
        // A chain `a || b || c` arrives innermost first: its left side is already one
        // `string_concat` call, which takes the next operand as one more argument. A flat call
        // keeps a chain of any length as shallow as one operator, and its cost linear.
        let left = match *left {
            Expr::ScalarFunction(ScalarFunction { func, mut args })
                if Arc::ptr_eq(&func, &self.function)
                    && right.get_type(schema).is_ok_and(|r| !is_list(&r)) =>
            {
                args.push(*right);
                return Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func,
                    args,
                })));
            }
            other => Box::new(other),
        };
        let types = (left.get_type(schema), right.get_type(schema));
        match types {
            (Ok(l), Ok(r)) if !is_list(&l) && !is_list(&r) => {
                Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func: self.function.clone(),
                    args: vec![*left, *right],
                })))
            }
            _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::StringConcat,
                right,
            }))),
        }
    }
}

/// `string_concat(a, b, …)`: `a || b || …` on text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StringConcat {
    signature: Signature,
}

impl Default for StringConcat {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        "string_concat"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The type `||` gives: a string view if either side is one, else a large string if either
    /// side is one, else a string.
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(if arg_types.contains(&DataType::Utf8View) {
            DataType::Utf8View
        } else if arg_types.contains(&DataType::LargeUtf8) {
            DataType::LargeUtf8
        } else {
            DataType::Utf8
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let text: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                Ok(arrow::compute::cast(&array, &DataType::LargeUtf8)?)
            })
            .collect::<Result<_>>()?;
        let operands: Vec<&LargeStringArray> = text.iter().map(|a| a.as_string::<i64>()).collect();
        let bytes: usize = operands.iter().map(|a| a.value_data().len()).sum();
        let mut builder = LargeStringBuilder::with_capacity(rows, bytes);
        for row in 0..rows {
            // NULL if any operand is NULL, as `||` gives.
            if operands.iter().any(|a| a.is_null(row)) {
                builder.append_null();
                continue;
            }
            for operand in &operands {
                builder
                    .write_str(operand.value(row))
                    .expect("writing to a String");
            }
            builder.append_value("");
        }
        let joined: ArrayRef = Arc::new(builder.finish());
        let joined = arrow::compute::cast(&joined, args.return_field.data_type())?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&joined, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(joined))
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use datafusion::prelude::SessionContext;

    async fn text(ctx: &SessionContext, sql: &str) -> Vec<Option<String>> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let column =
                    arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
                let strings = arrow::array::AsArray::as_string::<i32>(&column).clone();
                (0..strings.len())
                    .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The rewritten operator means what `||` meant: same results, NULLs included, on the
    /// engine's own context with and without the rewrite.
    #[tokio::test]
    async fn rewritten_concat_means_the_same() {
        let plain = SessionContext::new();
        let bounded = SessionContext::new();
        super::super::bounded::register_string_concat(&bounded, 1 << 30);
        for sql in [
            "SELECT 'a' || 'b'",
            "SELECT 'a' || NULL",
            "SELECT NULL || 'a'",
            "SELECT 1 || 'x' || 2.5",
            "SELECT 'a' || 'b' || NULL || 'c'",
            "SELECT column1 || column2 || column1 || '.' FROM (VALUES ('a', 'b'), (NULL, 'c'), ('d', NULL))",
            "SELECT (column1 || column2) || (column2 || column1) FROM (VALUES ('a', 'b'), ('c', 'd'))",
            "SELECT column1 || '-' || column2 FROM (VALUES ('a', 'b'), (NULL, 'c'), ('d', NULL))",
            "SELECT arrow_cast('v', 'Utf8View') || arrow_cast('w', 'LargeUtf8')",
            "SELECT CAST(DATE '2024-01-02' AS VARCHAR) || 'T'",
        ] {
            assert_eq!(text(&plain, sql).await, text(&bounded, sql).await, "{sql}");
        }
        // A long chain is one flat call: planned at once and computed like the operator.
        let chain = format!("SELECT {}", vec!["'ab'"; 900].join(" || "));
        assert_eq!(text(&bounded, &chain).await, [Some("ab".repeat(900))]);
        // Lists keep their own `||`.
        let lists = "SELECT cardinality([1, 2] || [3])";
        let batches = bounded.sql(lists).await.unwrap().collect().await.unwrap();
        assert_eq!(batches[0].num_rows(), 1);
    }
}
