//! A PostgreSQL cluster of the test's own: `initdb` into a temporary folder, then `pg_ctl` starts
//! and stops the real server on a free port, so a test can have the database down when cruscotto
//! starts and bring it up later. As root (PostgreSQL refuses to run as root) the programs run as
//! the `postgres` user.

use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

fn bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    dir.join("initdb").exists().then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` from PostgreSQL's own folder, as the `postgres` user when we are root.
fn pg_command(program: &str) -> Command {
    let path = bindir().map_or(PathBuf::from(program), |dir| dir.join(program));
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// A new cluster (trust authentication, user `postgres`), not started.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(dir.path());
                    c
                },
                "chown the cluster folder",
            );
        }
        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(initdb, "initdb");
        // A free port now; nothing else takes it in the moment before the server does.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            port,
            dir,
            running: false,
        }
    }

    /// A new cluster, started.
    pub fn start_new() -> Self {
        let mut cluster = Self::init();
        cluster.start();
        cluster
    }

    /// Start the server and wait until it accepts connections.
    pub fn start(&mut self) {
        let mut pg_ctl = pg_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.path().display()
            ))
            .args(["-w", "start"]);
        run(pg_ctl, "pg_ctl start");
        self.running = true;
    }

    /// Stop the server at once (as a crash would).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let mut pg_ctl = pg_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(pg_ctl, "pg_ctl stop");
        self.running = false;
    }

    /// Leave the cluster running until the test process ends, however it ends (a panic, a
    /// signal): a watchdog in its own process group then stops the server and deletes the folder.
    pub fn stop_when_process_ends(self) {
        use std::os::unix::process::CommandExt;
        let dir = self.dir.path().to_path_buf();
        // Neither the server nor the folder goes with `self` now: the watchdog takes them.
        std::mem::forget(self);
        let pg_ctl = pg_command("pg_ctl");
        let stop = std::iter::once(pg_ctl.get_program())
            .chain(pg_ctl.get_args())
            .map(|part| shell_quote(&part.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {stop} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            data = shell_quote(&dir.join("data").to_string_lossy()),
            dir = shell_quote(&dir.to_string_lossy()),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the cluster's watchdog");
    }

    /// The URL of database `postgres` as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut pg_ctl = pg_command("pg_ctl");
            pg_ctl.arg("-D").arg(self.dir.path().join("data")).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]);
            let _ = pg_ctl.output();
        }
    }
}
