//! Catalogue functions psql's `\df`, DBeaver's function lists and SQLAlchemy's reflection call
//! that `datafusion-pg-catalog` does not define. There are no user-defined functions here: every
//! function is visible, and what describes a function's arguments and result is empty.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, StringArray,
    StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr_fn::SimpleScalarUDF;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};
use datafusion::scalar::ScalarValue;

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

/// A function that answers NULL for every row: what PostgreSQL answers where the object asked
/// about does not exist.
fn null(name: &str, arguments: Vec<DataType>, result: DataType) -> ScalarUDF {
    let signature = Signature::exact(arguments, Volatility::Stable);
    null_with(name, signature, result)
}

/// [`null`] taking any arguments, in any of the numbers `arities`.
fn null_of_any(name: &str, arities: &[usize], result: DataType) -> ScalarUDF {
    let signature = Signature::one_of(
        arities.iter().map(|&n| TypeSignature::Any(n)).collect(),
        Volatility::Stable,
    );
    null_with(name, signature, result)
}

fn null_with(name: &str, signature: Signature, result: DataType) -> ScalarUDF {
    let null_result = result.clone();
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        signature,
        result,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?
                .first()
                .map_or(1, |a| a.len());
            Ok(ColumnarValue::Array(arrow::array::new_null_array(
                &null_result,
                rows,
            )))
        }),
    ))
}

/// A function's first argument as text, whichever string type it came as.
fn text_argument(args: &[ColumnarValue]) -> datafusion::error::Result<StringArray> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let text = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
    Ok(text.as_string::<i32>().clone())
}

/// `current_setting(name)`: the server's value of a setting `SHOW` knows (what a session `SET`
/// is not seen here); an unknown name is an error, as in PostgreSQL.
fn current_setting() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "current_setting",
        Signature::string(1, Volatility::Stable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let names = text_argument(args)?;
            let values = names
                .iter()
                .map(|name| {
                    name.map(|name| {
                        let lower = name.to_ascii_lowercase();
                        super::session::SETTINGS
                            .iter()
                            .find(|(n, _)| *n == lower)
                            .map(|(_, v)| v.to_string())
                            .ok_or_else(|| {
                                datafusion::error::DataFusionError::Plan(format!(
                                    "unrecognized configuration parameter \"{name}\""
                                ))
                            })
                    })
                    .transpose()
                })
                .collect::<datafusion::error::Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(values)))
        }),
    ))
}

/// `json_build_object(key, value, ...)`: a JSON object of its pairs, as text (SQLAlchemy's
/// column reflection builds identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        if args.args.len() % 2 != 0 {
            return datafusion::common::exec_err!(
                "json_build_object takes keys and values, an even number of arguments, not {}",
                args.args.len()
            );
        }
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<datafusion::common::Result<_>>()?;
        let mut out = arrow::array::StringBuilder::new();
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(text_of(&key), json_of(&value));
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `information_schema._pg_expandarray(array)`: PostgreSQL expands an array into rows `(x, n)`
/// (element and position); PgJDBC's `getPrimaryKeys` and `getIndexInfo` call it on
/// `pg_index.indkey`. Here it gives the list of those pairs, and the pgwire reader wraps each
/// call in `unnest`, which makes the rows.
fn pg_expandarray() -> ScalarUDF {
    let pair = Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int32, true),
    ]);
    let item = Arc::new(Field::new_list_field(DataType::Struct(pair.clone()), true));
    let result = DataType::List(item.clone());
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "_pg_expandarray",
        Signature::any(1, Volatility::Immutable),
        result,
        Arc::new(move |args: &[ColumnarValue]| {
            let text = text_argument(args)?;
            let (mut xs, mut ns, mut lengths, mut present) = (vec![], vec![], vec![], vec![]);
            for value in text.iter() {
                // An int2vector reads "1 2"; an array "[1, 2]" or "{1,2}".
                let items = value
                    .unwrap_or_default()
                    .split(|c: char| c.is_whitespace() || ",[]{}".contains(c))
                    .filter(|s| !s.is_empty());
                let before = xs.len();
                for (position, item) in items.enumerate() {
                    xs.push(item.parse::<i64>().map_err(|_| {
                        DataFusionError::Plan(format!(
                            "_pg_expandarray: `{item}` is not an integer"
                        ))
                    })?);
                    ns.push(position as i32 + 1);
                }
                lengths.push(xs.len() - before);
                present.push(value.is_some());
            }
            let pairs = StructArray::new(
                pair.clone(),
                vec![
                    Arc::new(Int64Array::from(xs)) as ArrayRef,
                    Arc::new(Int32Array::from(ns)),
                ],
                None,
            );
            Ok(ColumnarValue::Array(Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::from_lengths(lengths),
                Arc::new(pairs),
                Some(NullBuffer::from(present)),
            ))))
        }),
    ))
}

