//! Child-process restarts: each policy does what its name says, the backoff
//! grows, caps and resets, and exceeding the restart intensity fails only
//! the session concerned.

mod common;

use common::*;
use herd_actors::{RestartPolicy, SessionState};
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_clean_and_failed_exits() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let clean = herd
        .create(sh_with("exit 0", RestartPolicy::Always))
        .await
        .unwrap();
    let failed = herd
        .create(sh_with("exit 3", RestartPolicy::Always))
        .await
        .unwrap();
    for (id, code) in [(clean.id, 0), (failed.id, 3)] {
        let info = wait_info(&herd, id, "two restarts", |i| i.generation >= 2).await;
        assert!(!info.state.is_final(), "{info:?}");
        assert_eq!(info.exit_code, Some(code));
        assert!(info.restarts >= 2);
        let reason = format!("exited with code {code}");
        log.wait(id, &format!("a restart after {reason:?}"), |ev| {
            ev.iter()
                .any(|e| e.to == SessionState::Restarting && e.reason == reason)
        })
        .await;
        log.wait(id, "the start of generation 1", |ev| {
            ev.iter().any(|e| {
                e.to == SessionState::Starting && e.generation == 1 && e.reason == "restart"
            })
        })
        .await;
    }
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_only_failures() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let clean = herd
        .create(sh_with("exit 0", RestartPolicy::OnFailure))
        .await
        .unwrap();
    let failed = herd
        .create(sh_with("exit 3", RestartPolicy::OnFailure))
        .await
        .unwrap();
    let signalled = herd
        .create(sh_with("kill -TERM $$", RestartPolicy::OnFailure))
        .await
        .unwrap();

    let info = wait_final(&herd, clean.id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.exit_code, Some(0));
    assert_eq!((info.generation, info.restarts), (0, 0));
    assert_eq!(info.reason, "exited with code 0");
    let events = log.of(clean.id);
    assert!(
        events.iter().all(|e| e.to != SessionState::Restarting),
        "{:?}",
        transitions(&events)
    );

    let info = wait_info(&herd, failed.id, "a restart after exit 3", |i| {
        i.generation >= 1
    })
    .await;
    assert_eq!(info.exit_code, Some(3));
    log.wait(failed.id, "restarting after exit 3", |ev| {
        ev.iter()
            .any(|e| e.to == SessionState::Restarting && e.reason == "exited with code 3")
    })
    .await;

    let info = wait_info(&herd, signalled.id, "a restart after SIGTERM", |i| {
        i.generation >= 1
    })
    .await;
    assert_eq!(info.exit_signal, Some(libc::SIGTERM));
    log.wait(signalled.id, "restarting after a signal", |ev| {
        ev.iter().any(|e| {
            e.to == SessionState::Restarting
                && e.reason == format!("killed by signal {}", libc::SIGTERM)
        })
    })
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_stops_after_any_exit() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let mut ids = Vec::new();
    for code in [0, 3] {
        let mut spec = sh_with(&format!("exit {code}"), RestartPolicy::Never);
        // Long enough that the child never looks ready: the transitions are exact.
        spec.limits.quiet_after = Some(Duration::from_secs(30));
        ids.push((herd.create(spec).await.unwrap().id, code));
    }
    for (id, code) in ids {
        let info = wait_final(&herd, id).await;
        assert_eq!(info.state, SessionState::Stopped, "{info:?}");
        assert_eq!(info.exit_code, Some(code));
        assert_eq!(info.reason, format!("exited with code {code}"));
        assert_eq!((info.generation, info.restarts), (0, 0));
        assert_eq!(info.pid, None);
        let events = log
            .wait(id, "the stopped event", |ev| {
                ev.iter().any(|e| e.to == SessionState::Stopped)
            })
            .await;
        assert_eq!(
            transitions(&events),
            ["pending>starting", "starting>stopping", "stopping>stopped"]
        );
    }
    herd.finish().await;
}

