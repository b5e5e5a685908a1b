//! The HTTP server loop: hyper's HTTP/1.1 connections with the bounds a public service needs, which
//! `axum::serve` does not offer. A client may take at most `header_read_timeout` to send a request
//! head, a connection that carries no request for `keep_alive_timeout` is closed, at most
//! `max_connections` are open at once (over that a client gets a 503 at once, not a hang), and a
//! request line or head over its limit gets a problem+json answer like every other error.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, warn};

use super::error::problem;
use crate::config::HttpLimits;

/// Serve `app` on `listener` until `shutdown` resolves, then let open requests finish (at most
/// `SHUTDOWN_GRACE`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted: the
                    // listener is still good; wait a little rather than spin.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refuse_over_capacity(stream, limits.max_connections);
            continue;
        };
        // Without TCP_NODELAY the last partial segment of a response waits for the client's ACK
        // of the segments before it (Nagle): a result's tail would sit in the kernel for a round trip.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let app = app.clone();
        let limits = limits.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, app, &limits, stopped).await;
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Every connection holds a permit until it ends: having them all back means all are closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all)).await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: &HttpLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(ConnectionIo {
        inner: Some(stream),
        activity: activity.clone(),
        rewrite: None,
        rewrote: false,
    });
    let max_uri_bytes = limits.max_uri_bytes;
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        let in_flight = requests.begin();
        async move {
            let uri_bytes = request.uri().to_string().len();
            let response = if uri_bytes > max_uri_bytes {
                problem(
                    StatusCode::URI_TOO_LONG,
                    "uri-too-long",
                    "URI too long",
                    format!(
                        "the request's URI is {uri_bytes} bytes; the limit is {max_uri_bytes} \
                         (`max_uri_bytes` in [http]): send long parameters in the body"
                    ),
                )
            } else {
                app.oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {})
            };
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's own header timer also runs while a kept-alive connection waits for its next
        // request: every connection idle for `header_read_timeout` would be closed, whatever
        // `keep_alive_timeout` says, and a client sending its next request just then would get
        // a broken pipe. The head is timed here instead, from its first byte.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.head_overdue(limits.header_read_timeout) => {
                debug!(%remote, "request head not received within header_read_timeout");
                return;
            }
            _ = activity.idle_for(limits.keep_alive_timeout), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = stopped.wait_for(|stop| *stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answer a connection over `max_connections` with a 503 and close it, in a task bounded by
/// `LINGER`: a client that does not read its answer holds nothing for longer.
fn refuse_over_capacity(stream: TcpStream, max_connections: usize) {
    let body = format!(
        r#"{{"type":"urn:cruscotto:problem:too-many-connections","title":"Too many connections","status":503,"detail":"the server has {max_connections} connections open, its limit (`max_connections` in [http]); retry in a moment"}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    metrics::counter!("cruscotto_http_connections_refused_total").increment(1);
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(LINGER, stream.write_all(response.as_bytes())).await;
        linger(stream).await;
    });
}

/// How long a connection that got an error answer is kept to read what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// Close a connection that was answered before its request was read whole: send FIN, then read
/// and discard what the client still sends (at most `LINGER`, 1 MiB). Closing a socket with
/// unread bytes makes the kernel send a reset, and a client that is still writing its request
/// would then lose the answer it was sent.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while discarded < 1024 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

/// When the connection last received a byte, when the request head being received began, and
/// how many requests it is serving.
struct Activity {
    opened: Instant,
    last_byte_ms: AtomicU64,
    last_response_ms: AtomicU64,
    /// When the head now awaited began: the connection's opening, then the first byte after a
    /// request was taken; `NO_HEAD` while none is awaited or none has begun.
    head_since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

const NO_HEAD: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_byte_ms: AtomicU64::new(0),
            last_response_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn received(&self) {
        let now = self.now_ms();
        self.last_byte_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // The first byte of the next head starts its clock (a later byte does not).
            let _ = self.head_since_ms.compare_exchange(
                NO_HEAD,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NO_HEAD, Ordering::Release);
        InFlight(self.clone())
    }

