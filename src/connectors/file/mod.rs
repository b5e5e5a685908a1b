//! The `file` connector: CSV, JSON, NDJSON, Parquet and GeoJSON files on disk, re-read on an
//! interval. Each `[[table]]` is read on its own, so one missing file fails only its table.

mod config;
// The `http` connector reads response bodies with the same readers, typer and reshaping.
pub(crate) mod csv;
pub(crate) mod json;
pub(crate) mod names;
mod reproject;
pub(crate) mod reshape;
pub(crate) mod typed;

pub use config::{
    ColumnNames, ColumnType, FileConnectorConfig, FileFormat, FileTableConfig, PointColumns,
    SimulatedFile, SimulatedKind,
};

use std::path::{Path, PathBuf};

use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Connector, ConnectorError, LoadState, LoadedTable, RejectedRecord, TableLoad};
use crate::config::resolve;

pub struct FileConnector {
    config: FileConnectorConfig,
    base_dir: PathBuf,
}

impl FileConnector {
    pub fn new(config: FileConnectorConfig, base_dir: &Path) -> Self {
        Self {
            config,
            base_dir: base_dir.to_path_buf(),
        }
    }
}

impl Connector for FileConnector {
    fn load<'a>(&'a self, _state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        async move {
            let mut loads = Vec::with_capacity(self.config.tables.len());
            for table in &self.config.tables {
                let path = resolve(&self.base_dir, &table.path);
                let result = match simulate_if_missing(table, &path, &self.base_dir).await {
                    Ok(()) => load_table(table.clone(), path.clone()).await,
                    Err(e) => Err(e),
                };
                loads.push(TableLoad {
                    table: table.name.clone(),
                    source: path.display().to_string(),
                    result,
                });
            }
            loads
        }
        .boxed()
    }
}

/// A simulated table's file is written by its simulator the first time it is wanted.
async fn simulate_if_missing(
    table: &FileTableConfig,
    path: &Path,
    base_dir: &Path,
) -> Result<(), ConnectorError> {
    let Some(simulate) = &table.simulate else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let options = match simulate.kind {
        SimulatedKind::ServiceLogs => crate::simulate::ServiceLogOptions {
            areas: resolve(base_dir, &simulate.areas),
            seed: simulate.seed,
            events: simulate.events,
            year: simulate.year,
        },
    };
    let rows = crate::simulate::write_service_logs(path, &options)
        .await
        .map_err(|e| ConnectorError::Transform {
            path: path.to_path_buf(),
            message: format!("simulating the file: {e}"),
        })?;
    tracing::info!(table = %table.name, path = %path.display(), rows, "simulated data written");
    Ok(())
}

/// Read, type and reshape one table.
pub async fn load_table(
    table: FileTableConfig,
    path: PathBuf,
) -> Result<LoadedTable, ConnectorError> {
    let source = path.display().to_string();
    let reading = {
        let table = table.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_file(&table, &path))
    };
    let (batch, mut rejected) = reading.await.map_err(|e| ConnectorError::Parse {
        path: path.clone(),
        message: format!("reader task failed: {e}"),
    })??;
    let (batch, refused) = reshaped(&table, &source, batch).await?;
    rejected.extend(refused);
    Ok(LoadedTable::replace(batch.schema(), vec![batch], rejected))
}

/// The declared reshaping of a read table: point geometry, unpivot, filter.
async fn reshaped(
    table: &FileTableConfig,
    source: &str,
    mut batch: RecordBatch,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let mut rejected = Vec::new();
    if let Some(point) = &table.point {
        let crs = declared_crs(table, source)?.unwrap_or(crate::geometry::WGS84);
        let (with_points, refused) = reshape::add_point_in(source, batch, point, crs)?;
        batch = with_points;
        rejected = refused;
    }
    if let Some(spec) = &table.unpivot {
        batch = reshape::unpivot(source, batch, spec)?;
    }
    if let Some(predicate) = &table.filter {
        batch = reshape::filter(source, batch, predicate).await?;
    }
    Ok((batch, rejected))
}

/// The table's schema as a load would make it, for `cruscotto check`: a Parquet file from its
/// footer alone; a text file is read and typed (its types are inferred from its values) but
/// nothing is stored. A simulated table whose file is not there yet is described from a small
/// simulation in `scratch`.
pub async fn describe_table(
    table: &FileTableConfig,
    base_dir: &Path,
    scratch: &Path,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RejectedRecord>), ConnectorError> {
    let mut path = resolve(base_dir, &table.path);
    if let Some(simulate) = table.simulate.as_ref().filter(|_| !path.exists()) {
        let mut small = table.clone();
        let mut options = simulate.clone();
        options.events = options.events.min(1_000);
        small.simulate = Some(options);
        path = scratch.join(format!("{}.{}", table.name, extension_of(&table.path)));
        simulate_if_missing(&small, &path, base_dir).await?;
    }
    if table.format() == Some(FileFormat::Parquet) {
        let file = std::fs::File::open(&path).map_err(|source| ConnectorError::Read {
            path: path.clone(),
            source,
        })?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| ConnectorError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let empty = RecordBatch::new_empty(builder.schema().clone());
        let batch = cast_declared(&path, table, renamed(table, &path, empty)?)?;
        let source = path.display().to_string();
        return Ok((
            reshaped(table, &source, batch).await?.0.schema(),
            Vec::new(),
        ));
    }
    let loaded = load_table(table.clone(), path).await?;
    Ok((loaded.schema, loaded.rejected))
}

fn extension_of(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("csv")
        .to_string()
}

