//! Credentials for each request: none, a fixed header (API key, bearer token), or a token obtained
//! from an authorization server (OAuth 2.0 client credentials, PDND voucher) and cached in the
//! connector until shortly before it expires. The connector object lives across refreshes, so a
//! token is reused by later pulls and renewed before the e-service would refuse it.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;
use tracing::info;

use super::client::HttpClient;
use super::config::{AuthConfig, ClientAuth, OAuth2Config};
use super::pdnd::{CLIENT_ASSERTION_TYPE, Pdnd, TRACKING_EVIDENCE};
use crate::connectors::ConnectorError;

/// Tokens whose lifetime is not given are renewed after this long (or at the first 401).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

pub struct Authenticator {
    kind: Kind,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

enum Kind {
    None,
    Fixed(HeaderName, HeaderValue),
    OAuth2(OAuth2Config),
    Pdnd(Pdnd),
}

struct CachedToken {
    authorization: HeaderValue,
    /// Headers bound to this token, sent with it: AUDIT_REST_02's tracking evidence.
    bound: Vec<(HeaderName, HeaderValue)>,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

fn sensitive(text: &str, what: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| format!("the {what} holds characters not allowed in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl Authenticator {
    pub fn new(config: &AuthConfig, base_dir: &Path) -> Result<Self, String> {
        let kind = match config {
            AuthConfig::None => Kind::None,
            AuthConfig::ApiKey(key) => {
                let header = HeaderName::from_bytes(key.header.as_bytes())
                    .map_err(|e| format!("auth.header: {e}"))?;
                Kind::Fixed(header, sensitive(&key.value.0, "API key")?)
            }
            AuthConfig::Bearer(bearer) => Kind::Fixed(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", bearer.token.0), "bearer token")?,
            ),
            AuthConfig::Oauth2(oauth) => Kind::OAuth2(oauth.clone()),
            AuthConfig::Pdnd(pdnd) => Kind::Pdnd(Pdnd::new(pdnd.clone(), base_dir)),
        };
        Ok(Self {
            kind,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn pdnd(&self) -> Option<&Pdnd> {
        match &self.kind {
            Kind::Pdnd(pdnd) => Some(pdnd),
            _ => None,
        }
    }

    /// Whether a 401 can be cured by asking for a new token.
    pub fn renews_tokens(&self) -> bool {
        matches!(self.kind, Kind::OAuth2(_) | Kind::Pdnd(_))
    }

    /// Drop the cached token: the e-service refused it (its clock may run ahead of ours).
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// The credential headers of a request, obtaining a token first if none is cached or the
    /// cached one is about to expire.
    pub async fn headers(
        &self,
        http: &HttpClient,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ConnectorError> {
        match &self.kind {
            Kind::None => Ok(Vec::new()),
            Kind::Fixed(name, value) => Ok(vec![(name.clone(), value.clone())]),
            Kind::OAuth2(_) | Kind::Pdnd(_) => {
                let mut cached = self.token.lock().await;
                if cached.as_ref().is_none_or(|t| Instant::now() >= t.renew_at) {
                    *cached = Some(self.request_token(http).await?);
                }
                let token = cached.as_ref().expect("just obtained");
                let mut headers = vec![(AUTHORIZATION, token.authorization.clone())];
                headers.extend(token.bound.iter().cloned());
                Ok(headers)
            }
        }
    }

    async fn request_token(&self, http: &HttpClient) -> Result<CachedToken, ConnectorError> {
        let (token_url, refused) = match &self.kind {
            Kind::OAuth2(oauth) => (
                oauth.token_url.clone(),
                format!(
                    "the authorization server refused the client credentials of `{}`",
                    oauth.client_id
                ),
            ),
            Kind::Pdnd(pdnd) => (
                pdnd.config.token_url.clone(),
                format!(
                    "the PDND authorization server refused the voucher request ({})",
                    pdnd.identity()
                ),
            ),
            _ => unreachable!("only token-based authentication requests tokens"),
        };
        // The tracking evidence of the assertion last sent: the one the voucher is bound to.
        let evidence: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let (kind, url, evidence_sent) = (&self.kind, token_url.as_str(), &evidence);
        let response = http
            .exchange(url, move || {
                async move {
                    let request = http.client().post(url).header(ACCEPT, "application/json");
                    Ok(match kind {
                        Kind::OAuth2(oauth) => {
                            let mut form: Vec<(&str, &str)> =
                                vec![("grant_type", "client_credentials")];
                            if let Some(scope) = &oauth.scope {
                                form.push(("scope", scope));
                            }
                            form.extend(oauth.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                            match oauth.client_auth {
                                ClientAuth::Basic => request
                                    .basic_auth(&oauth.client_id, Some(&oauth.client_secret.0))
                                    .form(&form),
                                ClientAuth::Body => {
                                    form.push(("client_id", &oauth.client_id));
                                    form.push(("client_secret", &oauth.client_secret.0));
                                    request.form(&form)
                                }
                            }
                        }
                        Kind::Pdnd(pdnd) => {
                            // A new assertion (and jti) for every attempt.
                            let signed = pdnd.client_assertion()?;
                            *evidence_sent.lock().unwrap_or_else(|e| e.into_inner()) =
                                signed.tracking_evidence;
                            request.form(&[
                                ("client_id", pdnd.config.client_id.as_str()),
                                ("client_assertion", signed.assertion.as_str()),
                                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                                ("grant_type", "client_credentials"),
                            ])
                        }
                        _ => unreachable!(),
                    })
                }
                .boxed()
            })
            .await
            .map_err(|e| match e {
                // No answer is not a refusal: the credentials were never judged.
                ConnectorError::Http { url, message } => ConnectorError::Http {
                    url,
                    message: format!(
                        "the authorization server cannot be reached (the credentials were not judged): {message}"
                    ),
                },
                other => other,
            })?;
        let status = response.status();
        if status.is_server_error() {
            let why = http.failure(response, false).await;
            return Err(ConnectorError::Http {
                url: token_url,
                message: format!(
                    "the authorization server failed (the credentials were not judged): {why}"
                ),
            });
        }
        if !status.is_success() {
            let why = http.failure(response, false).await;
            let causes = match &self.kind {
                Kind::Pdnd(_) => format!("; {}", pdnd_causes(&why)),
                _ => String::new(),
            };
            return Err(ConnectorError::Authentication {
                message: format!("{refused}: {why}{causes}"),
            });
        }
        let body = http.body(&token_url, response).await?;
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ConnectorError::Authentication {
                message: format!(
                    "the authorization server {token_url} answered without a token: {e}"
                ),
            })?;
        if let Some(kind) = answer
            .token_type
            .as_deref()
            .filter(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(ConnectorError::Authentication {
                message: format!(
                    "the authorization server {token_url} issued a `{kind}` token; only Bearer tokens are supported"
                ),
            });
        }
        let lifetime = match &answer.expires_in {
            Some(serde_json::Value::Number(n)) => {
                n.as_f64().map(|s| Duration::from_secs_f64(s.max(0.0)))
            }
            Some(serde_json::Value::String(s)) => {
                s.trim().parse::<u64>().ok().map(Duration::from_secs)
            }
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let authorization = sensitive(&format!("Bearer {}", answer.access_token), "token")
            .map_err(|message| ConnectorError::Authentication {
                message: format!("{token_url}: {message}"),
            })?;
        let mut bound = Vec::new();
        let mut lifetime = lifetime;
        if let Some(evidence) = evidence.into_inner().unwrap_or_else(|e| e.into_inner()) {
            bound.push((
                TRACKING_EVIDENCE,
                sensitive(&evidence, "tracking evidence")
                    .map_err(|message| ConnectorError::Authentication { message })?,
            ));
            // The evidence expires with the assertion it was signed with: the voucher is
            // renewed before the evidence sent beside it would be refused as expired.
            if let Kind::Pdnd(pdnd) = &self.kind {
                lifetime = lifetime.min(pdnd.config.assertion_lifetime);
            }
        }
        info!(token_url, lifetime_s = lifetime.as_secs(), "token obtained");
        Ok(CachedToken {
            authorization,
            bound,
            renew_at: Instant::now() + lifetime.saturating_sub(renewal_margin(lifetime)),
        })
    }
}

/// The usual reasons PDND refuses a voucher request, the likely ones first: what the answer
/// points at, or all of them when it points at none.
fn pdnd_causes(answer: &str) -> String {
    const CLOCK: &str = "the clock (this machine's time must agree with PDND's within seconds: is it synchronised?)";
    const AUDIENCE: &str = "the audience (`audience` must be the one PDND publishes for client assertions, e.g. `auth.interop.pagopa.it/client-assertion`)";
    const KEY: &str = "the key (the private key and its `kid` must match a public key uploaded to this client on PDND)";
    const PURPOSE: &str = "the purpose's state (`purpose_id` must be an active purpose, of an active agreement, with this client associated)";
    let answer = answer.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| answer.contains(w));
    let likely: Vec<&str> = [
        (
            has(&[
                "expired",
                "iat ",
                "`iat`",
                "in the future",
                "not yet valid",
                "clock",
            ]),
            CLOCK,
        ),
        (has(&["audience", "aud ", "`aud`", "aud must"]), AUDIENCE),
        (
            has(&["signature", "kid", "key", "invalid_client", "client_id"]),
            KEY,
        ),
        (has(&["purpose"]), PURPOSE),
    ]
    .into_iter()
    .filter_map(|(matched, cause)| matched.then_some(cause))
    .collect();
    if likely.is_empty() {
        format!(
            "usual causes: {}",
            [CLOCK, AUDIENCE, KEY, PURPOSE].join("; ")
        )
    } else {
        format!("likely cause: {}", likely.join("; "))
    }
}

/// Renew a token this long before it expires: a fifth of its lifetime, between 2 s and 60 s, so
/// that a request never leaves with a token about to expire (JWT expiries are whole seconds, and
/// the e-service's clock is not ours).
fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdnd_refusals_name_their_likely_cause() {
        let cause = |answer: &str| pdnd_causes(answer);
        assert!(
            cause("400 Bad Request: invalid_grant: the client assertion has expired")
                .starts_with("likely cause: the clock (")
        );
        assert!(
            cause("400 Bad Request: invalid_request: aud must be `x`")
                .starts_with("likely cause: the audience (")
        );
        assert!(
            cause("401 Unauthorized: invalid_client: no key `k` is registered")
                .starts_with("likely cause: the key (")
        );
        assert!(
            cause("400 Bad Request: the purpose is not associated with this client")
                .starts_with("likely cause: the purpose's state (")
        );
        let unknown = cause("400 Bad Request: invalid_grant: jti already used");
        assert!(
            unknown.starts_with("usual causes: the clock ("),
            "{unknown}"
        );
        assert!(
            unknown.contains("the audience (")
                && unknown.contains("the key (")
                && unknown.contains("the purpose's state (")
        );
    }

    #[test]
    fn tokens_are_renewed_shortly_before_they_expire() {
        assert_eq!(
            renewal_margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(100)),
            Duration::from_secs(20)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(3)),
            Duration::from_secs(2)
        );
    }
}
