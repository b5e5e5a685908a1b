//! Object storage: an `s3://bucket/key` URL and the service's `[object_store]` settings made into
//! an `object_store` client (the crate DataFusion reads through) and the object's path, and its
//! failures said in words. The file connector reads its tables' sources through it; `data_dir` on
//! object storage is to use the same settings.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use serde::Deserialize;

use crate::config_text::Problem;

/// `[object_store]` in `cruscotto.toml`: where an S3-compatible server is and how to sign in. A
/// setting left out is taken from the usual `AWS_*` environment variables (`AWS_ENDPOINT`,
/// `AWS_REGION`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, ...), as the AWS tools do.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// The S3 API's address for a server other than AWS (MinIO, Ceph, Garage, a cloud
    /// provider's), e.g. `http://127.0.0.1:9000`. Buckets are addressed by path
    /// (`<endpoint>/<bucket>/<key>`). Without it: AWS, in `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region, e.g. `eu-south-1`; `us-east-1` when neither this nor `AWS_REGION` says.
    #[serde(default)]
    pub region: Option<String>,
    /// Whether a plain `http://` endpoint may be used (a server on a trusted network only).
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// The access key's id; write it as `${VAR}` like every secret of the configuration.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The access key's secret, as `${VAR}`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

// Never prints the secret, wherever the configuration is logged.
impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "(set)"),
            )
            .finish()
    }
}

impl ObjectStoreConfig {
    /// What parsing cannot see: an endpoint that is not an http(s) URL, plain http not allowed,
    /// half a key. `file` is `cruscotto.toml`.
    pub fn validate(&self, file: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let at = |key: &str| Some(format!("object_store.{key}"));
        if let Some(endpoint) = &self.endpoint {
            let scheme = reqwest::Url::parse(endpoint)
                .ok()
                .filter(|url| url.host().is_some())
                .map(|url| url.scheme().to_string());
            let allow_http = self.allow_http.unwrap_or_else(|| {
                std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            });
            let problem = match scheme.as_deref() {
                Some("https") => None,
                Some("http") if allow_http => None,
                Some("http") => Some(format!(
                    "`{endpoint}` is plain http: set `allow_http = true` (only for a server on a \
                     trusted network) or use https"
                )),
                _ => Some(format!(
                    "`{endpoint}` is not an http(s) URL such as `http://127.0.0.1:9000`"
                )),
            };
            problems.extend(problem.map(|why| Problem::new(file, at("endpoint"), why)));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => problems.push(Problem::new(
                file,
                at("secret_access_key"),
                "`access_key_id` is set without `secret_access_key`",
            )),
            (None, Some(_)) => problems.push(Problem::new(
                file,
                at("access_key_id"),
                "`secret_access_key` is set without `access_key_id`",
            )),
            _ => {}
        }
        problems
    }

    /// A client for the bucket of `url`. Nothing is sent until it is used.
    pub fn open(&self, url: &ObjectUrl) -> Result<Arc<dyn ObjectStore>, String> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_retry(retry());
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(allow_http) = self.allow_http {
            builder = builder.with_allow_http(allow_http);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| format!("the object store client cannot be made: {e}"))?;
        Ok(Arc::new(store))
    }

    /// Where the objects are, for messages: the endpoint, or AWS.
    pub fn server(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .unwrap_or_else(|| "AWS S3".into())
    }
}

/// A few quick retries of a request that failed on the way (a dropped connection, a 5xx): the
/// refresh loop retries a failed load itself, with its own backoff, so a server that is down is
/// reported in /status within seconds rather than after object_store's default three minutes.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// An object's address: `s3://<bucket>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub bucket: String,
    pub key: object_store::path::Path,
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl ObjectUrl {
    /// `None` for a local path (no `scheme://`); an error for a URL this cannot read.
    pub fn from_path(path: &Path) -> Option<Result<Self, String>> {
        let text = path.to_str()?;
        let (scheme, rest) = text.split_once("://")?;
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(Self::parse(scheme, rest, text))
    }

    fn parse(scheme: &str, rest: &str, text: &str) -> Result<Self, String> {
        if !scheme.eq_ignore_ascii_case("s3") {
            return Err(format!(
                "`{text}`: `{scheme}://` is not a source this reads; use a local path or \
                 `s3://bucket/key`"
            ));
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{text}` names no bucket: write `s3://bucket/key`"));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(format!("`{text}` names no object: write `s3://bucket/key`"));
        }
        let key = object_store::path::Path::parse(key)
            .map_err(|e| format!("`{text}`: the key is not usable: {e}"))?;
        Ok(Self {
            bucket: bucket.to_string(),
            key,
        })
    }
}

/// Where downloads wait to be read: `<data_dir>/.objects/`. A file there belongs to a load in
/// progress; one left by a process that was killed is removed at start-up.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".objects")
}

/// Remove the downloads a killed process left (called at start-up, before any load).
pub fn clear_scratch(data_dir: &Path) {
    let dir = scratch_dir(data_dir);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove unfinished downloads");
    }
}

/// What object storage needs to read a source: the settings, and where downloads go.
#[derive(Debug, Clone)]
pub struct ObjectSources {
    pub config: ObjectStoreConfig,
    /// Downloads are written here and removed once read.
    pub scratch: PathBuf,
}

