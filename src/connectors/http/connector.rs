//! Pulling a table: every page of one run is fetched and decoded before anything is handed to
//! the store, so a page failing mid-run publishes nothing of that run. An incremental table sends
//! the last committed cursor and returns the new rows with the next cursor, which the store
//! commits together with them: the cursor advances only once the rows are durable.

use std::path::Path;

use arrow::array::{
    Array, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tracing::info;

use super::auth::Authenticator;
use super::client::{HttpClient, display_url};
use super::config::{
    HttpConnectorConfig, HttpTableConfig, Incremental, Method, Pagination, ResponseFormat, SINCE,
};
use super::decode::PageDecoder;
use super::pagination::Pager;
use crate::connectors::{
    Connector, ConnectorError, LoadMode, LoadState, Loaded, LoadedTable, RejectedRecord, Retention,
    TableLoad,
};

pub struct HttpConnector {
    config: HttpConnectorConfig,
    /// Built once: the client keeps its connection pool, the authenticator its cached token,
    /// for as long as the connector lives (across refreshes).
    http: Result<HttpClient, String>,
    auth: Result<Authenticator, String>,
}

impl HttpConnector {
    pub fn new(config: HttpConnectorConfig, base_dir: &Path) -> Self {
        let http = HttpClient::new(&config);
        let auth = Authenticator::new(&config.auth, base_dir);
        Self { config, http, auth }
    }
}

impl Connector for HttpConnector {
    fn load<'a>(&'a self, state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        async move {
            if !self.config.enabled {
                return Vec::new();
            }
            let mut loads = Vec::with_capacity(self.config.tables.len());
            for table in &self.config.tables {
                let source = Url::parse(&table.url)
                    .map(|u| display_url(&u))
                    .unwrap_or_else(|_| table.url.clone());
                let result = self.load_table(table, state).await;
                loads.push(TableLoad {
                    table: table.name.clone(),
                    source,
                    result,
                });
            }
            loads
        }
        .boxed()
    }
}

fn http_error(url: &str, message: String) -> ConnectorError {
    ConnectorError::Http {
        url: url.to_string(),
        message,
    }
}

