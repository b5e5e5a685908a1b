//! Snapshots on disk: one Parquet file per table, its metadata (source, load time, rejected
//! records) inside the same file, written to a temporary name, fsynced and renamed, so a crash
//! leaves either the old snapshot or the new one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::input::{LoadedTable, RejectedRecord};

const META_KEY: &str = "cruscotto.snapshot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub source: String,
    pub loaded_at: DateTime<Utc>,
    pub rejected: Vec<RejectedRecord>,
    /// For appended segments: the cursor reached with these rows.
    #[serde(default)]
    pub cursor: Option<String>,
    /// For a replacing snapshot: segments numbered below this are superseded by it.
    #[serde(default)]
    pub supersedes_segments_below: u64,
    /// For an append table with a retention: from when (µs since the epoch) it holds the
    /// source's rows.
    #[serde(default)]
    pub retained_from: Option<i64>,
    /// What identified the source this version was read from (`LoadedTable::fingerprint`).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The rows' size in Arrow memory when they were written (the footer's sizes are encoded
    /// sizes, far smaller for dictionary-encoded text): whether the version fits the memory cache.
    #[serde(default)]
    pub arrow_bytes: Option<u64>,
}

pub fn write(path: &Path, loaded: &LoadedTable, meta: &SnapshotMeta) -> Result<(), String> {
    write_atomically(
        path,
        loaded.schema.clone(),
        &loaded.batches,
        vec![meta_entry(meta)?],
    )
}

/// Write `batches` as one Parquet file at `path`: through a temporary file, fsynced, then
/// renamed, so a reader or a crash never finds half a file there.
pub fn write_atomically(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    batches: &[arrow::record_batch::RecordBatch],
    metadata: Vec<KeyValue>,
) -> Result<(), String> {
    let mut writer = AtomicWriter::create(path, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish(metadata)
}

/// Rows per Parquet row group: the unit a scan skips by its statistics and splits over the cores.
const ROWS_PER_ROW_GROUP: usize = 1024 * 1024;

/// A Parquet file written batch by batch under a temporary name and renamed into place by
/// `finish`; dropped unfinished, it removes its temporary file. Memory holds at most the row
/// group being encoded, whatever the file's size.
pub struct AtomicWriter {
    path: std::path::PathBuf,
    temporary: std::path::PathBuf,
    writer: Option<ArrowWriter<File>>,
}

impl AtomicWriter {
    pub fn create(path: &Path, schema: arrow::datatypes::SchemaRef) -> Result<Self, String> {
        let dir = path.parent().ok_or("no parent folder")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let temporary = path.with_extension("parquet.tmp");
        // Snappy: queries read these files in place, and it decodes several times faster than
        // zstd (DuckDB took 1.7-3.2x longer on a zstd version than on the Snappy source, see
        // benches/README.md, storage); statistics per page (the page index), so a scan prunes
        // row groups and pages by a filter's bounds.
        let properties = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_ROW_GROUP))
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
            .build();
        let file = File::create(&temporary).map_err(|e| e.to_string())?;
        let writer =
            ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| e.to_string())?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
            writer: Some(writer),
        })
    }

    pub fn write(&mut self, batch: &arrow::record_batch::RecordBatch) -> Result<(), String> {
        let writer = self.writer.as_mut().ok_or("the file is finished")?;
        writer.write(batch).map_err(|e| e.to_string())
    }

    /// Close the file with `metadata` in its footer, fsync it, rename it into place and fsync
    /// its folder.
    pub fn finish(mut self, metadata: Vec<KeyValue>) -> Result<(), String> {
        let mut writer = self.writer.take().ok_or("the file is finished")?;
        for entry in metadata {
            writer.append_key_value_metadata(entry);
        }
        let mut file = writer.into_inner().map_err(|e| e.to_string())?;
        file.flush().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&self.temporary, &self.path).map_err(|e| e.to_string())?;
        let dir = self.path.parent().ok_or("no parent folder")?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// The key-value entry that holds a snapshot's metadata.
pub fn meta_entry(meta: &SnapshotMeta) -> Result<KeyValue, String> {
    let json = serde_json::to_string(meta).map_err(|e| e.to_string())?;
    Ok(KeyValue::new(META_KEY.to_string(), json))
}

