//! The `file` connector: CSV, JSON, NDJSON, Parquet and GeoJSON files on disk or on
//! S3-compatible object storage (`object.rs`), re-read on an interval. Each `[[table]]` is read
//! on its own, so one missing file fails only its table.

mod config;
mod decode;
mod object;
mod streamed;
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

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};

use super::{
    Connector, ConnectorError, LoadState, Loaded, LoadedTable, RejectedRecord, StreamedTable,
    TableLoad,
};
use crate::config_text::resolve;
use crate::objects::{ObjectSources, ObjectUrl};

pub struct FileConnector {
    config: FileConnectorConfig,
    base_dir: PathBuf,
    objects: ObjectSources,
}

impl FileConnector {
    pub fn new(config: FileConnectorConfig, base_dir: &Path, objects: ObjectSources) -> Self {
        Self {
            config,
            base_dir: base_dir.to_path_buf(),
            objects,
        }
    }
}

impl Connector for FileConnector {
    fn load<'a>(&'a self, state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        async move {
            let mut loads = Vec::with_capacity(self.config.tables.len());
            for table in &self.config.tables {
                if let Some(url) = ObjectUrl::from_path(&table.path) {
                    loads.push(self.load_object(table, url, state).await);
                    continue;
                }
                let path = resolve(&self.base_dir, &table.path);
                let result = match simulate_if_missing(table, &path, &self.base_dir).await {
                    Ok(()) => load_unless_unchanged(table, &path, state).await,
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

impl FileConnector {
    /// A table whose `path` is a URL: read from object storage.
    async fn load_object(
        &self,
        table: &FileTableConfig,
        url: Result<ObjectUrl, String>,
        state: &LoadState,
    ) -> TableLoad {
        let source = table.path.display().to_string();
        let result = match url {
            Ok(url) => object::load_unless_unchanged(table, &url, &self.objects, state).await,
            // `cruscotto check` refuses such a path; a load says why too.
            Err(message) => Err(ConnectorError::Object {
                table: table.name.clone(),
                url: source.clone(),
                message,
            }),
        };
        TableLoad {
            table: table.name.clone(),
            source,
            result,
        }
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
    let effect = simulate
        .effect
        .as_ref()
        .map(|effect| crate::simulate::SimulatedEffect {
            interventions: resolve(base_dir, &effect.interventions),
            areas: resolve(base_dir, &effect.areas),
            ..effect.clone()
        });
    let rows = crate::simulate::write_service_logs_with_effect(path, &options, effect.as_ref())
        .await
        .map_err(|e| ConnectorError::Transform {
            path: path.to_path_buf(),
            message: format!("simulating the file: {e}"),
        })?;
    tracing::info!(table = %table.name, path = %path.display(), rows, "simulated data written");
    Ok(())
}

/// A table's load: nothing read if the file is the one its current version came from; a
/// Parquet, CSV or NDJSON file streamed batch by batch; a JSON document or GeoJSON file read
/// whole.
async fn load_unless_unchanged(
    table: &FileTableConfig,
    path: &Path,
    state: &LoadState,
) -> Result<Loaded, ConnectorError> {
    // Hashing reads the file: off the async workers.
    let fingerprint = {
        let (owned_table, owned_path) = (table.clone(), path.to_path_buf());
        tokio::task::spawn_blocking(move || fingerprint(&owned_table, &owned_path))
            .await
            .map_err(|e| ConnectorError::Parse {
                path: path.to_path_buf(),
                message: format!("the fingerprint task failed: {e}"),
            })??
    };
    if state.unchanged(&table.name, &fingerprint) {
        return Ok(Loaded::Unchanged);
    }
    if let Some(batches) = streamed_batches(table, path) {
        let (schema, batches) = batches.await?;
        return Ok(Loaded::Streamed(StreamedTable {
            schema,
            batches: batches.map_err(Into::into).boxed(),
            fingerprint: Some(fingerprint),
        }));
    }
    let mut loaded = load_table(table.clone(), path.to_path_buf()).await?;
    loaded.fingerprint = Some(fingerprint);
    Ok(loaded.into())
}

/// What identifies a file as read: its size, time of change and inode (a file replaced by a
/// rename is a new inode), a hash of its content (all of it up to `WHOLE_HASH_LIMIT`, else its
/// first and last MiB, which hold a Parquet file's footer), the table's settings, and the release
/// reading it. A file with the fingerprint of the current version's is not read again. The
/// content counts because a file rewritten in place within the clock's tick keeps its time.
fn fingerprint(table: &FileTableConfig, path: &Path) -> Result<String, ConnectorError> {
    let read_error = |source| ConnectorError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let content = content_hash(path, metadata.len()).map_err(read_error)?;
    Ok(format!(
        "{} bytes, modified {modified} ns, inode {inode}, content {content:016x}, \
         settings {:016x}, cruscotto {}",
        metadata.len(),
        settings_hash(table),
        env!("CARGO_PKG_VERSION")
    ))
}

/// A hash of the table's settings, part of its source's fingerprint: a table read differently
/// is read again. The settings' Debug form is deterministic: their maps are BTreeMaps.
fn settings_hash(table: &FileTableConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    format!("{table:?}").hash(&mut settings);
    settings.finish()
}

/// Files up to this size are hashed whole for their fingerprint. A larger file takes longer to
/// write than a tick of the clock, so its time of change tells a rewrite; its first and last MiB
/// are hashed too, and checking it costs the same at every refresh whatever its size.
const WHOLE_HASH_LIMIT: u64 = 16 * 1024 * 1024;

fn content_hash(path: &Path, len: u64) -> std::io::Result<u64> {
    use std::hash::Hasher;
    use std::io::{Read, Seek, SeekFrom};
    const MIB: u64 = 1024 * 1024;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buffer = vec![0u8; MIB as usize];
    let mut hash = |file: &mut std::fs::File, mut remaining: u64| -> std::io::Result<()> {
        while remaining > 0 {
            let want = remaining.min(MIB) as usize;
            file.read_exact(&mut buffer[..want])?;
            hasher.write(&buffer[..want]);
            remaining -= want as u64;
        }
        Ok(())
    };
    if len <= WHOLE_HASH_LIMIT {
        hash(&mut file, len)?;
    } else {
        hash(&mut file, MIB)?;
        file.seek(SeekFrom::End(-(MIB as i64)))?;
        hash(&mut file, MIB)?;
    }
    Ok(hasher.finish())
}

type PreparedBatches =
    BoxStream<'static, Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError>>;

/// The batches of a file read batch by batch (Parquet, CSV, NDJSON) and their schema; `None` for
/// a format read whole.
fn streamed_batches(
    table: &FileTableConfig,
    path: &Path,
) -> Option<BoxFuture<'static, Result<(SchemaRef, PreparedBatches), ConnectorError>>> {
    let (table, path) = (table.clone(), path.to_path_buf());
    match table.format() {
        Some(FileFormat::Parquet) => Some(parquet_batches(table, path).boxed()),
        Some(FileFormat::Csv | FileFormat::Ndjson) => {
            Some(streamed::text_batches(table, path).boxed())
        }
        _ => None,
    }
}

/// A Parquet file's rows as the table declares them, read batch by batch (never the whole file
/// in memory), each renamed, typed, reprojected and reshaped as it comes; and the schema they
/// have, from the file's footer.
async fn parquet_batches(
    table: FileTableConfig,
    path: PathBuf,
) -> Result<(SchemaRef, PreparedBatches), ConnectorError> {
    let parse = |path: &Path, e: parquet::errors::ParquetError| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|source| ConnectorError::Read {
            path: path.clone(),
            source,
        })?;
    let builder = parquet::arrow::ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(|e| parse(&path, e))?;
    let empty = RecordBatch::new_empty(builder.schema().clone());
    let schema = prepared(&table, &path, empty).await?.0.schema();
    let stream = builder
        .with_batch_size(crate::store::ROWS_PER_BATCH)
        .build()
        .map_err(|e| parse(&path, e))?;
    let table = Arc::new(table);
    let batches = stream
        .then(move |read| {
            let (table, path) = (table.clone(), path.clone());
            async move {
                let batch = read.map_err(|e| parse(&path, e))?;
                prepared(&table, &path, batch).await
            }
        })
        .boxed();
    Ok((schema, batches))
}

/// One batch of a Parquet file as the table declares it: renamed, cast, reprojected, reshaped.
async fn prepared(
    table: &FileTableConfig,
    path: &Path,
    batch: RecordBatch,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let source = path.display().to_string();
    let batch = cast_declared(path, table, renamed(table, path, batch)?)?;
    let (batch, mut rejected) = match declared_crs(table, &source)? {
        Some(crs) => reproject::reproject(&source, batch, crs)?,
        None => (batch, Vec::new()),
    };
    let (batch, refused) = reshaped(table, &source, batch).await?;
    rejected.extend(refused);
    Ok((batch, rejected))
}

/// Read, type and reshape one table, whole.
pub async fn load_table(
    table: FileTableConfig,
    path: PathBuf,
) -> Result<LoadedTable, ConnectorError> {
    if let Some(batches) = streamed_batches(&table, &path) {
        let (schema, batches) = batches.await?;
        let read: Vec<(RecordBatch, Vec<RejectedRecord>)> = batches.try_collect().await?;
        let (batches, rejected): (Vec<_>, Vec<_>) = read.into_iter().unzip();
        return Ok(LoadedTable::replace(
            schema,
            batches,
            rejected.into_iter().flatten().collect(),
        ));
    }
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
/// footer alone; a text file is read and typed (its types are inferred from its values), a CSV
/// or NDJSON file a batch at a time, but nothing is stored. A simulated table whose file is not
/// there yet is described from a small simulation in `scratch`.
/// A table on object storage is downloaded to `objects.scratch` and described the same way.
pub async fn describe_table(
    table: &FileTableConfig,
    base_dir: &Path,
    scratch: &Path,
    objects: &ObjectSources,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RejectedRecord>), ConnectorError> {
    match ObjectUrl::from_path(&table.path) {
        Some(Ok(url)) => return object::describe(table, &url, objects).await,
        Some(Err(message)) => {
            return Err(ConnectorError::Object {
                table: table.name.clone(),
                url: table.path.display().to_string(),
                message,
            });
        }
        None => {}
    }
    let mut path = resolve(base_dir, &table.path);
    if let Some(simulate) = table.simulate.as_ref().filter(|_| !path.exists()) {
        let mut small = table.clone();
        let mut options = simulate.clone();
        options.events = options.events.min(1_000);
        small.simulate = Some(options);
        path = scratch.join(format!("{}.{}", table.name, extension_of(&table.path)));
        simulate_if_missing(&small, &path, base_dir).await?;
    }
    describe_local(table, path).await
}

/// The schema of a table read from the local file `path`, and the records a load would reject.
async fn describe_local(
    table: &FileTableConfig,
    path: PathBuf,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RejectedRecord>), ConnectorError> {
    match table.format() {
        Some(FileFormat::Parquet) => {
            return Ok((parquet_batches(table.clone(), path).await?.0, Vec::new()));
        }
        Some(FileFormat::Csv | FileFormat::Ndjson) => {
            let (schema, mut batches) = streamed::text_batches(table.clone(), path).await?;
            let mut rejected = Vec::new();
            while let Some((_, refused)) = batches.try_next().await? {
                rejected.extend(refused);
            }
            return Ok((schema, rejected));
        }
        _ => {}
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

/// A JSON document or a GeoJSON file, read whole: their records are the items of one array
/// inside one document (see `streamed.rs` for the formats read batch by batch).
fn read_file(
    table: &FileTableConfig,
    path: &Path,
) -> Result<(RecordBatch, Vec<RejectedRecord>), ConnectorError> {
    let format = table.format().ok_or_else(|| ConnectorError::Parse {
        path: path.to_path_buf(),
        message: "unknown format: set `format`".into(),
    })?;
    let declared = declared_crs(table, &path.display().to_string())?;
    let bytes = std::fs::read(path).map_err(|source| ConnectorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = csv::decode(path, &bytes, &table.encoding)?;
    let rename = |key: &str| column_name(table, key, 0);
    let (batch, rejected) = match format {
        FileFormat::Json => {
            let (objects, rejected) = json::read_json(path, &text, table.json_pointer.as_deref())?;
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
        FileFormat::Parquet | FileFormat::Csv | FileFormat::Ndjson => {
            return Err(ConnectorError::Parse {
                path: path.to_path_buf(),
                message: format!("a {format:?} file is read batch by batch, not whole"),
            });
        }
    };
    Ok((cast_declared(path, table, batch)?, rejected))
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
