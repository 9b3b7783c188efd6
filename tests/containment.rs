//! Containment through the daemon: it is the child subreaper of its
//! sessions, so a grandchild that double-forks with `setsid` is adopted by
//! the daemon (not init), killed with its session and reaped; after a
//! `kill -9` of the daemon, the next one kills what the sessions left.

mod common;

use common::Daemon;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn escaper(dir: &Path) -> String {
    format!(
        "(setsid sh -c 'sleep 600 & echo $$ $! > {d}/esc.tmp; mv {d}/esc.tmp {d}/esc; wait' &); exec sleep 600",
        d = dir.display()
    )
}

async fn escaped(dir: &Path) -> Vec<i32> {
    let file = dir.join("esc");
    assert!(
        common::wait_until(Duration::from_secs(20), || file.exists()).await,
        "the escaper never wrote its pids"
    );
    std::fs::read_to_string(&file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_adopts_kills_and_reaps_detached_grandchildren() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["sh", "-c", escaper(work.path())]}))
        .await;
    let pids = escaped(work.path()).await;
    let daemon = d.child.id() as i32;
    // The setsid'd shell's parent (the subshell) exits at once: it is adopted by the daemon.
    assert!(
        common::wait_until(Duration::from_secs(10), || ppid(pids[0]) == Some(daemon)).await,
        "the escaped shell was not adopted by the daemon (ppid {:?})",
        ppid(pids[0])
    );
    let (st, v) = d
        .req(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert!(st.is_success(), "{v}");
    // Killed, then reaped by the daemon: no zombie is left.
    assert!(
        common::wait_until(Duration::from_secs(20), || pids.iter().all(|p| gone(*p))).await,
        "escaped processes left: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_daemon_kills_what_sessions_left() {
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::start("").await;
    d.create(
        json!({"command": ["sh", "-c", escaper(work.path())], "restart": {"policy": "never"}}),
    )
    .await;
    let pids = escaped(work.path()).await;
    d.kill9();
    // The session's processes outlive the daemon that crashed...
    for p in &pids {
        assert!(common::alive(*p as i64), "{p} died with the daemon");
    }
    let dir = d.into_dir();
    // ...and the next daemon kills them at recovery.
    let _d = Daemon::start_in(dir, "").await;
    let dead = common::wait_until(Duration::from_secs(20), || {
        pids.iter().all(|p| !common::alive(*p as i64))
    })
    .await;
    if !dead {
        for p in &pids {
            herd_actors::process::signal(*p, libc::SIGKILL);
        }
    }
    assert!(dead, "escaped processes survived recovery: {pids:?}");
}
