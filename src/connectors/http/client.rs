//! One HTTP exchange, done robustly: timeouts, retries with exponential backoff and jitter on
//! connection errors, 429 and 5xx (honouring `Retry-After`, remembered per host across pulls),
//! bounded bodies, and error bodies (`application/problem+json`, OAuth 2.0 errors) turned into a
//! sentence for /status.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use rand::RngExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use tracing::warn;

use super::config::{HttpConnectorConfig, RetryConfig};
use crate::connectors::ConnectorError;

pub struct HttpClient {
    client: reqwest::Client,
    retry: RetryConfig,
    max_response_size: u64,
}

impl HttpClient {
    pub fn new(config: &HttpConnectorConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("cruscotto/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls_config()?)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            retry: config.retry.clone(),
            max_response_size: config.max_response_size.as_u64(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send a request, retrying connection errors, timeouts, 429 and 5xx. `make` builds every
    /// attempt afresh, so a signed header or client assertion (with its `jti`) is never replayed.
    /// Returns the last response whatever its status: what a 4xx means is the caller's business.
    pub async fn exchange<'a>(
        &self,
        target: &str,
        mut make: impl FnMut() -> BoxFuture<'a, Result<reqwest::RequestBuilder, ConnectorError>>,
    ) -> Result<Response, ConnectorError> {
        let failed = |message: String| ConnectorError::Http {
            url: target.to_string(),
            message,
        };
        // Checked before the request is made, so that a host asking to wait costs no voucher
        // either; and again on the request's own URL, should it differ.
        let planned = Url::parse(target).ok().map(|url| authority(&url));
        let mut attempt = 1;
        loop {
            if let Some(host) = &planned {
                self.respect_retry_after(host).await.map_err(failed)?;
            }
            let request = make().await?.build().map_err(|e| {
                failed(format!(
                    "cannot build the request: {}",
                    describe_reqwest_error(&e)
                ))
            })?;
            let host = authority(request.url());
            if planned.as_ref() != Some(&host) {
                self.respect_retry_after(&host).await.map_err(failed)?;
            }
            let last = attempt >= self.retry.attempts;
            let delay = match self.client.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let asked = retry_after(response.headers()).filter(|_| retryable);
                    if let Some(wait) = asked {
                        remember_retry_after(&host, wait);
                    }
                    if !retryable || last {
                        return Ok(response);
                    }
                    match asked {
                        Some(wait) if wait > self.retry.max_retry_after => {
                            warn!(target, %status, retry_after_s = wait.as_secs(), "the server asks to wait longer than `retry.max_retry_after`; giving up");
                            return Ok(response);
                        }
                        // The wait itself happens before the next attempt, in
                        // `respect_retry_after`.
                        Some(_) => Duration::ZERO,
                        None => self.backoff(attempt),
                    }
                }
                Err(e) if retryable(&e) && !last => self.backoff(attempt),
                Err(e) => {
                    return Err(failed(format!(
                        "no answer after {attempt} attempt(s): {}",
                        describe_reqwest_error(&e)
                    )));
                }
            };
            warn!(
                target,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Wait until `host` may be called again, if it said so with `Retry-After` (in this pull or
    /// an earlier one, from any connector): up to `max_retry_after`; a longer wait fails the
    /// request without sending it, so the next pull tries again, and no request reaches the
    /// host before the time it gave.
    async fn respect_retry_after(&self, host: &str) -> Result<(), String> {
        let Some(until) = not_before(host) else {
            return Ok(());
        };
        let wait = until.saturating_duration_since(Instant::now());
        if wait > self.retry.max_retry_after {
            let at = chrono::Utc::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
            return Err(format!(
                "not sent: {host} asked (Retry-After) not to be called before {} UTC, {} s from now, longer than `retry.max_retry_after` ({} s)",
                at.format("%Y-%m-%d %H:%M:%S"),
                wait.as_secs_f64().ceil() as u64,
                self.retry.max_retry_after.as_secs()
            ));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Read a successful response's body, refusing one larger than `max_response_size`.
    pub async fn body(
        &self,
        target: &str,
        mut response: Response,
    ) -> Result<Bytes, ConnectorError> {
        let too_large = || ConnectorError::Http {
            url: target.to_string(),
            message: format!(
                "the response is larger than `max_response_size` ({} bytes)",
                self.max_response_size
            ),
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_size)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > self.max_response_size {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Bytes::from(body)),
                Err(e) => {
                    return Err(ConnectorError::Http {
                        url: target.to_string(),
                        message: format!(
                            "the response was cut short: {}",
                            describe_reqwest_error(&e)
                        ),
                    });
                }
            }
        }
    }

    /// Exponential backoff with jitter: `initial × 2^(n-1)`, capped, then scaled by 50–100%.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exponential.min(self.retry.max_backoff);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Why a response failed, in one sentence for /status: the status, then the problem's title
    /// and detail (RFC 9457), an OAuth 2.0 error, or the start of a plain-text body.
    /// `show_text` is false for authorization servers, whose free text could echo what we sent.
    pub async fn failure(&self, response: Response, show_text: bool) -> String {
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let authenticate = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut sentence = status.to_string();
        let body = response.bytes().await.unwrap_or_default();
        let body = &body[..body.len().min(64 * 1024)];
        if let Some(explained) = explain_body(&content_type, body, show_text) {
            sentence.push_str(": ");
            sentence.push_str(&explained);
        } else if let Some(challenge) = authenticate.and_then(|c| bearer_error(&c)) {
            sentence.push_str(": ");
            sentence.push_str(&challenge);
        }
        sentence
    }
}

/// TLS with rustls over ring and the Mozilla roots: no system crypto library to depend on.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn retryable(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// reqwest's error with its causes ("error sending request: connection refused"), never the
/// request itself (its headers may hold credentials).
pub fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else {
        String::new()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

/// Hosts that answered with `Retry-After`, and until when they are not to be called. Shared by
/// the whole process: each pull may build its own client, and two connectors may read the same
/// API, but a host's request to wait concerns every request sent to it.
static NOT_BEFORE: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);

/// `host:port`, the unit a `Retry-After` applies to.
fn authority(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

fn remember_retry_after(host: &str, wait: Duration) {
    let until = Instant::now() + wait;
    let mut hosts = NOT_BEFORE.lock().unwrap_or_else(|e| e.into_inner());
    let entry = hosts.entry(host.to_string()).or_insert(until);
    *entry = (*entry).max(until);
}

fn not_before(host: &str) -> Option<Instant> {
    let mut hosts = NOT_BEFORE.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    hosts.retain(|_, until| *until > now);
    hosts.get(host).copied()
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

fn explain_body(content_type: &str, body: &[u8], show_text: bool) -> Option<String> {
    if content_type.contains("json") {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        // RFC 9457 problem details (PDND and ModI APIs answer with these).
        let problem: Vec<&str> = [text("title"), text("detail")]
            .into_iter()
            .flatten()
            .collect();
        if !problem.is_empty() {
            let mut sentence = problem.join(": ");
            if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
                let details: Vec<String> = errors
                    .iter()
                    .filter_map(|e| {
                        e.get("detail")
                            .or_else(|| e.get("code"))
                            .and_then(|d| d.as_str())
                            .map(str::to_string)
                    })
                    .take(3)
                    .collect();
                if !details.is_empty() {
                    sentence.push_str(&format!(" ({})", details.join("; ")));
                }
            }
            return Some(sentence);
        }
        // RFC 6749 §5.2 token endpoint errors.
        if let Some(error) = text("error") {
            return Some(match text("error_description") {
                Some(description) => format!("{error}: {description}"),
                None => error.to_string(),
            });
        }
        return None;
    }
    if show_text && content_type.starts_with("text/plain") {
        let text = String::from_utf8_lossy(body);
        let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            return None;
        }
        let short: String = line.chars().take(300).collect();
        return Some(if short.len() < line.len() {
            format!("{short}…")
        } else {
            short
        });
    }
    None
}

/// The `error` and `error_description` of a `WWW-Authenticate: Bearer …` challenge (RFC 6750).
fn bearer_error(challenge: &str) -> Option<String> {
    let param = |name: &str| {
        let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
        let end = challenge[start..].find('"')? + start;
        Some(challenge[start..end].to_string())
    };
    let error = param("error")?;
    Some(match param("error_description") {
        Some(description) => format!("{error}: {description}"),
        None => error,
    })
}

/// A URL as shown in /status and logs: query values that look like credentials are hidden.
pub fn display_url(url: &Url) -> String {
    const SECRET_KEYS: &[&str] = &[
        "token",
        "key",
        "apikey",
        "api_key",
        "secret",
        "password",
        "signature",
        "sig",
        "access_token",
        "client_secret",
    ];
    if url.query().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_KEYS.iter().any(|s| {
                k.eq_ignore_ascii_case(s) || k.to_ascii_lowercase().ends_with(&format!("_{s}"))
            });
            (
                k.into_owned(),
                if secret {
                    "***".to_string()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_become_title_and_detail() {
        let body = br#"{"type":"https://example.it/problems/db","title":"Servizio non disponibile","status":500,"detail":"Il database anagrafico non risponde"}"#;
        assert_eq!(
            explain_body("application/problem+json", body, true).as_deref(),
            Some("Servizio non disponibile: Il database anagrafico non risponde")
        );
        let oauth = br#"{"error":"invalid_client","error_description":"unknown kid"}"#;
        assert_eq!(
            explain_body("application/json", oauth, false).as_deref(),
            Some("invalid_client: unknown kid")
        );
        assert_eq!(
            explain_body("text/plain", b"the secret assertion eyJ...", false),
            None
        );
        assert_eq!(
            explain_body("text/plain", b"  down for\nmaintenance ", true).as_deref(),
            Some("down for maintenance")
        );
    }

    #[test]
    fn retry_after_as_seconds_or_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn credentials_in_query_strings_are_hidden() {
        let url =
            Url::parse("https://api.example.it/x?page=2&api_key=abc&access_token=def&q=token")
                .unwrap();
        assert_eq!(
            display_url(&url),
            "https://api.example.it/x?page=2&api_key=***&access_token=***&q=token"
        );
    }

    #[test]
    fn bearer_challenges_are_explained() {
        let challenge = r#"Bearer realm="eservice", error="invalid_token", error_description="The voucher expired""#;
        assert_eq!(
            bearer_error(challenge).as_deref(),
            Some("invalid_token: The voucher expired")
        );
    }
}
