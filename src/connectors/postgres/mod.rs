//! The `postgres` connector: the population registry and the service logs, pulled with one SQL
//! query per table from a deadpool pool, rows streamed into Arrow batches. Snapshot tables are
//! replaced on each pull; append-only logs with a `cursor_column` get only what is new.

mod check;
mod config;
mod connect;
mod cursor;
mod lineage;
mod load;
mod privacy;
mod types;

pub use check::{check_source, describe_tables};
pub use config::{PostgresConnectorConfig, PostgresTableConfig, TlsMode, is_identifying};
pub use connect::redacted_url;
pub use load::PostgresConnector;
pub use types::UNCONSTRAINED_NUMERIC;
