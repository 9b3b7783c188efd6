//! SessionActor: one session's state machine and restart policy.
//!
//! Every state change of a session happens in [`SessionActor::handle`], in
//! answer to a mailbox message. The actor owns a [`PtyActor`] per child
//! generation and one [`MetricsActor`], and writes what readers may see into
//! the shared [`SessionHandle`].

use crate::claude::{self, ScreenState};
use crate::config::{LimitsConfig, RestartConfig, SessionDefaults};
use crate::error::HerdError;
use crate::events::{Event, EventBus};
use crate::handle::{lock, SessionHandle};
use crate::info::SessionInfo;
use crate::metrics::{MetricsActor, MetricsArgs, MetricsMsg, Sample};
use crate::policy::{Decision, ExitStatus, RestartTracker};
use crate::process::Pid;
use crate::pty::{CreditToken, PtyActor, PtyArgs, PtyMsg, SignalTarget};
use crate::queue::{self, Message, MessageState};
use crate::spec::{validate_size, SessionPatch};
use crate::state::SessionState::{self, *};
use crate::tap::TapEvent;
use bytes::Bytes;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Reply to a command: the session afterwards, or why not.
pub type Reply = RpcReplyPort<Result<SessionInfo, HerdError>>;

/// Messages of the SessionActor.
#[derive(Debug)]
pub enum SessionMsg {
    /// Start a child (initially, or after a restart backoff).
    Spawn,
    /// The PtyActor started a child.
    ChildSpawned {
        /// Generation of the child.
        generation: u64,
        /// Its pid (and process group id).
        pid: Pid,
    },
    /// The child wrote output.
    Output {
        /// Generation of the child.
        generation: u64,
        /// The bytes.
        data: Bytes,
        /// The chunk's share of the reader's budget, released once handled.
        credit: CreditToken,
    },
    /// The child exited and was reaped; no more output of it will follow.
    ChildExited {
        /// Generation of the child.
        generation: u64,
        /// How it ended.
        status: ExitStatus,
    },
    /// A sample of the process tree.
    Metrics(Sample),
    /// Timer: has the output been quiet long enough to call the session ready?
    QuietCheck,
    /// Timer (Claude profile): read the state from the screen.
    ScreenCheck,
    /// Timer (Claude profile): look again for the reply in the transcript.
    ReplyRetry(u32),
    /// Timer (Claude profile): was the prompt written last submitted?
    SubmitCheck(u32),
    /// Timer: check idle timeout and max duration (stale sequence numbers are ignored).
    Tick(u64),
    /// Write to the child's terminal.
    Input(Bytes, Reply),
    /// Resize the terminal.
    Resize(u16, u16, Reply),
    /// SIGINT to the terminal's foreground process group.
    Interrupt(Reply),
    /// SIGSTOP the process tree.
    Suspend(Reply),
    /// SIGCONT the process tree.
    Resume(Reply),
    /// Stop the session: SIGTERM, grace, SIGKILL (at once with `force`).
    Stop {
        /// Skip the grace period.
        force: bool,
        /// Reason recorded in the event.
        reason: String,
        /// Where to answer, if anyone waits.
        reply: Option<Reply>,
    },
    /// Replace the child with a new one now, whatever the policy.
    Restart(Reply),
    /// Write the next queued prompt if the session is ready.
    Deliver,
    /// Queue a prompt: written when the session is ready, then Enter.
    Send(String, RpcReplyPort<Result<Message, HerdError>>),
    /// Change metadata, limits or the restart policy.
    Patch(Box<SessionPatch>, Reply),
    /// Test hook: panic inside `handle`.
    #[cfg(feature = "test-hooks")]
    Panic,
}

/// Arguments of a SessionActor.
pub struct SessionArgs {
    /// The shared side of the session.
    pub handle: Arc<SessionHandle>,
    /// Defaults for what the spec leaves out.
    pub defaults: Arc<SessionDefaults>,
    /// Where transitions are published.
    pub bus: EventBus,
    /// Set when this actor replaces one that failed: why it failed.
    pub recovered_from: Option<String>,
}

/// The SessionActor's state.
pub struct SessionActorState {
    handle: Arc<SessionHandle>,
    defaults: Arc<SessionDefaults>,
    bus: EventBus,
    restart_cfg: RestartConfig,
    limits: LimitsConfig,
    sample_interval: Duration,
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
    /// Claude profile: state from the screen, replies from the transcript.
    claude: Option<ClaudeState>,
    /// Sequence number of the one Tick that counts; older ones are stale.
    tick_seq: u64,
    tick_pending: bool,
    /// Why herd itself ended the child (e.g. `max_memory`): counts as a failure.
    exit_cause: Option<String>,
    restart_requested: bool,
    stop_reason: String,
    /// The argv of the current child (for its recording's header).
    argv: Vec<String>,
    /// Why the previous child ended (marked at the start of the next recording).
    last_exit: Option<String>,
    spawn_timer: Option<JoinHandle<Result<(), ractor::MessagingErr<SessionMsg>>>>,
}

