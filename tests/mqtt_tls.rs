//! The MQTT connector over TLS (`mqtts://`), against a Mosquitto of the test's own with a TLS
//! listener whose certificate is signed by a certificate authority made for the test (openssl):
//! given that authority in `ca_file`, cruscotto stores every reading; given another one, it
//! refuses the broker and /status says why.

mod common;
mod mqtt_support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ConfigDir, Server};
use mqtt_support::{
    Broker, free_port, publish_all, reading, sensori_config, start_subscribed, wait_for,
};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian's openssl package) makes the test certificates");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate authority `<name>-ca.pem` and, signed by it, a server certificate for
/// 127.0.0.1 (`<name>-server.pem`, key `<name>-server.key`).
fn certificates(dir: &Path, name: &str) {
    let file = |suffix: &str| format!("{name}-{suffix}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &file("ca.key"),
            "-out",
            &file("ca.pem"),
            "-subj",
            &format!("/CN={name} test authority"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &file("server.key"),
            "-out",
            &file("server.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &file("server.csr"),
            "-CA",
            &file("ca.pem"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            &file("server.pem"),
        ],
    );
}

/// `sensori_config` on the broker's TLS listener, trusting the authority in `ca_file`.
fn tls_config(tls_port: u16, ca_file: &Path) -> ConfigDir {
    let config = sensori_config(&format!("mqtts://127.0.0.1:{tls_port}"), 20);
    let path = config.path().join("connectors/sensori.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "client_id = ",
        &format!(
            "ca_file = {:?}\nclient_id = ",
            ca_file.display().to_string()
        ),
        1,
    );
    config.replace("connectors/sensori.toml", &text);
    config
}

#[test]
fn readings_arrive_over_tls_and_a_broker_of_an_unknown_authority_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path(), "city");
    certificates(certs.path(), "other");
    let tls_port = free_port();
    let dir = certs.path().display();
    let broker = Broker::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {dir}/city-ca.pem\ncertfile {dir}/city-server.pem\nkeyfile {dir}/city-server.key\n"
    ));
    wait_for("the TLS listener", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });

    // Trusting the authority that signed the broker's certificate: every reading is stored.
    let config = tls_config(tls_port, &certs.path().join("city-ca.pem"));
    let server = start_subscribed(&config);
    let total = 300;
    let messages: Vec<(String, Vec<u8>)> = (0..total).map(|n| reading(n, 20)).collect();
    // Published on the plain listener: the broker hands them to the TLS session.
    publish_all(broker.port, "publisher-tls", &messages);
    wait_for("every reading over TLS", Duration::from_secs(60), || {
        server.rows("SELECT count(*) AS n FROM sensori.letture")[0]["n"] == total as i64
    });
    let distinct = server.rows(
        "SELECT count(*) AS n FROM (SELECT DISTINCT sensor_id, metric, ts FROM sensori.letture)",
    );
    assert_eq!(distinct[0]["n"], total as i64);
    server.stop();

    // Trusting another authority: the broker is refused, and /status names the certificate.
    let config = tls_config(tls_port, &certs.path().join("other-ca.pem"));
    let server = Server::start_ready(&config);
    server.wait_until("the TLS failure in /status", |s| {
        let status = s.table_status("sensori.letture");
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate"))
    });
    let status = server.table_status("sensori.letture");
    assert_ne!(status["state"], "fresh", "{status}");
    assert_eq!(
        server.rows("SELECT count(*) AS n FROM sensori.letture")[0]["n"],
        0,
        "nothing from a broker that was not trusted"
    );
}