/// `pg_data_type(name)`: a DataFusion type's name (`Int64`, `Timestamp(µs)`, as
/// `information_schema.columns.data_type` holds it) as PostgreSQL's `information_schema` names
/// the type its clients see (`bigint`, `timestamp without time zone`). The pgwire reader applies
/// it to `data_type` in catalogue statements, so Grafana's column picker and the JDBC tools read
/// PostgreSQL's names. A name it does not know stays as it is.
fn pg_data_type() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_data_type",
        Signature::string(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let names = text_argument(args)?;
            let named: StringArray = names
                .iter()
                .map(|name| name.map(postgresql_type_name))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(named)))
        }),
    ))
}

fn postgresql_type_name(arrow_name: &str) -> String {
    use pgwire::api::Type;
    let Some(pg) = arrow_name
        .parse::<DataType>()
        .ok()
        .and_then(|t| arrow_pg::datatypes::into_pg_type(&t).ok())
    else {
        return arrow_name.to_string();
    };
    let standard = match pg {
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT | Type::VARCHAR => "text",
        Type::BOOL => "boolean",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::INTERVAL => "interval",
        Type::BYTEA => "bytea",
        Type::JSON => "json",
        ref other if matches!(other.kind(), postgres_types::Kind::Array(_)) => "ARRAY",
        ref other => return other.name().to_string(),
    };
    standard.to_string()
}

fn json_build_object() -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

fn text_of(value: &ScalarValue) -> String {
    match value.try_as_str() {
        Some(Some(text)) => text.to_string(),
        _ => value.to_string(),
    }
}

fn json_of(value: &ScalarValue) -> serde_json::Value {
    use ScalarValue as S;
    match value {
        v if v.is_null() => serde_json::Value::Null,
        S::Boolean(Some(b)) => (*b).into(),
        S::Int8(Some(n)) => (*n).into(),
        S::Int16(Some(n)) => (*n).into(),
        S::Int32(Some(n)) => (*n).into(),
        S::Int64(Some(n)) => (*n).into(),
        S::UInt32(Some(n)) => (*n).into(),
        S::UInt64(Some(n)) => (*n).into(),
        S::Float64(Some(n)) => (*n).into(),
        other => text_of(other).into(),
    }
}

pub fn all() -> Vec<ScalarUDF> {
    let visible = |rows| Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef;
    let empty = |rows| Arc::new(StringArray::from(vec![""; rows])) as ArrayRef;
    vec![
        version(),
        // The types clients probe for (hstore, citext, PostGIS's geometry) are not here.
        null("to_regtype", vec![DataType::Utf8], DataType::Int32),
        // No column takes its values from a sequence (SQLAlchemy's reflection asks).
        null(
            "pg_get_serial_sequence",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Utf8,
        ),
        // No table has an index or a constraint (SQLAlchemy's index and key reflection asks).
        null_of_any("pg_get_indexdef", &[1, 3], DataType::Utf8),
        null_of_any("pg_get_constraintdef", &[1, 2], DataType::Utf8),
        constant("pg_function_is_visible", DataType::Boolean, visible),
        constant("pg_type_is_visible", DataType::Boolean, visible),
        constant("pg_collation_is_visible", DataType::Boolean, visible),
        json_build_object(),
        pg_expandarray(),
        pg_data_type(),
        current_setting(),
        constant("pg_get_function_result", DataType::Utf8, empty),
        constant("pg_get_function_arguments", DataType::Utf8, empty),
        constant("pg_get_function_identity_arguments", DataType::Utf8, empty),
    ]
}