/// The actor of one session.
pub struct SessionActor;

/// A chunk this large means the child writes faster than the terminal reads.
const FLOOD_CHUNK: usize = 48 * 1024;

/// Claude profile: how long output must settle before the screen is read.
const SCREEN_DEBOUNCE: Duration = Duration::from_millis(40);
/// Claude profile: first-run dialog answers at most (a dialog that stays is not ours).
const MAX_DIALOG_ANSWERS: u32 = 6;
/// Claude profile: a written prompt that shows no turn this long is taken as answered.
const TURN_START_GRACE: Duration = Duration::from_secs(10);
/// Claude profile: looks for a reply in the transcript.
const REPLY_RETRIES: u32 = 20;
/// Claude profile: between two looks.
const REPLY_RETRY_EVERY: Duration = Duration::from_millis(100);
/// Claude profile: when to check that a written prompt was submitted.
const SUBMIT_CHECK_AFTER: Duration = Duration::from_millis(1200);
/// Claude profile: checks (and extra Enters) at most per prompt.
const SUBMIT_CHECKS: u32 = 4;

/// What the Claude profile tracks beyond the generic state.
#[derive(Debug)]
struct ClaudeState {
    transcript: Option<std::path::PathBuf>,
    transcript_start: u64,
    check_pending: bool,
    /// A turn (spinner or dialog) was seen since the last prompt was written.
    saw_busy: bool,
    delivered_at: Instant,
    dialogs_answered: u32,
    /// The prompt written last, to recognise it still sitting in the input box.
    prompt: String,
}