/// The snapshot at `path` opened, its footer and metadata read, or `None` if there is none.
fn open(
    path: &Path,
) -> Result<Option<(ParquetRecordBatchReaderBuilder<File>, SnapshotMeta)>, String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let meta_json =
        metadata_value(&builder, META_KEY).ok_or("not a cruscotto snapshot (no metadata)")?;
    let meta = serde_json::from_str(&meta_json).map_err(|e| e.to_string())?;
    Ok(Some((builder, meta)))
}

/// A value of a Parquet file's key-value metadata.
fn metadata_value(builder: &ParquetRecordBatchReaderBuilder<File>, key: &str) -> Option<String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == key))
        .and_then(|kv| kv.value.clone())
}

/// Every batch of the Parquet file at `path`, its schema, and the value of `key` in its metadata.
pub fn read_whole(
    path: &Path,
    key: &str,
) -> Result<
    (
        arrow::datatypes::SchemaRef,
        Vec<arrow::record_batch::RecordBatch>,
        Option<String>,
    ),
    String,
> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let value = metadata_value(&builder, key);
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((schema, batches, value))
}

/// The snapshot at `path`, or `None` if there is none.
pub fn read(path: &Path) -> Result<Option<(LoadedTable, SnapshotMeta)>, String> {
    let Some((builder, meta)) = open(path)? else {
        return Ok(None);
    };
    let schema = without_file_metadata(builder.schema());
    // Batches as large as the store's own slices: Parquet's default of 1,024 rows would make a
    // restored table's scans and plans (statistics per batch) several times slower.
    let reader = builder
        .with_batch_size(super::ROWS_PER_BATCH)
        .build()
        .map_err(|e| e.to_string())?;
    let batches = reader
        .map(|batch| batch.and_then(|b| b.with_schema(schema.clone())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut loaded = LoadedTable::replace(schema, batches, meta.rejected.clone());
    loaded.cursor = meta.cursor.clone();
    Ok(Some((loaded, meta)))
}

/// A file's schema as a table's: its columns (with their own metadata, e.g. geometry tags), not
/// the file's key-value metadata, which differs from version to version and from table to table
/// (a join's inputs would disagree on it).
fn without_file_metadata(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    std::sync::Arc::new(arrow::datatypes::Schema::new(schema.fields().clone()))
}

/// What a snapshot's footer says, read without its rows.
pub struct Footer {
    pub schema: arrow::datatypes::SchemaRef,
    pub meta: SnapshotMeta,
    pub rows: usize,
    /// The rows' uncompressed size, as the row groups declare it.
    pub bytes: u64,
}

/// The footer of the snapshot at `path`, or `None` if there is none.
pub fn read_footer(path: &Path) -> Result<Option<Footer>, String> {
    let Some((builder, meta)) = open(path)? else {
        return Ok(None);
    };
    let metadata = builder.metadata();
    Ok(Some(Footer {
        schema: without_file_metadata(builder.schema()),
        meta,
        rows: metadata.file_metadata().num_rows().max(0) as usize,
        bytes: metadata
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size().max(0) as u64)
            .sum(),
    }))
}

/// The file of an appended segment: `<dir>/<sequence>.parquet`, zero-padded so names sort.
pub fn segment_path(dir: &Path, sequence: u64) -> std::path::PathBuf {
    dir.join(format!("{sequence:012}.parquet"))
}

/// The segments in a folder, in order.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, std::path::PathBuf)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut segments: Vec<(u64, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    segments.sort();
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    /// A snapshot is read back with every row, in batches of the store's slice size.
    #[test]
    fn snapshots_come_back_whole_in_large_batches() {
        let rows = 2 * super::super::ROWS_PER_BATCH + 1_000;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let meta = SnapshotMeta {
            source: "test".into(),
            loaded_at: Utc::now(),
            rejected: Vec::new(),
            cursor: None,
            supersedes_segments_below: 0,
            retained_from: None,
            fingerprint: None,
            arrow_bytes: None,
        };
        write(
            &path,
            &LoadedTable::replace(schema, vec![batch], Vec::new()),
            &meta,
        )
        .unwrap();
        let (loaded, read_meta) = read(&path).unwrap().expect("a snapshot");
        assert_eq!(read_meta.source, "test");
        let sizes: Vec<usize> = loaded.batches.iter().map(RecordBatch::num_rows).collect();
        let slice = super::super::ROWS_PER_BATCH;
        assert_eq!(sizes, vec![slice, slice, 1_000]);
        assert_eq!(
            crate::store::first_column_i64(&loaded.batches),
            (0..rows as i64).collect::<Vec<_>>()
        );
    }
}
