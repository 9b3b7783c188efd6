//! The event-driven PTY core: a child's exit is seen while a grandchild still
//! holds its terminal, a tail written just before exit arrives whole even
//! past the output budget, input larger than the terminal's buffer goes
//! through without stalling output, and a consumer that holds the output
//! stops the reader (and so the child) at the budget.

mod common;

use common::*;
use herd_actors::process::Pid;
use herd_actors::{RestartPolicy, SessionState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_is_seen_while_a_grandchild_holds_the_terminal_and_the_grandchild_dies() {
    let herd = Herd::start(fast_defaults()).await;
    // The background sleep keeps the terminal open: EOF never comes while
    // it lives, only the exit (pidfd) ends the generation.
    let script = "sleep 600 & echo grandchild=$!; exit 7";
    let id = herd
        .create(sh_with(script, RestartPolicy::Never))
        .await
        .unwrap()
        .id;
    let out = wait_output(&herd, id, "grandchild=").await;
    let pid: Pid = out
        .split("grandchild=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    let info = wait_final(&herd, id).await;
    assert_eq!(info.state, SessionState::Stopped, "{info:?}");
    assert_eq!(info.exit_code, Some(7), "{info:?}");
    // Containment: the generation's process group dies with it.
    wait_until(WAIT, "the grandchild to be killed", || {
        !herd_actors::process::is_alive(pid)
    })
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_larger_than_the_budget_written_just_before_exit_arrives_whole() {
    const N: u64 = 1_000_000;
    let herd = Herd::start(fast_defaults()).await;
    // 1 MB (four times the reader's budget), then the end mark, then exit.
    let script = format!("head -c {N} /dev/zero | tr '\\0' x; printf END");
    let id = herd
        .create(sh_with(&script, RestartPolicy::Never))
        .await
        .unwrap()
        .id;
    let info = wait_final(&herd, id).await;
    assert_eq!(info.exit_code, Some(0), "{info:?}");
    assert_eq!(info.metrics.bytes_out, N + 3, "{info:?}");
    assert!(output_text(&herd, id).ends_with("xEND"));
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_larger_than_the_terminal_buffer_goes_through_while_output_flows() {
    const N: usize = 200_000;
    let herd = Herd::start(fast_defaults()).await;
    // The child reads lines only after a second of ticking: the writer
    // must wait on a full terminal without holding up the reader.
    let script = "stty -echo -icanon; i=0; while [ $i -lt 5 ]; do echo tick$i; sleep 0.2; \
                  i=$((i+1)); done; n=$(head -c 200000 | wc -c); echo got=$n";
    let id = herd
        .create(sh_with(script, RestartPolicy::Never))
        .await
        .unwrap()
        .id;
    wait_output(&herd, id, "tick0").await;
    herd.input(id, "y".repeat(N).into_bytes().into())
        .await
        .unwrap();
    let out = wait_output(&herd, id, "got=").await;
    assert!(out.contains("tick4"), "{out:?}");
    wait_output(&herd, id, &format!("got={N}")).await;
    wait_final(&herd, id).await;
    herd.finish().await;
}

/// A recorder that keeps every chunk's credit while `hold` is set, as a
/// recorder stuck on a slow disk would.
#[derive(Default)]
struct SlowTap {
    hold: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<Vec<herd_actors::CreditToken>>,
}

impl herd_actors::Tap for SlowTap {
    fn send(
        &self,
        _session: uuid::Uuid,
        _generation: u64,
        _at: std::time::Instant,
        event: herd_actors::TapEvent,
    ) {
        if let herd_actors::TapEvent::Output {
            credit: Some(c), ..
        } = event
        {
            if self.hold.load(std::sync::atomic::Ordering::SeqCst) {
                self.held.lock().unwrap().push(c);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_holds_the_output_stops_the_reader_and_the_child() {
    use std::sync::atomic::Ordering;
    // The reader's budget (256 KiB) plus one read (64 KiB).
    const MOST_IN_FLIGHT: u64 = 320 * 1024;
    const N: u64 = 4_000_000;
    let tap = std::sync::Arc::new(SlowTap::default());
    tap.hold.store(true, Ordering::SeqCst);
    let hooks = herd_actors::Hooks {
        journal: Default::default(),
        tap: Some(tap.clone()),
    };
    let reg = herd_actors::Registry::start_with(fast_defaults(), hooks)
        .await
        .unwrap();
    let herd = Herd { reg };
    let script = format!("head -c {N} /dev/zero | tr '\\0' x; printf END");
    let id = herd
        .create(sh_with(&script, RestartPolicy::Never))
        .await
        .unwrap()
        .id;
    let out = |h: &Herd| snapshot(h, id).metrics.bytes_out;
    // Full: the next read (up to 64 KiB) no longer fits in the 256 KiB.
    wait_until(WAIT, "the budget to fill", || out(&herd) > 192 * 1024).await;
    // Held: the reader waits for credit, the terminal fills, the child
    // blocks in write. The count stays under the bound however long we look.
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let n = out(&herd);
        assert!(
            n <= MOST_IN_FLIGHT,
            "{n} bytes passed a consumer that took none"
        );
    }
    assert!(is_up(snapshot(&herd, id).state));
    // Released: everything arrives, the tail too.
    tap.hold.store(false, Ordering::SeqCst);
    tap.held.lock().unwrap().clear();
    let info = wait_final(&herd, id).await;
    assert_eq!(info.metrics.bytes_out, N + 3, "{info:?}");
    herd.finish().await;
}
