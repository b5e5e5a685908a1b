//! `cargo bench --bench mqtt`: sustained ingest of 1,000,000 small JSON readings by the MQTT
//! connector, until durable (fsynced in the WAL, then acknowledged) and queryable (counted by
//! `POST /api/v1/sql`), against a null subscriber (a rumqttc client that acknowledges each
//! message and discards it: the broker's own delivery limit) on the same broker in the same run.
//! Also times Mosquitto's own `mosquitto_sub` as a second null subscriber; the ratio is taken
//! against the faster one. Prints readings/s of the three, the ratio, and cruscotto's peak resident
//! memory (VmHWM).
//!
//! Both subscribers drain the same backlog: each first creates its persistent session (QoS 1,
//! clean session off) and leaves, the readings are published into the broker, and then the
//! subscriber comes back and is timed until it has them all. The broker is a Mosquitto of the
//! bench's own, started from the repository's `mosquitto.conf` on a free port. See
//! benches/README.md.

#[path = "support/broker.rs"]
mod broker;
use broker::Broker;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// The readings of a run; `MQTT_BENCH_READINGS` changes it for a quick try.
static READINGS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("MQTT_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
});
const SENSORS: usize = 1_000;
const TARGET_RATIO: f64 = 0.8;
const TARGET_RATE: f64 = 50_000.0;
const BINARY: &str = env!("CARGO_BIN_EXE_cruscotto");

/// Polls every 50 ms: often enough to time a run of seconds, rarely enough not to load the
/// two cores the ingest needs.
fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reading(n: usize) -> (String, Vec<u8>) {
    let t = 1_700_000_000.0 + n as f64 / 1000.0;
    (
        format!("bench/s-{}/download_mbps", n % SENSORS),
        format!("{{\"v\":{}.5,\"t\":{t:.3}}}", n % 100).into_bytes(),
    )
}

