//! Sampling backs off for an idle session and comes back at once with its
//! next input or output, so `max_memory` still holds for a session that
//! starts to work after a long silence.

use super::IDLE_EVERY;
use crate::cause::EndCause;
use crate::{ByteSize, Registry, RestartPolicy, SessionDefaults, SessionSpec, SessionState};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_dozes_and_its_next_input_wakes_sampling_and_max_memory() {
    const INTERVAL: Duration = Duration::from_secs(1);
    let mut defaults = SessionDefaults::default();
    defaults.metrics.sample_interval = INTERVAL;
    defaults.limits.quiet_after = Duration::from_millis(100);
    let reg = Registry::start(defaults).await.expect("registry");
    let mut spec = SessionSpec::new(["sh"]);
    // Above an idle shell, below one that holds 4 MB in a variable.
    spec.limits.max_memory = Some(ByteSize(3 << 20));
    spec.restart.policy = Some(RestartPolicy::Never);
    let s = reg.create(spec).await.expect("create");
    let h = reg.get(s.id).expect("handle");
    let pid = s.pid;

    until(
        "the idle session's sampling to back off",
        Duration::from_secs(30),
        || h.counters.dozing.load(Ordering::Relaxed),
    )
    .await;
    until(
        "the idle shell's memory to be sampled",
        Duration::from_secs(30),
        || h.info().metrics.rss_bytes > 0,
    )
    .await;
    assert!(h.info().state.is_running(), "{:?}", h.info());

    // Backed off, the next sample would come IDLE_EVERY intervals from now;
    // the input wakes sampling at once, and the shell outgrows its limit.
    let t0 = Instant::now();
    reg.input(
        s.id,
        "x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 1000\r".into(),
    )
    .await
    .expect("input");
    assert!(
        !h.counters.dozing.load(Ordering::Relaxed),
        "input must wake the sampler"
    );
    until("the max_memory kill", Duration::from_secs(30), || {
        h.info().state.is_final()
    })
    .await;
    let took = t0.elapsed();
    let info = h.info();
    assert_eq!(info.state, SessionState::Stopped, "{info:?}");
    assert_eq!(info.cause, Some(EndCause::MemoryLimit), "{info:?}");
    // Woken: caught within a few intervals, not after the backed-off one.
    assert!(
        took < INTERVAL * (IDLE_EVERY - 3),
        "max_memory took {took:?} after the input (backed off: {:?})",
        INTERVAL * IDLE_EVERY
    );
    reg.shutdown(Duration::from_secs(10)).await;
    if let Some(pid) = pid {
        until("the shell to be gone", Duration::from_secs(20), || {
            !crate::process::is_alive(pid)
        })
        .await;
    }
}

#[test]
fn ticks_fall_on_a_shared_grid_never_early_at_most_a_quarter_interval_late() {
    let interval = Duration::from_secs(2);
    let grid = Duration::from_millis(500);
    let t0 = Instant::now();
    // Ticks armed at scattered moments for the same interval land on the
    // same instants (to the timer's millisecond), each after its `after`.
    let mut dues = vec![];
    for after in [
        Duration::from_millis(1_000),
        Duration::from_millis(1_130),
        Duration::from_millis(1_371),
        Duration::from_millis(1_499),
    ] {
        let armed = Instant::now();
        let wait = super::on_grid(after, interval);
        assert!(wait >= after, "{wait:?} is before {after:?}");
        assert!(
            wait < after + grid,
            "{wait:?} is a grid later than {after:?}"
        );
        dues.push((armed + wait).duration_since(t0));
    }
    // Unaligned they would be four instants 130-240 ms apart; aligned, at
    // most two (the span may cross one grid line), each shared to within
    // the few microseconds between the arming calls.
    dues.sort();
    let instants = 1 + dues
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(2))
        .count();
    assert!(instants <= 2, "four ticks fall at {dues:?}");
    // A short interval gets a fine grid (10 ms at least), a long one 1 s at most.
    let w = super::on_grid(Duration::from_millis(50), Duration::from_millis(50));
    assert!(
        w >= Duration::from_millis(50) && w < Duration::from_millis(63),
        "{w:?}"
    );
    let w = super::on_grid(Duration::from_secs(60), Duration::from_secs(60));
    assert!(
        w >= Duration::from_secs(60) && w < Duration::from_secs(61),
        "{w:?}"
    );
}
