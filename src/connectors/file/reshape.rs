//! Declared transformations applied after reading: point geometry from coordinate columns,
//! unpivot of wide tables, and a row filter written in SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray, new_null_array};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::config::{ColumnType, PointColumns, Unpivot};
use crate::connectors::ConnectorError;
use crate::geometry::{points_to_wkb, wkb_field};

fn transform_error(source: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Transform {
        path: source.into(),
        message: message.into(),
    }
}

fn column<'a>(
    source: &str,
    batch: &'a RecordBatch,
    name: &str,
    key: &str,
) -> Result<&'a ArrayRef, ConnectorError> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        transform_error(
            source,
            format!("`{key}` names column `{name}`, which does not exist; columns are {names:?}"),
        )
    })
}

fn as_f64(source: &str, array: &ArrayRef, name: &str) -> Result<Float64Array, ConnectorError> {
    let values = cast(array, &DataType::Float64)
        .map_err(|e| transform_error(source, format!("column `{name}` is not numeric: {e}")))?;
    Ok(values
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64")
        .clone())
}

/// Add a point geometry column built from longitude/latitude columns, or from one "lat, lon" column.
pub fn add_point(
    source: &str,
    batch: RecordBatch,
    point: &PointColumns,
) -> Result<RecordBatch, ConnectorError> {
    let geometry = if let (Some(lon), Some(lat)) = (&point.lon, &point.lat) {
        let lons = as_f64(source, column(source, &batch, lon, "point.lon")?, lon)?;
        let lats = as_f64(source, column(source, &batch, lat, "point.lat")?, lat)?;
        points_to_wkb(lons.iter().zip(lats.iter()).map(|(x, y)| Some((x?, y?))))
    } else {
        let name = point.lat_lon.as_deref().unwrap_or_default();
        let text = cast(
            column(source, &batch, name, "point.lat_lon")?,
            &DataType::Utf8,
        )
        .map_err(|e| transform_error(source, e.to_string()))?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        points_to_wkb(text.iter().map(|cell| {
            let (lat, lon) = cell?.split_once(',')?;
            Some((lon.trim().parse().ok()?, lat.trim().parse().ok()?))
        }))
    };
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if fields.iter().any(|f| f.name() == &point.column) {
        return Err(transform_error(
            source,
            format!(
                "column `{}` already exists; set `point.column` to another name",
                point.column
            ),
        ));
    }
    fields.push(wkb_field(&point.column));
    let mut columns = batch.columns().to_vec();
    columns.push(geometry);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| transform_error(source, e.to_string()))
}

/// One output row per input row and wide column: the other columns repeated, the wide column's
/// name in `name_column`, its value in `value_column` (values cast to their common type).
pub fn unpivot(
    source: &str,
    batch: RecordBatch,
    spec: &Unpivot,
) -> Result<RecordBatch, ConnectorError> {
    let schema = batch.schema();
    let matcher = match &spec.columns_matching {
        Some(pattern) => Some(
            regex::Regex::new(pattern)
                .map_err(|e| transform_error(source, format!("unpivot.columns_matching: {e}")))?,
        ),
        None => None,
    };
    let wide: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            spec.columns.contains(f.name())
                || matcher.as_ref().is_some_and(|m| m.is_match(f.name()))
        })
        .map(|(i, _)| i)
        .collect();
    for name in &spec.columns {
        if schema.index_of(name).is_err() {
            return Err(transform_error(
                source,
                format!("unpivot names column `{name}`, which does not exist"),
            ));
        }
    }
    if wide.is_empty() {
        return Err(transform_error(source, "unpivot matched no column"));
    }
    let kept: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !wide.contains(i))
        .collect();
    let value_type = wide
        .iter()
        .map(|i| schema.field(*i).data_type().clone())
        .reduce(common_type)
        .unwrap_or(DataType::Utf8);
    let name_type = match spec.name_type {
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        _ => DataType::Utf8,
    };

    let mut fields: Vec<Field> = kept.iter().map(|i| schema.field(*i).clone()).collect();
    fields.push(Field::new(&spec.name_column, name_type.clone(), false));
    fields.push(Field::new(&spec.value_column, value_type.clone(), true));
    let out_schema = Arc::new(Schema::new(fields));

    let mut parts = Vec::with_capacity(wide.len());
    for i in &wide {
        let name = schema.field(*i).name();
        let names: ArrayRef = Arc::new(StringArray::from(vec![name.as_str(); batch.num_rows()]));
        let names = cast(&names, &name_type).map_err(|e| transform_error(source, e.to_string()))?;
        if names.null_count() > 0 {
            return Err(transform_error(
                source,
                format!("unpivot: column name `{name}` is not a {name_type}"),
            ));
        }
        let values = if batch.column(*i).data_type() == &DataType::Null {
            new_null_array(&value_type, batch.num_rows())
        } else {
            cast(batch.column(*i), &value_type)
                .map_err(|e| transform_error(source, e.to_string()))?
        };
        let mut columns: Vec<ArrayRef> = kept.iter().map(|k| batch.column(*k).clone()).collect();
        columns.push(names);
        columns.push(values);
        parts.push(
            RecordBatch::try_new(out_schema.clone(), columns)
                .map_err(|e| transform_error(source, e.to_string()))?,
        );
    }
    concat_batches(&out_schema, &parts).map_err(|e| transform_error(source, e.to_string()))
}

fn common_type(a: DataType, b: DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Null, other) | (other, Null) => other,
        (Int64, Float64) | (Float64, Int64) => Float64,
        _ => Utf8,
    }
}

/// Keep the rows matching a SQL predicate, evaluated by DataFusion over the loaded batch.
pub async fn filter(
    source: &str,
    batch: RecordBatch,
    predicate: &str,
) -> Result<RecordBatch, ConnectorError> {
    let schema = batch.schema();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema.clone(), vec![vec![batch]])
        .map_err(|e| transform_error(source, e.to_string()))?;
    ctx.register_table("t", Arc::new(table))
        .map_err(|e| transform_error(source, e.to_string()))?;
    let failed = |e: datafusion::error::DataFusionError| {
        transform_error(source, format!("filter `{predicate}`: {e}"))
    };
    let frame = ctx
        .sql(&format!("SELECT * FROM t WHERE {predicate}"))
        .await
        .map_err(failed)?;
    let batches = frame.collect().await.map_err(failed)?;
    // Keep the original schema (its field metadata tags geometry columns).
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| transform_error(source, e.to_string()))?;
    concat_batches(&schema, &batches).map_err(|e| transform_error(source, e.to_string()))
}
