//! `cruscotto.toml` plus `connectors/`, `queries/` and `dashboards/`: parse, interpolate `${ENV}`,
//! validate. Every problem is collected with its file and line so `cruscotto check` can report all
//! of them at once instead of stopping at the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::config_text::{
    Problem, files_with_extension, interpolate_env, is_sql_identifier, read_toml, resolve,
};
use crate::connectors::ConnectorConfig;
use crate::query::saved::SavedQuery;

/// The service's own settings, from `cruscotto.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where snapshots, cursors and other state are persisted, relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Folder with one TOML file per connector.
    #[serde(default = "default_connectors_dir")]
    pub connectors_dir: PathBuf,
    /// Folder with saved SQL queries; each file becomes a view in schema `queries`.
    #[serde(default = "default_queries_dir")]
    pub queries_dir: PathBuf,
    /// Folder with dashboard definitions.
    #[serde(default = "default_dashboards_dir")]
    pub dashboards_dir: PathBuf,
    /// Folder with published datasets for partner agencies, one TOML file each.
    #[serde(default = "default_datasets_dir")]
    pub datasets_dir: PathBuf,
    /// Limits applied to every SQL query, whoever sends it.
    #[serde(default)]
    pub query: QueryLimits,
    /// Limits on HTTP connections: slow or idle clients, open connections, request heads.
    #[serde(default)]
    pub http: HttpLimits,
    /// How tables are kept: which are served from memory, which queried in place on disk.
    #[serde(default)]
    pub storage: StorageConfig,
    /// When the dashboards' results are recomputed in the background.
    #[serde(default)]
    pub results: ResultsConfig,
    /// Who may call what: keys, anonymous access, rate limits, disclosure control.
    #[serde(default)]
    pub access: AccessConfig,
    /// The composite digital-divide index: pillars query, weights, method version.
    #[serde(default)]
    pub index: Option<crate::dashboards::IndexConfig>,
    /// Who publishes the partner datasets: the DCAT-AP_IT catalogue's publisher and contact.
    #[serde(default)]
    pub catalogue: CatalogueConfig,
    /// The city the dashboard is for: its name and texts on the pages, the map's first view.
    #[serde(default)]
    pub city: CityConfig,
    /// Analysts' own tools: the PostgreSQL wire protocol and Arrow Flight SQL (off by default).
    #[serde(default)]
    pub protocols: crate::protocols::ProtocolsConfig,
    /// An S3-compatible object store that file tables may read from (`path = "s3://bucket/key"`):
    /// endpoint, region and credentials; what is left out comes from the `AWS_*` variables.
    #[serde(default)]
    pub object_store: crate::objects::ObjectStoreConfig,
}

/// The city (or body) the dashboard is for, `[city]`: the pages' title, tagline, description and
/// data attribution, and the map's view before its areas arrive. Nothing of a city is in the code;
/// without this section the pages say only "cruscotto".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    /// The body's name as the pages show it, e.g. "Comune di Bologna".
    #[serde(default)]
    pub name: Option<String>,
    /// The municipality's ISTAT code, e.g. "037006" (shown to analysts in the SQL page).
    #[serde(default)]
    pub istat_code: Option<String>,
    /// What the dashboard is about, after the name in the header (Italian, English).
    #[serde(default)]
    pub tagline: Option<String>,
    #[serde(default)]
    pub tagline_en: Option<String>,
    /// The pages' description for search engines and link previews (Italian).
    #[serde(default)]
    pub description: Option<String>,
    /// The data's sources and licences, in the footer (Italian, English).
    #[serde(default)]
    pub attribution: Option<String>,
    #[serde(default)]
    pub attribution_en: Option<String>,
    /// The body's code in the IPA index (indicepa.gov.it), e.g. "c_a944": the catalogue's
    /// publisher when `[catalogue]` does not name one.
    #[serde(default)]
    pub ipa_code: Option<String>,
    /// The coat of arms or logo shown before the name in the header: an SVG, PNG, JPEG or WebP
    /// file relative to `cruscotto.toml`, served at /assets/city-logo.
    #[serde(default)]
    pub logo: Option<PathBuf>,
    /// The map's centre (longitude, latitude, WGS84) and zoom before the areas are drawn.
    #[serde(default)]
    pub center: Option<[f64; 2]>,
    #[serde(default)]
    pub zoom: Option<f64>,
}

