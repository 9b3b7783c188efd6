//! Fault isolation: a killed child or a panicking SessionActor is restarted
//! alone while every other session keeps its child and its output; stopping
//! a session leaves none of its processes behind.

mod common;

use common::*;
use herd_actors::process;
use herd_actors::{RestartPolicy, SessionSpec, SessionState};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_children_restart_alone_while_others_keep_running() {
    let mut defaults = fast_defaults();
    defaults.limits.max_sessions = 25;
    let herd = Herd::start(defaults).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(herd.create(sh(TICKER)).await.unwrap().id);
    }
    let mut first = HashMap::new();
    for id in &ids {
        first.insert(*id, wait_running(&herd, *id, 0).await);
    }
    let (victims, others) = ids.split_at(5);
    let bytes_before: HashMap<_, _> = others
        .iter()
        .map(|id| (*id, snapshot(&herd, *id).metrics.bytes_out))
        .collect();

    for round in 1..=3u64 {
        let mut killed = Vec::new();
        for id in victims {
            let info = snapshot(&herd, *id);
            assert_eq!(info.generation, round - 1);
            let pid = info.pid.expect("a running child has a pid");
            killed.push(Proc::of(pid).expect("the child exists"));
            // SAFETY: plain syscall; the pid is the session's live child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        }
        for (id, old) in victims.iter().zip(&killed) {
            let info = wait_running(&herd, *id, round).await;
            assert_ne!(info.pid, Some(old.pid), "round {round}: same pid");
            assert_eq!(info.restarts, round);
            assert_eq!(info.exit_signal, Some(libc::SIGKILL));
        }
        for old in &killed {
            wait_until(WAIT, "the killed child to be reaped", || !old.alive()).await;
        }
        for id in others {
            let now = snapshot(&herd, *id);
            assert_eq!(
                now.pid, first[id].pid,
                "round {round}: a bystander was restarted"
            );
            assert_eq!(now.generation, 0);
            assert!(is_up(now.state), "{now:?}");
        }
    }

    // The bystanders' output kept flowing through all of it.
    wait_until(WAIT, "output of every bystander to grow", || {
        others.iter().all(|id| {
            let h = herd.get(*id).unwrap();
            h.info().metrics.bytes_out > bytes_before[id]
                && h.output(0, usize::MAX).end > bytes_before[id]
        })
    })
    .await;
    for id in others {
        assert!(output_text(&herd, *id).contains("tick"));
    }
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_session_actor_is_restarted_and_its_child_killed() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let target = herd.create(SessionSpec::new(["cat"])).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        let s = herd.create(sh(TICKER)).await.unwrap();
        others.push(s.id);
    }
    let before = wait_running(&herd, target.id, 0).await;
    let mut others_before = Vec::new();
    for id in &others {
        others_before.push(wait_running(&herd, *id, 0).await);
    }
    let old = Proc::of(before.pid.unwrap()).unwrap();

    herd.inject_panic(target.id).unwrap();

    let after = wait_running(&herd, target.id, 1).await;
    assert_ne!(after.pid, before.pid);
    assert!(after.metrics.errors >= 1, "{:?}", after.metrics);
    wait_until(WAIT, "the old child of the panicked actor to die", || {
        !old.alive()
    })
    .await;
    log.wait(target.id, "a restart naming the panic", |ev| {
        ev.iter().any(|e| {
            e.to == SessionState::Restarting
                && e.reason.contains("session actor failed")
                && e.reason.contains("injected panic")
        })
    })
    .await;
    // The new actor is wired up: commands reach the new child.
    herd.input(target.id, "after-panic\r".into()).await.unwrap();
    wait_output(&herd, target.id, "after-panic").await;

    for b in &others_before {
        let now = snapshot(&herd, b.id);
        assert_eq!(now.pid, b.pid, "a bystander's child changed");
        assert_eq!(now.generation, 0);
        assert!(is_up(now.state), "{now:?}");
        assert!(log
            .of(b.id)
            .iter()
            .all(|e| e.to != SessionState::Restarting));
    }
    herd.finish().await;
}

/// Waits until the session's tree holds `n` sleep processes; returns every
/// process of the tree.
async fn tree_with_sleeps(herd: &Herd, id: uuid::Uuid, n: usize) -> Vec<Proc> {
    let pid = wait_running(herd, id, 0).await.pid.unwrap();
    wait_until(WAIT, format!("{n} sleep processes under {pid}"), || {
        named_in_tree(pid, "sleep").len() == n
    })
    .await;
    process::tree(pid)
        .into_iter()
        .filter_map(Proc::of)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_grandchildren_too() {
    let herd = Herd::start(fast_defaults()).await;
    // One background sleep in the group, one that left it with setsid, one in the foreground.
    let s = herd
        .create(sh("sleep 1000 & setsid sleep 1000 & sleep 1000"))
        .await
        .unwrap();
    let procs = tree_with_sleeps(&herd, s.id, 3).await;
    let root = procs[0].pid;
    assert!(procs.len() >= 3, "{procs:?}");
    assert!(
        procs.iter().any(|p| proc_sid(p.pid) != Some(root)),
        "no process left the session: {procs:?}"
    );

    let r = herd.stop(s.id, false).await.unwrap();
    assert!(
        matches!(r.state, SessionState::Stopping | SessionState::Stopped),
        "{r:?}"
    );
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.reason, "stop requested");
    assert_eq!(info.pid, None);
    wait_until(WAIT, "every process of the tree to be gone", || {
        procs.iter().all(|p| !p.alive())
    })
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_escalates_to_sigkill_after_the_grace() {
    let herd = Herd::start(fast_defaults()).await;
    let grace = Duration::from_millis(300);
    // SIGTERM and SIGHUP are ignored by the shell and (inherited) by its children.
    let mut spec = sh("trap '' TERM HUP; sleep 1000 & sleep 1000");
    spec.limits.stop_grace = Some(grace);
    let s = herd.create(spec).await.unwrap();
    let procs = tree_with_sleeps(&herd, s.id, 2).await;

    let t0 = Instant::now();
    herd.stop(s.id, false).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert!(t0.elapsed() >= grace, "stopped before the grace ended");
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.exit_signal, Some(libc::SIGKILL));
    wait_until(WAIT, "every process of the tree to be gone", || {
        procs.iter().all(|p| !p.alive())
    })
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_stop_skips_the_grace() {
    let herd = Herd::start(fast_defaults()).await;
    let mut spec = sh_with(
        "trap '' TERM HUP; sleep 1000 & sleep 1000",
        RestartPolicy::Always,
    );
    // Far longer than the wait below: only an immediate SIGKILL stops it in time.
    spec.limits.stop_grace = Some(Duration::from_secs(600));
    let s = herd.create(spec).await.unwrap();
    let procs = tree_with_sleeps(&herd, s.id, 2).await;
    herd.stop(s.id, true).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.state, SessionState::Stopped, "{info:?}");
    assert_eq!(info.reason, "kill requested");
    assert_eq!(
        info.generation, 0,
        "policy always must not restart a stopped session"
    );
    wait_until(WAIT, "every process of the tree to be gone", || {
        procs.iter().all(|p| !p.alive())
    })
    .await;
    herd.finish().await;
}
