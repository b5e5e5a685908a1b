//! Versions of a table's snapshot on disk, and tables queried in place from them.
//!
//! Each snapshot a table gets is a new file, `<table>.v<N>.parquet` beside the table's segment
//! folder, never a rewrite of the file a query may be reading. A table larger than the store's
//! memory cache is served from its latest version through DataFusion's Parquet scan (a
//! `ListingTable`), so its rows are not held in memory; a smaller one is read into a `MemTable`.
//! The version before the latest is kept for the queries planned against it; older ones go.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};

/// `schema` with its text columns as Arrow's view type (`Utf8View`): the Parquet scan decodes
/// text straight into views, which DataFusion groups, compares and filters faster than plain
/// strings. Queries' results give text as `Utf8` again (`crate::query::plain_schema`).
pub fn text_as_views(schema: &SchemaRef) -> SchemaRef {
    retyped(schema, &DataType::Utf8, DataType::Utf8View)
}

/// `schema` with its top-level columns of type `from` as `to`; the same schema when it has none.
pub fn retyped(schema: &SchemaRef, from: &DataType, to: DataType) -> SchemaRef {
    if !schema.fields().iter().any(|f| f.data_type() == from) {
        return schema.clone();
    }
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type() == from {
                Arc::new(f.as_ref().clone().with_data_type(to.clone()))
            } else {
                f.clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its columns cast to `schema`'s types (text buffers are shared, not copied, between
/// `Utf8` and `Utf8View`).
pub fn cast_columns(
    batch: &arrow::record_batch::RecordBatch,
    schema: &SchemaRef,
) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    arrow::record_batch::RecordBatch::try_new(schema.clone(), columns)
}

/// The file of version `version` of `table`'s snapshot, in the schema's folder `dir`.
pub fn path(dir: &Path, table: &str, version: u64) -> PathBuf {
    dir.join(format!("{table}.v{version:012}.parquet"))
}

/// The snapshot file an earlier release wrote, read as version 0.
fn unversioned(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!("{table}.parquet"))
}

/// The versions of `table`'s snapshot in `dir`, oldest first.
pub fn list(dir: &Path, table: &str) -> Vec<(u64, PathBuf)> {
    let prefix = format!("{table}.v");
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let number = name.strip_prefix(&prefix)?.strip_suffix(".parquet")?;
            Some((number.parse().ok()?, path))
        })
        .collect();
    let old = unversioned(dir, table);
    if old.is_file() {
        versions.push((0, old));
    }
    versions.sort();
    versions
}

/// The latest version, if the table has one.
pub fn latest(dir: &Path, table: &str) -> Option<(u64, PathBuf)> {
    list(dir, table).pop()
}

/// Delete the versions older than `keep_from`. A failure only leaves a file behind.
pub fn delete_before(dir: &Path, table: &str, keep_from: u64) {
    for (version, path) in list(dir, table) {
        if version < keep_from
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete an old snapshot version");
        }
    }
}

/// Delete what a process killed while writing a version left: its temporary files, never served.
pub fn delete_unfinished(dir: &Path, table: &str) {
    let prefix = format!("{table}.v");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let unfinished = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|name| {
                name.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".parquet.tmp"))
                    .is_some_and(|number| number.parse::<u64>().is_ok())
            });
        if unfinished {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed an unfinished version"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an unfinished version")
                }
            }
        }
    }
}

/// Delete every version (the table is an append table now, or was dropped).
pub fn delete_all(dir: &Path, table: &str) {
    delete_before(dir, table, u64::MAX);
}

/// A table served in place from a snapshot file.
pub fn in_place(path: &Path, schema: &SchemaRef) -> Result<Arc<dyn TableProvider>, String> {
    in_place_files(&[path.to_path_buf()], schema)
}

/// A table served in place from Parquet files of the same schema (a log table's parts).
pub fn in_place_files(
    paths: &[PathBuf],
    schema: &SchemaRef,
) -> Result<Arc<dyn TableProvider>, String> {
    let urls = paths
        .iter()
        .map(|path| ListingTableUrl::parse(path.to_string_lossy()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(text_as_views(schema));
    Ok(Arc::new(
        ListingTable::try_new(config).map_err(|e| e.to_string())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_number_and_an_unversioned_file_is_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "t.v000000000010.parquet",
            "t.v000000000002.parquet",
            "t.parquet",
            "t.v000000000003.parquet.tmp",
            "tt.v000000000099.parquet",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let numbers = |dir: &Path| {
            list(dir, "t")
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(numbers(dir.path()), vec![0, 2, 10]);
        std::fs::write(dir.path().join("tt.v000000000004.parquet.tmp"), b"x").unwrap();
        delete_unfinished(dir.path(), "t");
        assert!(!dir.path().join("t.v000000000003.parquet.tmp").exists());
        assert!(dir.path().join("tt.v000000000004.parquet.tmp").exists());
        assert!(dir.path().join("t.v000000000002.parquet").exists());
        assert_eq!(
            latest(dir.path(), "t").unwrap().1,
            path(dir.path(), "t", 10)
        );
        delete_before(dir.path(), "t", 10);
        assert_eq!(numbers(dir.path()), vec![10]);
        assert!(dir.path().join("tt.v000000000099.parquet").exists());
        delete_all(dir.path(), "t");
        assert!(numbers(dir.path()).is_empty());
    }
}
