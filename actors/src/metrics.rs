//! MetricsActor: samples CPU and memory of a session's whole process tree.
//!
//! The tree is found by walking `/proc/<pid>/task/*/children` from the child,
//! and sysinfo refreshes only those processes, so a sample costs a few file
//! reads per process of this session, not a scan of the whole machine.

use crate::info::Counters;
use crate::process::{self, Pid};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use std::time::Duration;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

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
    /// Take a sample now (sent by the actor's own timer).
    Tick,
}

/// An idle session (no input, no output, under [`IDLE_CPU`] % CPU) is
/// sampled only every this many intervals: at a thousand sessions, sampling
/// (and waking) all of them every interval would cost more CPU than
/// everything else. Its CPU and memory figures, and a `max_memory` kill, may
/// then lag by that many intervals.
const IDLE_EVERY: u32 = 10;
/// CPU percent under which a silent session counts as idle.
const IDLE_CPU: f32 = 1.0;

/// Arguments of the MetricsActor.
pub(crate) struct MetricsArgs {
    /// Where samples go.
    pub session: DerivedActorRef<Sample>,
    /// Time between samples.
    pub interval: Duration,
    /// The session's I/O counters, to tell an idle session from a working one.
    pub counters: std::sync::Arc<Counters>,
}

/// State of the MetricsActor.
pub(crate) struct MetricsState {
    session: DerivedActorRef<Sample>,
    counters: std::sync::Arc<Counters>,
    system: System,
    pid: Option<Pid>,
    interval: Duration,
    /// Input and output bytes at the last sample.
    activity: u64,
    last_cpu: f32,
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
        let interval = args.interval.max(Duration::from_millis(50));
        Ok(MetricsState {
            session: args.session,
            counters: args.counters,
            system: System::new(),
            activity: 0,
            last_cpu: 0.0,
            pid: None,
            interval: {
                myself.send_after(interval, || MetricsMsg::Tick);
                interval
            },
        })
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
                // Prime CPU accounting so the first tick reports a real rate.
                if let Some(pid) = pid {
                    sample(&mut state.system, pid);
                }
            }
            MetricsMsg::Tick => {
                let mut next = state.interval;
                if let Some(pid) = state.pid {
                    let c = &state.counters;
                    let activity = c.bytes_in.load(std::sync::atomic::Ordering::Relaxed)
                        + c.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
                    let s = sample(&mut state.system, pid);
                    if activity == state.activity && s.cpu_percent < IDLE_CPU {
                        next = state.interval * IDLE_EVERY;
                    }
                    state.activity = activity;
                    state.last_cpu = s.cpu_percent;
                    let _ = state.session.send_message(s);
                }
                // One timer per actor, rescheduled each time: an idle session
                // wakes ten times less often.
                myself.send_after(next, || MetricsMsg::Tick);
            }
        }
        Ok(())
    }
}

/// Samples the tree rooted at `pid`.
pub(crate) fn sample(system: &mut System, pid: Pid) -> Sample {
    let pids: Vec<sysinfo::Pid> = process::tree(pid)
        .into_iter()
        .filter(|p| *p > 0)
        .map(|p| sysinfo::Pid::from_u32(p as u32))
        .collect();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    let mut s = Sample::default();
    for p in &pids {
        if let Some(proc_) = system.process(*p) {
            s.cpu_percent += proc_.cpu_usage();
            s.rss_bytes += proc_.memory();
            s.processes += 1;
        }
    }
    // Processes that left the tree stay in sysinfo's map; start afresh
    // when they dominate, so the map stays the size of the tree.
    if system.processes().len() > 2 * pids.len() + 16 {
        *system = System::new();
    }
    s
}
