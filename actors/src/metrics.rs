//! MetricsActor: samples CPU and memory of a session's whole process tree.
//!
//! The tree is found by walking each process's children list from the
//! child, and each process's CPU times and memory are read from its
//! `/proc/<pid>/stat` ([`sampler`]), so a sample costs a couple of file
//! reads per process of this session, not a scan of the whole machine.

mod sampler;

use crate::info::Counters;
use crate::process::Pid;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use sampler::Sampler;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One sample of a process tree.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Sample {
    /// Sum of CPU percent (of one core) over the tree since the last sample.
    pub cpu_percent: f32,
    /// Sum of resident memory over the tree.
    pub rss_bytes: u64,
    /// Processes in the tree.
    pub processes: u32,
}

/// Messages of the MetricsActor.
#[derive(Debug)]
pub(crate) enum MetricsMsg {
    /// Sample this child's tree from now on (`None`: no child runs).
    Watch(Option<Pid>),
    /// Take a sample now (sent by the actor's own timer; stale sequence
    /// numbers are ignored, so a wake-up does not double the timers).
    Tick(u64),
    /// The session had input or output while sampling dozed: sample now,
    /// then every interval again.
    Wake,
}

/// An idle session (no input, no output, under [`IDLE_CPU`] % CPU) is
/// sampled only every this many intervals, then every twice and three times
/// as many ([`IDLE_MAX`]) while it stays idle: at thousands of sessions,
/// sampling (and waking) all of them every interval would cost more CPU than
/// everything else (at 4,000 idle sessions, 10 intervals still made 1.35 %
/// of a core). Any input or output wakes sampling at once (see
/// [`Counters::count_output`]), so the figures of a working session, and a
/// `max_memory` kill, do not lag; only a silent process that starts to grow
/// is caught up to [`IDLE_MAX`] intervals late.
pub(crate) const IDLE_EVERY: u32 = 10;
/// The longest back-off, in intervals.
pub(crate) const IDLE_MAX: u32 = 3 * IDLE_EVERY;
/// CPU percent under which a silent session counts as idle.
const IDLE_CPU: f32 = 1.0;

/// Arguments of the MetricsActor.
pub(crate) struct MetricsArgs {
    /// Where samples go.
    pub session: DerivedActorRef<Sample>,
    /// Time between samples.
    pub interval: Duration,
    /// The session's I/O counters, to tell an idle session from a working one.
    pub counters: Arc<Counters>,
}

/// State of the MetricsActor.
pub(crate) struct MetricsState {
    session: DerivedActorRef<Sample>,
    counters: Arc<Counters>,
    sampler: Sampler,
    pid: Option<Pid>,
    interval: Duration,
    /// Input and output bytes at the last sample.
    activity: u64,
    /// Idle samples in a row.
    idle: u32,
    /// The Tick that counts; older ones are stale.
    tick: u64,
}

impl MetricsState {
    /// Arms the next Tick after `after` (rounded up to the [`on_grid`]),
    /// making every earlier one stale.
    fn arm(&mut self, myself: &ActorRef<MetricsMsg>, after: Duration) {
        self.tick += 1;
        let seq = self.tick;
        myself.send_after(on_grid(after, self.interval), move || MetricsMsg::Tick(seq));
    }

    /// Samples the tree (if a child runs), sends the sample, and arms the
    /// next Tick: in one interval, or in [`IDLE_EVERY`] if the session idles.
    fn sample(&mut self, myself: &ActorRef<MetricsMsg>) {
        let mut next = self.interval;
        let c = &self.counters;
        c.dozing.store(false, Ordering::Relaxed);
        if let Some(pid) = self.pid {
            let activity = c.bytes_in.load(Ordering::Relaxed) + c.bytes_out.load(Ordering::Relaxed);
            let s = self.sampler.sample(pid);
            if activity == self.activity && s.cpu_percent < IDLE_CPU {
                self.idle = self.idle.saturating_add(1);
                next = self.interval * (IDLE_EVERY * self.idle).min(IDLE_MAX);
                // From now on the session's next input or output wakes us.
                c.dozing.store(true, Ordering::Relaxed);
            } else {
                self.idle = 0;
            }
            self.activity = activity;
            let _ = self.session.send_message(s);
        }
        self.arm(myself, next);
    }
}

/// `after`, lengthened so that the tick falls on a grid of a quarter
/// interval (at most a second) shared by every session of the process.
///
/// Sessions are created at scattered moments, so their ticks would be
/// scattered too: at 4,000 idle sessions, over a hundred lone wake-ups of
/// the runtime a second, each costing more in thread switches than the
/// sample itself. On the grid, the samples due in one slot are taken in one
/// wake-up. A sample comes at most a quarter interval late.
fn on_grid(after: Duration, interval: Duration) -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = (interval / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
        .as_nanos();
    let now = epoch.elapsed().as_nanos();
    let due = (now + after.as_nanos()).div_ceil(grid) * grid;
    Duration::from_nanos(u64::try_from(due - now).unwrap_or(u64::MAX))
}

/// Samples one session's process tree on an interval.
pub(crate) struct MetricsActor;

impl Actor for MetricsActor {
    type Msg = MetricsMsg;
    type State = MetricsState;
    type Arguments = MetricsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MetricsArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = MetricsState {
            session: args.session,
            counters: args.counters,
            sampler: Sampler::new(),
            activity: 0,
            idle: 0,
            pid: None,
            interval: args.interval.max(Duration::from_millis(50)),
            tick: 0,
        };
        state.arm(&myself, state.interval);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: MetricsMsg,
        state: &mut MetricsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MetricsMsg::Watch(pid) => {
                state.pid = pid;
                state.idle = 0;
                state.sampler.reset();
                // Prime CPU accounting so the first tick reports a real rate.
                if let Some(pid) = pid {
                    state.sampler.sample(pid);
                }
                // A new child is not idle: sample it at the normal pace.
                state.counters.dozing.store(false, Ordering::Relaxed);
                state.arm(&myself, state.interval);
            }
            MetricsMsg::Tick(seq) if seq == state.tick => state.sample(&myself),
            MetricsMsg::Tick(_) => {}
            MetricsMsg::Wake => state.sample(&myself),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
