//! `cargo bench --bench dashboard`: time from navigation to the choropleth drawn with all 90 areas,
//! and bytes transferred, median of 5 runs in headless Chromium on localhost, against the release
//! binary serving the Bologna demo. Targets (issue 6): under 1.5 s and under 2 MB compressed.
//! The browser part is benches/dashboard.mjs (playwright-core from web/node_modules, Debian's
//! Chromium at /usr/bin/chromium or $CHROMIUM).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{demo_config, load_average, ready, serve};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const RUNS: usize = 5;

fn main() {
    let repo = Path::new(REPO);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium`"
    );
    assert!(
        repo.join("web/node_modules/playwright-core").exists(),
        "web/node_modules is missing: `npm ci` in web/"
    );

    // The shipped demo configuration in a temporary folder, so the run leaves nothing behind.
    let dir = demo_config(repo);

    let (mut server, url) = serve(dir.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(&url) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "cruscotto {} on {url}; load average {}",
        env!("CARGO_PKG_VERSION"),
        load_average()
    );

    let status = Command::new("node")
        .arg(repo.join("benches/dashboard.mjs"))
        .arg(&url)
        .arg(RUNS.to_string())
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs");
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "the browser benchmark failed");
}