/// The content type of a city logo, by its extension.
pub fn logo_content_type(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => return None,
    })
}

/// The publisher of the DCAT-AP_IT catalogue at `/api/v1/datasets` (and the contact of the API's
/// OpenAPI document). DCAT-AP_IT identifies a public body by its code in the IPA index
/// (indicepa.gov.it), e.g. `c_a944` for the Comune di Bologna.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueConfig {
    /// The publishing body's name, e.g. "Comune di Bologna".
    #[serde(default)]
    pub publisher: Option<String>,
    /// The publishing body's IPA code, e.g. "c_a944".
    #[serde(default)]
    pub publisher_ipa: Option<String>,
    /// What the catalogue holds, in Italian (DCAT-AP_IT makes it mandatory).
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub description_en: Option<String>,
    /// Who answers questions about the data and the API: a name and an e-mail address.
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_email: Option<String>,
}

/// Access control. Keys are managed with `cruscotto keys create|list|revoke`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Role of requests that carry no key: `none` (a key is required), `partner`, `analyst` or
    /// `admin`. The demo sets `analyst` so it can be tried on 127.0.0.1 without keys.
    #[serde(default = "default_anonymous")]
    pub anonymous: AnonymousRole,
    /// Whether the dashboard is `public` or needs a key (`key`).
    #[serde(default = "default_dashboard_access")]
    pub dashboard: DashboardAccess,
    /// Requests a key (or an anonymous client address) may make per minute, sustained.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Requests a key may make in a burst above the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Smallest count of persons a partner may see; smaller cells are suppressed.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Largest page a dataset request may ask for.
    #[serde(default = "default_max_page")]
    pub max_page: usize,
    /// The audit trail: rotation, retention and aggregation of refused requests.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// The audit trail (`<data_dir>/audit.jsonl`, `[access.audit]`). Its size is bounded by
/// `rotate_size` × (`max_files` + 1); `retention` removes older rotated files sooner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Size at which `audit.jsonl` is closed and renamed `audit-<UTC time>.jsonl`.
    #[serde(default = "default_audit_rotate_size")]
    pub rotate_size: ByteSize,
    /// Rotated files whose last entry is older than this are deleted.
    #[serde(with = "humantime_serde", default = "default_audit_retention")]
    pub retention: Duration,
    /// Rotated files kept at most; the oldest are deleted first.
    #[serde(default = "default_audit_max_files")]
    pub max_files: usize,
    /// Repeats of one refusal (same key, action, status) within this window become one line with
    /// their count, so refused requests cannot grow the log at the rate they are sent.
    #[serde(with = "humantime_serde", default = "default_audit_aggregate_window")]
    pub aggregate_window: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            rotate_size: default_audit_rotate_size(),
            retention: default_audit_retention(),
            max_files: default_audit_max_files(),
            aggregate_window: default_audit_aggregate_window(),
        }
    }
}

fn default_audit_rotate_size() -> ByteSize {
    ByteSize::mib(64)
}
fn default_audit_retention() -> Duration {
    Duration::from_secs(365 * 24 * 3600)
}
fn default_audit_max_files() -> usize {
    64
}
fn default_audit_aggregate_window() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousRole {
    None,
    Partner,
    Analyst,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DashboardAccess {
    Public,
    Key,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            anonymous: default_anonymous(),
            dashboard: default_dashboard_access(),
            requests_per_minute: default_requests_per_minute(),
            burst: default_burst(),
            min_count: default_min_count(),
            max_page: default_max_page(),
            audit: AuditConfig::default(),
        }
    }
}

