//! Start-up: each table served from what an earlier run persisted, before its source is read.

use super::*;

impl Store {
    /// At start-up, serve what an earlier run persisted (the snapshot, then the segments appended
    /// after it), marked stale until a refresh succeeds.
    pub fn restore(&self, schema: &str, table: &str) -> Result<bool, StoreError> {
        let read = |path: &Path| {
            persist::read(path).map_err(|message| StoreError::ReadSnapshot {
                path: path.to_path_buf(),
                message,
            })
        };
        let mut data = TableData::default();
        let mut source = String::new();
        let mut loaded_at = None;
        let mut superseded_below = 0;
        let dir = self.segments_dir(schema, table);
        let segments =
            persist::list_segments(&dir).map_err(|message| StoreError::ReadSnapshot {
                path: dir.clone(),
                message,
            })?;
        let mut in_place = None;
        version::delete_unfinished(&self.schema_dir(schema), table);
        if let Some((number, path)) = version::latest(&self.schema_dir(schema), table) {
            let gone = || StoreError::ReadSnapshot {
                path: path.clone(),
                message: "the file went away while it was read".into(),
            };
            let footer = persist::read_footer(&path)
                .map_err(|message| StoreError::ReadSnapshot {
                    path: path.clone(),
                    message,
                })?
                .ok_or_else(gone)?;
            data.version = Some(number);
            // A large version is registered from its footer, its rows left on disk (an append
            // table's segments after it are read into memory below).
            let arrow_bytes = footer.meta.arrow_bytes.unwrap_or(footer.bytes);
            let (loaded, meta) = if arrow_bytes > self.memory_cache {
                data.in_place = Some((path.clone(), footer.rows));
                in_place = Some(path);
                let loaded = LoadedTable::replace(footer.schema, Vec::new(), Vec::new());
                (loaded, footer.meta)
            } else {
                read(&path)?.ok_or_else(gone)?
            };
            data.schema = Some(loaded.schema.clone());
            data.batches = loaded.batches;
            data.rejected = meta.rejected;
            // A reloaded append table goes on from the cursor of its snapshot.
            data.cursor = meta.cursor;
            superseded_below = meta.supersedes_segments_below;
            data.retained_from = meta.retained_from;
            data.fingerprint = meta.fingerprint;
            data.loaded_at = Some(meta.loaded_at);
            data.next_segment = superseded_below;
            data.snapshot_below = superseded_below;
            source = meta.source;
            loaded_at = Some(meta.loaded_at);
        }
        for (sequence, path) in segments
            .into_iter()
            .filter(|(sequence, _)| *sequence >= superseded_below)
        {
            let Some((loaded, meta)) = read(&path)? else {
                continue;
            };
            data.schema = Some(loaded.schema.clone());
            data.batches.extend(loaded.batches);
            data.rejected.extend(meta.rejected);
            data.cursor = meta.cursor.or(data.cursor);
            // The first segment of a table that started by appending holds its window.
            data.retained_from = meta.retained_from.or(data.retained_from);
            data.next_segment = sequence + 1;
            source = meta.source;
            loaded_at = Some(meta.loaded_at);
        }
        let (Some(table_schema), Some(loaded_at)) = (data.schema.clone(), loaded_at) else {
            return Ok(false);
        };
        self.register_data(schema, table, &table_schema, &data)?;
        let rows = data.rows();
        let rejected = data.rejected.len();
        self.data
            .write()
            .expect("data lock")
            .insert((schema.into(), table.into()), data);
        {
            let mut status = self.status.write().expect("status lock");
            let entry = status
                .entry((schema.into(), table.into()))
                .or_insert_with(|| blank_status(schema, table, &source));
            entry.state = TableState::Stale;
            entry.rows = rows;
            entry.rejected = rejected;
            entry.last_success = Some(loaded_at);
            entry.from_persisted_snapshot = true;
            entry.storage = storage_of(in_place.is_some());
            entry.last_error =
                Some("served from the persisted snapshot; not refreshed since start-up".into());
        }
        info!(schema, table, rows, "restored persisted snapshot");
        self.changed();
        Ok(true)
    }
}
