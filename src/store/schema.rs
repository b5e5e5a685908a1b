//! A schema whose tables are replaced in one step. DataFusion's `MemorySchemaProvider` refuses to
//! register over an existing name, and deregister-then-register leaves a moment in which a query
//! would find the table missing; here `register_table` swaps the entry under one lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result;

#[derive(Debug, Default)]
pub struct SnapshotSchema {
    tables: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait]
impl SchemaProvider for SnapshotSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tables
            .read()
            .expect("schema lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.read().expect("schema lock").get(name).cloned())
    }

    /// Replace (or add) a table; returns the table it replaced.
    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .tables
            .write()
            .expect("schema lock")
            .insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.write().expect("schema lock").remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.read().expect("schema lock").contains_key(name)
    }
}