/// Publish every reading at QoS 1 and wait for the broker's acknowledgements.
async fn publish(port: u16, prefix: &str) {
    let mut options = MqttOptions::new(format!("bench-publisher-{prefix}"), "127.0.0.1", port);
    options.set_inflight(1000);
    options.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let prefix = prefix.to_string();
    let publisher = tokio::spawn(async move {
        for n in 0..*READINGS {
            let (topic, payload) = reading(n);
            client
                .publish(
                    format!("{prefix}/{topic}"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
        client
    });
    let mut acknowledged = 0;
    while acknowledged < *READINGS {
        if let Event::Incoming(Packet::PubAck(_)) =
            eventloop.poll().await.expect("publisher connection")
        {
            acknowledged += 1;
            if acknowledged % 20_000 == 0 {
                eprintln!("  published {acknowledged}");
            }
        }
    }
    let client = publisher.await.unwrap();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

fn null_options(port: u16) -> MqttOptions {
    let mut options = MqttOptions::new("bench-null-subscriber", "127.0.0.1", port);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_keep_alive(Duration::from_secs(60));
    options
}

/// Create the null subscriber's persistent session, then leave.
async fn null_subscribe(port: u16) {
    let (client, mut eventloop) = AsyncClient::new(null_options(port), 100);
    client
        .subscribe("null/bench/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.expect("null subscriber")
        {
            break;
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

/// Drain the backlog, acknowledging each message; readings/s.
async fn null_drain(port: u16) -> f64 {
    let (client, mut eventloop) = AsyncClient::new(null_options(port), 65_536);
    // Acknowledge from another task, as cruscotto does: waiting for room in the request channel
    // while not polling the event loop would stall it.
    let (acks, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<rumqttc::Publish>();
    tokio::spawn(async move {
        while let Some(publish) = to_ack.recv().await {
            let _ = client.ack(&publish).await;
        }
    });
    let started = Instant::now();
    let mut received = 0;
    while received < *READINGS {
        if let Event::Incoming(Packet::Publish(publish)) =
            eventloop.poll().await.expect("null subscriber")
        {
            acks.send(publish).unwrap();
            received += 1;
            if received % 20_000 == 0 {
                eprintln!("  null subscriber received {received}");
            }
        }
    }
    // The last acknowledgements go out with the next polls.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            let _ = eventloop.poll().await;
        }
    })
    .await;
    *READINGS as f64 / started.elapsed().as_secs_f64()
}

/// The C null subscriber: Mosquitto's own `mosquitto_sub` (libmosquitto acknowledges each QoS 1
/// message as it arrives) with a persistent session, output to /dev/null. `create` only makes the
/// session (`-E`: leave once subscribed); otherwise it runs until it has every reading and
/// returns readings/s from process start, as cruscotto is timed.
fn mosquitto_sub(port: u16, create: bool) -> Result<f64, String> {
    let mut command = Command::new("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-i", "bench-null-c", "-c", "-q", "1", "-t", "nullc/bench/#"])
        .stdout(Stdio::null());
    if create {
        command.arg("-E");
    } else {
        command.args(["-C", &READINGS.to_string()]);
    }
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot run mosquitto_sub (Debian's mosquitto-clients): {e}"))?;
    if !status.success() {
        return Err(format!("mosquitto_sub exited with {status}"));
    }
    Ok(*READINGS as f64 / started.elapsed().as_secs_f64())
}

fn write_config(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("cruscotto.toml"),
        "data_dir = \"var\"\n[access]\nanonymous = \"analyst\"\n[query]\nmax_rows = 10000000\n",
    )
    .unwrap();
    let mut csv = String::from("sensor_id,kind\n");
    for i in 0..SENSORS {
        csv.push_str(&format!("s-{i},connectivity_probe\n"));
    }
    std::fs::write(dir.join("data/sensori.csv"), csv).unwrap();
    std::fs::write(
        dir.join("connectors/registro.toml"),
        "kind = \"file\"\n[[table]]\nname = \"sensori\"\npath = \"data/sensori.csv\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/sensori.toml"),
        format!(
            r#"kind = "mqtt"
broker = "mqtt://127.0.0.1:{port}"
client_id = "bench-cruscotto"
registry = "registro.sensori"

[[table]]
name = "letture"
topics = ["cruscotto/bench/#"]
topic_pattern = "cruscotto/bench/{{sensor_id}}/{{metric}}"
format = "json"
rollup = "letture_orarie"
fields = {{ value = {{ pointer = "/v", type = "float" }}, ts = {{ pointer = "/t", type = "timestamp", optional = true }} }}
"#
        ),
    )
    .unwrap();
}

struct Cruscotto {
    child: Child,
    url: String,
}

impl Cruscotto {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BINARY)
            .arg("--config")
            .arg(dir.join("cruscotto.toml"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            if let Some(url) = line.strip_prefix("cruscotto listening on ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    fn count(&self, client: &reqwest::blocking::Client) -> Option<u64> {
        let response = client
            .post(format!("{}/api/v1/sql", self.url))
            .body("SELECT count(*) AS n FROM sensori.letture")
            .send()
            .ok()?;
        let rows: serde_json::Value = response.json().ok()?;
        rows[0]["n"].as_u64()
    }

    fn table_state(&self, client: &reqwest::blocking::Client) -> Option<String> {
        let status: serde_json::Value = client
            .get(format!("{}/status", self.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        status["tables"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "sensori.letture")
            .and_then(|t| t["state"].as_str().map(str::to_string))
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    eprintln!(
        "working folder (broker log in mosquitto.log): {}",
        dir.path().display()
    );
    let broker = Broker::start(dir.path()).expect("the bench's broker");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "mqtt ingest: {} JSON readings of {SENSORS} sensors, QoS 1, own mosquitto on 127.0.0.1:{}",
        *READINGS, broker.port
    );

    // The null subscriber: the broker's own delivery limit.
    runtime.block_on(null_subscribe(broker.port));
    runtime.block_on(publish(broker.port, "null"));
    let rumqttc_rate = runtime.block_on(null_drain(broker.port));
    println!("null subscriber, rumqttc (ack and discard):       {rumqttc_rate:>10.0} readings/s");
    // The same with Mosquitto's C client; the faster of the two is the broker's delivery limit.
    let c_rate = mosquitto_sub(broker.port, true).and_then(|_| {
        runtime.block_on(publish(broker.port, "nullc"));
        mosquitto_sub(broker.port, false)
    });
    match &c_rate {
        Ok(rate) => {
            println!("null subscriber, mosquitto_sub (ack and discard): {rate:>10.0} readings/s")
        }
        Err(e) => println!("null subscriber, mosquitto_sub: not run: {e}"),
    }
    let null_rate = rumqttc_rate.max(c_rate.unwrap_or(0.0));

    // cruscotto: subscribe once (the persistent session), leave, publish, come back.
    let config = dir.path().join("cruscotto");
    write_config(&config, broker.port);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = Cruscotto::start(&config);
    wait_for("the subscription", Duration::from_secs(60), || {
        server.table_state(&http).as_deref() == Some("fresh")
    });
    server.kill();
    eprintln!("cruscotto subscribed; publishing its backlog …");
    runtime.block_on(publish(broker.port, "cruscotto"));
    eprintln!("published; timing cruscotto …");
    let started = Instant::now();
    let server = Cruscotto::start(&config);
    let mut last = 0;
    wait_for(
        "every reading to be queryable",
        Duration::from_secs(600),
        || {
            last = server.count(&http).unwrap_or(last);
            last >= *READINGS as u64
        },
    );
    let elapsed = started.elapsed().as_secs_f64();
    let rate = *READINGS as f64 / elapsed;
    let rss_mib = server.peak_rss_kib() as f64 / 1024.0;
    assert_eq!(
        last, *READINGS as u64,
        "exactly every reading, no duplicates"
    );
    server.kill();

    let ratio = rate / null_rate;
    println!(
        "cruscotto (durable + queryable):                 {rate:>10.0} readings/s  ({elapsed:.1}s from process start, peak RSS {rss_mib:.0} MiB)"
    );
    println!(
        "ratio cruscotto / faster null subscriber:        {ratio:>10.2}   (target ≥ {TARGET_RATIO})"
    );
    let verdict = |ok: bool| if ok { "ok" } else { "BELOW TARGET" };
    println!(
        "targets: ratio ≥ {TARGET_RATIO}: {}; ≥ {TARGET_RATE:.0} readings/s: {}",
        verdict(ratio >= TARGET_RATIO),
        verdict(rate >= TARGET_RATE)
    );
}