/// The final name of a column: normalised, then renamed.
fn column_name(table: &FileTableConfig, original: &str, position: usize) -> String {
    let name = match table.column_names {
        ColumnNames::SnakeCase => names::snake_case(original, position),
        ColumnNames::Keep => original.to_string(),
    };
    table.rename.get(&name).cloned().unwrap_or(name)
}

/// The table's `crs` (checked by `cruscotto check`; a load of an unchecked one fails here).
fn declared_crs(
    table: &FileTableConfig,
    source: &str,
) -> Result<Option<&'static crate::geometry::Epsg>, ConnectorError> {
    table
        .declared_crs()
        .map_err(|why| ConnectorError::Transform {
            path: source.into(),
            message: format!("`crs`: {why}"),
        })
}

fn read_file(
    table: &FileTableConfig,
    path: &Path,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let format = table.format().ok_or_else(|| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: "unknown format: set `format`".into(),
    })?;
    let declared = declared_crs(table, &path.display().to_string())?;
    if format == FileFormat::Parquet {
        let batch = read_parquet(table, path)?;
        return match declared {
            Some(crs) => reproject::reproject(&path.display().to_string(), batch, crs),
            None => Ok((batch, Vec::new())),
        };
    }
    let bytes = std::fs::read(path).map_err(|source| ConnectorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = csv::decode(path, &bytes, &table.encoding)?;
    let source = path.display().to_string();
    let rename = |key: &str| column_name(table, key, 0);
    let (batch, rejected) = match format {
        FileFormat::Csv => {
            let (text_table, mut rejected) = csv::parse(path, &text, table)?;
            let columns = names::deduplicate(
                text_table
                    .header
                    .iter()
                    .enumerate()
                    .map(|(i, h)| column_name(table, h, i + 1))
                    .collect(),
            );
            check_declared(path, table, &columns)?;
            let number_format = typed::NumberFormat {
                decimal: table.decimal,
                thousands: table.thousands,
            };
            let (batch, bad_values) = typed::to_record_batch(
                &source,
                text_table,
                &columns,
                &table.schema,
                number_format,
                table.delimiter,
            )?;
            rejected.extend(bad_values);
            (batch, rejected)
        }
        FileFormat::Json => {
            let (objects, rejected) = json::read_json(path, &text, table.json_pointer.as_deref())?;
            (json::objects_to_batch(path, objects, rename)?, rejected)
        }
        FileFormat::Ndjson => {
            let (objects, rejected) = json::read_ndjson(path, &text);
            (json::objects_to_batch(path, objects, rename)?, rejected)
        }
        FileFormat::Geojson => {
            let geometry_column = config::default_geometry_column();
            let (objects, geometry, rejected) =
                json::read_geojson(path, &text, &geometry_column, declared)?;
            let batch = json::objects_to_batch(path, objects, rename)?;
            (
                json::with_geometry(path, batch, &geometry_column, geometry)?,
                rejected,
            )
        }
        FileFormat::Parquet => unreachable!("handled above"),
    };
    let batch = if matches!(format, FileFormat::Csv) {
        batch
    } else {
        cast_declared(path, table, batch)?
    };
    Ok((batch, rejected))
}

fn check_declared(
    path: &Path,
    table: &FileTableConfig,
    columns: &[String],
) -> Result<(), ConnectorError> {
    for name in table.schema.keys() {
        if !columns.contains(name) {
            return Err(ConnectorError::Column {
                path: path.to_path_buf(),
                column: name.clone(),
                message: format!(
                    "declared in `schema` but not in the file; columns are {columns:?}"
                ),
            });
        }
    }
    Ok(())
}

/// For self-describing formats, a declared type is a cast; a value that does not fit is an error
/// naming the column.
fn cast_declared(
    path: &Path,
    table: &FileTableConfig,
    batch: RecordBatch,
) -> Result<RecordBatch, ConnectorError> {
    let schema = batch.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    check_declared(path, table, &names)?;
    if table.schema.is_empty() {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let Some(kind) = table.schema.get(field.name()) else {
            fields.push(field.as_ref().clone());
            columns.push(array.clone());
            continue;
        };
        let target = match kind {
            ColumnType::Text => arrow::datatypes::DataType::Utf8,
            ColumnType::Int => arrow::datatypes::DataType::Int64,
            ColumnType::Float => arrow::datatypes::DataType::Float64,
            ColumnType::Bool => arrow::datatypes::DataType::Boolean,
            ColumnType::Date => arrow::datatypes::DataType::Date32,
            ColumnType::Timestamp => {
                arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
            }
        };
        let options = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let cast = arrow::compute::cast_with_options(array, &target, &options).map_err(|e| {
            ConnectorError::Column {
                path: path.to_path_buf(),
                column: field.name().clone(),
                message: format!("cannot be read as {kind:?}: {e}"),
            }
        })?;
        fields.push(Field::new(field.name(), target, true));
        columns.push(cast);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).map_err(|e| {
        ConnectorError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

fn read_parquet(table: &FileTableConfig, path: &Path) -> Result<RecordBatch, ConnectorError> {
    let parse = |e: String| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: e,
    };
    let file = std::fs::File::open(path).map_err(|source| ConnectorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parse(e.to_string()))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| parse(e.to_string()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| parse(e.to_string()))?;
    let batch = concat_batches(&schema, &batches).map_err(|e| parse(e.to_string()))?;
    cast_declared(path, table, renamed(table, path, batch)?)
}

/// A Parquet file's columns under their normalised (and renamed) names.
fn renamed(
    table: &FileTableConfig,
    path: &Path,
    batch: RecordBatch,
) -> Result<RecordBatch, ConnectorError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            f.as_ref()
                .clone()
                .with_name(column_name(table, f.name(), i + 1))
        })
        .collect();
    RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        batch.columns().to_vec(),
    )
    .map_err(|e| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
