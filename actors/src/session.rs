//! SessionActor: one session's lifecycle, limits and restart policy.
//!
//! Every state change of a session happens in [`SessionActor::handle`], in
//! answer to a mailbox message. The actor owns a [`PtyActor`] per child
//! generation and one [`MetricsActor`], and writes what readers may see into
//! the shared [`SessionHandle`]. What output, quiet and timers *mean* is the
//! session's profile's business ([`crate::profile`]): this actor applies the
//! effects the profile returns and has no branch on the kind of profile.
//!
//! - [`lifecycle`]: spawn, exit, the restart decision, stop, restart, limits;
//! - [`control`]: input, resize, signals, suspend/resume, patch;
//! - [`delivery`]: the prompt queue and the profile's effects.

mod control;
mod delivery;
mod lifecycle;

use crate::budget::Ledger;
use crate::cause::EndCause;
use crate::config::{LimitsConfig, RestartConfig, SessionDefaults};
use crate::error::HerdError;
use crate::gate::{Gate, Slot, Wake};
use crate::handle::{lock, SessionHandle, Stamp};
use crate::info::SessionInfo;
use crate::metrics::{MetricsActor, MetricsArgs, MetricsMsg, Sample};
use crate::policy::RestartTracker;
use crate::profile::{self, Ctx, Hook, Strategy, Timer};
use crate::pty::{PtyEvent, PtyMsg};
use crate::queue::Message;
use crate::spec::SessionPatch;
use crate::state::SessionState::{self, *};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Reply to a command: the session afterwards, or why not.
pub(crate) type Reply = RpcReplyPort<Result<SessionInfo, HerdError>>;

/// Messages of the SessionActor.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    /// Start a child (initially, or after a restart backoff).
    Spawn,
    /// What the current PtyActor reports: start, output, exit.
    Pty(PtyEvent),
    /// A sample of the process tree.
    Metrics(Sample),
    /// Timer: has the output been quiet for `quiet_after`?
    QuietCheck,
    /// A timer the profile set.
    Profile(Timer),
    /// Timer: check idle timeout and max duration (stale sequence numbers are ignored).
    Tick(u64),
    /// Write to the child's terminal.
    Input(bytes::Bytes, Reply),
    /// Resize the terminal.
    Resize(u16, u16, Reply),
    /// Interrupt the child the way its profile says.
    Interrupt(Reply),
    /// SIGSTOP the process tree.
    Suspend(Reply),
    /// SIGCONT the process tree.
    Resume(Reply),
    /// Stop the session: SIGTERM, grace, SIGKILL (at once with `force`).
    Stop {
        /// Skip the grace period.
        force: bool,
        /// Why (a request, a daemon shutdown).
        cause: EndCause,
        /// Where to answer, if anyone waits.
        reply: Option<Reply>,
    },
    /// Replace the child with a new one now, whatever the policy.
    Restart(Reply),
    /// Write the next queued prompt if the session is ready.
    Deliver,
    /// Queue a prompt: written when the session is ready, then Enter.
    Send(String, RpcReplyPort<Result<Message, HerdError>>),
    /// Cancel a message that is still queued (with why).
    Cancel(Uuid, String, RpcReplyPort<Result<Message, HerdError>>),
    /// Change metadata, limits or the restart policy.
    Patch(Box<SessionPatch>, Reply),
    /// The program reported an event through a hook.
    Hook(Box<Hook>),
    /// Answer the dialog the session waits on, by meaning or with text.
    Answer(String, Reply),
    /// Test hook: panic inside `handle`.
    #[cfg(feature = "test-hooks")]
    Panic,
}

// The PtyActor and the MetricsActor see only their own message types
// (through `DerivedActorRef`), so neither knows the session actor.
impl From<PtyEvent> for SessionMsg {
    fn from(e: PtyEvent) -> Self {
        Self::Pty(e)
    }
}

impl TryFrom<SessionMsg> for PtyEvent {
    type Error = SessionMsg;
    fn try_from(m: SessionMsg) -> Result<Self, SessionMsg> {
        match m {
            SessionMsg::Pty(e) => Ok(e),
            other => Err(other),
        }
    }
}

impl From<Wake> for SessionMsg {
    fn from(_: Wake) -> Self {
        Self::Deliver
    }
}

