//! Scalar functions that cannot build a value larger than a query's memory budget.
//!
//! DataFusion's memory pool accounts for what joins, sorts and aggregations hold, not for the
//! arrays a scalar function returns: `repeat('x', 2147483647)` allocated 8 GiB under a 512 MiB
//! limit. Every scalar function of the session is wrapped here. Before it runs, the wrapper bounds
//! the bytes it is about to build from its arguments (exactly for the functions whose output size
//! an argument sets — `repeat`, `lpad`, `rpad`, `array_repeat`, `array_resize`, `range`,
//! `generate_series` — and from the inputs for those that amplify them, such as `replace`,
//! `regexp_replace`, `array_to_string`, `string_to_array`, `encode`; other functions that build
//! strings or lists are bounded by the sum of their inputs); after it runs, the result itself is
//! measured. Over the budget, the query fails with the memory-limit error, before allocating.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping, Volatility,
};
use datafusion::prelude::SessionContext;

/// Plan `||` on text as the function `string_concat` (see `concat`), bounded like the others.
pub fn register_string_concat(ctx: &SessionContext, budget: usize) {
    use datafusion::execution::FunctionRegistry;
    let function = Arc::new(bounded(
        &ScalarUDF::new_from_impl(super::concat::StringConcat::default()),
        budget,
    ));
    ctx.register_udf(function.as_ref().clone());
    let rewrite = super::concat::StringConcatRewrite::new(function);
    ctx.state_ref()
        .write()
        .register_function_rewrite(Arc::new(rewrite))
        .expect("registering a function rewrite cannot fail");
}

/// Replace every scalar function registered in `ctx` by its bounded version.
pub fn register(ctx: &SessionContext, budget: usize) {
    if !ctx.state().scalar_functions().contains_key("string_concat") {
        register_string_concat(ctx, budget);
    }
    let functions: Vec<Arc<ScalarUDF>> = ctx.state().scalar_functions().values().cloned().collect();
    for function in functions {
        if !function.inner().is::<Bounded>() {
            ctx.register_udf(bounded(function.as_ref(), budget));
        }
    }
}

/// Functions whose output size their arguments set, many times their inputs. They are not folded
/// into literals while a query is planned: a folded value is copied with the plan (in names,
/// rewrites and displays) where no budget sees it, so three folded 100 MB values peaked at
/// 2.4 GiB. They run with the query instead, once per batch, bounded like every function.
const SIZED_BY_ARGUMENTS: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "array_repeat",
    "list_repeat",
    "array_resize",
    "list_resize",
    "range",
    "generate_series",
    "replace",
    "regexp_replace",
    "array_to_string",
    "list_to_string",
    "array_join",
    "list_join",
    "concat",
    "concat_ws",
    "string_concat",
];

fn bounded(function: &ScalarUDF, budget: usize) -> ScalarUDF {
    let mut signature = function.signature().clone();
    if SIZED_BY_ARGUMENTS.contains(&function.name()) {
        signature.volatility = Volatility::Volatile;
    }
    ScalarUDF::new_from_impl(Bounded {
        inner: function.inner().clone().into(),
        signature,
        budget,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    /// The inner function's, volatile for the functions `SIZED_BY_ARGUMENTS`.
    signature: Signature,
    budget: usize,
}

impl Bounded {
    fn refuse(&self, bytes: usize) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "`{}` would build {} of values, more than the query's memory limit of {}",
            self.inner.name(),
            bytesize::ByteSize::b(bytes as u64),
            bytesize::ByteSize::b(self.budget as u64),
        ))
    }

    /// Wrap the functions a simplification put in place of this one, so none escapes the bound.
    fn wrap_all(&self, expr: Expr) -> Result<Expr> {
        expr.transform_up(|e| match e {
            Expr::ScalarFunction(ScalarFunction { func, args })
                if !func.inner().is::<Bounded>() =>
            {
                let func = Arc::new(bounded(&func, self.budget));
                Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func,
                    args,
                })))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let builds = matches!(
            args.return_field.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::ListView(_)
                | DataType::LargeListView(_)
                | DataType::FixedSizeList(..)
                | DataType::Map(..)
                | DataType::Struct(_)
        );
        if builds {
            let estimate = output_estimate(self.inner.name(), &args.args, args.number_rows);
            if estimate > self.budget {
                return Err(self.refuse(estimate));
            }
        }
        let result = self.inner.invoke_with_args(args)?;
        let size = match &result {
            ColumnarValue::Array(array) => array.get_array_memory_size(),
            ColumnarValue::Scalar(scalar) => scalar.size(),
        };
        if size > self.budget {
            return Err(self.refuse(size));
        }
        Ok(result)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        self.inner
            .with_updated_config(config)
            .map(|updated| bounded(&updated, self.budget))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                Ok(ExprSimplifyResult::Simplified(self.wrap_all(expr)?))
            }
            original => Ok(original),
        }
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}

