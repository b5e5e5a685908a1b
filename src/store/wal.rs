//! The write-ahead log of a log table: a file of framed records, each `[length u32 LE][CRC32 u32
//! LE][payload]`, the payload one Arrow IPC stream holding the rows of one group commit. A record
//! is acknowledged upstream only once `append` has returned, i.e. after `fdatasync`; a crash in the
//! middle of a write leaves a torn last record, which its length or CRC gives away and which
//! `read` drops (it was never acknowledged).
//!
//! A record may also name the upstream messages its rows came from (keys given by the caller, in
//! the IPC schema's metadata under `cruscotto.messages`): they are durable together with the
//! rows, in the same fsync, so a message redelivered after a crash can be recognised whether or
//! not its rows can be.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

/// Largest record `read` accepts: a length beyond it can only be garbage from a torn write.
const MAX_RECORD: usize = 1 << 30;
const HEADER: usize = 8;
/// The schema metadata key under which a record lists its messages' keys (hex, comma-separated).
const MESSAGES_KEY: &str = "cruscotto.messages";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("write-ahead log {}: record at byte {offset}: {message}", path.display())]
    Decode {
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

/// An open WAL file, appended to by one writer.
pub struct WalWriter {
    path: PathBuf,
    file: File,
    bytes: u64,
}

impl WalWriter {
    /// Create (or open for appending) the WAL file at `path`, fsyncing its folder so the file
    /// itself survives a crash.
    pub fn open(path: &Path) -> Result<Self, WalError> {
        let io = |e: std::io::Error| WalError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Append one record holding `batch` and make it durable (one `fdatasync` per call: callers
    /// gather a group of rows into one batch, which is the group commit).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), WalError> {
        self.append_with_messages(batch, &[])
    }

    /// Append one record holding `batch` and the keys of the messages it came from, durable
    /// together.
    pub fn append_with_messages(
        &mut self,
        batch: &RecordBatch,
        messages: &[u64],
    ) -> Result<(), WalError> {
        let payload = encode(batch, messages).map_err(|message| WalError::Io {
            path: self.path.clone(),
            message,
        })?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let io = |e: std::io::Error| WalError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        };
        self.file.write_all(&frame).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.bytes += frame.len() as u64;
        Ok(())
    }
}

/// A record's payload: the compact row form (`wal_rows`), or an Arrow IPC stream for a batch
/// with a column that form does not cover.
fn encode(batch: &RecordBatch, messages: &[u64]) -> Result<Vec<u8>, String> {
    match super::wal_rows::encode(batch, messages) {
        Some(payload) => Ok(payload),
        None => encode_ipc(batch, messages),
    }
}

fn encode_ipc(batch: &RecordBatch, messages: &[u64]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let schema = if messages.is_empty() {
        batch.schema()
    } else {
        let keys: Vec<String> = messages.iter().map(|k| format!("{k:016x}")).collect();
        let metadata = HashMap::from([(MESSAGES_KEY.to_string(), keys.join(","))]);
        Arc::new(Schema::new_with_metadata(
            batch.schema().fields().clone(),
            metadata,
        ))
    };
    let mut writer = StreamWriter::try_new(&mut out, &schema).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(out)
}

/// The batches of a record and the message keys it names, in either form.
fn decode(payload: &[u8], schema: &SchemaRef) -> Result<(Vec<RecordBatch>, Vec<u64>), String> {
    if payload.first() == Some(&super::wal_rows::TAG) {
        let (batch, messages) = super::wal_rows::decode(payload, schema)?;
        return Ok((vec![batch], messages));
    }
    decode_ipc(payload)
}

/// An IPC record's batches (without the metadata) and the message keys it names.
fn decode_ipc(payload: &[u8]) -> Result<(Vec<RecordBatch>, Vec<u64>), String> {
    let reader = StreamReader::try_new(payload, None).map_err(|e| e.to_string())?;
    let schema = reader.schema();
    let messages = match schema.metadata().get(MESSAGES_KEY) {
        Some(list) => list
            .split(',')
            .filter(|k| !k.is_empty())
            .map(|k| u64::from_str_radix(k, 16).map_err(|e| format!("message key `{k}`: {e}")))
            .collect::<Result<Vec<u64>, String>>()?,
        None => Vec::new(),
    };
    let plain = Arc::new(Schema::new(schema.fields().clone()));
    let batches = reader
        .map(|batch| {
            batch
                .and_then(|b| RecordBatch::try_new(plain.clone(), b.columns().to_vec()))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((batches, messages))
}

/// What `read` found in a WAL file.
#[derive(Debug)]
pub struct Replayed {
    pub batches: Vec<RecordBatch>,
    /// The message keys the records named, in order.
    pub messages: Vec<u64>,
    /// Bytes of whole, valid records; anything after them is a torn tail.
    pub valid_bytes: u64,
    /// Bytes after the last valid record (0 when the file ends cleanly).
    pub torn_bytes: u64,
}

/// Read every whole record of a WAL file. A last record that is short or fails its CRC is a torn
/// write and is left out; a bad record followed by good ones cannot come from a crash, and is an
/// error rather than silently skipped data.
pub fn read(path: &Path, schema: &SchemaRef) -> Result<Replayed, WalError> {
    let io = |e: std::io::Error| WalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(io)?
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let mut batches = Vec::new();
    let mut messages = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let whole = rest.len() >= HEADER && {
            let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            length <= MAX_RECORD
                && rest.len() >= HEADER + length
                && crc32fast::hash(&rest[HEADER..HEADER + length]) == crc
        };
        if !whole {
            if has_valid_record_after(&bytes, offset + 1) {
                return Err(WalError::Decode {
                    path: path.to_path_buf(),
                    offset: offset as u64,
                    message: "corrupt record followed by valid ones (not a torn write); refusing to skip data".into(),
                });
            }
            break;
        }
        let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let (decoded, keys) =
            decode(&rest[HEADER..HEADER + length], schema).map_err(|message| WalError::Decode {
                path: path.to_path_buf(),
                offset: offset as u64,
                message,
            })?;
        batches.extend(decoded);
        messages.extend(keys);
        offset += HEADER + length;
    }
    Ok(Replayed {
        batches,
        messages,
        valid_bytes: offset as u64,
        torn_bytes: (bytes.len() - offset) as u64,
    })
}

/// Whether a whole record with a matching CRC starts anywhere at or after `from`: a torn write
/// only ever damages the end of the file.
fn has_valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(HEADER)).any(|start| {
        let rest = &bytes[start..];
        let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        length > 0
            && length <= MAX_RECORD
            && rest.len() >= HEADER + length
            && crc32fast::hash(&rest[HEADER..HEADER + length]) == crc
    })
}

