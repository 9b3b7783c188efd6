//! Threads do not grow with sessions: 200 live children cost the process no
//! more threads than one does (the PTY core waits in the reactor, not in a
//! thread per child). Its own test binary, so no other test's threads count.

mod common;

use common::*;

/// `Threads:` of /proc/self/status.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_do_not_add_threads() {
    const N: usize = 200;
    let mut defaults = fast_defaults();
    defaults.limits.max_sessions = N + 1;
    let herd = Herd::start(defaults).await;
    // One session first: whatever the first child starts once (the blocking
    // pool's first thread, the signal driver) is counted in the baseline.
    let first = herd.create(sh("exec sleep 600")).await.unwrap().id;
    wait_running(&herd, first, 0).await;
    let base = threads();
    let mut ids = vec![];
    for _ in 1..N {
        ids.push(herd.create(sh("exec sleep 600")).await.unwrap().id);
    }
    for id in &ids {
        wait_running(&herd, *id, 0).await;
    }
    let now = threads();
    eprintln!("threads: {base} with one session, {now} with {N}");
    // A few blocking-pool threads may come and go (metrics, /proc walks);
    // a thread per child would add hundreds.
    assert!(
        now <= base + 16,
        "{N} sessions grew the process from {base} to {now} threads"
    );
    herd.finish().await;
}
