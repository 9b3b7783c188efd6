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

/// Something a person or a job runner may want to hear about besides a
/// state transition: a budget threshold, a message that ended, a rate limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The session concerned.
    pub session_id: Uuid,
    /// Its task id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Its project id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: NoticeKind,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

/// What a [`Notice`] says.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum NoticeKind {
    /// A budget reached its warning threshold (`exceeded: false`) or its
    /// limit (`exceeded: true`: delivery stops).
    Budget(crate::budget::BudgetCrossing),
    /// A message reached a final state (done, failed, interrupted).
    MessageDone {
        /// The message.
        message_id: Uuid,
        /// Its final state.
        state: crate::queue::MessageState,
        /// How it failed, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<crate::waiting::Failure>,
    },
    /// A rate limit paused delivery fleet-wide; the message is written again.
    RateLimited {
        /// The message that met it.
        message_id: Uuid,
        /// What the program said.
        message: String,
    },
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
    /// The newest notices, oldest first.
    notices: Arc<Mutex<VecDeque<Notice>>>,
    /// Sinks that must see every notice (the webhooks' outbox).
    notice_sinks: Arc<Mutex<Vec<mpsc::UnboundedSender<Notice>>>>,
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
            notices: Arc::default(),
            notice_sinks: Arc::default(),
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

    /// Publishes a notice to its sinks, and keeps it among the recent ones.
    pub fn notice(&self, notice: Notice) {
        tracing::info!(session = %notice.session_id, notice = ?notice.kind, "notice");
        if let Ok(mut recent) = self.notices.lock() {
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back(notice.clone());
        }
        if let Ok(mut sinks) = self.notice_sinks.lock() {
            sinks.retain(|s| s.send(notice.clone()).is_ok());
        }
    }

    /// The newest notices (up to 10,000), oldest first.
    pub fn recent_notices(&self) -> Vec<Notice> {
        self.notices
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A lossless subscription to every notice from now on.
    pub fn notice_sink(&self) -> mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut sinks) = self.notice_sinks.lock() {
            sinks.push(tx);
        }
        rx
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