/// An upper bound, in bytes, of what `function` builds from `args` over `rows` rows. Saturating:
/// a bound that overflows is over any budget.
fn output_estimate(function: &str, args: &[ColumnarValue], rows: usize) -> usize {
    let arg = |i: usize| args.get(i).map(Arg::of);
    let sum_rows = |f: &dyn Fn(usize) -> usize| -> usize {
        (0..rows.max(1)).fold(0usize, |total, row| total.saturating_add(f(row)))
    };
    let inputs = || {
        args.iter()
            .map(|a| Values::of(a).total_bytes(rows))
            .fold(0usize, usize::saturating_add)
    };
    match function {
        "repeat" => match (arg(0), arg(1)) {
            (Some(text), Some(count)) => {
                sum_rows(&|row| text.bytes(row).saturating_mul(count.count(row)))
            }
            _ => inputs(),
        },
        "lpad" | "rpad" => match arg(1) {
            // A character takes at most 4 bytes in UTF-8.
            Some(length) => {
                let text = arg(0).map_or(0, |t| t.total_bytes(rows));
                sum_rows(&|row| length.count(row).saturating_mul(4)).saturating_add(text)
            }
            None => inputs(),
        },
        "array_repeat" | "list_repeat" => match (arg(0), arg(1)) {
            (Some(element), Some(count)) => {
                sum_rows(&|row| element.bytes(row).max(8).saturating_mul(count.count(row)))
            }
            _ => inputs(),
        },
        "array_resize" | "list_resize" => match (arg(0), arg(1)) {
            (Some(list), Some(size)) => {
                let element = arg(2)
                    .map_or(16, |v| v.total_bytes(rows) / rows.max(1))
                    .max(16);
                sum_rows(&|row| size.count(row).saturating_mul(element))
                    .saturating_add(list.total_bytes(rows))
            }
            _ => inputs(),
        },
        "range" | "generate_series" => series_estimate(args, rows),
        "replace" => match (arg(0), arg(1), arg(2)) {
            (Some(text), Some(from), Some(to)) => sum_rows(&|row| {
                let matches = text.bytes(row) / from.bytes(row).max(1);
                text.bytes(row)
                    .saturating_add(matches.saturating_mul(to.bytes(row)))
            }),
            _ => inputs(),
        },
        "regexp_replace" => match (arg(0), arg(2)) {
            // A pattern may match at every position, and each reference to a group in the
            // replacement may copy the whole text.
            (Some(text), Some(replacement)) => sum_rows(&|row| {
                let references = replacement.references(row);
                let per_match = replacement
                    .bytes(row)
                    .saturating_add(references.saturating_mul(text.bytes(row)));
                text.bytes(row)
                    .saturating_add((text.bytes(row) + 1).saturating_mul(per_match))
            }),
            _ => inputs(),
        },
        "array_to_string" | "list_to_string" | "array_join" | "list_join" => {
            match (arg(0), arg(1)) {
                // Each element becomes at most its display (numbers: 24 bytes) and a delimiter.
                (Some(list), Some(delimiter)) => sum_rows(&|row| {
                    let elements = list.elements(row);
                    elements
                        .saturating_mul(delimiter.bytes(row).saturating_add(24))
                        .saturating_add(list.bytes(row))
                }),
                _ => inputs(),
            }
        }
        // Each character can become an element: an offset and a one-character string.
        "string_to_array" | "string_to_list" | "regexp_match" => inputs().saturating_mul(16),
        "encode" | "to_hex" | "translate" | "upper" | "lower" | "initcap" => {
            inputs().saturating_mul(4)
        }
        _ => inputs(),
    }
}

