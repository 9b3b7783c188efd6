//! The shared, read-mostly side of a session: what readers see without
//! sending the actor a message.
//!
//! Only the session's own actor writes here (from its `handle`); the API
//! reads snapshots, output and the screen concurrently. The handle outlives
//! any one SessionActor, so a restarted actor continues the same output log,
//! screen, subscriptions and counters.

use crate::cause::EndCause;
use crate::events::{Event, EventBus};
use crate::info::{Counters, SessionInfo};
use crate::journal::{Journal, Record};
use crate::output::{OutputLog, OutputSlice};
use crate::queue::{Message, Queue};
use crate::screen::Screen;
use crate::snapshot::Snapshot;
use crate::spec::SessionSpec;
use crate::state::{SessionState, TransitionError};
use crate::tap::{Marker, TapEvent};
use bytes::Bytes;
use ractor::ActorCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// One piece of live output with its absolute offset in the session's output.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    /// Offset of `data[0]`.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

/// Transitions kept per session for `GET /v1/sessions/{id}/events`.
const EVENTS_KEPT: usize = 512;

/// Live chunks buffered per subscriber before it is told it lagged (at most
/// 256 x 64 KiB held for a stalled viewer).
const LIVE_CHUNKS: usize = 256;

/// What a transition stamps on the snapshot besides the state: the
/// session actor's counters at that moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) generation: u64,
    pub(crate) restarts: u64,
    pub(crate) errors: u64,
}

