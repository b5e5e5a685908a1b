//! Configuration of the `http` connector: one connector file is one API (its authentication,
//! timeouts and retries), with one `[[table]]` per endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::connectors::file::{ColumnNames, ColumnType, PointColumns};

/// The placeholder replaced by the incremental cursor in `url`, `query` values and `body`.
pub const SINCE: &str = "{since}";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectorConfig {
    /// Always `"http"`.
    pub kind: String,
    /// A disabled connector is checked but never run, and declares no tables: shipped examples
    /// stay off until someone fills them in.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What these tables are, for people reading /status.
    #[serde(default)]
    pub description: Option<String>,
    /// How often every table is pulled again.
    #[serde(with = "humantime_serde", default = "default_refresh")]
    pub refresh: Duration,
    /// How to authenticate: `{ type = "none" }` (the default), `api_key`, `bearer`, `oauth2`, `pdnd`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Headers sent with every request, e.g. `{ Accept-Language = "it" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Time allowed to open a connection (TCP and TLS).
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response: a server that stops sending fails the attempt.
    #[serde(with = "humantime_serde", default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Time allowed for a whole request, from connecting to the last byte of the body.
    #[serde(with = "humantime_serde", default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Largest response body accepted, per page.
    #[serde(default = "default_max_response_size")]
    pub max_response_size: ByteSize,
    /// Retries of a request on connection errors, timeouts, 429 and 5xx.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The tables, one `[[table]]` each.
    #[serde(rename = "table", default)]
    pub tables: Vec<HttpTableConfig>,
}

fn default_true() -> bool {
    true
}
fn default_refresh() -> Duration {
    Duration::from_secs(3600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_response_size() -> ByteSize {
    ByteSize::mib(64)
}

/// A value that must not be shown: `Debug` prints `***`. Write it as `"${ENV_VAR}"`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Delay before the first retry; it doubles at each retry, with jitter.
    #[serde(with = "humantime_serde", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest delay between two attempts (a `Retry-After` is honoured up to `max_retry_after`).
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited for; a server asking for more fails the pull instead.
    #[serde(with = "humantime_serde", default = "default_max_retry_after")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_retry_after: default_max_retry_after(),
        }
    }
}

fn default_attempts() -> u32 {
    4
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(120)
}

/// How requests are authenticated.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthConfig {
    #[default]
    None,
    /// A key in a header, e.g. `{ type = "api_key", header = "X-API-Key", value = "${CITY_API_KEY}" }`.
    ApiKey(ApiKeyConfig),
    /// A fixed bearer token, e.g. `{ type = "bearer", token = "${CITY_API_TOKEN}" }`.
    Bearer(BearerConfig),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4); the token is cached until shortly before it expires.
    Oauth2(OAuth2Config),
    /// The PDND Interoperabilità voucher: a client assertion signed RS256 with the client's key,
    /// exchanged for a voucher spent as a bearer token on the e-service.
    Pdnd(PdndConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The header carrying the key.
    pub header: String,
    pub value: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Space-separated scopes, if the server wants them.
    #[serde(default)]
    pub scope: Option<String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP Basic, the default) or
    /// `body` (`client_id` and `client_secret` in the form).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Other form parameters some servers require, e.g. `{ audience = "https://api.example.it" }`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdndConfig {
    /// The PDND authorization server, e.g. `https://auth.interop.pagopa.it/token.oauth2`.
    pub token_url: String,
    /// The `aud` of the client assertion, e.g. `auth.interop.pagopa.it/client-assertion`.
    pub audience: String,
    /// The e-service client's id (the assertion's `iss` and `sub`).
    pub client_id: String,
    /// The id of the public key uploaded to the client (the assertion's `kid`). Leave it out
    /// when `kid_file` names a file holding it, or when `private_key` is a JWK with its `kid`:
    /// then a rotated key and its id are picked up together, without a restart.
    #[serde(default)]
    pub kid: Option<String>,
    /// A file holding the `kid` (relative to `cruscotto.toml`), read with the key at each
    /// voucher request: write the new key and its id there when the key is rotated.
    #[serde(default)]
    pub kid_file: Option<PathBuf>,
    /// The purpose (finalità) the data is requested for (the assertion's `purposeId`).
    pub purpose_id: String,
    /// The RSA private key, relative to `cruscotto.toml`: PEM (PKCS#1 or PKCS#8), or a JWK
    /// (JSON, with its `kid`). It is read at each voucher request, so a rotated key is picked up
    /// without a restart.
    pub private_key: PathBuf,
    /// Validity of each client assertion (`exp - iat`).
    #[serde(with = "humantime_serde", default = "default_assertion_lifetime")]
    pub assertion_lifetime: Duration,
    /// ModI INTEGRITY_REST_02, for e-services that require it: a `Digest` header and an
    /// `Agid-JWT-Signature` JWS over it, signed with the same key.
    #[serde(default)]
    pub integrity: Option<IntegrityConfig>,
    /// ModI AUDIT_REST_02, for e-services that require it: an `Agid-JWT-TrackingEvidence` JWS
    /// with who asks and from where, bound to the voucher by its digest in the client assertion.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
}

fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(120)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrityConfig {
    /// The `aud` of the `Agid-JWT-Signature`: the e-service's audience as published on PDND.
    pub audience: String,
}

/// The audit data of AUDIT_REST_02. cruscotto pulls on its own behalf, not a person's, so these
/// name the service and the office responsible for it, as agreed with the provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The `aud` of the tracking evidence: the e-service's audience as published on PDND.
    pub audience: String,
    /// `userID`: who the data is requested for, e.g. `cruscotto-ufficio-statistica`.
    pub user_id: String,
    /// `userLocation`: where the request comes from, e.g. the host or office name.
    pub user_location: String,
    /// `LoA`: the level of assurance of the user's authentication, e.g. `LoA3`.
    pub loa: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    /// A JSON document; the records are the array at `json_pointer` (or the document itself).
    #[default]
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV text, read with the `csv` options.
    Csv,
}

/// How the next page is requested.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pagination {
    /// One request.
    #[default]
    None,
    /// `?page=1`, `?page=2`, …
    Page(PagePagination),
    /// `?offset=0&limit=100`, `?offset=100&limit=100`, … (the offset advances by the records received).
    Offset(OffsetPagination),
    /// The next cursor is in the response, at a JSON pointer.
    Cursor(CursorPagination),
    /// The next page is the `Link: <…>; rel="next"` header (RFC 8288).
    Link,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagePagination {
    /// Query parameter with the page number.
    #[serde(default = "default_page_param")]
    pub param: String,
    /// Number of the first page.
    #[serde(default = "default_first_page")]
    pub first: u64,
    /// Query parameter with the page size, if the API takes one.
    #[serde(default)]
    pub size_param: Option<String>,
    /// Records per page. Without `total`, a page with fewer ends the pull, so it must not be
    /// more than the API's maximum.
    #[serde(default)]
    pub size: Option<u64>,
    /// JSON pointer to the total number of records, if the API says it. Then only the total
    /// ends the pull: a short page is a server capping its page size, and an empty page before
    /// the total fails the pull.
    #[serde(default)]
    pub total: Option<String>,
}

fn default_page_param() -> String {
    "page".into()
}
fn default_first_page() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetPagination {
    /// Query parameter with the offset of the first record.
    #[serde(default = "default_offset_param")]
    pub param: String,
    /// Query parameter with the page size.
    #[serde(default = "default_limit_param")]
    pub limit_param: String,
    /// Records per page. Without `total`, a page with fewer ends the pull, so it must not be
    /// more than the API's maximum.
    pub limit: u64,
    /// JSON pointer to the total number of records, if the API says it. Then only the total
    /// ends the pull: a short page is a server capping its page size, and an empty page before
    /// the total fails the pull.
    #[serde(default)]
    pub total: Option<String>,
}

fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorPagination {
    /// JSON pointer to the next cursor, e.g. `/meta/next_cursor`; missing, null or "" ends the pull.
    pub next: String,
    /// Query parameter the cursor is sent in. Without it, the cursor is the URL of the next page.
    #[serde(default)]
    pub param: Option<String>,
}

/// Pull only what changed since the last committed pull, and append it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Query parameter carrying the cursor, e.g. `modified_since`. Without it, write `{since}`
    /// where the cursor goes in `url`, a `query` value or `body`.
    #[serde(default)]
    pub param: Option<String>,
    /// Column whose largest value is the next cursor, e.g. `updated_at`. Declare it in `schema`.
    pub column: String,
    /// Cursor of the very first pull, e.g. `"2024-01-01T00:00:00Z"`.
    pub start: String,
    /// How long appended rows are kept, by the time in `retention_column`; older rows are
    /// dropped when the table is compacted. Without it every row is kept.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// A `date` or `timestamp` column of `schema` the retention is measured on; default `column`.
    #[serde(default)]
    pub retention_column: Option<String>,
}

impl Incremental {
    /// The column the retention is measured on, when there is a retention.
    pub fn retention_column(&self) -> Option<&str> {
        self.retention?;
        Some(self.retention_column.as_deref().unwrap_or(&self.column))
    }
}

/// Options for CSV bodies, as in the `file` connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Text encoding: `utf-8`, `latin1`, `windows-1252`, or any WHATWG label.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    #[serde(default = "default_true")]
    pub header: bool,
    #[serde(default)]
    pub skip_lines: usize,
    /// Decimal separator: `.` or `,`.
    #[serde(default = "default_decimal")]
    pub decimal: char,
    #[serde(default)]
    pub thousands: Option<char>,
    #[serde(default)]
    pub null_values: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: default_delimiter(),
            quote: default_quote(),
            encoding: default_encoding(),
            header: true,
            skip_lines: 0,
            decimal: default_decimal(),
            thousands: None,
            null_values: Vec::new(),
        }
    }
}

fn default_delimiter() -> char {
    ','
}
fn default_quote() -> char {
    '"'
}
fn default_encoding() -> String {
    "utf-8".into()
}
fn default_decimal() -> char {
    '.'
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTableConfig {
    /// Table name in SQL: `city.<connector>.<name>`.
    pub name: String,
    /// What the table holds, shown in /status and the catalog.
    #[serde(default)]
    pub description: Option<String>,
    /// The endpoint. `{since}` is replaced by the incremental cursor, URL-encoded.
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Query parameters, in order; `{since}` in a value is replaced by the incremental cursor.
    #[serde(default, deserialize_with = "in_written_order")]
    pub query: IndexMap<String, String>,
    /// Headers of this table's requests, added to the connector's.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Request body (for `POST`); `{since}` is replaced by the incremental cursor.
    #[serde(default)]
    pub body: Option<String>,
    /// Content type of `body`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// `json` (the default), `ndjson` or `csv`.
    #[serde(default)]
    pub format: ResponseFormat,
    /// Where the records are in a JSON response, as a JSON pointer (`/data/items`).
    #[serde(default)]
    pub json_pointer: Option<String>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Safety stop: a pull needing more pages fails (the pagination is probably misconfigured).
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// Pull only what is new since the last committed cursor, and append it.
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// The table's columns and their types, in order. When set, they are the table (other fields
    /// are not loaded); otherwise the columns are inferred from the first page and every later
    /// page must fit them.
    #[serde(default, deserialize_with = "in_written_order")]
    pub schema: IndexMap<String, ColumnType>,
    /// How field names become column names: `snake_case` (the default) or `keep`.
    #[serde(default)]
    pub column_names: ColumnNames,
    /// Renames applied after normalisation.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// CSV options, for `format = "csv"`.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Build a point geometry from coordinate columns.
    #[serde(default)]
    pub point: Option<PointColumns>,
    /// Keep only rows matching this SQL predicate.
    #[serde(default)]
    pub filter: Option<String>,
    /// Columns the table's stored versions are sorted by, e.g. `["metric", "area"]`: a query
    /// filtering on the leading ones reads only the row groups that can match. Rows stay in the
    /// source's order without it.
    #[serde(default)]
    pub sort_by: Vec<String>,
}

/// A TOML table in the order it is written: the toml crate hands keys over sorted, so the order
/// is recovered from where each value sits in the file.
fn in_written_order<'de, D, T>(deserializer: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let entries: BTreeMap<String, toml::Spanned<T>> = BTreeMap::deserialize(deserializer)?;
    let mut entries: Vec<(String, toml::Spanned<T>)> = entries.into_iter().collect();
    entries.sort_by_key(|(_, value)| value.span().start);
    Ok(entries
        .into_iter()
        .map(|(key, value)| (key, value.into_inner()))
        .collect())
}

