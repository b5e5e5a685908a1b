//! Connectors turn a source into Arrow record batches, and nothing else: the store persists and
//! exposes them. The kind of a connector is chosen by `kind = "..."` in its file under `connectors/`.

pub mod file;
pub mod http;
pub mod mqtt;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;

use crate::config_text::Problem;
use crate::objects::ObjectSources;
pub use crate::store::input::{
    LoadMode, LoadState, Loaded, LoadedTable, RejectedRecord, Retention, StreamedTable,
};

/// The closed set of connector kinds, one variant per `kind`.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    File(file::FileConnectorConfig),
    Postgres(postgres::PostgresConnectorConfig),
    // Boxed: its authentication and paging settings make it much larger than the others.
    Http(Box<http::HttpConnectorConfig>),
    Mqtt(Box<mqtt::MqttConnectorConfig>),
}

impl ConnectorConfig {
    pub const KINDS: &'static [&'static str] = &["file", "postgres", "http", "mqtt"];

    /// Parse a connector file. The kind is read first, then the whole file is parsed as that
    /// kind's struct, so an unknown key is reported with its line (an internally tagged enum would
    /// lose the position).
    pub fn parse(file: &Path, text: &str) -> Result<Self, Problem> {
        let kind = toml::from_str::<toml::Table>(text)
            .map_err(|e| Problem::from_toml(file, text, &e))
            .map(|table| {
                table
                    .get("kind")
                    .and_then(|k| k.as_str().map(str::to_string))
            })?;
        match kind.as_deref() {
            Some("file") => toml::from_str(text)
                .map(ConnectorConfig::File)
                .map_err(|e| Problem::from_toml(file, text, &e)),
            Some("postgres") => toml::from_str(text)
                .map(ConnectorConfig::Postgres)
                .map_err(|e| Problem::from_toml(file, text, &e)),
            Some("http") => toml::from_str(text)
                .map(|config| ConnectorConfig::Http(Box::new(config)))
                .map_err(|e| Problem::from_toml(file, text, &e)),
            Some("mqtt") => toml::from_str(text)
                .map(|config| ConnectorConfig::Mqtt(Box::new(config)))
                .map_err(|e| Problem::from_toml(file, text, &e)),
            Some(other) => Err(Problem::new(
                file,
                Some("kind".into()),
                format!(
                    "unknown connector kind `{other}`; expected one of {:?}",
                    Self::KINDS
                ),
            )),
            None => Err(Problem::new(
                file,
                None,
                format!("missing `kind`; expected one of {:?}", Self::KINDS),
            )),
        }
    }

    /// Checks that need more than parsing (paths exist, SQL filters parse, names are valid).
    pub fn validate(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        match self {
            ConnectorConfig::File(config) => config.validate(file, base_dir),
            ConnectorConfig::Postgres(config) => config.validate(file, base_dir),
            ConnectorConfig::Http(config) => config.validate(file, base_dir),
            ConnectorConfig::Mqtt(config) => config.validate(file, base_dir),
        }
    }

    /// How long to wait after a successful load before loading again.
    pub fn refresh(&self) -> Duration {
        match self {
            ConnectorConfig::File(config) => config.refresh,
            ConnectorConfig::Postgres(config) => config.refresh,
            ConnectorConfig::Http(config) => config.refresh,
            // A stream is not refreshed; this is how often readings are expected.
            ConnectorConfig::Mqtt(config) => config.expected_interval,
        }
    }

    pub fn table_names(&self) -> Vec<String> {
        match self {
            ConnectorConfig::File(config) => config.tables.iter().map(|t| t.name.clone()).collect(),
            ConnectorConfig::Postgres(config) => {
                config.tables.iter().map(|t| t.name.clone()).collect()
            }
            // A disabled connector declares nothing: it must not appear in /status or hold /readyz.
            ConnectorConfig::Http(config) if !config.enabled => Vec::new(),
            ConnectorConfig::Http(config) => config.tables.iter().map(|t| t.name.clone()).collect(),
            ConnectorConfig::Mqtt(config) => config.table_names(),
        }
    }

    /// The columns a table's stored versions are sorted by (`sort_by`; empty: the source's order).
    pub fn sort_by(&self, table: &str) -> Vec<String> {
        let found = match self {
            ConnectorConfig::File(config) => config
                .tables
                .iter()
                .find(|t| t.name == table)
                .map(|t| &t.sort_by),
            ConnectorConfig::Postgres(config) => config
                .tables
                .iter()
                .find(|t| t.name == table)
                .map(|t| &t.sort_by),
            ConnectorConfig::Http(config) => config
                .tables
                .iter()
                .find(|t| t.name == table)
                .map(|t| &t.sort_by),
            ConnectorConfig::Mqtt(_) => None,
        };
        found.cloned().unwrap_or_default()
    }

    /// A file table on object storage (`s3://...`) is reached with the `AWS_*` variables alone and
    /// downloaded to the system's temporary folder; the service uses `build_with`.
    pub fn build(&self, base_dir: &Path) -> Box<dyn Connector> {
        self.build_with(base_dir, &ObjectSources::default())
    }

    /// `objects`: how a file table on object storage is reached (`[object_store]`) and where it
    /// is downloaded (under `data_dir`).
    pub fn build_with(&self, base_dir: &Path, objects: &ObjectSources) -> Box<dyn Connector> {
        match self {
            ConnectorConfig::File(config) => Box::new(file::FileConnector::new(
                config.clone(),
                base_dir,
                objects.clone(),
            )),
            ConnectorConfig::Postgres(config) => {
                Box::new(postgres::PostgresConnector::new(config.clone(), base_dir))
            }
            ConnectorConfig::Http(config) => {
                Box::new(http::HttpConnector::new((**config).clone(), base_dir))
            }
            ConnectorConfig::Mqtt(_) => Box::new(mqtt::MqttConnector),
        }
    }

    /// Whether the connector is a stream (run as one long task) rather than polled.
    /// Whether the table's rows come from a built-in simulator (labelled "dati simulati").
    pub fn is_simulated(&self, table: &str) -> bool {
        match self {
            ConnectorConfig::File(config) => config
                .tables
                .iter()
                .any(|t| t.name == table && t.simulate.is_some()),
            ConnectorConfig::Mqtt(config) => config.simulate.is_some(),
            ConnectorConfig::Postgres(_) | ConnectorConfig::Http(_) => false,
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, ConnectorConfig::Mqtt(_))
    }

    /// Each table's schema as a load would make it, with nothing stored: a Parquet file's footer,
    /// a text file read and typed, a database's description of the prepared query, an HTTP
    /// table's declared `schema` (no request is sent). `None` for streams, whose tables the
    /// store declares itself.
    /// `cruscotto check` plans the saved queries and dashboards against these.
    pub async fn describe(
        &self,
        base_dir: &Path,
        scratch: &Path,
        objects: &ObjectSources,
    ) -> Option<Vec<(String, Result<Described, String>)>> {
        Some(match self {
            ConnectorConfig::File(config) => {
                let mut out = Vec::with_capacity(config.tables.len());
                for table in &config.tables {
                    let schema = file::describe_table(table, base_dir, scratch, objects)
                        .await
                        .map_err(|e| e.to_string());
                    out.push((table.name.clone(), schema));
                }
                out
            }
            ConnectorConfig::Postgres(config) => postgres::describe_tables(config, base_dir)
                .await
                .into_iter()
                .map(|(table, schema)| (table, schema.map(|s| (s, Vec::new()))))
                .collect(),
            ConnectorConfig::Http(config) => {
                let mut out = Vec::with_capacity(config.tables.len());
                for table in &config.tables {
                    out.push((table.name.clone(), http::describe_table(table).await));
                }
                out
            }
            ConnectorConfig::Mqtt(_) => return None,
        })
    }

    /// Checks that need the source itself (a database connection); `cruscotto check` runs them.
    pub async fn check_source(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        match self {
            ConnectorConfig::Postgres(config) => {
                postgres::check_source(config, file, base_dir).await
            }
            _ => Vec::new(),
        }
    }
}

