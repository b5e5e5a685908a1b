//! Zero loss across failures: cruscotto killed with SIGKILL mid-stream, and the broker restarted
//! mid-stream. Every reading the broker accepted ends up stored exactly once. Against a Mosquitto
//! of the test's own (persistent, no queue limit) and the real binary.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::{Broker, publish_all, reading, sensori_config, start_subscribed, wait_for};

fn count(server: &Server) -> i64 {
    server.rows("SELECT count(*) AS n FROM sensori.letture")[0]["n"]
        .as_i64()
        .unwrap()
}

fn distinct(server: &Server) -> i64 {
    server.rows(
        "SELECT count(*) AS n FROM (SELECT DISTINCT sensor_id, metric, ts FROM sensori.letture)",
    )[0]["n"]
        .as_i64()
        .unwrap()
}

#[test]
fn sigkill_mid_stream_then_restart_loses_nothing() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 100);
    let server = start_subscribed(&config);

    let total = 30_000;
    let messages: Vec<(String, Vec<u8>)> = (0..total).map(|n| reading(n, 100)).collect();
    let port = broker.port;
    let first_half = messages[..total / 2].to_vec();
    let publisher = std::thread::spawn(move || publish_all(port, "publisher-a", &first_half));

    // Kill it while readings are streaming in: some stored, some not yet.
    wait_for("the first readings", Duration::from_secs(60), || {
        count(&server) > 1_000
    });
    server.stop(); // SIGKILL
    publisher.join().unwrap();
    // Readings published while cruscotto is down wait in its persistent session.
    publish_all(port, "publisher-b", &messages[total / 2..]);

    let server = Server::start_ready(&config);
    let stored_at_restart = count(&server);
    assert!(
        stored_at_restart > 1_000,
        "the readings stored before the kill survive it: {stored_at_restart}"
    );
    wait_for(
        "every reading after the restart",
        Duration::from_secs(120),
        || count(&server) >= total as i64,
    );
    assert_eq!(count(&server), total as i64);
    assert_eq!(distinct(&server), total as i64);
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    let config = sensori_config(&broker.url(), 100);
    // Create the persistent session, then leave, so that a backlog waits for cruscotto.
    start_subscribed(&config).stop();
    let total = 70_000;
    let backlog = 60_000;
    let messages: Vec<(String, Vec<u8>)> = (0..total).map(|n| reading(n, 100)).collect();
    publish_all(broker.port, "publisher-a", &messages[..backlog]);

    let server = Server::start_ready(&config);
    wait_for(
        "the first readings of the backlog",
        Duration::from_secs(60),
        || count(&server) > 1_000,
    );
    // Stop the broker by its PID mid-stream (in-flight readings included) and start it again with
    // the same persistence folder.
    broker.restart();
    assert!(
        broker.persisted(),
        "the broker saved its sessions:\n{}",
        broker.log()
    );
    publish_all(broker.port, "publisher-b", &messages[backlog..]);

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while count(&server) < total as i64 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for every reading after the broker restart: {} of {total}\nstatus: {}\nbroker log:\n{}",
            count(&server),
            server.table_status("sensori.letture"),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&server), total as i64);
    assert_eq!(distinct(&server), total as i64);
    server.wait_until("the connection to be fresh again", |s| {
        s.table_status("sensori.letture")["state"] == "fresh"
    });
}

/// SIGKILL while the log table compacts all the time (every 300 readings or 100 ms): whatever a
/// kill interrupts — a WAL append, a part being written, the manifest, the WAL files' deletion —
/// the restarted table holds every reading once, read from its parts on disk and its WAL.
#[test]
fn sigkill_during_compactions_loses_nothing_and_stores_nothing_twice() {
    let broker = Broker::start();
    let config = sensori_config(&broker.url(), 100);
    let file = config.path().join("connectors/sensori.toml");
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        toml.replace("compact_every = \"2s\"", "compact_every = \"100ms\"")
            .replace("compact_rows = 5000", "compact_rows = 300"),
    )
    .unwrap();
    let total = 12_000;
    let messages: Vec<(String, Vec<u8>)> = (0..total).map(|n| reading(n, 100)).collect();
    let port = broker.port;
    let mut server = start_subscribed(&config);
    let publisher = {
        let messages = messages.clone();
        std::thread::spawn(move || publish_all(port, "publisher-a", &messages))
    };
    for kill_at in [2_000, 5_000, 8_000] {
        wait_for("readings before the kill", Duration::from_secs(120), || {
            count(&server) > kill_at
        });
        server.stop(); // SIGKILL
        server = Server::start_ready(&config);
    }
    publisher.join().unwrap();
    wait_for(
        "every reading after the kills",
        Duration::from_secs(120),
        || count(&server) >= total as i64,
    );
    assert_eq!(count(&server), total as i64);
    assert_eq!(distinct(&server), total as i64);
    let parts = std::fs::read_dir(config.path().join("var/log/sensori/letture"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("day="))
        .count();
    assert!(parts > 0, "the readings were compacted into day partitions");
}