/// The `AWS_*` variables alone, downloads in the system's temporary folder (for a connector run
/// outside the service, as tests and benches do).
impl Default for ObjectSources {
    fn default() -> Self {
        Self {
            config: ObjectStoreConfig::default(),
            scratch: std::env::temp_dir().join("cruscotto-objects"),
        }
    }
}

/// A failure of a request for `url`, in words: the bucket or the key missing, access refused,
/// the server unreachable. `detail` is the answer of a GET for the same object, when the failed
/// request was a HEAD (whose answer has no body to tell a missing bucket from a missing key).
pub fn explain(
    error: &object_store::Error,
    url: &ObjectUrl,
    server: &str,
    detail: Option<&object_store::Error>,
) -> String {
    if let Some(kind) = http_error_kind(error) {
        use object_store::client::HttpErrorKind;
        let what = match kind {
            HttpErrorKind::Connect => "cannot be reached",
            HttpErrorKind::Timeout => "did not answer in time",
            _ => "broke off the request",
        };
        return format!("the server {server} {what}: {}", innermost(error));
    }
    let code = [Some(error), detail]
        .into_iter()
        .flatten()
        .find_map(|e| s3_code(&e.to_string()));
    let bucket = &url.bucket;
    let key = &url.key;
    match (code.as_deref(), error) {
        (Some("NoSuchBucket"), _) => format!("there is no bucket `{bucket}` on {server}"),
        (Some("NoSuchKey"), _) | (None, object_store::Error::NotFound { .. }) => {
            format!("there is no object `{key}` in bucket `{bucket}`")
        }
        (Some("InvalidAccessKeyId"), _) => format!(
            "access denied: {server} does not know the access key id (InvalidAccessKeyId); \
             check `[object_store] access_key_id` or AWS_ACCESS_KEY_ID"
        ),
        (Some("SignatureDoesNotMatch"), _) => "access denied: the secret access key does not \
                                                match the access key id (SignatureDoesNotMatch); \
                                                check `[object_store] secret_access_key` or \
                                                AWS_SECRET_ACCESS_KEY"
            .to_string(),
        (Some(code), object_store::Error::PermissionDenied { .. })
        | (Some(code), object_store::Error::Unauthenticated { .. }) => {
            format!("access denied ({code}): the credentials may not read `{key}` in `{bucket}`")
        }
        (None, object_store::Error::PermissionDenied { .. })
        | (None, object_store::Error::Unauthenticated { .. }) => {
            format!("access denied: the credentials may not read `{key}` in `{bucket}`")
        }
        (Some(code), _) => format!("{code}: {}", innermost(error)),
        (None, _) => error.to_string(),
    }
}

/// Whether the server answered (with an error status), rather than the request failing on the way.
pub fn answered(error: &object_store::Error) -> bool {
    http_error_kind(error).is_none()
}

/// The kind of a failure on the way to the server (none for an answer with a status).
fn http_error_kind(error: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            return Some(http.kind());
        }
        cause = e.source();
    }
    None
}

/// The deepest cause's message ("Connection refused"), which says the most in the fewest words.
fn innermost(error: &object_store::Error) -> String {
    let mut last: &dyn std::error::Error = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The `<Code>` of an S3 error answer, e.g. `NoSuchBucket`.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].trim().to_string()).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert_eq!(ObjectUrl::from_path(Path::new("data/a.csv")), None);
        assert_eq!(ObjectUrl::from_path(Path::new("/srv/data/a.csv")), None);
        let url = ObjectUrl::from_path(Path::new("s3://comune/anagrafe/residenti.csv"))
            .unwrap()
            .unwrap();
        assert_eq!(url.bucket, "comune");
        assert_eq!(url.key.as_ref(), "anagrafe/residenti.csv");
        assert_eq!(url.to_string(), "s3://comune/anagrafe/residenti.csv");
        for bad in ["s3:///a.csv", "s3://bucket", "s3://bucket/", "gs://b/a.csv"] {
            let why = ObjectUrl::from_path(Path::new(bad)).unwrap().unwrap_err();
            assert!(why.contains(bad), "{why}");
        }
    }

    #[test]
    fn settings_are_checked_with_their_key() {
        let config = ObjectStoreConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            access_key_id: Some("id".into()),
            ..Default::default()
        };
        let problems = config.validate(Path::new("cruscotto.toml"));
        let keys: Vec<_> = problems.iter().map(|p| p.location.clone()).collect();
        assert_eq!(
            keys,
            [
                Some("object_store.endpoint".to_string()),
                Some("object_store.secret_access_key".to_string())
            ]
        );
        let fine = ObjectStoreConfig {
            allow_http: Some(true),
            secret_access_key: Some("secret".into()),
            ..config
        };
        assert!(fine.validate(Path::new("cruscotto.toml")).is_empty());
        assert!(!format!("{fine:?}").contains("secret\""));
    }

    #[test]
    fn s3_error_codes_are_read_from_the_answer() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\
                    <Error><Code>NoSuchBucket</Code><Message>no</Message></Error>";
        assert_eq!(s3_code(body).as_deref(), Some("NoSuchBucket"));
        assert_eq!(s3_code("no body"), None);
    }
}