fn default_content_type() -> String {
    "application/json".into()
}
fn default_max_pages() -> usize {
    10_000
}
impl HttpTableConfig {
    /// The final name of a field: normalised (`codiceFiscale` → `codice_fiscale`), then renamed.
    pub fn column_name(&self, original: &str, position: usize) -> String {
        let name = match self.column_names {
            ColumnNames::SnakeCase => {
                crate::connectors::file::names::snake_case(&split_camel_case(original), position)
            }
            ColumnNames::Keep => original.to_string(),
        };
        self.rename.get(&name).cloned().unwrap_or(name)
    }
}

/// JSON APIs (PDND e-services among them) write `codiceFiscale`, `dataNascita`, `IDComune`:
/// a word starts at an upper-case letter after a lower-case one or a digit, or at the last
/// capital of a run followed by a lower-case letter.
fn split_camel_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_uppercase() {
            let previous = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower)
            {
                out.push(' ');
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> HttpConnectorConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn declared_columns_keep_their_order_and_auth_defaults_to_none() {
        let config = parse(
            r#"kind = "http"
[[table]]
name = "t"
url = "https://api.example.it/v1/residenti"
schema = { zeta = "text", alfa = "int", mezzo = "date" }
query = { z = "1", a = "2" }
"#,
        );
        assert!(matches!(config.auth, AuthConfig::None));
        let table = &config.tables[0];
        assert_eq!(
            table.schema.keys().collect::<Vec<_>>(),
            ["zeta", "alfa", "mezzo"]
        );
        assert_eq!(table.query.keys().collect::<Vec<_>>(), ["z", "a"]);
        assert!(
            config
                .validate(Path::new("c.toml"), Path::new("."))
                .is_empty()
        );
    }

    #[test]
    fn camel_case_fields_become_snake_case_columns() {
        let table: HttpTableConfig =
            toml::from_str("name = \"t\"\nurl = \"https://a.it\"").unwrap();
        let names: Vec<String> = [
            "codiceFiscale",
            "dataNascita",
            "IDComune",
            "purposeId",
            "Età media",
            "residenti_2023",
            "URL",
        ]
        .iter()
        .map(|n| table.column_name(n, 1))
        .collect();
        assert_eq!(
            names,
            [
                "codice_fiscale",
                "data_nascita",
                "id_comune",
                "purpose_id",
                "eta_media",
                "residenti_2023",
                "url"
            ]
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = parse("kind = \"http\"\nauth = { type = \"bearer\", token = \"s3cr3t\" }\n");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_keys_are_refused_even_inside_auth_and_pagination() {
        let text = "kind = \"http\"\nauth = { type = \"pdnd\", token_url = \"https://a\", audience = \"a\", client_id = \"c\", kid = \"k\", purpose_id = \"p\", private_key = \"k.pem\", purpose = \"x\" }\n";
        let err = toml::from_str::<HttpConnectorConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `purpose`"), "{err}");
        let text = "kind = \"http\"\n[[table]]\nname = \"t\"\nurl = \"https://a\"\npagination = { type = \"offset\", limit = 10, size = 3 }\n";
        let err = toml::from_str::<HttpConnectorConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `size`"), "{err}");
    }
}
