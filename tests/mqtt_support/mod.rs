//! A Mosquitto of the test's own, started from the repository's `mosquitto.conf` on a free port
//! with its persistence folder in a temporary directory (the machine's broker drops QoS 1
//! messages after 1000 are queued, so zero-loss tests cannot use it), a publisher that waits for
//! every PUBACK, and the configuration of a cruscotto reading sensors from it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::common::{ConfigDir, REPO, Server};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Wait for a condition with a deadline, never a fixed sleep.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process; stopped (SIGTERM, so it saves its sessions) when dropped.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Lines added to the configuration (e.g. a TLS listener).
    extra: String,
}

impl Broker {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A broker whose configuration also has `extra` (after the plain listener on `port`).
    pub fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Self {
            port: free_port(),
            dir,
            child: None,
            extra: extra.to_string(),
        };
        broker.spawn();
        broker
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn spawn(&mut self) {
        let base = std::fs::read_to_string(Path::new(REPO).join("mosquitto.conf"))
            .expect("mosquitto.conf at the repository root");
        let persistence = self.dir.path().join("data");
        std::fs::create_dir_all(&persistence).unwrap();
        // Started as root, Mosquitto would switch to user `mosquitto`, which cannot write to
        // this temporary folder: it keeps the user it was started as.
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let conf = format!(
            "{base}\nlistener {} 127.0.0.1\npersistence_location {}/\nuser {user}\n{}\n",
            self.port,
            persistence.display(),
            self.extra
        );
        std::fs::write(self.conf_path(), conf).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.conf_path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{MOSQUITTO} must be installed (apt-get install mosquitto): {e}")
            });
        self.child = Some(child);
        let port = self.port;
        wait_for("the broker to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stop the broker by its PID (SIGTERM: it writes its persistence file) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Start again on the same port with the same persistence folder.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the broker wrote its persistence file (it does when stopped with SIGTERM).
    pub fn persisted(&self) -> bool {
        self.dir.path().join("data/mosquitto.db").exists()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start cruscotto and wait until it has subscribed (its readings table is fresh).
pub fn start_subscribed(config: &ConfigDir) -> Server {
    let server = Server::start_ready(config);
    server.wait_until("the MQTT subscription", |s| {
        s.table_status("sensori.letture")["state"] == "fresh"
    });
    server
}

/// Publish every message at QoS 1 and return once the broker has acknowledged all of them.
pub fn publish_all(port: u16, client_id: &str, messages: &[(String, Vec<u8>)]) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    // Room for the oversized messages of mqtt_oversized (MQTT's own limit).
    options.set_max_packet_size(268_435_460, 268_435_460);
    options.set_inflight(200);
    let (client, mut connection) = Client::new(options, 1000);
    let total = messages.len();
    let owned: Vec<(String, Vec<u8>)> = messages.to_vec();
    let publisher = std::thread::spawn(move || {
        for (topic, payload) in owned {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .unwrap();
        }
        client
    });
    let mut acknowledged = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for event in connection.iter() {
        assert!(
            Instant::now() < deadline,
            "timed out publishing: {acknowledged} of {total} acknowledged"
        );
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acknowledged += 1;
                if acknowledged == total {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("publisher lost the broker after {acknowledged} of {total}: {e}"),
        }
    }
    let client = publisher.join().unwrap();
    let _ = client.disconnect();
}

/// A reading in the JSON layout of `sensori_connector`: sensor `s-<n % sensors>`, one second apart.
pub fn reading(n: usize, sensors: usize) -> (String, Vec<u8>) {
    let sensor = format!("s-{}", n % sensors);
    let t = 1_700_000_000 + n as i64;
    (
        format!("city/probe/{sensor}/download_mbps"),
        format!("{{\"v\": {}.5, \"t\": {t}}}", n % 100).into_bytes(),
    )
}

/// A configuration with a sensor registry (`registro.sensori`: `s-0` … `s-<sensors-1>`) and an
/// MQTT connector `sensori` on the broker: JSON readings into `sensori.letture` (with hourly
/// rollups in `sensori.letture_orarie`), SenML into `sensori.ambiente`.
pub fn sensori_config(broker_url: &str, sensors: usize) -> ConfigDir {
    let config = ConfigDir::empty();
    let mut csv = String::from("sensor_id,kind\n");
    for i in 0..sensors {
        csv.push_str(&format!("s-{i},connectivity_probe\n"));
    }
    config.write("data/sensori.csv", &csv);
    config.write(
        "connectors/registro.toml",
        "kind = \"file\"\n[[table]]\nname = \"sensori\"\npath = \"data/sensori.csv\"\n",
    );
    config.write(
        "connectors/sensori.toml",
        &format!(
            r#"kind = "mqtt"
broker = "{broker_url}"
client_id = "cruscotto-test"
registry = "registro.sensori"
compact_every = "2s"
compact_rows = 5000

[[table]]
name = "letture"
topics = ["city/#"]
topic_pattern = "city/+/{{sensor_id}}/{{metric}}"
format = "json"
retention = "3650d"
rollup = "letture_orarie"
fields = {{ value = {{ pointer = "/v", type = "float" }}, ts = {{ pointer = "/t", type = "timestamp", optional = true }} }}

[[table]]
name = "ambiente"
topics = ["senml/+"]
topic_pattern = "senml/{{sensor_id}}"
format = "senml"
"#
        ),
    );
    config
}

/// A TCP relay between cruscotto and the broker that can withhold cruscotto's acknowledgements
/// (PUBACK packets) from the broker: every message delivered while it does stays unacknowledged,
/// so the broker delivers all of them again to the next session. That makes the redelivery
/// after a crash certain instead of a matter of when the kill lands.
pub struct AckWithholdingRelay {
    pub port: u16,
    withhold: Arc<AtomicBool>,
    redelivered: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
}

impl AckWithholdingRelay {
    pub fn start(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let withhold = Arc::new(AtomicBool::new(false));
        let redelivered = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (flag, count, sessions) = (withhold.clone(), redelivered.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    continue;
                };
                let (client_read, broker_write) =
                    (client.try_clone().unwrap(), broker.try_clone().unwrap());
                let (flag, sessions) = (flag.clone(), sessions.clone());
                sessions.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    relay_packets(client_read, broker_write, |packet| {
                        // PUBACKs are left out while withheld.
                        !(packet[0] & 0xf0 == 0x40 && flag.load(Ordering::SeqCst))
                    });
                    sessions.fetch_sub(1, Ordering::SeqCst);
                });
                let count = count.clone();
                std::thread::spawn(move || {
                    relay_packets(broker, client, |packet| {
                        // A PUBLISH of QoS 1 or 2 with the DUP flag: the broker sending again.
                        if packet[0] & 0xf0 == 0x30
                            && packet[0] & 0x06 != 0
                            && packet[0] & 0x08 != 0
                        {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        true
                    })
                });
            }
        });
        Self {
            port,
            withhold,
            redelivered,
            open,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn withhold_acks(&self, on: bool) {
        self.withhold.store(on, Ordering::SeqCst);
    }

    /// Client connections whose packets the relay is still reading (a killed client's last
    /// packets are read, and PUBACKs left out, before its connection counts as closed).
    pub fn open_sessions(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// PUBLISH packets the broker has sent again (DUP set) through this relay so far.
    pub fn redelivered(&self) -> u64 {
        self.redelivered.load(Ordering::SeqCst)
    }
}

/// Copy MQTT packets from one side to the other, those `keep` accepts.
fn relay_packets(mut from: TcpStream, mut to: TcpStream, mut keep: impl FnMut(&[u8]) -> bool) {
    let mut read_packet = || -> std::io::Result<Vec<u8>> {
        let mut packet = vec![0u8; 1];
        from.read_exact(&mut packet)?;
        // Remaining length: up to four 7-bit groups (MQTT 3.1.1 §2.2.3).
        let mut length = 0usize;
        for shift in 0..4 {
            let mut byte = [0u8; 1];
            from.read_exact(&mut byte)?;
            packet.push(byte[0]);
            length |= ((byte[0] & 0x7f) as usize) << (7 * shift);
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let start = packet.len();
        packet.resize(start + length, 0);
        from.read_exact(&mut packet[start..])?;
        Ok(packet)
    };
    while let Ok(packet) = read_packet() {
        if keep(&packet) && to.write_all(&packet).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
