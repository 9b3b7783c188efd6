//! Store safety: a damaged store is found by `quick_check` through a
//! read-only connection and refused, with what to do, before anything is
//! written to it; `herd backup` copies a live store that a new daemon opens;
//! `herd gc` forgets ended sessions beyond the retention, for good.

mod common;

use common::{herd_bin, Daemon};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Creates `n` sessions that exit at once and stay stopped.
async fn ended_sessions(d: &Daemon, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let id = d
            .create(json!({"command": ["true"], "name": format!("ended-{i}-{}", "x".repeat(150)), "restart": {"policy": "never"}}))
            .await;
        ids.push(id);
    }
    for id in &ids {
        d.wait_session(id, T, |s| s["state"] == "stopped").await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_deep_in_the_store_is_found_and_nothing_is_written() {
    let mut d = Daemon::start("[limits]\nmax_sessions = 200\n").await;
    ended_sessions(&d, 80).await;
    d.stop();
    let data = d.data_dir();
    let db = data.join("herd.db");
    // Everything into the main file, so the damage is not shadowed by the WAL.
    let ck = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect({:?}); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()",
            db.display().to_string()
        ))
        .status()
        .unwrap();
    assert!(ck.success());
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 32 * 4096, "a store of some size: {len} bytes");
    // Garbage over a page near the end of the file.
    let mut bytes = std::fs::read(&db).unwrap();
    let page = (len as usize / 4096 - 3) * 4096;
    for b in &mut bytes[page..page + 512] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let before = std::fs::read(&db).unwrap();
    let mut child = Command::new(herd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = common::wait_until(T, || matches!(child.try_wait(), Ok(Some(_)))).await;
    if !ended {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        ended && !o.status.success(),
        "a damaged store was accepted: {err}"
    );
    assert!(err.contains("damaged"), "{err}");
    assert!(err.contains("herd backup"), "says what to do: {err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not a byte written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_live_store_opens_in_a_new_daemon() {
    let d = Daemon::start("").await;
    let live = d
        .create(json!({"command": ["sleep", "600"], "task_id": "backed-up"}))
        .await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("herd-backup.db");
    let o = d.cli(&["backup", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Not over an existing file without --force.
    let o = d.cli(&["backup", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(d
        .cli(&["backup", "--force", file.to_str().unwrap()])
        .status
        .success());
    // The copy is a whole store: a daemon started on it knows the session.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(&file, dir.path().join("data").join("herd.db")).unwrap();
    let restored = Daemon::start_in(dir, "").await;
    let (_, v) = restored.get("/v1/tasks/backed-up").await;
    assert_eq!(v["id"], live.as_str(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_forgets_ended_sessions_beyond_the_count_for_good() {
    let mut d = Daemon::start("").await;
    let ids = ended_sessions(&d, 5).await;
    let live = d.create(json!({"command": ["sleep", "600"]})).await;
    let recordings = d.data_dir().join("recordings");
    // The recorder writes behind the sessions, as background work: on a
    // loaded machine a file can land after its session has stopped.
    let recorded =
        common::wait_until(T, || ids.iter().all(|id| recordings.join(id).exists())).await;
    assert!(recorded, "every ended session has its recording");
    let o = d.cli(&["gc", "--keep", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let removed: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed.len(), 3, "{report}");
    for id in &removed {
        assert!(ids.contains(id), "only ended sessions go: {report}");
        assert!(!recordings.join(id).exists(), "recordings of {id} deleted");
    }
    // A bad value names the field.
    let (st, v) = d.post("/v1/gc?older_than=soonish", json!(null)).await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("older_than"));
    // For good: after a crash they stay gone; the live one and the two kept remain.
    d.kill9();
    let d = Daemon::start_in(d.into_dir(), "").await;
    assert_eq!(d.count().await, 3);
    d.session(&live).await;
}