fn default_anonymous() -> AnonymousRole {
    AnonymousRole::None
}
fn default_dashboard_access() -> DashboardAccess {
    DashboardAccess::Public
}
fn default_requests_per_minute() -> u32 {
    1200
}
fn default_burst() -> u32 {
    600
}
fn default_min_count() -> u64 {
    10
}
fn default_max_page() -> usize {
    10_000
}
fn default_datasets_dir() -> PathBuf {
    PathBuf::from("datasets")
}

/// How tables are kept. Every table is persisted as Parquet in `data_dir`; a snapshot table whose
/// rows take more than `memory_cache` in memory is queried in place from its file instead of
/// being held in memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Largest snapshot table (Arrow memory of its rows) served from memory, e.g. "32 MiB".
    #[serde(default = "default_memory_cache")]
    pub memory_cache: ByteSize,
    /// Memory a table's sort (`sort_by`) holds while a version is written before it spills
    /// sorted runs to disk under `data_dir`, e.g. "256 MiB".
    #[serde(default = "default_sort_memory")]
    pub sort_memory: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            memory_cache: default_memory_cache(),
            sort_memory: default_sort_memory(),
        }
    }
}

/// The dashboards' results (`[results]`): computed in the background and kept in
/// `<data_dir>/results`, never computed while a visitor waits (see `crate::results`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    /// A result whose source tables changed is recomputed at most this often; a failed
    /// refresh is retried after it.
    #[serde(with = "humantime_serde", default = "default_results_min_interval")]
    pub min_interval: Duration,
    /// A result this old is recomputed even when its sources did not change (queries that
    /// depend on the time, e.g. "the last 24 hours").
    #[serde(with = "humantime_serde", default = "default_results_recompute_after")]
    pub recompute_after: Duration,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        Self {
            min_interval: default_results_min_interval(),
            recompute_after: default_results_recompute_after(),
        }
    }
}

fn default_results_min_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_results_recompute_after() -> Duration {
    Duration::from_secs(600)
}

fn default_sort_memory() -> ByteSize {
    ByteSize::b(crate::store::DEFAULT_SORT_MEMORY as u64)
}

fn default_memory_cache() -> ByteSize {
    ByteSize::b(crate::store::DEFAULT_MEMORY_CACHE)
}

/// Bounds on every query: a query that trips one gets an error naming the limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLimits {
    /// Wall-clock time a query may take, planning included.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Memory one query may reserve for joins, sorts and aggregations (DataFusion memory pool).
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Rows a result may hold; larger results are refused rather than truncated.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Queries executing at the same time; others wait their turn (bounds total memory).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Largest SQL text accepted, in bytes.
    #[serde(default = "default_max_sql_bytes")]
    pub max_sql_bytes: usize,
    /// Deepest chain of operators, set operations and parentheses a statement may nest; the
    /// query threads' stacks are sized for it.
    #[serde(default = "default_max_expression_depth")]
    pub max_expression_depth: usize,
    /// Partitions a query's scans and aggregations are split into. More than the query threads,
    /// so that a core taken by another process holds back a small share of a query, not half of
    /// it (benches/README.md, storage); at least 1. Unset: twice the query threads (one per core).
    #[serde(default)]
    pub partitions: Option<usize>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            memory_limit: default_memory_limit(),
            max_rows: default_max_rows(),
            max_concurrent: default_max_concurrent(),
            max_sql_bytes: default_max_sql_bytes(),
            max_expression_depth: default_max_expression_depth(),
            partitions: None,
        }
    }
}