/// `range` and `generate_series` as scalar functions build lists of (stop − start) / step values.
fn series_estimate(args: &[ColumnarValue], rows: usize) -> usize {
    let ints: Vec<Arg> = args.iter().map(Arg::of).collect();
    (0..rows.max(1)).fold(0usize, |total, row| {
        let value = |i: usize| ints.get(i).and_then(|v| v.int(row));
        let (start, stop, step) = match ints.len() {
            1 => (Some(0), value(0), Some(1)),
            2 => (value(0), value(1), Some(1)),
            _ => (value(0), value(1), value(2)),
        };
        let count = match (start, stop, step) {
            (Some(start), Some(stop), Some(step)) if step != 0 => {
                ((stop as i128 - start as i128) / step as i128).unsigned_abs() + 1
            }
            // Dates, timestamps and intervals: the length of the series is not known from the
            // arguments' bytes alone; bound it by the inputs and let the result check catch it.
            _ => 1,
        };
        total.saturating_add(usize::try_from(count.saturating_mul(8)).unwrap_or(usize::MAX))
    })
}

/// One argument, read per row.
enum Values<'a> {
    Scalar(&'a ScalarValue),
    Array(&'a ArrayRef),
}

/// An argument with, when it is of an integer type, its values as `Int64` read once per batch.
struct Arg<'a> {
    values: Values<'a>,
    ints: Ints,
}

enum Ints {
    None,
    Scalar(Option<i64>),
    Array(arrow::array::Int64Array),
}

impl<'a> std::ops::Deref for Arg<'a> {
    type Target = Values<'a>;
    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

impl<'a> Values<'a> {
    fn of(value: &'a ColumnarValue) -> Self {
        match value {
            ColumnarValue::Scalar(scalar) => Values::Scalar(scalar),
            ColumnarValue::Array(array) => Values::Array(array),
        }
    }
}

impl<'a> Arg<'a> {
    fn of(value: &'a ColumnarValue) -> Self {
        let (values, ints) = match value {
            ColumnarValue::Scalar(scalar) => {
                let int = (!scalar.is_null() && scalar.data_type().is_integer())
                    .then(|| match scalar.cast_to(&DataType::Int64) {
                        Ok(ScalarValue::Int64(value)) => value,
                        _ => None,
                    })
                    .flatten();
                (Values::Scalar(scalar), Ints::Scalar(int))
            }
            ColumnarValue::Array(array) => {
                let ints = if array.data_type().is_integer() {
                    arrow::compute::cast(array, &DataType::Int64)
                        .map(|a| {
                            Ints::Array(a.as_primitive::<arrow::datatypes::Int64Type>().clone())
                        })
                        .unwrap_or(Ints::None)
                } else {
                    Ints::None
                };
                (Values::Array(array), ints)
            }
        };
        Arg { values, ints }
    }

    /// The value of an integer argument, if it is one.
    fn int(&self, row: usize) -> Option<i64> {
        match &self.ints {
            Ints::None => None,
            Ints::Scalar(value) => *value,
            Ints::Array(array) => {
                (row < array.len() && array.is_valid(row)).then(|| array.value(row))
            }
        }
    }

    /// A count argument: negative and null count as 0.
    fn count(&self, row: usize) -> usize {
        self.int(row)
            .map_or(0, |n| usize::try_from(n.max(0)).unwrap_or(usize::MAX))
    }
}

impl Values<'_> {
    /// The bytes of the value at `row`: a string's or binary's length, a list's elements' size.
    fn bytes(&self, row: usize) -> usize {
        match self {
            Values::Scalar(scalar) => scalar_bytes(scalar),
            Values::Array(array) => array_value_bytes(array, row),
        }
    }

    /// The bytes of the whole argument over `rows` rows (a scalar counts once per row).
    fn total_bytes(&self, rows: usize) -> usize {
        match self {
            Values::Scalar(scalar) => scalar_bytes(scalar).saturating_mul(rows.max(1)),
            Values::Array(array) => array.get_array_memory_size(),
        }
    }

    /// The number of elements of a list value.
    fn elements(&self, row: usize) -> usize {
        let array = match self {
            Values::Scalar(scalar) => match scalar.to_array() {
                Ok(array) => return list_lengths(&array, 0),
                Err(_) => return 0,
            },
            Values::Array(array) => array,
        };
        list_lengths(array, row)
    }