    /// Resolves once a request head has been arriving for longer than `limit` (or, on a new
    /// connection, none has arrived within it) while no request is being served.
    async fn head_overdue(&self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        loop {
            let since = self.head_since_ms.load(Ordering::Acquire);
            let now = self.now_ms();
            let serving = self.in_flight.load(Ordering::Acquire) > 0;
            if since != NO_HEAD && !serving && now >= since.saturating_add(limit_ms) {
                return;
            }
            let wait = if since == NO_HEAD || serving {
                limit_ms.max(100)
            } else {
                (since + limit_ms).saturating_sub(now).max(10)
            };
            tokio::time::sleep(Duration::from_millis(wait.min(1000))).await;
        }
    }

    /// Resolves once the connection has served no request and received no byte for `idle`. A
    /// client sending a head slowly is not idle: `header_read_timeout` is what bounds it.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let last = self
                .last_byte_ms
                .load(Ordering::Relaxed)
                .max(self.last_response_ms.load(Ordering::Relaxed));
            let now = self.now_ms();
            if self.in_flight.load(Ordering::Acquire) == 0 && now >= last + idle_ms {
                return;
            }
            let wait = (last + idle_ms).saturating_sub(now).max(100);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_response_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's socket, noting when bytes arrive, and turning hyper's own answers to requests
/// it cannot parse into problem+json. hyper answers a head that is too large (431), a request line
/// with a URI too long for it (414) or a malformed head (400) itself, with an empty body, before
/// any service runs; no answer of the app is ever a 400, 414 or 431 with an empty body.
struct ConnectionIo {
    /// Taken only when dropped, to linger after an error answer.
    inner: Option<TcpStream>,
    activity: Arc<Activity>,
    /// A rewritten answer being written: its bytes, how many are written, the length of hyper's.
    rewrite: Option<(Vec<u8>, usize, usize)>,
    /// Whether an error answer was sent: the request may not have been read whole.
    rewrote: bool,
}

impl ConnectionIo {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.inner
                .as_mut()
                .expect("the stream is present until drop"),
        )
    }
}

impl Drop for ConnectionIo {
    fn drop(&mut self) {
        if let Some(stream) = self.inner.take().filter(|_| self.rewrote) {
            tokio::spawn(linger(stream));
        }
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = self.stream().poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        result
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.rewrite.is_none() {
            if let Some(status) = bare_parse_error(buf) {
                self.rewrite = Some((parse_error_problem(status), 0, buf.len()));
            }
        }
        if let Some((bytes, mut written, original)) = self.rewrite.take() {
            while written < bytes.len() {
                match self.stream().poll_write(cx, &bytes[written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        self.rewrite = Some((bytes, written, original));
                        return Poll::Pending;
                    }
                }
            }
            self.rewrote = true;
            return Poll::Ready(Ok(original));
        }
        self.stream().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each head as one buffer, which `bare_parse_error` reads whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The status of hyper's automatic answer to an unparsable request, if `head` is one.
fn bare_parse_error(head: &[u8]) -> Option<u16> {
    let status = match head.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => 400,
        b"HTTP/1.1 414 " | b"HTTP/1.0 414 " => 414,
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => 431,
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let lower = text.to_ascii_lowercase();
    (lower.ends_with("\r\n\r\n")
        && lower.contains("\r\ncontent-length: 0\r\n")
        && !lower.contains("\r\ncontent-type:"))
    .then_some(status)
}

fn parse_error_problem(status: u16) -> Vec<u8> {
    let (reason, slug, detail) = match status {
        414 => (
            "URI Too Long",
            "uri-too-long",
            "the request line is longer than the server reads; send long parameters in the body",
        ),
        431 => (
            "Request Header Fields Too Large",
            "headers-too-large",
            "the request's head (request line and headers) is over the limit of `max_header_bytes` \
             in [http], or has more than 100 headers",
        ),
        _ => (
            "Bad Request",
            "malformed-request",
            "the request is not valid HTTP/1.1: its request line or a header cannot be parsed",
        ),
    };
    let body = serde_json::json!({
        "type": format!("urn:cruscotto:problem:{slug}"),
        "title": reason,
        "status": status,
        "detail": detail,
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_parse_errors_are_rewritten() {
        assert_eq!(
            bare_parse_error(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"),
            Some(431)
        );
        assert_eq!(
            bare_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            bare_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            bare_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n"),
            None
        );
        assert_eq!(
            bare_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        let rewritten = String::from_utf8(parse_error_problem(431)).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 431);
    }
}