/// A table as `describe` found it: its schema, and the records a load would reject.
pub type Described = (SchemaRef, Vec<RejectedRecord>);

/// A source of tables. `load` reads every table of the connector once; each table succeeds or
/// fails on its own, so one bad file never hides the others.
pub trait Connector: Send + Sync {
    fn load<'a>(&'a self, state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>>;
}

/// The outcome of loading one table.
pub struct TableLoad {
    pub table: String,
    /// Where the data came from, for /status (a path, a URL without secrets, a topic).
    pub source: String,
    pub result: Result<Loaded, ConnectorError>,
}

/// Longest raw record kept in the rejected-records table.
pub const MAX_RAW_RECORD: usize = 2048;

pub fn truncate_raw(raw: &str) -> String {
    if raw.len() <= MAX_RAW_RECORD {
        return raw.to_string();
    }
    let mut end = MAX_RAW_RECORD;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: column `{column}`: {message}", path.display())]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Transform { path: PathBuf, message: String },
    /// `source_url` never holds a password (see `postgres::redacted_url`).
    #[error("PostgreSQL at {source_url}, table `{table}`: {message}")]
    Postgres {
        source_url: String,
        table: String,
        message: String,
    },
    /// `url` never holds credentials (see `http::client::display_url`).
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    /// An object on S3-compatible storage that could not be read: the bucket or the key missing,
    /// access refused, the server unreachable. `url` is `s3://bucket/key`, never a credential.
    #[error("table `{table}`, {url}: {message}")]
    Object {
        table: String,
        url: String,
        message: String,
    },
    /// Credentials refused or unusable: a key, a token, a voucher. Never holds a secret.
    #[error("authentication failed: {message}")]
    Authentication { message: String },
}
