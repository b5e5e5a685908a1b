//! A Mosquitto of the bench's own, started from the repository's `mosquitto.conf` (persistence
//! on, no queue limit) on a free port, stopped by its PID when dropped. Shared by the `mqtt` and
//! `ingest` benches.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub port: u16,
    child: Child,
}

impl Broker {
    pub fn start(dir: &Path) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let base = std::fs::read_to_string(repo.join("mosquitto.conf"))
            .map_err(|e| format!("mosquitto.conf: {e}"))?;
        let data = dir.join("mosquitto-data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let conf = dir.join("mosquitto.conf");
        // Keep the user we run as (as root, Mosquitto would switch to `mosquitto`, which cannot
        // write to this temporary folder).
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "{base}\nlistener {port} 127.0.0.1\npersistence_location {}/\nuser {user}\n",
                data.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = std::fs::File::create(dir.join("mosquitto.log"))
            .map_err(|e| format!("mosquitto.log: {e}"))?;
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start /usr/sbin/mosquitto: {e}"))?;
        let broker = Self { port, child };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= until {
                return Err("timed out waiting for the broker".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
