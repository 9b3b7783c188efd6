//! Output: the tail of a child that exits at once is never lost, the live
//! subscription continues the buffer without gap or overlap, the screen shows
//! what the child drew, and the output log spans restarts.

mod common;

use common::*;
use herd_actors::{RestartPolicy, SessionState};
use std::time::Duration;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_output_of_a_child_that_exits_at_once_is_never_lost() {
    const RUNS: usize = 200;
    const BATCH: usize = 25;
    let mut defaults = fast_defaults();
    defaults.limits.max_sessions = BATCH;
    let herd = Herd::start(defaults).await;
    let mut lost = Vec::new();
    for batch in (0..RUNS).collect::<Vec<_>>().chunks(BATCH) {
        let mut tasks = JoinSet::new();
        for &i in batch {
            let reg = herd.reg.clone();
            tasks.spawn(async move {
                // Half end with a newline, half without one.
                let script = if i % 2 == 0 {
                    format!("echo last-line-{i}")
                } else {
                    format!("printf last-line-{i}")
                };
                let s = reg
                    .create(sh_with(&script, RestartPolicy::Never))
                    .await
                    .unwrap();
                let info = wait_final(&reg, s.id).await;
                assert_eq!(info.state, SessionState::Stopped, "{info:?}");
                assert_eq!(info.exit_code, Some(0), "{info:?}");
                let out = output_text(&reg, s.id);
                reg.remove(s.id).await.unwrap();
                assert!(reg.get(s.id).is_none());
                (i, out)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, out) = r.unwrap();
            if !out.contains(&format!("last-line-{i}")) {
                lost.push((i, out));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {RUNS} lost their output: {lost:?}",
        lost.len()
    );
    assert!(herd.list(&all()).is_empty());
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscription_continues_the_buffer_without_gap_or_overlap() {
    let herd = Herd::start(fast_defaults()).await;
    let s = herd
        .create(sh(
            "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.03; done",
        ))
        .await
        .unwrap();
    wait_output(&herd, s.id, "line-3\r\n").await;
    let handle = herd.get(s.id).unwrap();
    let (slice, mut rx) = handle.subscribe_output(None);
    assert_eq!(slice.start, 0);
    assert!(!slice.truncated);
    let mut text = slice.data.clone();
    let mut next = slice.end;
    let mut chunks = 0;
    while chunks < 8 || !text.ends_with(b"\n") {
        let chunk = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("live output arrives")
            .expect("no lag, no close");
        assert_eq!(chunk.offset, next, "gap or overlap in the live output");
        next += chunk.data.len() as u64;
        text.extend_from_slice(&chunk.data);
        chunks += 1;
    }
    // The live bytes are exactly the buffered ones.
    let again = handle.output(0, next as usize);
    assert_eq!(again.end, next);
    assert_eq!(again.data, text);
    // And every line is there once, in order.
    let text = String::from_utf8(text).unwrap();
    let numbers: Vec<u32> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.strip_prefix("line-"))
        .map(|n| n.parse().unwrap())
        .collect();
    let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
    assert_eq!(numbers, expected);
    assert!(numbers.len() >= 10, "{numbers:?}");
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_shows_what_printf_drew() {
    let herd = Herd::start(fast_defaults()).await;
    let mut spec = sh(
        r"printf '\033[2J\033[Htop-left\033[5;10Hmiddle\033[3;1Hthird\033[3;3HX'; exec sleep 1000",
    );
    spec.cols = 40;
    spec.rows = 8;
    let s = herd.create(spec).await.unwrap();
    let handle = herd.get(s.id).unwrap();
    wait_until(WAIT, "the drawing on the screen", || {
        handle.screen_text().contains("middle")
    })
    .await;
    let screen = handle.screen_text();
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines[0], "top-left", "{screen:?}");
    assert_eq!(lines[1], "");
    // `X` overwrote the third column of `third`.
    assert_eq!(lines[2], "thXrd", "{screen:?}");
    assert_eq!(lines[4], format!("{}middle", " ".repeat(9)), "{screen:?}");
    // The raw output holds the escape sequences, the screen does not.
    assert!(output_text(&herd, s.id).contains("\x1b[5;10H"));
    assert!(!screen.contains('\x1b'));
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_log_spans_restarts() {
    let herd = Herd::start(fast_defaults()).await;
    let mut spec = sh_with("echo run-$$; exit 1", RestartPolicy::OnFailure);
    spec.restart.max_restarts = Some(2);
    let s = herd.create(spec).await.unwrap();
    let info = wait_final(&herd, s.id).await;
    assert_eq!(info.state, SessionState::Failed, "{info:?}");
    assert_eq!(info.generation, 2);
    let out = output_text(&herd, s.id);
    let mut pids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("run-"))
        .collect();
    assert_eq!(pids.len(), 3, "one line per generation: {out:?}");
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three different children: {out:?}");
    assert_eq!(
        info.metrics.bytes_out,
        herd.get(s.id).unwrap().output(0, usize::MAX).end
    );
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_output_wakes_on_new_output() {
    let herd = Herd::start(fast_defaults()).await;
    let s = herd
        .create(herd_actors::SessionSpec::new(["cat"]))
        .await
        .unwrap();
    wait_running(&herd, s.id, 0).await;
    let handle = herd.get(s.id).unwrap();
    let since = handle.output(0, usize::MAX).end;
    let waiter = {
        let handle = handle.clone();
        tokio::spawn(async move {
            handle
                .wait_output(since, usize::MAX, Duration::from_secs(30))
                .await
        })
    };
    herd.input(s.id, "wake-up\r".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(got.start, since);
    assert!(!got.data.is_empty());
    assert!(
        wait_output(&herd, s.id, "wake-up")
            .await
            .contains("wake-up"),
        "the input came back"
    );
    herd.finish().await;
}
