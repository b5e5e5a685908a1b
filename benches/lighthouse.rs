//! `cargo bench --bench lighthouse`: Lighthouse (performance, accessibility, best practices, SEO,
//! and the metrics behind them) on the dashboard's home page, desktop and mobile, median of 3 runs,
//! twice: right after the release binary starts serving the Bologna demo (a fresh data folder:
//! nothing computed or kept yet) and once it is warm. Prints each against the targets of issue 21
//! (performance ≥ 95 desktop and ≥ 80 mobile, CLS < 0.05, the other categories 100) and the load
//! average, since on a shared machine the performance score follows the load.
//! The browser part is benches/lighthouse.mjs (Lighthouse from web/node_modules, Debian's
//! Chromium at /usr/bin/chromium or $CHROMIUM).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{demo_config, load_average, ready, serve};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const RUNS: usize = 3;

fn main() {
    let repo = Path::new(REPO);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium`"
    );
    assert!(
        repo.join("web/node_modules/lighthouse").exists(),
        "web/node_modules is missing: `npm ci` in web/"
    );
    let dir = demo_config(repo);

    let (mut server, url) = serve(dir.path());
    println!(
        "cruscotto {} on {url}; load average {}",
        env!("CARGO_PKG_VERSION"),
        load_average()
    );
    // Right after the start: the first run of each form factor meets the loading service.
    let at_start = lighthouse(repo, &url, &chromium, "at-start");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(&url) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(10));
    let warm = lighthouse(repo, &url, &chromium, "warm");
    let _ = server.kill();
    let _ = server.wait();

    println!("\nload average at the end: {}", load_average());
    println!(
        "{:<10} {:<8} {:>11} {:>13} {:>14} {:>4} {:>7} {:>7} {:>7} {:>10}",
        "phase",
        "form",
        "performance",
        "accessibility",
        "best practices",
        "SEO",
        "CLS",
        "LCP ms",
        "TBT ms",
        "unused JS"
    );
    for (phase, results) in [("at-start", &at_start), ("warm", &warm)] {
        for form in ["desktop", "mobile"] {
            // serde_json's Display ignores widths: format the numbers as text first.
            let r = |key: &str| results[form][key].to_string();
            println!(
                "{:<10} {:<8} {:>11} {:>13} {:>14} {:>4} {:>7} {:>7} {:>7} {:>6} KiB",
                phase,
                form,
                r("performance"),
                r("accessibility"),
                r("best_practices"),
                r("seo"),
                r("cls"),
                r("lcp_ms"),
                r("tbt_ms"),
                r("unused_js_kib")
            );
        }
    }
    println!(
        "targets: performance ≥ 95 (desktop), ≥ 80 (mobile); CLS < 0.05; accessibility, best practices, SEO = 100"
    );
    for (phase, results) in [("at-start", &at_start), ("warm", &warm)] {
        for (form, target) in [("desktop", 95), ("mobile", 80)] {
            let r = &results[form];
            let met = r["performance"].as_f64().unwrap_or(0.0) >= target as f64
                && r["cls"].as_f64().unwrap_or(1.0) < 0.05
                && ["accessibility", "best_practices", "seo"]
                    .iter()
                    .all(|k| r[*k].as_f64() == Some(100.0));
            println!("{phase} {form}: {}", if met { "met" } else { "NOT met" });
        }
    }
}

/// The medians of `benches/lighthouse.mjs` for one phase, per form factor.
fn lighthouse(repo: &Path, url: &str, chromium: &str, phase: &str) -> serde_json::Value {
    let output = Command::new("node")
        .arg(repo.join("benches/lighthouse.mjs"))
        .args([url, phase, &RUNS.to_string()])
        .env("CHROMIUM", chromium)
        .stderr(Stdio::inherit())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(output.status.success(), "Lighthouse failed");
    let last = stdout.lines().last().expect("a summary line");
    serde_json::from_str::<serde_json::Value>(last).expect("the summary is JSON")["results"].clone()
}