    /// How many references to capture groups (`\1`, `${name}`) a replacement holds.
    fn references(&self, row: usize) -> usize {
        let text = match self {
            Values::Scalar(scalar) => match scalar {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => s.clone(),
                _ => return 0,
            },
            Values::Array(array) => match ScalarValue::try_from_array(array, row) {
                Ok(ScalarValue::Utf8(Some(s)))
                | Ok(ScalarValue::LargeUtf8(Some(s)))
                | Ok(ScalarValue::Utf8View(Some(s))) => s,
                _ => return 0,
            },
        };
        text.matches('\\').count() + text.matches('$').count()
    }
}

fn scalar_bytes(scalar: &ScalarValue) -> usize {
    match scalar {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len(),
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => b.len(),
        other => other.size(),
    }
}

fn array_value_bytes(array: &ArrayRef, row: usize) -> usize {
    if array.is_null(row) {
        return 0;
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len(),
        DataType::Utf8View => array.as_string_view().value(row).len(),
        DataType::Binary => array.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len(),
        _ => array.slice(row, 1).get_array_memory_size(),
    }
}

fn list_lengths(array: &ArrayRef, row: usize) -> usize {
    if row >= array.len() || array.is_null(row) {
        return 0;
    }
    match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value_length(row) as usize,
        DataType::LargeList(_) => array.as_list::<i64>().value_length(row) as usize,
        DataType::FixedSizeList(_, n) => *n as usize,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget_ctx() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx, 64 * 1024 * 1024);
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    /// Each function whose output an argument sizes is refused over the budget before it
    /// allocates, for literal and column arguments alike, and still works under it.
    #[tokio::test]
    async fn sized_outputs_are_refused_over_the_budget() {
        let ctx = budget_ctx();
        let huge = [
            "SELECT length(repeat('x', 1000000000))",
            "SELECT length(repeat('x', 2147483647))",
            "SELECT length(repeat('xy', n)) FROM (VALUES (10), (2000000000)) t(n)",
            "SELECT length(lpad('x', 1000000000, 'y'))",
            "SELECT length(rpad('x', 1000000000))",
            "SELECT cardinality(array_repeat(1, 200000000))",
            "SELECT cardinality(array_repeat(repeat('x', 100), 10000000))",
            "SELECT cardinality(array_resize([1], 500000000, 0))",
            "SELECT cardinality(range(0, 3000000000))",
            "SELECT cardinality(generate_series(1, 3000000000, 1))",
            "SELECT length(replace(repeat('x', 100000), 'x', repeat('y', 100000)))",
            "SELECT length(regexp_replace(repeat('x', 10000), '', repeat('y', 10000), 'g'))",
            "SELECT length(array_to_string(array_repeat(1, 1000000), repeat('-', 1000)))",
            "SELECT length(concat(repeat('x', 20000000), repeat('x', 20000000), repeat('x', 20000000), repeat('x', 20000000)))",
            "SELECT length(repeat(repeat('x', 10000), 10000))",
            "SELECT length(s || s || s || s) FROM (SELECT repeat('x', 20000000) AS s)",
        ];
        for sql in huge {
            let error = run(&ctx, sql).await.expect_err(sql);
            assert!(
                matches!(error.find_root(), DataFusionError::ResourcesExhausted(_)),
                "{sql}: {error}"
            );
            assert!(error.to_string().contains("memory limit"), "{sql}: {error}");
        }
        let small = [
            ("SELECT length(repeat('x', 1000000))", 1_000_000i64),
            ("SELECT length(lpad('x', 1000, 'y'))", 1000),
            ("SELECT cardinality(array_repeat(1, 1000))", 1000),
            (
                "SELECT length(replace(repeat('ab', 1000), 'a', 'xyz'))",
                4000,
            ),
            ("SELECT length(concat('a', 'b', repeat('c', 10)))", 12),
        ];
        for (sql, expected) in small {
            let batches = run(&ctx, sql).await.expect(sql);
            let value = ScalarValue::try_from_array(batches[0].column(0), 0).unwrap();
            assert_eq!(
                value.cast_to(&DataType::Int64).unwrap(),
                ScalarValue::Int64(Some(expected)),
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn every_function_is_wrapped_once() {
        let ctx = budget_ctx();
        register(&ctx, 1);
        for function in ctx.state().scalar_functions().values() {
            let bounded = function
                .inner()
                .downcast_ref::<Bounded>()
                .unwrap_or_else(|| panic!("{} is not bounded", function.name()));
            assert_eq!(bounded.budget, 64 * 1024 * 1024, "{}", function.name());
        }
    }
}