impl TryFrom<SessionMsg> for Wake {
    type Error = SessionMsg;
    fn try_from(m: SessionMsg) -> Result<Self, SessionMsg> {
        match m {
            SessionMsg::Deliver => Ok(Wake),
            other => Err(other),
        }
    }
}

impl From<Sample> for SessionMsg {
    fn from(s: Sample) -> Self {
        Self::Metrics(s)
    }
}

impl TryFrom<SessionMsg> for Sample {
    type Error = SessionMsg;
    fn try_from(m: SessionMsg) -> Result<Self, SessionMsg> {
        match m {
            SessionMsg::Metrics(s) => Ok(s),
            other => Err(other),
        }
    }
}

/// Arguments of a SessionActor.
pub(crate) struct SessionArgs {
    /// The shared side of the session.
    pub(crate) handle: Arc<SessionHandle>,
    /// Defaults, for a patch to resolve against and for sampling.
    pub(crate) defaults: Arc<SessionDefaults>,
    /// The fleet's delivery gate.
    pub(crate) gate: Gate,
    /// The fleet's budget ledger.
    pub(crate) ledger: Ledger,
    /// Set when this actor replaces one that failed: why it failed.
    pub(crate) recovered_from: Option<String>,
}

/// The SessionActor's state.
pub(crate) struct SessionActorState {
    handle: Arc<SessionHandle>,
    defaults: Arc<SessionDefaults>,
    /// What the session's events mean.
    profile: Box<dyn Strategy>,
    /// The effective restart settings (resolved at create or patch).
    restart_cfg: RestartConfig,
    /// The effective limits (resolved at create or patch).
    limits: LimitsConfig,
    /// Mirror of the handle's state, changed only through `go`.
    state: SessionState,
    /// Where `resume` returns to.
    suspended_from: SessionState,
    generation: u64,
    restarts: u64,
    errors: u64,
    pty: Option<ActorRef<PtyMsg>>,
    metrics: Option<ActorRef<MetricsMsg>>,
    child_started: Instant,
    tracker: RestartTracker,
    last_activity: Instant,
    last_output: Instant,
    quiet_pending: bool,
    /// Sequence number of the one Tick that counts; older ones are stale.
    tick_seq: u64,
    tick_pending: bool,
    /// Why herd itself ended the child (e.g. `max_memory`): counts as a failure.
    exit_cause: Option<EndCause>,
    restart_requested: bool,
    /// Why the session is stopping.
    stop_cause: Option<EndCause>,
    /// The argv of the current child (for its recording's header).
    argv: Vec<String>,
    /// Why the previous child ended (marked at the start of the next recording).
    last_exit: Option<EndCause>,
    spawn_timer: Option<JoinHandle<Result<(), ractor::MessagingErr<SessionMsg>>>>,
    /// The fleet's delivery gate, and the slot this session holds while a
    /// gated message is in flight (freed when dropped, also if the actor dies).
    gate: Gate,
    slot: Option<Slot>,
    /// The fleet's budget ledger: each turn is charged here, and delivery
    /// stops when a budget is spent.
    ledger: Ledger,
}

/// The actor of one session.
pub(crate) struct SessionActor;