/// Bounds on HTTP connections, so slow or idle clients cannot hold the server's connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Time a client may take to send a request's head (request line and headers), from its first
    /// byte (on a new connection, from the opening). An idle kept-alive connection is bounded by
    /// `keep_alive_timeout`, not by this.
    #[serde(with = "humantime_serde", default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A connection that has carried no request and received no byte for this long is closed.
    #[serde(with = "humantime_serde", default = "default_keep_alive_timeout")]
    pub keep_alive_timeout: Duration,
    /// Connections open at once; a client over the limit gets a 503 at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request head (request line and headers) read, in bytes (at least 8 KiB); over it a 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Longest URI (path and query) accepted, in bytes; over it a 414.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout(),
            keep_alive_timeout: default_keep_alive_timeout(),
            max_connections: default_max_connections(),
            max_header_bytes: default_max_header_bytes(),
            max_uri_bytes: default_max_uri_bytes(),
        }
    }
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keep_alive_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_uri_bytes() -> usize {
    8 * 1024
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("var")
}
fn default_connectors_dir() -> PathBuf {
    PathBuf::from("connectors")
}
fn default_queries_dir() -> PathBuf {
    PathBuf::from("queries")
}
fn default_dashboards_dir() -> PathBuf {
    PathBuf::from("dashboards")
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_memory_limit() -> ByteSize {
    ByteSize::mib(512)
}
fn default_max_rows() -> usize {
    1_000_000
}
fn default_max_concurrent() -> usize {
    4
}
fn default_max_sql_bytes() -> usize {
    64 * 1024
}
fn default_max_expression_depth() -> usize {
    1000
}

/// One connector file: its name (the file stem, which is also its schema in catalog `city`).
#[derive(Debug, Clone)]
pub struct NamedConnector {
    pub name: String,
    pub file: PathBuf,
    pub config: ConnectorConfig,
}

/// A dashboard definition (`dashboards/<name>.toml`); every saved query it names must exist.
#[derive(Debug, Clone)]
pub struct DashboardFile {
    pub name: String,
    pub file: PathBuf,
    pub dashboard: crate::dashboards::Dashboard,
}

/// Everything the service runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder of `cruscotto.toml`: relative paths in every file are resolved against it.
    pub base_dir: PathBuf,
    pub service: ServiceConfig,
    pub connectors: Vec<NamedConnector>,
    pub queries: Vec<SavedQuery>,
    pub dashboards: Vec<DashboardFile>,
    pub datasets: Vec<crate::datasets::Dataset>,
    /// Problems that do not stop the service, reported by `check` and logged at start-up.
    pub warnings: Vec<Problem>,
}

/// All problems found, each on its own line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl Config {
    /// Load and validate everything. Returns all problems found, not just the first.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };

        let mut service = match read_toml::<ServiceConfig>(path) {
            Ok(service) => service,
            Err(problem) => {
                return Err(ConfigError {
                    problems: vec![problem],
                });
            }
        };

        // The city is the catalogue's publisher unless `[catalogue]` names another body.
        let city = &service.city;
        if service.catalogue.publisher.is_none() {
            service.catalogue.publisher = city.name.clone();
            if service.catalogue.publisher_ipa.is_none() {
                service.catalogue.publisher_ipa = city.ipa_code.clone();
            }
        }
        if let Some(logo) = &service.city.logo {
            let file = resolve(&base_dir, logo);
            let known = logo_content_type(&file).is_some();
            if !file.is_file() || !known {
                problems.push(Problem::new(
                    path,
                    Some("city.logo".into()),
                    format!(
                        "`{}` {}",
                        file.display(),
                        if known {
                            "does not exist or is not a file"
                        } else {
                            "is not an image the pages can show: use .svg, .png, .jpg or .webp"
                        }
                    ),
                ));
            }
        }

        problems.extend(service.object_store.validate(path));

        let connectors = load_connectors(&base_dir.join(&service.connectors_dir), &mut problems);
        for connector in &connectors {
            problems.extend(connector.config.validate(&connector.file, &base_dir));
        }
        let mut queries = crate::query::saved::load_dir(
            &base_dir.join(&service.queries_dir),
            service.query.max_expression_depth,
            &mut problems,
        );
        let index = service.index.clone().unwrap_or_default();
        match index.saved_query(path, &queries, service.index.is_some()) {
            Ok(Some(generated)) => queries.push(generated),
            Ok(None) => {}
            Err(found) => problems.extend(found),
        }
        let dashboards = load_dashboards(
            &base_dir.join(&service.dashboards_dir),
            &queries,
            &mut problems,
        );
        let datasets = crate::datasets::load_dir(
            &base_dir.join(&service.datasets_dir),
            &queries,
            &mut problems,
        );

        if service.query.max_rows == 0
            || service.query.max_concurrent == 0
            || service.query.partitions == Some(0)
        {
            problems.push(Problem::new(
                path,
                Some("[query]".into()),
                "max_rows, max_concurrent and partitions must be at least 1",
            ));
        }

        let (warnings, problems): (Vec<Problem>, Vec<Problem>) =
            problems.into_iter().partition(|p| p.warning);
        if problems.is_empty() {
            Ok(Config {
                base_dir,
                service,
                connectors,
                queries,
                dashboards,
                datasets,
                warnings,
            })
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Resolve a path from a config file against the folder of `cruscotto.toml`.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.service.data_dir)
    }

    /// What file tables on object storage are read with: `[object_store]`, and the data dir's
    /// folder for downloads.
    pub fn object_sources(&self) -> crate::objects::ObjectSources {
        crate::objects::ObjectSources {
            config: self.service.object_store.clone(),
            scratch: crate::objects::scratch_dir(&self.data_dir()),
        }
    }
}