/// Cut a torn tail off, so the next writer appends after the last valid record.
pub fn truncate(path: &Path, valid_bytes: u64) -> Result<(), WalError> {
    let io = |e: std::io::Error| WalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.set_len(valid_bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// `<dir>/<sequence>.wal`, zero-padded so names sort.
pub fn path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:012}.wal"))
}

/// The WAL files of a folder, in order.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(WalError::Io {
                path: dir.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("sensor-{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn ids(replayed: &Replayed) -> Vec<i64> {
        crate::store::first_column_i64(&replayed.batches)
    }

    #[test]
    fn records_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append(&batch(&[1, 2])).unwrap();
        wal.append(&batch(&[3])).unwrap();
        drop(wal);
        let replayed = read(&file, &batch(&[]).schema()).unwrap();
        assert_eq!(ids(&replayed), vec![1, 2, 3]);
        assert_eq!(replayed.torn_bytes, 0);
        // Reopening appends after what is there.
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append(&batch(&[4])).unwrap();
        assert_eq!(
            ids(&read(&file, &batch(&[]).schema()).unwrap()),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 7);
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append(&batch(&[1, 2])).unwrap();
        let good = wal.bytes();
        wal.append(&batch(&[3, 4])).unwrap();
        let full = wal.bytes();
        drop(wal);
        // A crash while writing the second record: only part of it reached the disk.
        for cut in [good + 3, good + 8, good + 20, full - 1] {
            let copy = dir.path().join(format!("cut-{cut}.wal"));
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&copy, &bytes[..cut as usize]).unwrap();
            let replayed = read(&copy, &batch(&[]).schema()).unwrap();
            assert_eq!(ids(&replayed), vec![1, 2], "cut at {cut}");
            assert_eq!(replayed.valid_bytes, good);
            assert_eq!(replayed.torn_bytes, cut - good);
            truncate(&copy, replayed.valid_bytes).unwrap();
            let mut wal = WalWriter::open(&copy).unwrap();
            wal.append(&batch(&[5])).unwrap();
            assert_eq!(
                ids(&read(&copy, &batch(&[]).schema()).unwrap()),
                vec![1, 2, 5]
            );
        }
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_fails_its_crc() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append(&batch(&[1])).unwrap();
        let good = wal.bytes();
        wal.append(&batch(&[2])).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
        let replayed = read(&file, &batch(&[]).schema()).unwrap();
        assert_eq!(ids(&replayed), vec![1]);
        assert_eq!(replayed.valid_bytes, good);
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append(&batch(&[1])).unwrap();
        wal.append(&batch(&[2])).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[HEADER + 10] ^= 0x01;
        std::fs::write(&file, &bytes).unwrap();
        let error = read(&file, &batch(&[]).schema()).unwrap_err().to_string();
        assert!(
            error.contains("corrupt record followed by valid ones"),
            "{error}"
        );
    }

    #[test]
    fn message_keys_are_durable_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append_with_messages(&batch(&[1, 2]), &[7, u64::MAX])
            .unwrap();
        wal.append(&batch(&[3])).unwrap();
        let good = wal.bytes();
        wal.append_with_messages(&batch(&[4]), &[42]).unwrap();
        drop(wal);
        let replayed = read(&file, &batch(&[]).schema()).unwrap();
        assert_eq!(ids(&replayed), vec![1, 2, 3, 4]);
        assert_eq!(replayed.messages, vec![7, u64::MAX, 42]);
        // The rows come back with the plain schema, whatever the record carried.
        assert!(
            replayed
                .batches
                .iter()
                .all(|b| b.schema().metadata().is_empty())
        );
        // A torn record loses its keys with its rows: neither was acknowledged.
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..good as usize + 11]).unwrap();
        let replayed = read(&file, &batch(&[]).schema()).unwrap();
        assert_eq!(
            (ids(&replayed), replayed.messages),
            (vec![1, 2, 3], vec![7, u64::MAX])
        );
    }

    #[test]
    fn files_are_listed_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        for sequence in [10, 2, 7] {
            WalWriter::open(&path(dir.path(), sequence)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let listed: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(listed, vec![2, 7, 10]);
    }

    /// A WAL written by an earlier release (Arrow IPC records) is still replayed, before and
    /// after records of the compact form.
    #[test]
    fn ipc_records_of_an_earlier_release_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        let payload = encode_ipc(&batch(&[1, 2]), &[9]).unwrap();
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        std::fs::write(&file, &frame).unwrap();
        let mut wal = WalWriter::open(&file).unwrap();
        wal.append_with_messages(&batch(&[3]), &[10]).unwrap();
        drop(wal);
        let replayed = read(&file, &batch(&[]).schema()).unwrap();
        assert_eq!(ids(&replayed), vec![1, 2, 3]);
        assert_eq!(replayed.messages, vec![9, 10]);
        assert!(std::fs::metadata(&file).unwrap().len() < frame.len() as u64 + 40);
    }
}
