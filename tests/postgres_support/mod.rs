//! PostgreSQL for the tests, with nothing started by hand: the test binary's own cluster (`url`,
//! trust auth, user `postgres`, database `test`, started on first use from the installed
//! binaries); a client for setting up and changing data, unique names so tests run in parallel,
//! and a TCP relay that can be cut to make the database unreachable without stopping the cluster;
//! and clusters a test starts and stops itself (`Cluster`).
#![allow(dead_code)]

mod cluster;
#[allow(unused_imports)] // only the tests that stop a cluster use one of their own
pub use cluster::Cluster;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The test binary's cluster, started on first use, shared by its tests (each works in schemas
/// or databases of its own, see `unique`); it stops when the test process ends.
fn shared() -> &'static (String, u16) {
    static SHARED: std::sync::OnceLock<(String, u16)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::start_new();
        Pg::connect_to(&cluster.url()).execute("CREATE DATABASE test");
        let port = cluster.port;
        cluster.stop_when_process_ends();
        (format!("postgres://postgres@127.0.0.1:{port}/test"), port)
    })
}

/// The URL of database `test` in the test binary's own cluster.
pub fn url() -> &'static str {
    &shared().0
}

/// The port of the test binary's own cluster.
pub fn port() -> u16 {
    shared().1
}

/// A name no other test (or earlier run) uses: `prefix_<pid>_<counter>_<nanos>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A blocking client over tokio-postgres.
pub struct Pg {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Pg {
    pub fn connect() -> Self {
        Self::connect_to(url())
    }

    pub fn connect_to(url: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
            tokio::spawn(connection);
            client
        });
        Self { runtime, client }
    }

    pub fn execute(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
    }

    pub fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}\n{e:?}"))
    }

    pub fn i64(&self, sql: &str) -> i64 {
        self.rows(sql)[0].get(0)
    }

    pub fn text(&self, sql: &str) -> String {
        self.rows(sql)[0].get(0)
    }
}

/// Wait for a condition with a deadline, never a fixed sleep.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP relay from a local port to PostgreSQL. `cut` closes the port and every relayed
/// connection (the server looks down: connections are refused); `restore` listens again on the
/// same port.
pub struct Relay {
    pub port: u16,
    inner: Arc<RelayInner>,
}

struct RelayInner {
    up: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
    listener: Mutex<Option<TcpListener>>,
}

impl Relay {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(RelayInner {
            up: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
        });
        let relay = Self { port, inner };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        self.inner.up.store(true, Ordering::SeqCst);
        *self.inner.listener.lock().unwrap() = Some(listener.try_clone().unwrap());
        let inner = self.inner.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if !inner.up.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port())) else {
                    continue;
                };
                {
                    let mut connections = inner.connections.lock().unwrap();
                    connections.push(client.try_clone().unwrap());
                    connections.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
    }

    pub fn url(&self, user_and_password: &str) -> String {
        format!(
            "postgres://{user_and_password}@127.0.0.1:{}/test",
            self.port
        )
    }

    /// PostgreSQL "goes down": nothing listens on the port any more, open connections drop.
    pub fn cut(&self) {
        self.inner.up.store(false, Ordering::SeqCst);
        if let Some(listener) = self.inner.listener.lock().unwrap().take() {
            // Wake the accept loop so it sees `up == false` and drops the listener.
            let _ = TcpStream::connect(listener.local_addr().unwrap());
            drop(listener);
        }
        for connection in self.inner.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
        // The port is closed once the accept thread has dropped its listener.
        wait_for("the relay port to close", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    /// PostgreSQL is back on the same port.
    pub fn restore(&self) {
        let address: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let listener = TcpListener::bind(address).expect("the relay port is free again");
        self.serve(listener);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