/// Time between each `restarting` event and the `starting` event of the next
/// generation, from the events' own timestamps.
fn restart_delays(events: &[herd_actors::Event]) -> Vec<Duration> {
    let mut delays = Vec::new();
    for r in events.iter().filter(|e| e.to == SessionState::Restarting) {
        if let Some(s) = events
            .iter()
            .find(|e| e.to == SessionState::Starting && e.generation == r.generation + 1)
        {
            let d = s.at.duration_since(r.at).unwrap_or_default();
            delays.push(d);
        }
    }
    delays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_doubles_caps_and_resets_after_a_stable_run() {
    let mut defaults = fast_defaults();
    defaults.restart.max_restarts = 20;
    defaults.restart.backoff_initial = Duration::from_millis(50);
    defaults.restart.backoff_max = Duration::from_millis(400);
    defaults.restart.backoff_reset_after = Duration::from_secs(1);
    let herd = Herd::start(defaults).await;
    let log = EventLog::start(&herd);
    // Runs 1-5 and 7+ fail at once; run 6 is stable for longer than
    // backoff_reset_after before it fails.
    let counter = TempPath::new("herd-backoff");
    let mut spec = sh_with(
        r#"n=$(cat "$COUNTER" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNTER";
           if [ "$n" -eq 6 ]; then sleep 1.5; fi; exit 1"#,
        RestartPolicy::OnFailure,
    );
    spec.env
        .insert("COUNTER".into(), counter.0.display().to_string());
    let s = herd.create(spec).await.unwrap();
    let events = log
        .wait(s.id, "seven restarts", |ev| restart_delays(ev).len() >= 7)
        .await;
    herd.stop(s.id, true).await.ok();
    let d: Vec<u128> = restart_delays(&events)
        .iter()
        .map(|d| d.as_millis())
        .collect();
    let ms = |n| Duration::from_millis(n).as_millis();
    // 50, 100, 200, 400 doubling, then capped at 400 (800 without the cap).
    for (i, expected) in [50, 100, 200, 400, 400].into_iter().enumerate() {
        assert!(d[i] >= ms(expected), "delay {i} is {}ms: {d:?}", d[i]);
    }
    assert!(d[4] < ms(800), "backoff_max not applied: {d:?}");
    // Run 6 ran 1.5s > backoff_reset_after: back to 50 (400 without the reset),
    // then doubling again.
    assert!(d[5] >= ms(50) && d[5] < ms(400), "no reset: {d:?}");
    assert!(
        d[6] >= ms(100) && d[6] < ms(400),
        "no doubling after reset: {d:?}"
    );
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_intensity_exceeded_fails_only_that_session() {
    let herd = Herd::start(fast_defaults()).await;
    let mut bystanders = Vec::new();
    for _ in 0..2 {
        let s = herd.create(sh(TICKER)).await.unwrap();
        bystanders.push(wait_running(&herd, s.id, 0).await);
    }
    let mut spec = sh_with("exit 1", RestartPolicy::Always);
    spec.restart.max_restarts = Some(3);
    spec.restart.restart_window = Some(Duration::from_secs(60));
    spec.restart.backoff_initial = Some(Duration::from_millis(10));
    spec.restart.backoff_max = Some(Duration::from_millis(100));
    let crasher = herd.create(spec).await.unwrap();

    let info = wait_final(&herd, crasher.id).await;
    assert_eq!(info.state, SessionState::Failed, "{info:?}");
    assert!(
        info.reason.contains("restart intensity exceeded"),
        "{}",
        info.reason
    );
    assert!(
        info.reason.contains("more than 3 restarts"),
        "{}",
        info.reason
    );
    assert_eq!((info.generation, info.restarts), (3, 3));
    assert_eq!(info.exit_code, Some(1));
    assert_eq!(info.pid, None);

    for before in &bystanders {
        let now = snapshot(&herd, before.id);
        assert_eq!(now.pid, before.pid, "a bystander was restarted");
        assert_eq!(now.generation, 0);
        assert!(is_up(now.state), "{now:?}");
    }
    // The registry itself is unaffected: it still takes new sessions.
    let next = herd.create(sh(TICKER)).await.unwrap();
    wait_running(&herd, next.id, 0).await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_restart_replaces_the_child() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let s = herd.create(sh(TICKER)).await.unwrap();
    let before = wait_running(&herd, s.id, 0).await;
    let old = Proc::of(before.pid.unwrap()).unwrap();
    let t0 = SystemTime::now();
    herd.restart(s.id).await.unwrap();
    let after = wait_running(&herd, s.id, 1).await;
    assert_ne!(after.pid, before.pid);
    assert_eq!(after.restarts, 1);
    wait_until(WAIT, "the old child to be gone", || !old.alive()).await;
    let events = log
        .wait(s.id, "the restarting event", |ev| {
            ev.iter().any(|e| e.to == SessionState::Restarting)
        })
        .await;
    let r = events
        .iter()
        .find(|e| e.to == SessionState::Restarting)
        .unwrap();
    assert_eq!(r.reason, "restart requested");
    assert!(r.at >= t0);
    // A requested restart is not a failure.
    assert_eq!(snapshot(&herd, s.id).metrics.errors, 0);
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_execute_fails_after_its_restart_budget() {
    use std::os::unix::fs::PermissionsExt;
    let herd = Herd::start(fast_defaults()).await;
    // Passes validation (an executable file) but exec fails: bad interpreter.
    let script = TempPath::new("herd-bad-interp");
    std::fs::write(&script.0, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = script.0.display().to_string();

    let mut spec = herd_actors::SessionSpec::new([program.as_str()]);
    spec.restart.max_restarts = Some(2);
    let s = herd.create(spec).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.state, SessionState::Failed, "{info:?}");
    assert!(
        info.reason.contains("restart intensity exceeded"),
        "{}",
        info.reason
    );
    assert_eq!((info.generation, info.restarts), (2, 2));
    assert_eq!(info.metrics.errors, 3, "every failed run counts");
    herd.finish().await;
}
