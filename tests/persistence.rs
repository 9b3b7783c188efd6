//! The store and recovery, with `herd serve` as a real child process that is
//! killed (-9) or stopped and started again on the same data dir.

mod common;

use common::{alive, herd_bin, wait_until, Daemon};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const CONFIG: &str = "[limits]\nmax_sessions = 200\n[restart]\nbackoff_initial = \"10ms\"\n";

fn store_path(d: &Daemon) -> std::path::PathBuf {
    d.data_dir().join("herd.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_brings_back_every_session_and_delivers_queued_messages_once() {
    let d = Daemon::start(CONFIG).await;
    let marks = tempfile::tempdir().unwrap();
    let mut ids = vec![];
    for i in 0..10 {
        let id = d
            .create(
                json!({"command": ["bash", "--norc", "--noprofile"], "task_id": format!("task-{i}"),
                           "limits": {"quiet_after": "400ms"}}),
            )
            .await;
        ids.push(id);
    }
    for id in &ids {
        d.wait_session(id, T, |s| s["state"] == "ready").await;
    }
    let mut old_pids = vec![];
    for (i, id) in ids.iter().enumerate() {
        // Keeps the session busy, and survives the terminal hangup of a dead daemon.
        let (st, _) = d
            .post(
                &format!("/v1/sessions/{id}/messages"),
                json!({"text": "trap '' HUP; while true; do echo busy; sleep 0.2; done"}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let mark = marks.path().join(format!("m{i}"));
        let (st, _) = d
            .post(
                &format!("/v1/sessions/{id}/messages"),
                json!({"text": format!("echo delivered >> {}", mark.display())}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
    }
    for id in &ids {
        let s = d.wait_session(id, T, |s| s["state"] == "busy").await;
        let pid = s["pid"].as_i64().unwrap() as i32;
        old_pids.extend(herd_actors::process::tree(pid));
    }
    assert!(old_pids.len() >= 10);
    let mut d = d;
    d.kill9();
    // The old generation outlives its daemon (it ignores SIGHUP)...
    assert!(
        old_pids.iter().any(|p| alive(*p as i64)),
        "nothing survived the crash: the test proves nothing"
    );
    let d = Daemon::start_in(d.into_dir(), CONFIG).await;
    // ...until the next daemon starts, which kills it before anything else.
    for p in &old_pids {
        assert!(
            wait_until(T, || !alive(*p as i64)).await,
            "process {p} of the old generation is still alive"
        );
    }
    let (_, list) = d.get("/v1/sessions").await;
    assert_eq!(list.as_array().unwrap().len(), 10);
    for (i, id) in ids.iter().enumerate() {
        let s = d
            .wait_session(id, T, |s| s["generation"] == 1 && s["state"] == "ready")
            .await;
        assert_eq!(s["task_id"], format!("task-{i}"));
        let (_, t) = d.get(&format!("/v1/tasks/task-{i}")).await;
        assert_eq!(t["id"], id.as_str());
    }
    for (i, id) in ids.iter().enumerate() {
        let mark = marks.path().join(format!("m{i}"));
        assert!(
            wait_until(T, || mark.exists()).await,
            "queued message of {id} never delivered"
        );
        let q = loop {
            let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
            if q.as_array()
                .unwrap()
                .iter()
                .all(|m| m["state"] != "queued" && m["state"] != "delivering")
            {
                break q;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let states: Vec<_> = q
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(states, ["interrupted", "done"], "{id}");
    }
    // Delivered exactly once: one line per mark file, also a while later.
    for i in 0..10 {
        let mark = marks.path().join(format!("m{i}"));
        assert_eq!(std::fs::read_to_string(&mark).unwrap(), "delivered\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_are_all_stored_with_unique_ids() {
    let d = std::sync::Arc::new(Daemon::start(CONFIG).await);
    let mut tasks = vec![];
    for i in 0..100 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let (st, v) = d
                .post(
                    "/v1/sessions",
                    json!({"command": ["sleep", "1000"], "task_id": format!("p-{i}")}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            v["id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 100, "duplicate ids");
    // Each create answered only after the session was stored.
    let conn = rusqlite::Connection::open_with_flags(
        store_path(&d),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = conn.prepare("SELECT id FROM sessions").unwrap();
    let stored: HashSet<String> = q
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(stored, ids);
    let tasks: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tasks, 100);
}

fn serve_output(data: &std::path::Path) -> (bool, String) {
    let o = Command::new(herd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn fingerprint(p: &std::path::Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(p).unwrap_or_default(),
        std::fs::metadata(p).unwrap().modified().unwrap(),
    )
}

#[test]
fn bad_stores_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("herd.db");

    // Not a database.
    std::fs::write(
        &db,
        b"this is not a database, just some text that happens to be here\n".repeat(100),
    )
    .unwrap();
    let before = fingerprint(&db);
    let (ok, err) = serve_output(&data);
    assert!(!ok);
    assert!(
        err.contains("herd.db") && err.contains("cannot be read"),
        "{err}"
    );
    assert_eq!(fingerprint(&db), before);

    // From a newer herd.
    std::fs::remove_file(&db).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
        .unwrap();
    drop(c);
    let before = fingerprint(&db);
    let (ok, err) = serve_output(&data);
    assert!(!ok);
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
    assert_eq!(fingerprint(&db), before);

    // Locked by another process.
    std::fs::remove_file(&db).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let before = fingerprint(&db);
    let mut locker = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,sys,time\nc=sqlite3.connect({:?}, isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(60)",
            db.display().to_string()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let (ok, err) = serve_output(&data);
    let _ = locker.kill();
    let _ = locker.wait();
    assert!(!ok);
    assert!(err.contains("locked"), "{err}");
    assert_eq!(fingerprint(&db), before);

    // Unreadable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&db).is_err() {
        // (root reads anything: this case only runs for other users)
        let (ok, err) = serve_output(&data);
        assert!(!ok);
        assert!(err.contains("cannot be read"), "{err}");
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fingerprint(&db), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_restarts_in_a_row_lose_nothing() {
    let mut d = Daemon::start(CONFIG).await;
    let live = d
        .create(json!({"command": ["cat"], "task_id": "keep", "name": "live-one"}))
        .await;
    let stopped = d
        .create(json!({"command": ["cat"], "task_id": "gone"}))
        .await;
    let failed = d
        .create(json!({"command": ["sh", "-c", "exit 4"], "restart": {"max_restarts": 0}}))
        .await;
    d.wait_session(&live, T, |s| s["state"] == "ready").await;
    d.req(
        Method::DELETE,
        &format!("/v1/sessions/{stopped}?force=true"),
        None,
    )
    .await;
    d.wait_session(&stopped, T, |s| s["state"] == "stopped")
        .await;
    d.wait_session(&failed, T, |s| s["state"] == "failed").await;
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{live}/messages?wait=true&timeout=20s"),
            json!({"text": "hello"}),
        )
        .await;
    assert_eq!(m["state"], "done", "{m}");
    let mut last_events = 0;
    for round in 1..=20u64 {
        let dir = d.into_dir();
        d = Daemon::start_in(dir, CONFIG).await;
        let s = d.wait_session(&live, T, |s| s["state"] == "ready").await;
        assert_eq!(s["generation"], round, "round {round}");
        assert_eq!(s["task_id"], "keep");
        assert_eq!(s["name"], "live-one");
        let st = d.session(&stopped).await;
        assert_eq!(
            (st["state"].as_str(), st["reason"].as_str()),
            (Some("stopped"), Some("kill requested"))
        );
        let f = d.session(&failed).await;
        assert_eq!(f["state"], "failed");
        assert_eq!(f["exit_code"], 4);
        let (_, q) = d.get(&format!("/v1/sessions/{live}/queue")).await;
        assert_eq!(q.as_array().unwrap().len(), 1, "round {round}: {q}");
        assert!(q[0]["reply"].as_str().unwrap().contains("hello"));
        let conn = rusqlite::Connection::open_with_flags(
            store_path(&d),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let events: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE session_id = ?1",
                [&live],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            events > last_events,
            "round {round}: the event log did not grow"
        );
        last_events = events;
    }
    let (_, all) = d.get("/v1/sessions?all=true").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let o = d.cli(&["ls", "--all"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("failed") && table.contains("stopped"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_pruned_after_the_retention() {
    const RETAIN: &str = "[store]\nretention = \"1ms\"\n";
    let d = Daemon::start(RETAIN).await;
    let id = d
        .create(json!({"command": ["sh", "-c", "exit 0"], "restart": {"policy": "never"}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    let keep = d.create(json!({"command": ["cat"]})).await;
    let path = store_path(&d);
    let d = Daemon::start_in(d.into_dir(), RETAIN).await;
    let (st, _) = d.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let s: Value = d.session(&keep).await;
    assert_eq!(s["generation"], 1);
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE session_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0, "events of a pruned session remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let d = Daemon::start("").await;
    let (ok, err) = serve_output(&d.data_dir());
    assert!(!ok);
    assert!(
        err.contains("another herd daemon") && err.contains(&d.child.id().to_string()),
        "{err}"
    );
}