/// Shared state of one session.
pub struct SessionHandle {
    id: Uuid,
    /// The snapshot; every write goes through it (see [`Snapshot`]).
    pub(crate) info: Snapshot,
    pub(crate) output: Mutex<OutputLog>,
    pub(crate) screen: Mutex<Screen>,
    /// The screen was not fed during an output flood: rebuild it from the
    /// output log before anyone reads it.
    pub(crate) screen_stale: std::sync::atomic::AtomicBool,
    /// Live output for subscribers, made by the first subscriber and let go
    /// once none is left: its ring of [`LIVE_CHUNKS`] slots (about 16 KiB)
    /// is most of a session's memory outside its screen, and most sessions
    /// have no viewer. Locked after `output`, never before.
    live: Mutex<Option<broadcast::Sender<OutputChunk>>>,
    /// The session actor in charge, if any (the registry types it).
    pub(crate) actor: Mutex<Option<ActorCell>>,
    pub(crate) spec: Mutex<SessionSpec>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: Mutex<std::collections::VecDeque<Event>>,
    pub(crate) queue: Mutex<Queue>,
    /// Bumped on every queue change, so waiters for a reply wake up.
    pub(crate) queue_changed: watch::Sender<u64>,
    pub(crate) journal: Journal,
    pub(crate) tap: Option<Arc<dyn crate::tap::Tap>>,
    /// Where this session's transitions are published.
    pub(crate) bus: EventBus,
    /// The output log and the screen were let go (the session ended and
    /// its recording holds them).
    released: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .finish()
    }
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it:
/// every structure here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SessionHandle {
    pub(crate) fn new(
        info: SessionInfo,
        spec: SessionSpec,
        output_capacity: usize,
        journal: Journal,
        tap: Option<Arc<dyn crate::tap::Tap>>,
        bus: EventBus,
    ) -> Self {
        // Counters continue across a daemon restart or a revival, so
        // `_total` series never go back.
        let counters = Arc::new(Counters {
            bytes_in: info.metrics.bytes_in.into(),
            bytes_out: info.metrics.bytes_out.into(),
            inputs: info.metrics.inputs.into(),
            ..Counters::default()
        });
        Self {
            id: info.id,
            screen: Mutex::new(Screen::new(spec.cols, spec.rows)),
            screen_stale: std::sync::atomic::AtomicBool::new(false),
            info: Snapshot::new(info),
            output: Mutex::new(OutputLog::new(output_capacity)),
            live: Mutex::new(None),
            actor: Mutex::new(None),
            spec: Mutex::new(spec),
            counters,
            events: Mutex::default(),
            queue: Mutex::default(),
            queue_changed: watch::Sender::new(0),
            journal,
            tap,
            bus,
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Seeds a new handle with what its session had before (its stored
    /// transitions and the tail of its output), before any actor runs.
    pub(crate) fn seed_history(&self, events: Vec<Event>, output: &[u8]) {
        let mut kept = lock(&self.events);
        for e in events.into_iter().rev().take(EVENTS_KEPT).rev() {
            kept.push_back(e);
        }
        drop(kept);
        if !output.is_empty() {
            lock(&self.output).push(&Bytes::copy_from_slice(output));
            lock(&self.screen).feed(output);
        }
    }

    /// Lets go of the output log and the screen of an ended session, keeping
    /// only its summary (snapshot, events, messages) in memory: its output
    /// and screen are in its recording. False (nothing done) unless the
    /// session is final.
    pub fn release_buffers(&self) -> bool {
        if !self.info.borrow().state.is_final() {
            return false;
        }
        lock(&self.output).release();
        *lock(&self.screen) = Screen::new(1, 1);
        self.screen_stale.store(false, Ordering::Release);
        self.released.store(true, Ordering::Release);
        true
    }

    /// True once [`Self::release_buffers`] let go of the output and screen.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// The session id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// A snapshot of the session now.
    pub fn info(&self) -> SessionInfo {
        self.info.info(&self.counters)
    }

    /// [`Self::info`] as JSON, exactly as `serde_json` writes it, made again
    /// only when the snapshot or its counters changed since the last call:
    /// what a list of thousands of sessions is made of.
    pub fn info_json(&self) -> Result<Bytes, serde_json::Error> {
        self.info.json(&self.counters)
    }

    /// Whether the session runs in a git worktree (its snapshot's
    /// `worktree`, whose status the daemon fills in).
    pub fn in_worktree(&self) -> bool {
        self.info.borrow().worktree.is_some()
    }

    /// This session's latest transitions (up to 512), oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).iter().cloned().collect()
    }

    /// Recent finished messages, then pending ones, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        lock(&self.queue).all()
    }

    /// One message of this session.
    pub fn message(&self, id: Uuid) -> Option<Message> {
        lock(&self.queue).get(id)
    }

    /// Waits until the message is final or `timeout` passes; returns it as it is then.
    pub async fn wait_message(&self, id: Uuid, timeout: Duration) -> Option<Message> {
        let mut rx = self.queue_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let m = self.message(id)?;
            if m.state.is_final() {
                return Some(m);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return self.message(id) },
                _ = tokio::time::sleep_until(deadline) => return self.message(id),
            }
        }
    }

    pub(crate) fn update_queue<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> R {
        let (r, changed) = {
            let mut q = lock(&self.queue);
            let r = f(&mut q);
            (r, q.take_changed())
        };
        for m in changed {
            self.journal.record(Record::Message(Box::new(m)));
        }
        self.queue_changed.send_modify(|v| *v += 1);
        r
    }

    /// Records the current spec and snapshot (after a patch or a resize).
    pub(crate) fn record_update(&self) {
        self.journal.record(Record::Updated {
            info: Box::new(self.info()),
            spec: Box::new(self.spec()),
        });
    }

    /// The one way a session's state changes, from any path (its actor, or
    /// the registry when the actor is gone): checks the table, stamps the
    /// snapshot, then journals, records, publishes and wakes watchers, in
    /// that order, and returns the event.
    pub(crate) fn transition(
        &self,
        to: SessionState,
        reason: String,
        cause: Option<EndCause>,
        stamp: Option<Stamp>,
    ) -> Result<Event, TransitionError> {
        // The counters live outside the snapshot; the stored snapshot gets
        // them too, so they survive a daemon restart.
        let mut info = self.info();
        if let Some(s) = stamp {
            info.generation = s.generation;
            info.restarts = s.restarts;
            info.metrics.restarts = s.restarts;
            info.metrics.errors = s.errors;
        }
        let event = info.transition(to, reason, cause)?;
        let from = event.from;
        tracing::debug!(session = %info.id, %from, %to, reason = %event.reason, "transition");
        // Journal first: whoever wakes on the new state and then flushes the
        // journal must find this transition in the store.
        self.record_event(&event, &info);
        self.tap(
            info.generation,
            TapEvent::Marker(Marker::State {
                from,
                to,
                reason: event.reason.clone(),
            }),
        );
        self.info.send_replace(info);
        self.bus.publish(event.clone());
        Ok(event)
    }

    /// Sends an event to the recorder, if there is one.
    pub(crate) fn tap(&self, generation: u64, event: TapEvent) {
        if let Some(t) = &self.tap {
            t.send(self.id, generation, Instant::now(), event);
        }
    }

    fn record_event(&self, e: &Event, info: &SessionInfo) {
        let mut events = lock(&self.events);
        if events.len() >= EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(e.clone());
        drop(events);
        self.journal.record(Record::Transition {
            event: e.clone(),
            info: Box::new(info.clone()),
        });
    }

    /// A receiver that wakes on every state change.
    pub fn watch(&self) -> watch::Receiver<SessionInfo> {
        self.info.subscribe()
    }

    /// The spec the session runs with (the last known config).
    pub fn spec(&self) -> SessionSpec {
        lock(&self.spec).clone()
    }

    /// The session actor currently in charge, if any.
    pub(crate) fn actor(&self) -> Option<ActorCell> {
        lock(&self.actor).clone()
    }

    /// The screen as text.
    pub fn screen_text(&self) -> String {
        self.screen().text()
    }

    /// The screen's last non-blank line (see [`SessionInfo::last_line`]).
    /// Cheap enough for a whole fleet every second or two: a screen a flood
    /// left stale is not rebuilt from the whole log; the line is read from
    /// what the newest few KiB of output draw instead.
    pub fn last_line(&self) -> Option<String> {
        if self.is_released() {
            return None;
        }
        if !self.screen_stale.load(Ordering::Acquire) {
            return lock(&self.screen).last_line();
        }
        const TAIL: u64 = 4096;
        let (cols, rows) = lock(&self.screen).size();
        let log = lock(&self.output);
        let from = log.end().saturating_sub(TAIL).max(log.start());
        let tail = log.read(from, TAIL as usize);
        drop(log);
        let mut s = Screen::new(cols, rows);
        s.feed(&tail.data);
        s.last_line()
    }

    /// Escape sequences that redraw the current screen.
    pub fn screen_redraw(&self) -> Vec<u8> {
        self.screen().redraw()
    }

    /// The screen, brought up to date first if a flood left it stale: it is
    /// then what the output log holds draws (exact while the whole output
    /// still fits in the log, else what its newest bytes draw).
    pub(crate) fn screen(&self) -> MutexGuard<'_, Screen> {
        let mut screen = lock(&self.screen);
        if self.screen_stale.swap(false, Ordering::AcqRel) {
            let (cols, rows) = screen.size();
            let mut fresh = Screen::new(cols, rows);
            let log = lock(&self.output);
            let tail = log.read(log.start(), usize::MAX);
            drop(log);
            fresh.feed(&tail.data);
            *screen = fresh;
        }
        screen
    }

    /// Buffered output from `since`, at most `limit` bytes.
    pub fn output(&self, since: u64, limit: usize) -> OutputSlice {
        lock(&self.output).read(since, limit)
    }

    /// Output from `since` (or the whole buffer) plus a live subscription that
    /// continues exactly where the returned slice ends: no gap, no overlap.
    pub fn subscribe_output(
        &self,
        since: Option<u64>,
    ) -> (OutputSlice, broadcast::Receiver<OutputChunk>) {
        let log = lock(&self.output);
        let slice = log.read(since.unwrap_or(0), usize::MAX);
        let rx = lock(&self.live)
            .get_or_insert_with(|| broadcast::channel(LIVE_CHUNKS).0)
            .subscribe();
        (slice, rx)
    }

    /// Waits until output past `since` exists, the session ends, or `timeout`
    /// passes, then returns what there is (possibly nothing).
    pub async fn wait_output(&self, since: u64, limit: usize, timeout: Duration) -> OutputSlice {
        let (slice, mut rx) = self.subscribe_output(Some(since));
        if !slice.data.is_empty() || slice.truncated {
            return self.output(since, limit);
        }
        let mut state = self.watch();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if state.borrow_and_update().state.is_final() {
                break;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = state.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.output(since, limit)
    }

    /// Appends output to the log and sends it to live readers, atomically
    /// with respect to [`Self::subscribe_output`].
    pub(crate) fn push_output(&self, data: Bytes) {
        let mut log = lock(&self.output);
        let offset = log.end();
        // The log keeps the same buffer the recorder and viewers get.
        log.push(&data);
        let mut live = lock(&self.live);
        if let Some(tx) = live.as_ref() {
            if tx.receiver_count() == 0 {
                *live = None;
            } else {
                // A receiver dropped meanwhile is fine.
                let _ = tx.send(OutputChunk { offset, data });
            }
        }
    }
}
