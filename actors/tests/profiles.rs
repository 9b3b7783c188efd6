//! Each profile driven through every state by a real program: the generic
//! profile with `sh` scripts (including an output flood), the shell profile
//! with real bash. (The Claude profile is driven by the fake `claude` in the
//! daemon's `tests/claude.rs`.)

mod common;

use common::*;
use herd_actors::{MessageState, Profile, SessionSpec, SessionState};
use std::time::Duration;

fn generic_path_is_complete(path: &[String]) -> bool {
    ["pending>starting", "starting>busy", "busy>ready"]
        .iter()
        .all(|t| path.iter().any(|p| p == t))
}

#[tokio::test]
async fn generic_goes_busy_on_first_output_and_ready_after_quiet() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    // Prints, then echoes each line it reads, then exits 0 on "bye".
    let script = "echo hello; while read l; do [ \"$l\" = bye ] && exit 0; echo \"got $l\"; done";
    let id = herd.create(sh(script)).await.unwrap().id;
    let events = log
        .wait(id, "starting > busy > ready", |e| {
            generic_path_is_complete(&transitions(e))
        })
        .await;
    let path = transitions(&events);
    assert_eq!(
        &path[..3],
        ["pending>starting", "starting>busy", "busy>ready"],
        "{path:?}"
    );
    let m = herd
        .send_and_wait(id, "one".into(), WAIT)
        .await
        .expect("send");
    assert_eq!(m.state, MessageState::Done, "{m:?}");
    assert!(
        m.reply.as_deref().unwrap_or("").contains("got one"),
        "{m:?}"
    );
    let events = log.of(id);
    let path = transitions(&events);
    assert!(
        path.ends_with(&["ready>busy".into(), "busy>ready".into()]),
        "{path:?}"
    );
    // Input that makes it exit: on-failure does not restart exit 0.
    herd.input(id, "bye\r".into()).await.unwrap();
    let info = wait_final(&herd, id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.reason, "exited with code 0");
    assert_eq!(info.cause, Some(herd_actors::EndCause::Exited { code: 0 }));
    let events = log.of(id);
    let last = events.last().unwrap();
    assert_eq!(last.cause, info.cause, "{last:?}");
    herd.finish().await;
}

#[tokio::test]
async fn generic_flood_is_busy_then_ready_never_stuck_in_starting() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    // 30 MB as fast as the PTY takes it, then silence.
    let id = herd
        .create(sh("head -c 30000000 /dev/zero | tr '\\0' x; exec sleep 60"))
        .await
        .unwrap()
        .id;
    let events = log
        .wait(id, "busy then ready after the flood", |e| {
            transitions(e).iter().any(|t| t == "busy>ready")
        })
        .await;
    let path = transitions(&events);
    assert_eq!(
        &path[..2],
        ["pending>starting", "starting>busy"],
        "{path:?}"
    );
    assert!(herd.get(id).unwrap().info().metrics.bytes_out >= 30_000_000);
    herd.stop(id, false).await.unwrap();
    let info = wait_final(&herd, id).await;
    let path = transitions(&log.of(id));
    assert!(
        path.ends_with(&["ready>stopping".into(), "stopping>stopped".into()]),
        "{path:?}"
    );
    assert_eq!(info.reason, "stop requested");
    herd.finish().await;
}

fn bash() -> Option<SessionSpec> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("bash").is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("bash is not installed: the shell profile test is skipped");
        return None;
    }
    let mut spec = SessionSpec::new(["bash"]);
    spec.profile = Profile::Shell;
    // An empty home: the user's own rc must not shape the test.
    let home = std::env::temp_dir().join(format!("herd-shell-home-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&home).ok()?;
    spec.env.insert("HOME".into(), home.display().to_string());
    Some(spec)
}

#[tokio::test]
async fn shell_replies_are_the_commands_output_and_status() {
    let Some(spec) = bash() else { return };
    let home = spec.env["HOME"].clone();
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let id = herd.create(spec).await.unwrap().id;
    wait_info(&herd, id, "ready at the prompt", |i| {
        i.state == SessionState::Ready
    })
    .await;
    let path = transitions(&log.of(id));
    assert!(
        path.iter()
            .any(|p| p == "starting>ready" || p == "busy>ready"),
        "{path:?}"
    );

    let m = herd
        .send_and_wait(id, "echo hello; (exit 3)".into(), WAIT)
        .await
        .unwrap();
    assert_eq!(m.state, MessageState::Done, "{m:?}");
    assert_eq!(m.reply.as_deref(), Some("hello\n"), "{m:?}");
    assert_eq!(m.exit_code, Some(3));

    let m = herd
        .send_and_wait(id, "printf 'a\\nb'; true".into(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        (m.reply.as_deref(), m.exit_code),
        (Some("a\nb"), Some(0)),
        "{m:?}"
    );

    // A comment runs no command: done, empty.
    let m = herd
        .send_and_wait(id, "# nothing".into(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        (m.state, m.reply.as_deref()),
        (MessageState::Done, Some("")),
        "{m:?}"
    );

    // Busy while a command runs; an interrupt ends it (status 130) and the
    // shell is back at its prompt.
    let sent = herd.send(id, "sleep 30".into()).await.unwrap();
    wait_info(&herd, id, "busy while sleep runs", |i| {
        i.state == SessionState::Busy
    })
    .await;
    let pid = herd.get(id).unwrap().info().pid.unwrap();
    wait_until(WAIT, "sleep to run under bash", || {
        !named_in_tree(pid, "sleep").is_empty()
    })
    .await;
    herd.interrupt(id).await.unwrap();
    let handle = herd.get(id).unwrap();
    let m = handle.wait_message(sent.id, WAIT).await.unwrap();
    assert_eq!(
        (m.state, m.exit_code),
        (MessageState::Done, Some(130)),
        "{m:?}"
    );
    wait_info(&herd, id, "ready after the interrupt", |i| {
        i.state == SessionState::Ready
    })
    .await;

    herd.stop(id, false).await.unwrap();
    let info = wait_final(&herd, id).await;
    assert_eq!(info.state, SessionState::Stopped);
    herd.finish().await;
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test]
async fn an_unmarked_shell_falls_back_to_quiet() {
    let herd = Herd::start(fast_defaults()).await;
    // `bash -c` runs a command: no prompts to mark; the generic rules apply.
    let mut spec = SessionSpec::new(["bash", "-c", "echo up; read l; echo \"got $l\"; sleep 60"]);
    spec.profile = Profile::Shell;
    let id = herd.create(spec).await.unwrap().id;
    wait_info(&herd, id, "ready after quiet", |i| {
        i.state == SessionState::Ready
    })
    .await;
    let m = herd
        .send_and_wait(id, "x".into(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(m.reply.as_deref().unwrap_or("").contains("got x"), "{m:?}");
    assert_eq!(m.exit_code, None);
    herd.finish().await;
}
