//! In-test HTTP servers on 127.0.0.1:0 for the `http` connector: a scriptable API (`FakeApi`),
//! and in `pdnd` a strict PDND authorization server and e-service.
#![allow(dead_code)]

pub mod pdnd;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use cruscotto::connectors::{
    Connector, ConnectorConfig, ConnectorError, LoadState, Loaded, LoadedTable,
};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/http");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as form fields, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.body);
        reqwest::Url::parse(&format!("http://form/?{text}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (to trip timeouts).
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: None,
        }
    }

    pub fn json(value: serde_json::Value) -> Self {
        Self::new(200, "application/json", value.to_string())
    }

    pub fn status_json(status: u16, value: serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// An RFC 9457 problem.
    pub fn problem(status: u16, title: &str, detail: &str) -> Self {
        let body = serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail});
        Self::new(status, "application/problem+json", body.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct Shared {
    handler: Handler,
    log: Mutex<Vec<Seen>>,
}

/// A server on 127.0.0.1:0 answering every request with `handler`, and keeping every request.
/// It runs on its own thread and runtime, so it serves tests that block as well as async ones;
/// the handler runs on a blocking thread, so it may itself make blocking HTTP calls.
pub struct FakeApi {
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeApi {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_at("127.0.0.1:0", handler)
    }

    /// On a given address, e.g. a port a connector was already told about while nothing
    /// listened there (a source that comes up after cruscotto).
    pub fn start_at(
        address: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let address = address.to_string();
        let shared = Arc::new(Shared {
            handler: Arc::new(handler),
            log: Mutex::new(Vec::new()),
        });
        let (sender, receiver) = std::sync::mpsc::channel();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(answer).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("the fake server starts");
        Self {
            url: format!("http://{address}"),
            shared,
        }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let query = reqwest::Url::parse(&format!("http://fake{}", parts.uri))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        at: Instant::now(),
        status: 0,
    };
    let handler = shared.handler.clone();
    let request = seen.clone();
    let reply = tokio::task::spawn_blocking(move || handler(&request))
        .await
        .expect("the fake's handler panicked");
    seen.status = reply.status;
    shared.log.lock().unwrap().push(seen);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

/// A connector built from its file's text, after `check`'s validation (warnings allowed).
pub fn build(text: &str) -> Box<dyn Connector> {
    let file = Path::new("connectors/api.toml");
    let config = ConnectorConfig::parse(file, text).unwrap_or_else(|p| panic!("{p}"));
    let errors: Vec<String> = config
        .validate(file, Path::new("."))
        .into_iter()
        .filter(|p| !p.warning)
        .map(|p| p.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    config.build(Path::new("."))
}

pub type Loads = BTreeMap<String, Result<LoadedTable, ConnectorError>>;

/// One pull of every table of a connector, in process.
pub async fn load(connector: &dyn Connector) -> Loads {
    connector
        .load(&LoadState::default())
        .await
        .into_iter()
        .map(|l| (l.table, l.result.map(whole)))
        .collect()
}

pub fn ok<'a>(loads: &'a Loads, table: &str) -> &'a LoadedTable {
    match &loads[table] {
        Ok(loaded) => loaded,
        Err(e) => panic!("{table}: {e}"),
    }
}

pub fn error(loads: &Loads, table: &str) -> String {
    match &loads[table] {
        Ok(loaded) => panic!(
            "{table} should have failed, but loaded {} rows",
            loaded.rows()
        ),
        Err(e) => e.to_string(),
    }
}

/// A loaded table's rows as JSON objects.
pub fn rows(table: &LoadedTable) -> Vec<serde_json::Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &table.batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Wait for a condition with a deadline, never a fixed sleep.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A load's rows, which this connector returns in memory.
fn whole(loaded: Loaded) -> LoadedTable {
    loaded.into_whole().expect("rows in memory")
}
