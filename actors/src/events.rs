//! The event bus: every state transition of every session, in order per session.

use crate::cause::EndCause;
use crate::state::SessionState;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// One state transition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The session that moved.
    pub session_id: Uuid,
    /// Its task id, if any (for filtering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Its project id, if any (for filtering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// State before.
    pub from: SessionState,
    /// State after.
    pub to: SessionState,
    /// Why, in a few words (e.g. `exited with code 1`, `idle_timeout`).
    pub reason: String,
    /// The typed cause, when the transition is the end of a child or of the
    /// session (`reason` is its text then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<EndCause>,
    /// When it happened.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// The session's generation (restart count) at the time.
    pub generation: u64,
}

/// Capacity of the live broadcast: a viewer that falls further behind is told it lagged.
const LIVE_CAPACITY: usize = 4096;

/// Events kept in memory for `herd events` without `--follow`.
const RECENT: usize = 10_000;

/// Fan-out of events to live subscribers (may lag) and durable sinks (never drop).
#[derive(Clone)]
pub struct EventBus {
    live: broadcast::Sender<Event>,
    /// The newest events, oldest first.
    recent: Arc<Mutex<VecDeque<Event>>>,
    /// Sinks that must see every event (the store, the recorder): unbounded, in order.
    sinks: Arc<Mutex<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            live,
            recent: Arc::default(),
            sinks: Arc::default(),
        }
    }

    /// Publishes one event to everyone.
    pub fn publish(&self, event: Event) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        if let Ok(mut sinks) = self.sinks.lock() {
            sinks.retain(|s| s.send(event.clone()).is_ok());
        }
        // No live subscriber is not an error.
        let _ = self.live.send(event);
    }

    /// Puts events that happened before this bus existed (read back from a
    /// store) in front of the recent ones, oldest first; nobody is notified.
    pub fn seed(&self, older: Vec<Event>) {
        if let Ok(mut recent) = self.recent.lock() {
            let room = RECENT.saturating_sub(recent.len());
            let skip = older.len().saturating_sub(room);
            for e in older.into_iter().skip(skip).rev() {
                recent.push_front(e);
            }
        }
    }

    /// The newest events (up to 10,000), oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A live subscription; it reports `Lagged` if it falls far behind.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// A lossless subscription for consumers that must see every event.
    pub fn sink(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut sinks) = self.sinks.lock() {
            sinks.push(tx);
        }
        rx
    }
}
