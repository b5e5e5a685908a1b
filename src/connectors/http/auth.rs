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
use super::pdnd::{CLIENT_ASSERTION_TYPE, Pdnd};
use crate::config::resolve;
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
            AuthConfig::Pdnd(pdnd) => Kind::Pdnd(Pdnd::new(
                pdnd.clone(),
                resolve(base_dir, &pdnd.private_key),
            )),
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
                if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
                    return Ok(vec![(AUTHORIZATION, token.authorization.clone())]);
                }
                let token = self.request_token(http).await?;
                let authorization = token.authorization.clone();
                *cached = Some(token);
                Ok(vec![(AUTHORIZATION, authorization)])
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
        let (kind, url) = (&self.kind, token_url.as_str());
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
                            let assertion = pdnd.client_assertion()?;
                            request.form(&[
                                ("client_id", pdnd.config.client_id.as_str()),
                                ("client_assertion", assertion.as_str()),
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
                ConnectorError::Http { url, message } => ConnectorError::Authentication {
                    message: format!("cannot reach the authorization server {url}: {message}"),
                },
                other => other,
            })?;
        if !response.status().is_success() {
            let why = http.failure(response, false).await;
            return Err(ConnectorError::Authentication {
                message: format!("{refused}: {why}"),
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
        info!(token_url, lifetime_s = lifetime.as_secs(), "token obtained");
        Ok(CachedToken {
            authorization,
            renew_at: Instant::now() + lifetime.saturating_sub(renewal_margin(lifetime)),
        })
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