fn load_connectors(dir: &Path, problems: &mut Vec<Problem>) -> Vec<NamedConnector> {
    let files = match files_with_extension(dir, "toml") {
        Ok(files) => files,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                None,
                format!("cannot list the folder: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut connectors = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !is_sql_identifier(&name) || crate::store::RESERVED_SCHEMAS.contains(&name.as_str()) {
            problems.push(Problem::new(
                &file,
                None,
                format!(
                    "the file name `{name}` is the connector's schema in SQL: use lowercase letters, digits and `_`, and not one of {:?}",
                    crate::store::RESERVED_SCHEMAS
                ),
            ));
            continue;
        }
        let raw = match std::fs::read_to_string(&file) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(Problem::new(
                    &file,
                    None,
                    format!("cannot read the file: {e}"),
                ));
                continue;
            }
        };
        let text = match interpolate_env(&file, &raw) {
            Ok(text) => text,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        match ConnectorConfig::parse(&file, &text) {
            Ok(config) => connectors.push(NamedConnector { name, file, config }),
            Err(problem) => problems.push(problem),
        }
    }
    connectors
}

fn load_dashboards(
    dir: &Path,
    queries: &[SavedQuery],
    problems: &mut Vec<Problem>,
) -> Vec<DashboardFile> {
    let files = match files_with_extension(dir, "toml") {
        Ok(files) => files,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                None,
                format!("cannot list the folder: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut dashboards = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !is_sql_identifier(&name) {
            problems.push(Problem::new(&file, None, format!("`{name}` is the dashboard's name in URLs: use lowercase letters, digits and `_`")));
            continue;
        }
        let dashboard = match read_toml::<crate::dashboards::Dashboard>(&file) {
            Ok(dashboard) => dashboard,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        problems.extend(dashboard.validate(&file, queries));
        dashboards.push(DashboardFile {
            name,
            file,
            dashboard,
        });
    }
    dashboards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_service_keys_are_rejected_with_their_line() {
        let text = "listen = \"127.0.0.1:1\"\nlisten_port = 9\n";
        let err = toml::from_str::<ServiceConfig>(text).unwrap_err();
        let problem = Problem::from_toml(Path::new("cruscotto.toml"), text, &err);
        assert_eq!(problem.location.as_deref(), Some("line 2, column 1"));
        assert!(
            problem.message.contains("unknown field `listen_port`"),
            "{}",
            problem.message
        );
    }
}