impl HttpConnector {
    async fn load_table(
        &self,
        table: &HttpTableConfig,
        state: &LoadState,
    ) -> Result<Loaded, ConnectorError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| http_error(&table.url, e.clone()))?;
        let auth = self
            .auth
            .as_ref()
            .map_err(|e| ConnectorError::Authentication { message: e.clone() })?;
        let since = table
            .incremental
            .as_ref()
            .map(|inc| state.cursor(&table.name).unwrap_or(&inc.start).to_string());
        let mut pager =
            Pager::new(table, since.as_deref()).map_err(|e| http_error(&table.url, e))?;
        let body = table.body.as_ref().map(|body| match &since {
            Some(since) => body.replace(SINCE, since),
            None => body.clone(),
        });
        let mut decoder = PageDecoder::new(table);
        let mut batches = Vec::new();
        let mut rejected = Vec::new();
        let mut url = pager.first();
        let mut pages = 0;
        // A whole table answered in one response is asked for only if it changed since the
        // version the store holds (`If-None-Match`, `If-Modified-Since`).
        let settings = settings_hash(table);
        let previous = (table.incremental.is_none())
            .then(|| state.fingerprints.get(&table.name))
            .flatten()
            .and_then(|f| Fingerprint::parse(f))
            .filter(|f| f.settings == settings);
        let mut conditional = HeaderMap::new();
        if let Some(previous) = previous
            .as_ref()
            .filter(|_| matches!(table.pagination, Pagination::None))
        {
            conditional = previous.conditional_headers();
        }
        let mut content = std::collections::hash_map::DefaultHasher::new();
        let mut validators = (None, None);
        loop {
            pages += 1;
            let shown = display_url(&url);
            if pages > table.max_pages {
                return Err(http_error(
                    &shown,
                    format!(
                        "more than {} pages (`max_pages`): is the pagination configured right?",
                        table.max_pages
                    ),
                ));
            }
            let Some((headers, bytes)) = self
                .fetch(http, auth, table, &url, body.as_deref(), &conditional)
                .await?
            else {
                info!(table = %table.name, "not modified since the version held; not read again");
                return Ok(Loaded::Unchanged);
            };
            if pages == 1 {
                conditional = HeaderMap::new();
                validators = (
                    header_text(&headers, reqwest::header::ETAG),
                    header_text(&headers, reqwest::header::LAST_MODIFIED),
                );
            }
            std::hash::Hasher::write(&mut content, &bytes);
            let page = decoder
                .decode(&shown, &bytes)
                .map_err(|e| http_error(&shown, format!("page {pages}: {e}")))?;
            batches.extend(page.batch);
            rejected.extend(page.rejected);
            match pager
                .next(&url, &headers, page.document.as_ref(), page.records)
                .map_err(|e| http_error(&shown, format!("page {pages}: {e}")))?
            {
                Some(next) => url = next,
                None => break,
            }
        }
        let source = display_url(&pager.first());
        // An empty CSV page has text columns only: the schema is the first page with rows.
        let schema = decoder
            .schema()
            .or_else(|| batches.first().map(RecordBatch::schema));
        batches.retain(|b| b.num_rows() > 0);
        let schema = schema.ok_or_else(|| {
            http_error(&source, "the source returned no records, so there are no columns to infer: declare `schema` to load an empty answer as an empty table".into())
        })?;
        let cursor = match (&table.incremental, &since) {
            (Some(incremental), Some(since)) => Some(
                next_cursor(&batches, incremental, since).map_err(|e| http_error(&source, e))?,
            ),
            _ => None,
        };
        let fingerprint = table.incremental.is_none().then(|| Fingerprint {
            content: std::hash::Hasher::finish(&content),
            settings,
            etag: validators.0,
            last_modified: validators.1,
        });
        if let (Some(previous), Some(fingerprint)) = (&previous, &fingerprint)
            && previous.content == fingerprint.content
        {
            info!(table = %table.name, "the same answer as the version held; not stored again");
            return Ok(Loaded::Unchanged);
        }
        let rows_pulled: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let batches = self
            .reshape(table, &source, schema, batches, &mut rejected)
            .await?;
        info!(table = %table.name, pages, rows = rows_pulled, rejected = rejected.len(), "http table pulled");
        let schema = batches[0].schema();
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        Ok(LoadedTable {
            schema,
            batches,
            rejected,
            mode: if table.incremental.is_some() {
                LoadMode::Append
            } else {
                LoadMode::Replace
            },
            cursor,
            retention: table.incremental.as_ref().and_then(|incremental| {
                Some(Retention::from_now(
                    incremental.retention_column()?,
                    incremental.retention?,
                ))
            }),
            fingerprint: fingerprint.map(|f| f.to_string()),
        }
        .into())
    }

    /// Point geometry and row filter, as in the `file` connector. Always returns at least one
    /// (possibly empty) batch, so the output schema is known even for an empty pull.
    async fn reshape(
        &self,
        table: &HttpTableConfig,
        source: &str,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
        rejected: &mut Vec<RejectedRecord>,
    ) -> Result<Vec<RecordBatch>, ConnectorError> {
        let mut batches = if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        if table.point.is_none() && table.filter.is_none() {
            return Ok(batches);
        }
        for batch in &mut batches {
            let mut reshaped = batch.clone();
            if let Some(point) = &table.point {
                let (with_points, refused) =
                    crate::connectors::file::reshape::add_point(source, reshaped, point)?;
                reshaped = with_points;
                rejected.extend(refused);
            }
            if let Some(predicate) = &table.filter {
                reshaped =
                    crate::connectors::file::reshape::filter(source, reshaped, predicate).await?;
            }
            *batch = reshaped;
        }
        Ok(batches)
    }

    /// One page: credentials, ModI headers, retries; a 401 renews a cached token once (the
    /// e-service's clock may be ahead of ours) before it is reported as an authentication error.
    async fn fetch(
        &self,
        http: &HttpClient,
        auth: &Authenticator,
        table: &HttpTableConfig,
        url: &Url,
        body: Option<&str>,
        conditional: &HeaderMap,
    ) -> Result<Option<(HeaderMap, Bytes)>, ConnectorError> {
        let shown = display_url(url);
        let fixed = self
            .fixed_headers(table)
            .map_err(|e| http_error(&shown, e))?;
        let method = match table.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let content_type = body.map(|_| table.content_type.as_str());
        let (fixed, method, target) = (&fixed, &method, shown.as_str());
        let mut renewed = false;
        loop {
            let response = http
                .exchange(target, move || {
                    async move {
                        let mut headers = fixed.clone();
                        headers.extend(conditional.clone());
                        headers.extend(auth.headers(http).await?);
                        if let Some(pdnd) = auth.pdnd() {
                            headers.extend(pdnd.integrity_headers(
                                body.unwrap_or_default().as_bytes(),
                                content_type,
                            )?);
                        }
                        let mut request = http.client().request(method.clone(), url.clone());
                        if let (Some(body), Some(content_type)) = (body, content_type) {
                            let value = HeaderValue::from_str(content_type).map_err(|_| {
                                http_error(
                                    target,
                                    "`content_type` is not a valid header value".into(),
                                )
                            })?;
                            headers.insert(CONTENT_TYPE, value);
                            request = request.body(body.to_string());
                        }
                        Ok(request.headers(headers))
                    }
                    .boxed()
                })
                .await?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && auth.renews_tokens() && !renewed {
                info!(url = %shown, "the token was refused; renewing it and trying again");
                renewed = true;
                auth.forget_token().await;
                continue;
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && renewed {
                // A voucher refused right after it was issued is refused for a reason of its
                // own (a suspended purpose, a key the e-service does not know): the next pull
                // asks for a new one rather than spending this one again.
                auth.forget_token().await;
            }
            if status == reqwest::StatusCode::NOT_MODIFIED && !conditional.is_empty() {
                return Ok(None);
            }
            if !status.is_success() {
                let why = http.failure(response, true).await;
                return Err(if matches!(status.as_u16(), 401 | 403) {
                    ConnectorError::Authentication {
                        message: format!("{shown} refused the credentials: {why}"),
                    }
                } else {
                    http_error(&shown, why)
                });
            }
            let headers = response.headers().clone();
            let bytes = http.body(&shown, response).await?;
            return Ok(Some((headers, bytes)));
        }
    }

    /// `Accept` for the format, then the connector's headers, then the table's.
    fn fixed_headers(&self, table: &HttpTableConfig) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        let accept = match table.format {
            ResponseFormat::Json => "application/json, application/problem+json",
            ResponseFormat::Ndjson => "application/x-ndjson, application/problem+json",
            ResponseFormat::Csv => "text/csv, application/problem+json",
        };
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        for (name, value) in self.config.headers.iter().chain(&table.headers) {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let mut value = HeaderValue::from_str(&value.0)
                .map_err(|_| format!("the value of header `{name}` is not valid in a header"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

/// The largest value of the cursor column, never behind the previous cursor (a server that
/// ignores the `since` parameter must not move it backwards). Written back the way the API reads
/// it: integers and numbers as such, dates as `YYYY-MM-DD`, timestamps as RFC 3339 in UTC.
fn next_cursor(
    batches: &[RecordBatch],
    incremental: &Incremental,
    previous: &str,
) -> Result<String, String> {
    let column = &incremental.column;
    let arrays: Vec<&dyn Array> = batches
        .iter()
        .map(|b| {
            b.column_by_name(column)
                .map(|c| c.as_ref())
                .ok_or_else(|| format!("no column `{column}` for the incremental cursor"))
        })
        .collect::<Result<_, _>>()?;
    let Some(data_type) = arrays.first().map(|a| a.data_type().clone()) else {
        return Ok(previous.to_string());
    };
    let largest = |values: Vec<Option<String>>| values.into_iter().flatten();
    let candidate = match data_type {
        DataType::Int64 => {
            let max = arrays
                .iter()
                .filter_map(|a| arrow::compute::max(a.as_any().downcast_ref::<Int64Array>()?))
                .max();
            let previous_value = previous.trim().parse::<i64>().ok();
            return Ok(match (max, previous_value) {
                (Some(max), Some(prev)) if prev >= max => previous.to_string(),
                (Some(max), _) => max.to_string(),
                (None, _) => previous.to_string(),
            });
        }
        DataType::Float64 => {
            let max = arrays
                .iter()
                .filter_map(|a| arrow::compute::max(a.as_any().downcast_ref::<Float64Array>()?))
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| a.max(v)))
                });
            let previous_value = previous.trim().parse::<f64>().ok();
            return Ok(match (max, previous_value) {
                (Some(max), Some(prev)) if prev >= max => previous.to_string(),
                (Some(max), _) => max.to_string(),
                (None, _) => previous.to_string(),
            });
        }
        DataType::Date32 => largest(
            arrays
                .iter()
                .map(|a| {
                    let days = arrow::compute::max(a.as_any().downcast_ref::<Date32Array>()?)?;
                    let date = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)?;
                    Some(date.format("%Y-%m-%d").to_string())
                })
                .collect(),
        )
        .max(),
        DataType::Timestamp(_, _) => {
            let max = arrays
                .iter()
                .filter_map(|a| {
                    arrow::compute::max(a.as_any().downcast_ref::<TimestampMicrosecondArray>()?)
                })
                .max();
            let previous_value = chrono::DateTime::parse_from_rfc3339(previous.trim())
                .ok()
                .map(|t| t.timestamp_micros());
            return Ok(match (max, previous_value) {
                (Some(max), Some(prev)) if prev >= max => previous.to_string(),
                (Some(max), _) => chrono::DateTime::from_timestamp_micros(max)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_else(|| previous.to_string()),
                (None, _) => previous.to_string(),
            });
        }
        DataType::Utf8 => largest(
            arrays
                .iter()
                .map(|a| {
                    arrow::compute::max_string(a.as_any().downcast_ref::<StringArray>()?)
                        .map(str::to_string)
                })
                .collect(),
        )
        .max(),
        other => {
            return Err(format!(
                "column `{column}` is {other}, which cannot be a cursor"
            ));
        }
    };
    // Dates (YYYY-MM-DD) and text compare as strings.
    Ok(match candidate {
        Some(candidate) if candidate.as_str() > previous => candidate,
        _ => previous.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn incremental(column: &str) -> Incremental {
        Incremental {
            param: Some("since".into()),
            column: column.into(),
            start: "0".into(),
            retention: None,
            retention_column: None,
        }
    }

    #[test]
    fn the_cursor_is_the_largest_value_and_never_goes_back() {
        let ids: Arc<dyn Array> = Arc::new(Int64Array::from(vec![Some(7), None, Some(12)]));
        let batch = RecordBatch::try_from_iter([("id", ids)]).unwrap();
        assert_eq!(
            next_cursor(std::slice::from_ref(&batch), &incremental("id"), "3").unwrap(),
            "12"
        );
        assert_eq!(
            next_cursor(&[batch], &incremental("id"), "40").unwrap(),
            "40"
        );
        assert_eq!(next_cursor(&[], &incremental("id"), "40").unwrap(), "40");

        let micros = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00+02:00")
            .unwrap()
            .timestamp_micros();
        let times: Arc<dyn Array> = Arc::new(TimestampMicrosecondArray::from(vec![
            micros,
            micros - 1_000_000,
        ]));
        let batch = RecordBatch::try_from_iter([("t", times)]).unwrap();
        assert_eq!(
            next_cursor(&[batch], &incremental("t"), "1970-01-01T00:00:00Z").unwrap(),
            "2024-05-01T08:00:00Z"
        );

        let days: Arc<dyn Array> = Arc::new(Date32Array::from(vec![19_844]));
        let batch = RecordBatch::try_from_iter([("d", days)]).unwrap();
        assert_eq!(
            next_cursor(&[batch], &incremental("d"), "2020-01-01").unwrap(),
            "2024-05-01"
        );
    }
}

/// What identifies a whole table's answer: a hash of its bytes, one of the table's settings, the
/// release, and the validators the server gave (`ETag`, `Last-Modified`) for a conditional
/// request next time. The same content and settings mean the same table.
struct Fingerprint {
    content: u64,
    settings: u64,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Fingerprint {
    const RELEASE: &str = env!("CARGO_PKG_VERSION");

    fn parse(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        if value["cruscotto"] != Self::RELEASE {
            return None;
        }
        let number = |key: &str| u64::from_str_radix(value[key].as_str()?, 16).ok();
        let text = |key: &str| value[key].as_str().map(str::to_string);
        Some(Self {
            content: number("content")?,
            settings: number("settings")?,
            etag: text("etag"),
            last_modified: text("last_modified"),
        })
    }

    fn conditional_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let valid = |v: &Option<String>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        if let Some(etag) = valid(&self.etag) {
            headers.insert(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = valid(&self.last_modified) {
            headers.insert(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
        headers
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::json!({
            "content": format!("{:016x}", self.content),
            "settings": format!("{:016x}", self.settings),
            "etag": self.etag,
            "last_modified": self.last_modified,
            "cruscotto": Self::RELEASE,
        });
        write!(f, "{value}")
    }
}

/// A hash of a table's settings. Their Debug form is deterministic (ordered maps).
fn settings_hash(table: &HttpTableConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{table:?}").hash(&mut hasher);
    hasher.finish()
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}
