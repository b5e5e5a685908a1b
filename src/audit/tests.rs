use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use bytesize::ByteSize;
use datafusion::prelude::SessionContext;

use super::*;

fn config(rotate_size: u64, max_files: usize, window: Duration) -> AuditConfig {
    AuditConfig {
        rotate_size: ByteSize::b(rotate_size),
        retention: Duration::from_secs(3600),
        max_files,
        aggregate_window: window,
    }
}

fn entry(key_id: &str, target: &str, status: u16, outcome: &str) -> AuditEntry {
    AuditEntry {
        time: Utc::now(),
        key_id: key_id.into(),
        role: "none".into(),
        action: "sql".into(),
        target: target.into(),
        target_bytes: 0,
        rows: 0,
        duration_ms: 1,
        status,
        outcome: outcome.into(),
        count: 1,
    }
}

fn lines(dir: &Path) -> Vec<AuditEntry> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|p| entries(File::open(p).unwrap()).collect::<Vec<_>>())
        .collect()
}

/// `(rows, sum of count)` of `system.audit` as DataFusion reads it.
async fn counted(log: &AuditLog) -> (u64, u64) {
    let ctx = SessionContext::new();
    ctx.register_table("audit", log.table()).unwrap();
    let batches = ctx
        .sql("SELECT count(*), CAST(coalesce(sum(count), 0) AS BIGINT) FROM audit")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let column = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0) as u64
    };
    (column(0), column(1))
}

#[test]
fn the_log_is_created_and_kept_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(512, 100, Duration::from_secs(60)));
    for i in 0..20 {
        log.record(entry(
            "k1",
            &format!("SELECT {i}, '{}'", "x".repeat(50)),
            200,
            "ok",
        ));
    }
    drop(log);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(files.len() > 2, "the log rotated: {files:?}");
    for file in files {
        let mode = file.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    // A log an older version left world-readable is narrowed when opened.
    let current = dir.path().join(CURRENT);
    std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _log = AuditLog::open(dir.path(), config(512, 100, Duration::from_secs(60)));
    let mode = std::fs::metadata(&current).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn refusals_are_written_as_a_digest_and_aggregated_when_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(1 << 30, 10, Duration::from_secs(3600)));
    let bodies: Vec<String> = (0..500)
        .map(|i| format!("SELECT '{}' -- {i}", "A".repeat(1000 + i)))
        .collect();
    for body in &bodies {
        log.record_refused(entry("none", body, 401, "denied"));
    }
    for _ in 0..300 {
        log.record_refused(entry("none", "SELECT 1", 429, "rate_limited"));
    }
    let written = std::fs::metadata(dir.path().join(CURRENT)).unwrap().len();
    // One line per kind so far; the repeats wait for their window.
    assert_eq!(lines(dir.path()).len(), 2);
    drop(log);
    let all = lines(dir.path());
    assert_eq!(all.len(), 4, "{all:#?}");
    let text = std::fs::read_to_string(dir.path().join(CURRENT)).unwrap();
    assert!(!text.contains("AAAA"), "a refused body reached the log");
    assert!(written < 1024, "{written} bytes for two lines");
    let denied: Vec<&AuditEntry> = all.iter().filter(|e| e.status == 401).collect();
    assert_eq!(denied.iter().map(|e| e.count).sum::<u64>(), 500);
    assert_eq!(
        denied.iter().map(|e| e.target_bytes).sum::<u64>(),
        bodies.iter().map(|b| b.len() as u64).sum::<u64>()
    );
    let first: [u8; 32] = Sha256::digest(bodies[0].as_bytes()).into();
    assert_eq!(denied[0].target, format!("sha256:{}", hex(&first)));
    assert!(
        denied[1].target.starts_with("499 distinct, last sha256:"),
        "{}",
        denied[1].target
    );
    let limited: Vec<&AuditEntry> = all.iter().filter(|e| e.status == 429).collect();
    assert_eq!(
        limited.iter().map(|e| e.count).collect::<Vec<_>>(),
        [1, 299]
    );
    let digest: [u8; 32] = Sha256::digest(b"SELECT 1").into();
    assert!(
        limited
            .iter()
            .all(|e| e.target == format!("sha256:{}", hex(&digest)))
    );
}

#[test]
fn a_closed_window_is_written_by_the_background_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(1 << 30, 10, Duration::from_millis(1)));
    for _ in 0..3 {
        log.record_refused(entry("invalid", "x", 401, "denied"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines(dir.path()).iter().map(|e| e.count).sum::<u64>() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            lines(dir.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_reads_every_file_and_retention_keeps_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(2048, 1000, Duration::from_secs(3600)));
    for i in 0..400 {
        log.record(entry(
            "k1",
            &format!("SELECT {i} -- {}", "y".repeat(40)),
            200,
            "ok",
        ));
    }
    for _ in 0..50 {
        log.record_refused(entry("none", "SELECT 2", 401, "denied"));
    }
    log.inner.flush_all();
    let rotated = log.inner.rotated().len();
    assert!(rotated >= 10, "{rotated} rotated files");
    assert_eq!(counted(&log).await, (402, 450));
    drop(log);

    // Fewer files allowed: the oldest go at the next opening.
    let log = AuditLog::open(dir.path(), config(2048, 3, Duration::from_secs(3600)));
    assert_eq!(log.inner.rotated().len(), 3);
    let (rows, _) = counted(&log).await;
    assert!(rows < 402 && rows > 0, "{rows}");
    // The newest entries survive.
    let text: Vec<AuditEntry> = lines(dir.path());
    assert!(text.iter().any(|e| e.status == 401 && e.count == 49));
}

#[test]
fn rotated_files_older_than_the_retention_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("audit-20000101T000000.000000Z.jsonl");
    let recent = dir.path().join("audit-20000102T000000.000000Z.jsonl");
    for path in [&old, &recent] {
        std::fs::write(
            path,
            serde_json::to_string(&entry("k", "q", 200, "ok")).unwrap() + "\n",
        )
        .unwrap();
    }
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let _log = AuditLog::open(dir.path(), config(1 << 20, 10, Duration::from_secs(60)));
    assert!(!old.exists(), "a file past the one-hour retention was kept");
    assert!(recent.exists());
}
