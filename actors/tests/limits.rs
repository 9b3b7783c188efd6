//! Limits: idle timeout, max duration, max sessions and max memory, each
//! ending (or refusing) a session with a reason that names it.

mod common;

use common::*;
use herd_actors::{ByteSize, HerdError, RestartPolicy, SessionState};
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_stops_a_silent_session_only() {
    let herd = Herd::start(fast_defaults()).await;
    let idle = Duration::from_millis(300);
    let mut spec = sh("sleep 1000");
    spec.limits.idle_timeout = Some(idle);
    let silent = herd.create(spec).await.unwrap();
    let mut spec = sh("while true; do echo chat; sleep 0.05; done");
    spec.limits.idle_timeout = Some(Duration::from_secs(1));
    let chatty = herd.create(spec).await.unwrap();

    let info = wait_final(&herd, silent.id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.reason, "idle_timeout");
    let lived = info.updated_at.duration_since(info.created_at).unwrap();
    assert!(lived >= idle, "stopped after {lived:?}");

    // Output is activity: the chatty session outlives its own idle timeout.
    // 40 lines take at least 40 x 50 ms = 2 s, twice that timeout.
    wait_until(WAIT, "40 lines of chat", || {
        output_text(&herd, chatty.id).matches("chat").count() >= 40
    })
    .await;
    let c = snapshot(&herd, chatty.id);
    assert!(is_up(c.state), "{c:?}");
    assert_eq!(c.generation, 0);
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_stops_even_a_busy_session() {
    let herd = Herd::start(fast_defaults()).await;
    let max = Duration::from_millis(500);
    let mut spec = sh("while true; do echo busy; sleep 0.05; done");
    spec.limits.max_duration = Some(max);
    spec.limits.idle_timeout = Some(Duration::ZERO);
    let s = herd.create(spec).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.reason, "max_duration");
    let lived = info.updated_at.duration_since(info.created_at).unwrap();
    assert!(lived >= max, "stopped after {lived:?}");
    assert!(info.metrics.bytes_out > 0);
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_the_next_session() {
    let mut defaults = fast_defaults();
    defaults.limits.max_sessions = 2;
    let herd = Herd::start(defaults).await;
    let a = herd.create(sh("sleep 1000")).await.unwrap();
    let _b = herd.create(sh("sleep 1000")).await.unwrap();
    let err = herd.create(sh("sleep 1000")).await.unwrap_err();
    assert_eq!(err, HerdError::LimitReached { max: 2 });
    assert!(err.to_string().contains("limits.max_sessions"), "{err}");
    assert_eq!(
        herd.list(&all()).len(),
        2,
        "a refused session must not be added"
    );

    // Final sessions do not count against the limit.
    herd.stop(a.id, true).await.unwrap();
    wait_final(&herd, a.id).await;
    let c = herd.create(sh("sleep 1000")).await.unwrap();
    wait_running(&herd, c.id, 0).await;
    assert_eq!(herd.live_count(), 2);
    herd.finish().await;
}

/// A shell that holds about 4 MB in a variable, then waits.
const HOG: &str = r"x=$(head -c 4000000 /dev/zero | tr '\0' a); sleep 1000; echo ${#x}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_memory_kills_and_the_policy_restarts() {
    let mut defaults = fast_defaults();
    defaults.metrics.sample_interval = Duration::from_millis(100);
    let herd = Herd::start(defaults).await;
    let log = EventLog::start(&herd);
    let mut spec = sh_with(HOG, RestartPolicy::OnFailure);
    spec.limits.max_memory = Some(ByteSize(1 << 20));
    let hog = herd.create(spec).await.unwrap();
    // The same program under a generous limit is left alone.
    let mut spec = sh_with(HOG, RestartPolicy::OnFailure);
    spec.limits.max_memory = Some(ByteSize(1 << 30));
    let fine = herd.create(spec).await.unwrap();

    let events = log
        .wait(hog.id, "a restart for max_memory", |ev| {
            ev.iter()
                .any(|e| e.to == SessionState::Starting && e.generation == 1)
        })
        .await;
    let restarting = events
        .iter()
        .find(|e| e.to == SessionState::Restarting)
        .unwrap();
    assert_eq!(restarting.reason, "max_memory");
    assert_eq!(restarting.generation, 0);
    let info = snapshot(&herd, hog.id);
    assert!(info.generation >= 1);
    assert!(info.metrics.errors >= 1, "a max_memory kill is a failure");

    wait_until(WAIT, "the generous session's memory to be sampled", || {
        snapshot(&herd, fine.id).metrics.rss_bytes > 4_000_000
    })
    .await;
    let f = snapshot(&herd, fine.id);
    assert_eq!(f.generation, 0, "{f:?}");
    assert!(is_up(f.state), "{f:?}");
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_memory_under_policy_never_stops_the_session() {
    let mut defaults = fast_defaults();
    defaults.metrics.sample_interval = Duration::from_millis(100);
    let herd = Herd::start(defaults).await;
    let mut spec = sh_with(HOG, RestartPolicy::Never);
    spec.limits.max_memory = Some(ByteSize(1 << 20));
    // The child is killed before it ever looks ready.
    spec.limits.quiet_after = Some(Duration::from_secs(30));
    let t0 = SystemTime::now();
    let s = herd.create(spec).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.reason, "max_memory");
    assert_eq!(info.state, SessionState::Stopped, "{info:?}");
    assert_eq!(info.exit_signal, Some(libc::SIGKILL));
    assert_eq!(info.generation, 0);
    assert!(info.updated_at >= t0);
    herd.finish().await;
}
