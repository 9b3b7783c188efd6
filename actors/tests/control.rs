//! Driving a running session: input reaches the child, resize reaches its
//! terminal, suspend/resume stop and continue the process tree, interrupt
//! ends the foreground job only.

mod common;

use common::*;
use herd_actors::{HerdError, SessionSpec, SessionState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_reaches_cat_and_sh() {
    let herd = Herd::start(fast_defaults()).await;
    let cat = herd.create(SessionSpec::new(["cat"])).await.unwrap();
    let shell = herd.create(SessionSpec::new(["sh", "-i"])).await.unwrap();
    wait_running(&herd, cat.id, 0).await;
    wait_running(&herd, shell.id, 0).await;

    let r = herd.input(cat.id, "hello-cat\r".into()).await.unwrap();
    assert_eq!(r.metrics.bytes_in, 10);
    assert_eq!(r.metrics.inputs, 1);
    // Once echoed by the terminal, once written back by cat.
    wait_until(WAIT, "cat to write the line back", || {
        output_text(&herd, cat.id).matches("hello-cat").count() == 2
    })
    .await;

    // The shell computes the answer: the input was executed, not just echoed.
    herd.input(shell.id, "echo sum-$((40+2))\r".into())
        .await
        .unwrap();
    wait_output(&herd, shell.id, "sum-42").await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_reaches_the_terminal() {
    let herd = Herd::start(fast_defaults()).await;
    let s = herd.create(SessionSpec::new(["sh", "-i"])).await.unwrap();
    wait_running(&herd, s.id, 0).await;
    let r = herd.resize(s.id, 77, 21).await.unwrap();
    assert_eq!((r.cols, r.rows), (77, 21));
    herd.input(s.id, "stty size\r".into()).await.unwrap();
    wait_output(&herd, s.id, "21 77").await;
    match herd.resize(s.id, 0, 10).await {
        Err(HerdError::Invalid { field, .. }) => assert_eq!(field, "cols"),
        other => panic!("expected invalid cols, got {other:?}"),
    }
    assert_eq!(snapshot(&herd, s.id).cols, 77);
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_stop_and_continue_the_tree() {
    let herd = Herd::start(fast_defaults()).await;
    let log = EventLog::start(&herd);
    let s = herd.create(sh(TICKER)).await.unwrap();
    let pid = wait_running(&herd, s.id, 0).await.pid.unwrap();
    wait_output(&herd, s.id, "tick").await;

    let r = herd.suspend(s.id).await.unwrap();
    assert_eq!(r.state, SessionState::Suspended);
    wait_until(WAIT, "the whole tree to be stopped", || {
        // The shell itself is stopped; its children are stopped, or exited
        // and wait (as zombies) for the stopped shell to reap them. A shell
        // caught in vfork() waits uninterruptibly ('D') for its child, which
        // is stopped before its exec: it cannot run either (dash vforks).
        let tree = herd_actors::process::tree(pid);
        let child_stopped = tree.iter().any(|p| proc_state(*p) == Some('T'));
        let shell = proc_state(pid);
        (shell == Some('T') || (shell == Some('D') && child_stopped))
            && tree
                .iter()
                .all(|p| matches!(proc_state(*p), Some('T') | Some('Z') | None))
    })
    .await;
    assert!(matches!(
        herd.suspend(s.id).await,
        Err(HerdError::Conflict {
            state: SessionState::Suspended,
            ..
        })
    ));

    let r = herd.resume(s.id).await.unwrap();
    let events = log
        .wait(s.id, "the resume event", |ev| {
            ev.iter().any(|e| e.from == SessionState::Suspended)
        })
        .await;
    let suspended = events
        .iter()
        .find(|e| e.to == SessionState::Suspended)
        .expect("a suspended event");
    assert_eq!(suspended.reason, "suspend requested");
    // Back to where it was.
    assert_eq!(r.state, suspended.from);
    let resumed = events
        .iter()
        .find(|e| e.from == SessionState::Suspended)
        .unwrap();
    assert_eq!(
        (resumed.from, resumed.to, resumed.reason.as_str()),
        (SessionState::Suspended, suspended.from, "resume requested")
    );
    wait_until(WAIT, "the child to run again", || {
        proc_state(pid) != Some('T')
    })
    .await;
    let bytes = snapshot(&herd, s.id).metrics.bytes_out;
    wait_until(WAIT, "output to flow again", || {
        snapshot(&herd, s.id).metrics.bytes_out > bytes
    })
    .await;
    assert_eq!(snapshot(&herd, s.id).pid, Some(pid));
    assert!(matches!(
        herd.resume(s.id).await,
        Err(HerdError::Conflict { .. })
    ));
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_ends_the_foreground_job_only() {
    let herd = Herd::start(fast_defaults()).await;
    let s = herd.create(SessionSpec::new(["sh", "-i"])).await.unwrap();
    let shell = wait_running(&herd, s.id, 0).await.pid.unwrap();
    herd.input(s.id, "sleep 100\r".into()).await.unwrap();
    wait_until(WAIT, "sleep to start under the shell", || {
        named_in_tree(shell, "sleep").len() == 1
    })
    .await;
    let sleep = Proc::of(named_in_tree(shell, "sleep")[0]).unwrap();

    herd.interrupt(s.id).await.unwrap();
    wait_until(WAIT, "the interrupted sleep to end", || !sleep.alive()).await;

    // The shell survived and still takes commands.
    let info = snapshot(&herd, s.id);
    assert_eq!(info.pid, Some(shell));
    assert_eq!(info.generation, 0);
    assert!(is_up(info.state), "{info:?}");
    herd.input(s.id, "echo after-$((2+3))\r".into())
        .await
        .unwrap();
    wait_output(&herd, s.id, "after-5").await;
    herd.finish().await;
}