impl Default for ClaudeState {
    fn default() -> Self {
        Self {
            transcript: None,
            transcript_start: 0,
            check_pending: false,
            saw_busy: false,
            delivered_at: Instant::now(),
            dialogs_answered: 0,
            prompt: String::new(),
        }
    }
}

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
            restart_cfg: spec.restart.apply(&args.defaults.restart),
            limits: spec.limits.apply(&args.defaults.limits),
            sample_interval: args.defaults.metrics.sample_interval,
            handle: args.handle,
            defaults: args.defaults,
            bus: args.bus,
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
            claude: (spec.profile == crate::spec::Profile::Claude).then(|| ClaudeState {
                transcript: spec.claude.as_ref().and_then(|c| c.transcript.clone()),
                ..Default::default()
            }),
            tick_seq: 0,
            tick_pending: false,
            exit_cause: None,
            restart_requested: false,
            stop_reason: String::new(),
            argv: Vec::new(),
            last_exit: None,
            spawn_timer: None,
        };
        *lock(&st.handle.actor) = Some(myself.clone());
        let (metrics, _) = Actor::spawn_linked(
            None,
            MetricsActor,
            MetricsArgs {
                session: myself.clone(),
                interval: st.sample_interval,
                handle: Arc::clone(&st.handle),
            },
            myself.get_cell(),
        )
        .await?;
        st.metrics = Some(metrics);
        if let Some(why) = args.recovered_from {
            // The previous actor died; its drop guards killed its child.
            st.errors += 1;
            // That child's pid is stale: none until the next child starts.
            st.handle.info.send_modify(|i| i.pid = None);
            match st.state {
                Pending | Restarting => {}
                Stopping => {
                    st.go(Stopped, st.handle.info().reason);
                    myself.stop(None);
                    return Ok(st);
                }
                s if s.is_final() => {
                    myself.stop(None);
                    return Ok(st);
                }
                _ => {
                    st.go(Restarting, format!("session actor failed: {why}"));
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
            SessionMsg::ChildSpawned { generation, pid } => {
                // The waiter can report a quick exit before this arrives:
                // then the child is gone and its pid must not be recorded.
                if generation == st.generation && st.child_running() {
                    st.on_spawned(&myself, pid);
                }
            }
            SessionMsg::Output {
                generation,
                data,
                credit,
            } => {
                st.on_output(&myself, generation, data, credit);
            }
            SessionMsg::ChildExited { generation, status } => {
                if generation == st.generation && st.child_running() {
                    st.on_exit(&myself, status);
                }
            }
            SessionMsg::Metrics(sample) => st.on_sample(sample),
            SessionMsg::QuietCheck => st.on_quiet_check(&myself),
            SessionMsg::ScreenCheck => {
                if let Some(c) = st.claude.as_mut() {
                    c.check_pending = false;
                }
                st.apply_screen(&myself, false);
            }
            SessionMsg::ReplyRetry(attempt) => st.finish_claude_reply(&myself, attempt),
            SessionMsg::SubmitCheck(attempt) => st.check_submitted(&myself, attempt),
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
                let r = if st.claude.is_some() {
                    // Claude Code interrupts a turn on Escape; SIGINT would end it.
                    st.input(Bytes::from_static(b"\x1b")).await
                } else {
                    st.signal("interrupt", libc::SIGINT, SignalTarget::Foreground)
                };
                let _ = reply.send(r);
            }
            SessionMsg::Suspend(reply) => {
                let _ = reply.send(st.suspend());
            }
            SessionMsg::Resume(reply) => {
                let _ = reply.send(st.resume(&myself));
            }
            SessionMsg::Stop {
                force,
                reason,
                reply,
            } => {
                let r = st.stop(&myself, force, reason);
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            SessionMsg::Restart(reply) => {
                let _ = reply.send(st.restart(&myself));
            }
            SessionMsg::Deliver => st.try_deliver(&myself).await,
            SessionMsg::Send(text, reply) => {
                let r = st.enqueue(text);
                let _ = reply.send(r);
                st.try_deliver(&myself).await;
            }
            SessionMsg::Patch(patch, reply) => {
                let _ = reply.send(st.patch(&myself, &patch));
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
                let args = MetricsArgs {
                    session: myself.clone(),
                    interval: st.sample_interval,
                    handle: Arc::clone(&st.handle),
                };
                st.metrics = Actor::spawn_linked(None, MetricsActor, args, myself.get_cell())
                    .await
                    .ok()
                    .map(|(m, _)| m);
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
    /// The one place where the state changes: checked against the table,
    /// mirrored into the handle, published on the bus.
    fn go(&mut self, to: SessionState, reason: impl Into<String>) -> bool {
        let from = self.state;
        if let Err(e) = from.check(to) {
            tracing::error!(session = %self.handle.id(), "{e}");
            return false;
        }
        let reason = reason.into();
        let at = SystemTime::now();
        self.state = to;
        let mut info = self.handle.info();
        info.state = to;
        info.reason = reason.clone();
        info.updated_at = at;
        info.generation = self.generation;
        info.restarts = self.restarts;
        info.metrics.restarts = self.restarts;
        info.metrics.errors = self.errors;
        let event = Event {
            session_id: info.id,
            task_id: info.task_id.clone(),
            project_id: info.project_id.clone(),
            from,
            to,
            reason,
            at,
            generation: self.generation,
        };
        tracing::debug!(session = %info.id, %from, %to, reason = %event.reason, "transition");
        // Journal first: whoever wakes on the new state and then flushes the
        // journal must find this transition in the store.
        self.handle.record_event(&event, &info);
        self.tap(
            self.generation,
            TapEvent::Marker(format!("state {from} -> {to}: {}", event.reason)),
        );
        self.handle.info.send_replace(info);
        self.bus.publish(event);
        true
    }

    /// Feeds output to the screen. A generic session in an output flood (a
    /// full 64 KiB read) skips it and marks the screen stale: parsing is
    /// most of herd's cost per byte, and nobody watches a flood scroll by;
    /// the screen is rebuilt from the output log when it is next read.
    /// The Claude profile reads its state from the screen: always fed.
    fn feed_screen(&self, data: &[u8]) {
        let h = &self.handle;
        if self.claude.is_none()
            && (data.len() >= FLOOD_CHUNK || h.screen_stale.load(Ordering::Acquire))
        {
            h.screen_stale.store(true, Ordering::Release);
            return;
        }
        lock(&h.screen).feed(data);
    }

    /// Sends an event to the recorder, if there is one.
    fn tap(&self, generation: u64, event: TapEvent) {
        if let Some(t) = &self.handle.tap {
            t.send(self.handle.id(), generation, Instant::now(), event);
        }
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

    async fn spawn(&mut self, myself: &ActorRef<SessionMsg>) {
        self.spawn_timer = None;
        let reason = match self.state {
            Pending if self.generation > 0 => "recovered after daemon restart",
            Pending => "spawn",
            Restarting => {
                self.generation += 1;
                self.restarts += 1;
                "restart"
            }
            // Stopped meanwhile, or a stale timer.
            _ => return,
        };
        self.go(Starting, reason);
        let spec = self.handle.spec();
        let argv = match (&spec.resume_command, self.generation) {
            (Some(resume), g) if g > 0 => resume.clone(),
            _ => spec.command.clone(),
        };
        self.argv = argv.clone();
        let mut env: Vec<(String, String)> = spec.env.clone().into_iter().collect();
        env.push(("HERD_SESSION_ID".into(), self.handle.id().to_string()));
        let args = PtyArgs {
            argv,
            cwd: spec.cwd.clone(),
            env,
            secret_env: spec.secret_env.clone().into_iter().collect(),
            cols: spec.cols,
            rows: spec.rows,
            generation: self.generation,
            session: myself.clone(),
        };
        self.child_started = Instant::now();
        match Actor::spawn_linked(None, PtyActor, args, myself.get_cell()).await {
            Ok((pty, _)) => self.pty = Some(pty),
            Err(e) => {
                self.errors += 1;
                let why = match e {
                    ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(session = %self.handle.id(), "spawn failed: {why}");
                self.exit_cause = Some(format!("spawn failed: {why}"));
                let status = ExitStatus {
                    code: None,
                    signal: None,
                };
                self.after_exit(myself, status, false);
            }
        }
    }

    fn on_spawned(&mut self, myself: &ActorRef<SessionMsg>, pid: Pid) {
        let now = Instant::now();
        self.last_output = now;
        self.last_activity = now;
        let started = SystemTime::now();
        self.handle.info.send_modify(|i| {
            i.pid = Some(pid);
            i.started_at = Some(started);
        });
        self.handle.journal.record(crate::journal::Record::Spawned {
            session_id: self.handle.id(),
            generation: self.generation,
            pid,
            start_time: crate::process::start_time(pid),
        });
        let spec = self.handle.spec();
        self.tap(
            self.generation,
            TapEvent::Start {
                cols: spec.cols,
                rows: spec.rows,
                command: self.argv.clone(),
                title: spec.name.unwrap_or_else(|| self.handle.id().to_string()),
                started,
            },
        );
        if let Some(why) = self.last_exit.take() {
            self.tap(self.generation, TapEvent::Marker(format!("restart: {why}")));
        }
        self.watch_metrics(Some(pid));
        self.schedule_quiet(myself, self.limits.quiet_after);
        self.schedule_tick(myself);
    }

    fn watch_metrics(&self, pid: Option<Pid>) {
        if let Some(m) = &self.metrics {
            let _ = m.send_message(MetricsMsg::Watch(pid));
        }
    }

    fn on_output(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        generation: u64,
        data: Bytes,
        credit: CreditToken,
    ) {
        let now = Instant::now();
        // The recorder gets the chunk with its credit: the reader waits for it too.
        self.tap(
            generation,
            TapEvent::Output {
                data: data.clone(),
                credit: Some(credit),
            },
        );
        self.handle
            .counters
            .bytes_out
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.feed_screen(&data);
        self.handle.push_output(data);
        self.last_output = now;
        self.last_activity = now;
        if let Some(c) = self.claude.as_mut() {
            // The screen decides; look at it once the burst settles a little.
            if !std::mem::replace(&mut c.check_pending, true) {
                myself.send_after(SCREEN_DEBOUNCE, || SessionMsg::ScreenCheck);
            }
            if self.state.is_running() {
                self.schedule_quiet(myself, self.limits.quiet_after);
            }
            return;
        }
        if generation == self.generation && self.state == Ready {
            self.go(Busy, "output");
        }
        if matches!(self.state, Starting | Busy) {
            self.schedule_quiet(myself, self.limits.quiet_after);
        }
    }

    /// Claude profile: moves the state to what the screen shows. `quiet`: no
    /// output for `quiet_after`, so a ready screen is stable.
    fn apply_screen(&mut self, myself: &ActorRef<SessionMsg>, quiet: bool) {
        if !matches!(self.state, Starting | Ready | Busy | WaitingInput) {
            return;
        }
        let Some(c) = self.claude.as_mut() else {
            return;
        };
        let screen = self.handle.screen_text();
        match claude::classify(&screen) {
            ScreenState::Busy => {
                c.saw_busy = true;
                self.set_dialog(None);
                if self.state != Busy {
                    self.go(Busy, "screen: esc to interrupt");
                }
            }
            ScreenState::WaitingInput(dialog) => {
                c.saw_busy = true;
                let title = dialog
                    .lines()
                    .map(str::trim)
                    .find(|l| l.ends_with('?'))
                    .unwrap_or("dialog")
                    .to_string();
                self.set_dialog(Some(dialog));
                if self.state != WaitingInput {
                    self.go(WaitingInput, format!("screen: {title}"));
                }
            }
            ScreenState::FirstRun(kind) => {
                if c.dialogs_answered < MAX_DIALOG_ANSWERS {
                    c.dialogs_answered += 1;
                    tracing::info!(session = %self.handle.id(), ?kind, "answering a first-run dialog");
                    self.write_detached(Bytes::from_static(kind.answer()));
                }
            }
            ScreenState::Ready if quiet => {
                // A prompt just written may not have started its turn yet.
                let waiting_for_turn = self.handle.update_queue(|q| q.in_flight().is_some())
                    && !c.saw_busy
                    && c.delivered_at.elapsed() < TURN_START_GRACE;
                if waiting_for_turn {
                    self.schedule_quiet(myself, self.limits.quiet_after);
                    return;
                }
                self.set_dialog(None);
                if self.state != Ready {
                    self.go(Ready, "screen: input prompt");
                    self.on_ready(myself);
                }
            }
            ScreenState::Ready | ScreenState::Starting => {
                if self.state.is_running() {
                    self.schedule_quiet(myself, self.limits.quiet_after);
                }
            }
        }
    }

    fn set_dialog(&self, dialog: Option<String>) {
        self.handle.info.send_if_modified(|i| {
            let changed = i.dialog != dialog;
            i.dialog = dialog;
            changed
        });
    }

    /// Writes to the child without waiting for the write (answers to dialogs).
    fn write_detached(&self, data: Bytes) {
        if let Some(pty) = &self.pty {
            let (tx, _rx) = tokio::sync::oneshot::channel();
            let _ = pty.send_message(PtyMsg::Write(data, tx.into()));
        }
    }

    fn schedule_quiet(&mut self, myself: &ActorRef<SessionMsg>, after: Duration) {
        if !self.quiet_pending {
            self.quiet_pending = true;
            myself.send_after(after, || SessionMsg::QuietCheck);
        }
    }

    /// The session just became ready: the message in flight has its answer,
    /// and the next one may go.
    fn on_ready(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.claude.is_some() {
            return self.finish_claude_reply(myself, 0);
        }
        let start = lock(&self.handle.queue)
            .in_flight()
            .map(|m| m.output_start.unwrap_or(0));
        if let Some(start) = start {
            let raw = self.handle.output(start, usize::MAX);
            let reply = queue::clean_text(&raw.data);
            self.handle
                .update_queue(|q| q.finish(MessageState::Done, raw.end, Some(reply), None));
        }
        let _ = myself.send_message(SessionMsg::Deliver);
    }

    /// Claude profile: the reply of the message in flight is the assistant
    /// text the transcript gained since delivery. The CLI may write it a moment
    /// after the screen settles: look again a few times, then fall back to the screen.
    fn finish_claude_reply(&mut self, myself: &ActorRef<SessionMsg>, attempt: u32) {
        if self.state != Ready {
            return;
        }
        let Some(c) = self.claude.as_ref() else {
            return;
        };
        if lock(&self.handle.queue).in_flight().is_some() {
            let reply = c
                .transcript
                .as_deref()
                .and_then(|t| claude::reply_since(t, c.transcript_start));
            let reply = match reply {
                Some(r) => r,
                None if attempt < REPLY_RETRIES && c.transcript.is_some() => {
                    myself.send_after(REPLY_RETRY_EVERY, move || {
                        SessionMsg::ReplyRetry(attempt + 1)
                    });
                    return;
                }
                None => self.handle.screen_text(),
            };
            let end = lock(&self.handle.output).end();
            self.handle
                .update_queue(|q| q.finish(MessageState::Done, end, Some(reply), None));
        }
        let _ = myself.send_message(SessionMsg::Deliver);
    }

    /// Claude profile: a CLI still drawing (e.g. a resumed conversation) can
    /// take the typed prompt but miss its Enter. If no turn started and the
    /// input box still holds the prompt, press Enter again (a few times at most).
    fn check_submitted(&mut self, myself: &ActorRef<SessionMsg>, attempt: u32) {
        let Some(c) = self.claude.as_ref() else {
            return;
        };
        let in_flight = lock(&self.handle.queue).in_flight().is_some();
        if !in_flight || c.saw_busy || !matches!(self.state, Busy | Ready) {
            return;
        }
        if claude::prompt_pending(&self.handle.screen_text(), &c.prompt) {
            tracing::info!(session = %self.handle.id(), attempt, "prompt not submitted yet: pressing Enter again");
            self.write_detached(Bytes::from_static(b"\r"));
        }
        if attempt < SUBMIT_CHECKS {
            myself.send_after(SUBMIT_CHECK_AFTER, move || {
                SessionMsg::SubmitCheck(attempt + 1)
            });
        }
    }

    fn on_quiet_check(&mut self, myself: &ActorRef<SessionMsg>) {
        self.quiet_pending = false;
        if self.claude.is_some() {
            let since = self.last_output.elapsed();
            if since < self.limits.quiet_after {
                self.schedule_quiet(myself, self.limits.quiet_after - since);
            } else {
                self.apply_screen(myself, true);
            }
            return;
        }
        if !matches!(self.state, Starting | Busy) {
            return;
        }
        let quiet = self.limits.quiet_after;
        let since = self.last_output.elapsed();
        if since >= quiet {
            self.go(Ready, "output quiet");
            self.on_ready(myself);
        } else {
            self.schedule_quiet(myself, quiet - since);
        }
    }

    /// Time left before the idle timeout and the max duration, if enabled.
    fn deadlines(&self) -> (Option<Duration>, Option<Duration>) {
        let l = &self.limits;
        let idle = (!l.idle_timeout.is_zero() && self.state != Suspended)
            .then(|| l.idle_timeout.saturating_sub(self.last_activity.elapsed()));
        let created = self.handle.info.borrow().created_at;
        let age = SystemTime::now()
            .duration_since(created)
            .unwrap_or_default();
        let max = (!l.max_duration.is_zero()).then(|| l.max_duration.saturating_sub(age));
        (idle, max)
    }

    fn schedule_tick(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.tick_pending {
            return;
        }
        let (idle, max) = self.deadlines();
        if let Some(next) = [idle, max].into_iter().flatten().min() {
            self.tick_pending = true;
            self.tick_seq += 1;
            let seq = self.tick_seq;
            // A little slack so the check lands after the deadline, not before.
            myself.send_after(next + Duration::from_millis(5), move || {
                SessionMsg::Tick(seq)
            });
        }
    }

    fn on_tick(&mut self, myself: &ActorRef<SessionMsg>) {
        self.tick_pending = false;
        if !self.state.is_running() {
            return;
        }
        match self.deadlines() {
            (_, Some(max)) if max.is_zero() => {
                let _ = self.stop(myself, false, "max_duration".into());
            }
            (Some(idle), _) if idle.is_zero() => {
                let _ = self.stop(myself, false, "idle_timeout".into());
            }
            _ => self.schedule_tick(myself),
        }
    }

    fn on_sample(&mut self, s: Sample) {
        self.handle.info.send_if_modified(|i| {
            i.metrics.cpu_percent = s.cpu_percent;
            i.metrics.rss_bytes = s.rss_bytes;
            i.metrics.processes = s.processes;
            false
        });
        let limit = self.limits.max_memory.map(|m| m.0).filter(|m| *m > 0);
        if let (Some(limit), Some(pty)) = (limit, &self.pty) {
            if s.rss_bytes > limit && self.exit_cause.is_none() && self.state.is_running() {
                tracing::warn!(session = %self.handle.id(), rss = s.rss_bytes, limit, "max_memory exceeded");
                self.exit_cause = Some("max_memory".into());
                let _ = pty.send_message(PtyMsg::Kill);
            }
        }
    }

    fn on_exit(&mut self, myself: &ActorRef<SessionMsg>, status: ExitStatus) {
        if let Some(pty) = self.pty.take() {
            pty.stop(None);
        }
        if !status.success() && self.state != Stopping && !self.restart_requested {
            self.errors += 1;
        }
        self.after_exit(myself, status, true);
    }

    /// The current child is gone (exited, or never started: `spawned` false):
    /// decide what follows.
    fn after_exit(&mut self, myself: &ActorRef<SessionMsg>, status: ExitStatus, spawned: bool) {
        self.watch_metrics(None);
        let why = self
            .exit_cause
            .clone()
            .unwrap_or_else(|| status.to_string());
        self.tap(self.generation, TapEvent::End(format!("exit: {why}")));
        self.last_exit = Some(why);
        let end = lock(&self.handle.output).end();
        let why = format!("the child ended while the message was being answered ({status})");
        self.handle
            .update_queue(|q| q.finish(MessageState::Interrupted, end, None, Some(why)));
        self.handle.info.send_modify(|i| {
            i.pid = None;
            i.exit_code = status.code;
            i.exit_signal = status.signal;
        });
        if self.state == Stopping {
            let reason = std::mem::take(&mut self.stop_reason);
            self.go(Stopped, reason);
            self.finish(myself);
            return;
        }
        if std::mem::take(&mut self.restart_requested) {
            self.exit_cause = None;
            self.go(Restarting, "restart requested");
            let _ = myself.send_message(SessionMsg::Spawn);
            return;
        }
        let cause = self.exit_cause.take();
        let reason = cause.clone().unwrap_or_else(|| status.to_string());
        let ran = self.child_started.elapsed();
        let decision = self.tracker.decide(
            &self.restart_cfg,
            &status,
            ran,
            cause.is_some(),
            Instant::now(),
        );
        match decision {
            Decision::Restart(delay) => {
                self.go(Restarting, reason);
                if delay.is_zero() {
                    let _ = myself.send_message(SessionMsg::Spawn);
                } else {
                    self.spawn_timer = Some(myself.send_after(delay, || SessionMsg::Spawn));
                }
            }
            // A spawn error is a failure; a child herd killed (e.g. max_memory)
            // is handled by the policy like any other exit.
            Decision::Stop if !spawned => {
                self.go(Failed, reason);
                self.finish(myself);
            }
            Decision::Stop => {
                self.go(Stopping, reason.clone());
                self.go(Stopped, reason);
                self.finish(myself);
            }
            Decision::GiveUp => {
                if self.state != Starting {
                    self.go(Restarting, reason.clone());
                }
                let c = &self.restart_cfg;
                let why = format!(
                    "restart intensity exceeded: more than {} restarts within {} (last: {reason})",
                    c.max_restarts,
                    humantime::format_duration(c.restart_window)
                );
                self.go(Failed, why);
                self.finish(myself);
            }
        }
    }

    /// Final state reached: release the children and end the actor. The
    /// handle keeps the output, screen and info for history.
    fn finish(&mut self, myself: &ActorRef<SessionMsg>) {
        let end = lock(&self.handle.output).end();
        let why = format!("the session is {}", self.state);
        self.handle.update_queue(|q| q.cancel_all(&why, end));
        if let Some(t) = self.spawn_timer.take() {
            t.abort();
        }
        if let Some(m) = self.metrics.take() {
            m.stop(None);
        }
        if let Some(p) = self.pty.take() {
            p.stop(None);
        }
        myself.stop(Some(self.state.to_string()));
    }

    async fn input(&mut self, data: Bytes) -> Result<SessionInfo, HerdError> {
        let Some(pty) = self.pty.as_ref().filter(|_| self.state.is_running()) else {
            return Err(self.conflict("send input to"));
        };
        let len = data.len() as u64;
        let recorded = data.clone();
        let written = pty
            .call(
                |reply| PtyMsg::Write(data, reply),
                Some(Duration::from_secs(5)),
            )
            .await;
        match written {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
                self.tap(self.generation, TapEvent::Input(recorded));
                let c = &self.handle.counters;
                c.bytes_in.fetch_add(len, Ordering::Relaxed);
                c.inputs.fetch_add(1, Ordering::Relaxed);
                self.last_activity = Instant::now();
                Ok(self.handle.info())
            }
            Ok(ractor::rpc::CallResult::Success(Err(()))) => {
                Err(HerdError::InputFull(self.handle.id().to_string()))
            }
            _ => Err(self.conflict("send input to")),
        }
    }

    fn enqueue(&mut self, text: String) -> Result<Message, HerdError> {
        if self.state.is_final() || self.state == Stopping {
            return Err(self.conflict("send a message to"));
        }
        let m = Message::new(self.handle.id(), text);
        self.handle.update_queue(|q| q.push(m.clone()));
        Ok(m)
    }

    /// Writes the next queued message if the session is ready and none is in flight.
    async fn try_deliver(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.state != Ready || self.pty.is_none() {
            return;
        }
        let start = lock(&self.handle.output).end();
        let Some(text) = self
            .handle
            .update_queue(|q| q.start_next(start).map(|m| m.text.clone()))
        else {
            return;
        };
        let paste = self.handle.screen().bracketed_paste();
        if let Some(c) = self.claude.as_mut() {
            c.saw_busy = false;
            c.delivered_at = Instant::now();
            c.transcript_start = c
                .transcript
                .as_deref()
                .map(claude::transcript_len)
                .unwrap_or(0);
            c.prompt = text.clone();
            myself.send_after(SUBMIT_CHECK_AFTER, || SessionMsg::SubmitCheck(1));
        }
        let data = Bytes::from(queue::payload(&text, paste));
        // Busy from the moment the prompt is written: the answer may start silently.
        self.go(Busy, "message delivered");
        self.last_output = Instant::now();
        self.schedule_quiet(myself, self.limits.quiet_after);
        if let Err(e) = self.input(data).await {
            let end = lock(&self.handle.output).end();
            self.handle.update_queue(|q| {
                q.finish(MessageState::Interrupted, end, None, Some(e.to_string()))
            });
        }
    }

    fn patch(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        patch: &SessionPatch,
    ) -> Result<SessionInfo, HerdError> {
        if self.state.is_final() {
            return Err(self.conflict("change"));
        }
        let spec = {
            let mut spec = lock(&self.handle.spec);
            patch.apply(&mut spec);
            spec.clone()
        };
        self.restart_cfg = spec.restart.apply(&self.defaults.restart);
        self.limits = spec.limits.apply(&self.defaults.limits);
        let (restart, limits) = (self.restart_cfg.clone(), self.limits.clone());
        self.handle.info.send_modify(|i| {
            i.name = spec.name.clone();
            i.task_id = spec.task_id.clone();
            i.project_id = spec.project_id.clone();
            i.restart = restart;
            i.limits = limits;
        });
        self.handle.record_update();
        // New limits may have moved a deadline closer.
        self.tick_pending = false;
        self.schedule_tick(myself);
        Ok(self.handle.info())
    }

    fn resize(&mut self, cols: u16, rows: u16) -> Result<SessionInfo, HerdError> {
        if self.state.is_final() {
            return Err(self.conflict("resize"));
        }
        validate_size(cols, rows)?;
        {
            let mut spec = lock(&self.handle.spec);
            spec.cols = cols;
            spec.rows = rows;
        }
        self.handle.screen().resize(cols, rows);
        self.handle.info.send_modify(|i| {
            i.cols = cols;
            i.rows = rows;
        });
        if let Some(pty) = &self.pty {
            let _ = pty.send_message(PtyMsg::Resize(cols, rows));
        }
        self.tap(self.generation, TapEvent::Resize { cols, rows });
        self.handle.record_update();
        Ok(self.handle.info())
    }

    fn signal(
        &mut self,
        action: &str,
        sig: i32,
        target: SignalTarget,
    ) -> Result<SessionInfo, HerdError> {
        match &self.pty {
            Some(pty) if self.state.is_running() => {
                let _ = pty.send_message(PtyMsg::Signal(sig, target));
                Ok(self.handle.info())
            }
            _ => Err(self.conflict(action)),
        }
    }

    fn suspend(&mut self) -> Result<SessionInfo, HerdError> {
        if !matches!(self.state, Starting | Ready | Busy | WaitingInput) {
            return Err(self.conflict("suspend"));
        }
        self.signal("suspend", libc::SIGSTOP, SignalTarget::Tree)?;
        self.suspended_from = self.state;
        self.go(Suspended, "suspend requested");
        Ok(self.handle.info())
    }

    fn resume(&mut self, myself: &ActorRef<SessionMsg>) -> Result<SessionInfo, HerdError> {
        if self.state != Suspended {
            return Err(self.conflict("resume"));
        }
        self.signal("resume", libc::SIGCONT, SignalTarget::Tree)?;
        self.go(self.suspended_from, "resume requested");
        self.last_activity = Instant::now();
        self.schedule_tick(myself);
        if self.state == Ready {
            let _ = myself.send_message(SessionMsg::Deliver);
        }
        Ok(self.handle.info())
    }

    fn stop(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        force: bool,
        reason: String,
    ) -> Result<SessionInfo, HerdError> {
        match self.state {
            s if s.is_final() => return Err(self.conflict("stop")),
            Stopping => {
                if force {
                    if let Some(p) = &self.pty {
                        let _ = p.send_message(PtyMsg::Terminate(Duration::ZERO));
                    }
                }
            }
            Pending | Restarting => {
                if let Some(t) = self.spawn_timer.take() {
                    t.abort();
                }
                self.go(Stopping, reason.clone());
                self.go(Stopped, reason);
                self.finish(myself);
            }
            _ => {
                self.stop_reason = reason.clone();
                self.go(Stopping, reason);
                let grace = if force {
                    Duration::ZERO
                } else {
                    self.limits.stop_grace
                };
                match &self.pty {
                    Some(p) => {
                        let _ = p.send_message(PtyMsg::Terminate(grace));
                    }
                    None => {
                        let r = std::mem::take(&mut self.stop_reason);
                        self.go(Stopped, r);
                        self.finish(myself);
                    }
                }
            }
        }
        Ok(self.handle.info())
    }

    fn restart(&mut self, myself: &ActorRef<SessionMsg>) -> Result<SessionInfo, HerdError> {
        match self.state {
            Restarting => {
                if let Some(t) = self.spawn_timer.take() {
                    t.abort();
                }
                let _ = myself.send_message(SessionMsg::Spawn);
            }
            s if s.is_running() => {
                let Some(p) = &self.pty else {
                    return Err(self.conflict("restart"));
                };
                self.restart_requested = true;
                let _ = p.send_message(PtyMsg::Terminate(self.limits.stop_grace));
            }
            _ => return Err(self.conflict("restart")),
        }
        Ok(self.handle.info())
    }
}