/// A chunk this large means the child writes faster than the terminal reads.
const FLOOD_CHUNK: usize = 48 * 1024;

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionActorState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let spec = args.handle.spec();
        let info = args.handle.info();
        let now = Instant::now();
        let mut st = SessionActorState {
            profile: profile::strategy(&spec),
            restart_cfg: info.restart.clone(),
            limits: info.limits.clone(),
            handle: args.handle,
            defaults: args.defaults,
            state: info.state,
            suspended_from: Ready,
            generation: info.generation,
            restarts: info.restarts,
            errors: info.metrics.errors,
            pty: None,
            metrics: None,
            child_started: now,
            tracker: RestartTracker::default(),
            last_activity: now,
            last_output: now,
            quiet_pending: false,
            tick_seq: 0,
            tick_pending: false,
            exit_cause: None,
            restart_requested: false,
            stop_cause: None,
            argv: Vec::new(),
            last_exit: None,
            spawn_timer: None,
            gate: args.gate,
            slot: None,
            ledger: args.ledger,
        };
        *lock(&st.handle.actor) = Some(myself.get_cell());
        st.metrics = Some(st.start_metrics(&myself).await?);
        if let Some(why) = args.recovered_from {
            // The previous actor died; its drop guards killed its child.
            st.errors += 1;
            // That child's pid is stale: none until the next child starts.
            st.handle.info.send_modify(|i| i.pid = None);
            match st.state {
                Pending | Restarting => {}
                Stopping => {
                    st.go(Stopped, info.reason, info.cause);
                    myself.stop(None);
                    return Ok(st);
                }
                s if s.is_final() => {
                    myself.stop(None);
                    return Ok(st);
                }
                _ => {
                    let cause = EndCause::ActorFailed { message: why };
                    st.go(Restarting, cause.to_string(), Some(cause));
                }
            }
        }
        myself.send_message(SessionMsg::Spawn)?;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SessionMsg,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Spawn => st.spawn(&myself).await,
            SessionMsg::Pty(PtyEvent::Spawned { generation, pid }) => {
                // The waiter can report a quick exit before this arrives:
                // then the child is gone and its pid must not be recorded.
                if generation == st.generation && st.child_running() {
                    st.on_spawned(&myself, pid);
                }
            }
            SessionMsg::Pty(PtyEvent::Output {
                generation,
                data,
                credit,
            }) => st.on_output(&myself, generation, data, credit),
            SessionMsg::Pty(PtyEvent::Exited { generation, status }) => {
                if generation == st.generation && st.child_running() {
                    st.on_exit(&myself, status);
                }
            }
            SessionMsg::Metrics(sample) => st.on_sample(sample),
            SessionMsg::QuietCheck => st.on_quiet_check(&myself),
            SessionMsg::Profile(timer) => {
                let mut out = vec![];
                let (profile, cx) = st.profile();
                profile.timer(&cx, timer, &mut out);
                st.apply(&myself, out);
            }
            SessionMsg::Tick(seq) => {
                if seq == st.tick_seq {
                    st.on_tick(&myself);
                }
            }
            SessionMsg::Input(data, reply) => {
                let r = st.input(data).await;
                let _ = reply.send(r);
            }
            SessionMsg::Resize(cols, rows, reply) => {
                let _ = reply.send(st.resize(cols, rows));
            }
            SessionMsg::Interrupt(reply) => {
                let _ = reply.send(st.interrupt().await);
            }
            SessionMsg::Suspend(reply) => {
                let _ = reply.send(st.suspend());
            }
            SessionMsg::Resume(reply) => {
                let _ = reply.send(st.resume(&myself));
            }
            SessionMsg::Stop {
                force,
                cause,
                reply,
            } => {
                let r = st.stop(&myself, force, cause);
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            SessionMsg::Restart(reply) => {
                let _ = reply.send(st.restart(&myself));
            }
            SessionMsg::Deliver => st.try_deliver(&myself).await,
            SessionMsg::Send(text, reply) => {
                let r = st.enqueue(text).await;
                let _ = reply.send(r);
                st.try_deliver(&myself).await;
            }
            SessionMsg::Cancel(message, why, reply) => {
                let _ = reply.send(st.cancel_message(message, &why));
            }
            SessionMsg::Patch(patch, reply) => {
                let _ = reply.send(st.patch(&myself, &patch).await);
            }
            SessionMsg::Hook(hook) => {
                // A hook of a child that is gone, or of a session that is
                // ending, moves nothing.
                if st.state.is_running() {
                    let mut out = vec![];
                    let (profile, cx) = st.profile();
                    profile.hook(&cx, &hook, &mut out);
                    st.apply(&myself, out);
                }
            }
            SessionMsg::Answer(answer, reply) => {
                let (profile, cx) = st.profile();
                let r = match profile.answer(&cx, &answer) {
                    Ok(keys) => st.input(keys).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            #[cfg(feature = "test-hooks")]
            SessionMsg::Panic => panic!("injected panic (test hook)"),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        // Never stop because a child stopped (ractor's default would).
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let id = cell.get_id();
            if st.pty.as_ref().is_some_and(|p| p.get_id() == id) {
                // Its drop guard killed the child; the waiter still reports
                // the exit, which drives the restart policy.
                tracing::warn!(session = %st.handle.id(), "pty actor failed: {err}");
                st.pty = None;
            } else if st.metrics.as_ref().is_some_and(|m| m.get_id() == id) {
                tracing::warn!(session = %st.handle.id(), "metrics actor failed: {err}; restarting it");
                st.metrics = st.start_metrics(&myself).await.ok();
                let pid = st.handle.info().pid;
                st.watch_metrics(pid);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.spawn_timer.take() {
            t.abort();
        }
        Ok(())
    }
}

impl SessionActorState {
    /// Changes the state through the handle's one transition function, with
    /// this actor's counters stamped on the snapshot.
    fn go(&mut self, to: SessionState, reason: impl Into<String>, cause: Option<EndCause>) -> bool {
        let stamp = Stamp {
            generation: self.generation,
            restarts: self.restarts,
            errors: self.errors,
        };
        match self
            .handle
            .transition(to, reason.into(), cause, Some(stamp))
        {
            Ok(_) => {
                self.state = to;
                true
            }
            Err(e) => {
                tracing::error!(session = %self.handle.id(), "{e}");
                false
            }
        }
    }

    /// The profile, with what it may read of the session.
    fn profile(&mut self) -> (&mut dyn Strategy, Ctx<'_>) {
        let cx = Ctx {
            state: self.state,
            handle: &self.handle,
        };
        (self.profile.as_mut(), cx)
    }

    async fn start_metrics(
        &self,
        myself: &ActorRef<SessionMsg>,
    ) -> Result<ActorRef<MetricsMsg>, ractor::SpawnErr> {
        let args = MetricsArgs {
            session: myself.get_derived(),
            interval: self.defaults.metrics.sample_interval,
            counters: Arc::clone(&self.handle.counters),
        };
        Actor::spawn_linked(None, MetricsActor, args, myself.get_cell())
            .await
            .map(|(m, _)| m)
    }

    /// Feeds output to the screen. A session whose profile does not read the
    /// screen, in an output flood (a full 64 KiB read), skips it and marks the
    /// screen stale: parsing is most of herd's cost per byte, and nobody
    /// watches a flood scroll by; the screen is rebuilt from the output log
    /// when it is next read.
    fn feed_screen(&self, data: &[u8]) {
        let h = &self.handle;
        if !self.profile.reads_screen()
            && (data.len() >= FLOOD_CHUNK || h.screen_stale.load(Ordering::Acquire))
        {
            h.screen_stale.store(true, Ordering::Release);
            return;
        }
        lock(&h.screen).feed(data);
    }

    fn child_running(&self) -> bool {
        self.state.is_running() || matches!(self.state, Stopping)
    }

    fn conflict(&self, action: &str) -> HerdError {
        HerdError::Conflict {
            id: self.handle.id().to_string(),
            action: action.into(),
            state: self.state,
        }
    }

    fn watch_metrics(&self, pid: Option<crate::process::Pid>) {
        if let Some(m) = &self.metrics {
            let _ = m.send_message(MetricsMsg::Watch(pid));
        }
    }

    /// The session is active again after its sampler backed off: sample now.
    fn wake_metrics(&self) {
        if let Some(m) = &self.metrics {
            let _ = m.send_message(MetricsMsg::Wake);
        }
    }

    /// Arms the quiet check, unless one is armed already.
    fn schedule_quiet(&mut self, myself: &ActorRef<SessionMsg>, after: Duration) {
        if !self.quiet_pending {
            self.quiet_pending = true;
            myself.send_after(after, || SessionMsg::QuietCheck);
        }
    }

    /// The quiet timer: if the output has been quiet for `quiet_after`, the
    /// profile says what that means; else look again when it would be.
    fn on_quiet_check(&mut self, myself: &ActorRef<SessionMsg>) {
        self.quiet_pending = false;
        if !self.state.is_running() {
            return;
        }
        let quiet = self.limits.quiet_after;
        let since = self.last_output.elapsed();
        if since < quiet {
            self.schedule_quiet(myself, quiet - since);
            return;
        }
        let mut out = vec![];
        let (profile, cx) = self.profile();
        profile.quiet(&cx, &mut out);
        self.apply(myself, out);
    }
}
