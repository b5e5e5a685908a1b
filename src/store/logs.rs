//! Log tables (appended by streams) as the store registers them and reports their progress.

use super::*;

impl Store {
    /// Open (recovering it) a log table and register it, and its rollup table if it has one, as
    /// live tables: queries see every append without re-planning.
    pub fn open_log(
        &self,
        schema: &str,
        table: &str,
        source: &str,
        columns: SchemaRef,
        options: log::LogOptions,
        refresh: Duration,
    ) -> Result<Arc<log::LogTable>, StoreError> {
        let opened = log::LogTable::open(&self.data_dir, schema, table, columns.clone(), options)?;
        let rows: provider::RowSource = {
            let opened = opened.clone();
            Arc::new(move || opened.live_rows())
        };
        let live = provider::LiveTable::new(columns, rows, self.target_partitions);
        self.schema_provider(schema)
            .register_table(table.to_string(), Arc::new(live))
            .map_err(|e| StoreError::Register {
                table: table.into(),
                message: e.to_string(),
            })?;
        if let Some(spec) = opened.rollup_spec() {
            let rows: provider::RowSource = {
                let opened = opened.clone();
                Arc::new(move || provider::LiveRows {
                    files: Vec::new(),
                    tail: opened.rollup_batches(),
                })
            };
            let live = provider::LiveTable::new(spec.schema(), rows, self.target_partitions);
            self.schema_provider(schema)
                .register_table(spec.table.clone(), Arc::new(live))
                .map_err(|e| StoreError::Register {
                    table: spec.table.clone(),
                    message: e.to_string(),
                })?;
        }
        self.logs
            .write()
            .expect("logs lock")
            .insert((schema.into(), table.into()), opened.clone());
        {
            let mut status = self.status.write().expect("status lock");
            let mut names = vec![(table.to_string(), opened.row_count())];
            if let Some(spec) = opened.rollup_spec() {
                names.push((spec.table.clone(), opened.rollup_row_count()));
            }
            for (name, rows) in names {
                let entry = status
                    .entry((schema.into(), name.clone()))
                    .or_insert_with(|| blank_status(schema, &name, source));
                entry.refresh = refresh;
                entry.rows = rows;
                entry.from_persisted_snapshot = rows > 0;
            }
        }
        self.changed();
        Ok(opened)
    }

    pub fn log_table(&self, schema: &str, table: &str) -> Option<Arc<log::LogTable>> {
        self.logs
            .read()
            .expect("logs lock")
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// A stream delivered to a log table: its rows (and those of its rollup) and `rejected`
    /// (records of that stream refused, kept elsewhere) go to /status, marked fresh.
    pub fn log_progress(&self, schema: &str, table: &str, source: &str, rejected: usize) {
        let Some(log) = self.log_table(schema, table) else {
            return;
        };
        let now = Utc::now();
        let mut names = vec![(table.to_string(), log.row_count(), rejected)];
        if let Some(spec) = log.rollup_spec() {
            names.push((spec.table.clone(), log.rollup_row_count(), 0));
        }
        for (name, rows, rejected) in names {
            self.mark_fresh((schema.into(), name), source, rows, rejected, now);
        }
        let mut last = self.last_system_refresh.lock().expect("refresh lock");
        if last.elapsed() >= Duration::from_secs(1) {
            *last = std::time::Instant::now();
            drop(last);
            self.refresh_system_tables();
        }
    }
}
