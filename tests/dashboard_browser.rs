//! The dashboard in a real browser: Debian's Chromium driven by playwright-core (from web/'s npm
//! packages) through `node tests/browser/dashboard.mjs`, against the real binary on the demo data.
//! Fails, never skips, when Chromium, node or the npm packages are missing: `.ci/run` installs them.
//! Screenshots go to target/dashboard-screenshots/ (printed at the end).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ConfigDir, REPO, Server};

const CHROMIUM: &str = "/usr/bin/chromium";

fn require(path: &Path, how: &str) {
    assert!(path.exists(), "{} is missing: {how}", path.display());
}

#[test]
fn the_dashboard_works_in_chromium() {
    let repo = Path::new(REPO);
    require(
        Path::new(CHROMIUM),
        "install Debian's Chromium: `apt-get update && apt-get install -y chromium`",
    );
    require(
        &repo.join("web/node_modules/playwright-core"),
        "install the npm packages: `npm ci` in web/",
    );
    require(
        &repo.join("web/node_modules/axe-core"),
        "install the npm packages: `npm ci` in web/",
    );
    let screenshots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();

    let config = ConfigDir::demo();
    let server = Server::start_ready(&config);
    let output = Command::new("node")
        .arg(repo.join("tests/browser/dashboard.mjs"))
        .arg(&server.url)
        .arg(&screenshots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): install Node.js (`apt-get install -y nodejs npm`)")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("browser test: all checks passed"),
        "{stdout}"
    );
    println!("screenshots: {}", screenshots.display());
}
