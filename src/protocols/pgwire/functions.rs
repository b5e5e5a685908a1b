//! Catalogue functions psql's `\df` (and DBeaver's function lists) call that
//! `datafusion-pg-catalog` does not define. There are no user-defined functions here: every
//! function is visible, and what describes a function's arguments and result is empty.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// A function of one `oid` that answers the same for every row.
fn constant(name: &str, result: DataType, value: fn(usize) -> ArrayRef) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int32],
        result,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?
                .first()
                .map_or(1, |a| a.len());
            Ok(ColumnarValue::Array(value(rows)))
        }),
    )
}

/// `version()` as PostgreSQL words it: clients (SQLAlchemy, DBeaver) read the server's version
/// from it. Replaces DataFusion's own `version()` while pgwire is on.
fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {} (cruscotto {}, Apache DataFusion 55) on x86_64-pc-linux-gnu",
        super::SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::scalar::ScalarValue::Utf8(Some(text.clone())),
            ))
        }),
    )
}

/// `to_regtype(name)`: the oid of a type by name. The types clients probe for (hstore, citext,
/// PostGIS's geometry) are not here: NULL, as PostgreSQL answers for an unknown type.
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?
                .first()
                .map_or(1, |a| a.len());
            Ok(ColumnarValue::Array(Arc::new(
                arrow::array::Int32Array::from(vec![None; rows]),
            )))
        }),
    )
}

pub fn all() -> Vec<ScalarUDF> {
    let visible = |rows| Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef;
    let empty = |rows| Arc::new(StringArray::from(vec![""; rows])) as ArrayRef;
    vec![
        version(),
        to_regtype(),
        constant("pg_function_is_visible", DataType::Boolean, visible),
        constant("pg_type_is_visible", DataType::Boolean, visible),
        constant("pg_get_function_result", DataType::Utf8, empty),
        constant("pg_get_function_arguments", DataType::Utf8, empty),
        constant("pg_get_function_identity_arguments", DataType::Utf8, empty),
    ]
}
