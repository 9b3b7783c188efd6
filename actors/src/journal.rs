//! The journal: every change a store must keep, in order, off the actors.
//!
//! Actors append records to an unbounded channel (never blocking their
//! mailbox); one consumer (the daemon's SQLite writer) applies them in order,
//! in batches. [`Journal::flush`] waits until everything appended so far is
//! applied, so an API can promise "stored before the response".

use crate::events::Event;
use crate::info::SessionInfo;
use crate::queue::Message;
use crate::spec::SessionSpec;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// One change to persist.
#[derive(Debug)]
pub enum Record {
    /// A session was created (before its actor starts).
    Created {
        /// Its first snapshot.
        info: Box<SessionInfo>,
        /// Its spec.
        spec: Box<SessionSpec>,
    },
    /// A state transition, with the snapshot right after it.
    Transition {
        /// The event.
        event: Event,
        /// The session after it.
        info: Box<SessionInfo>,
    },
    /// The spec or metadata changed (patch, resize).
    Updated {
        /// The session now.
        info: Box<SessionInfo>,
        /// Its spec now.
        spec: Box<SessionSpec>,
    },
    /// A child was spawned: enough to find (and kill) it after a daemon crash.
    Spawned {
        /// The session.
        session_id: Uuid,
        /// Child generation.
        generation: u64,
        /// Its pid.
        pid: i32,
        /// Its start time in clock ticks since boot (guards against pid reuse).
        start_time: Option<u64>,
    },
    /// A message was queued or changed state.
    Message(Box<Message>),
    /// A final session was forgotten.
    Removed(Uuid),
    /// Answer once every earlier record is applied.
    Flush(oneshot::Sender<()>),
}

/// Where records go. The default journal drops them (no persistence).
#[derive(Debug, Clone, Default)]
pub struct Journal {
    tx: Option<mpsc::UnboundedSender<Record>>,
}

impl Journal {
    /// A journal and the receiver its consumer reads in order.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Record>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx: Some(tx) }, rx)
    }

    /// Appends a record; never blocks.
    pub fn record(&self, r: Record) {
        if let Some(tx) = &self.tx {
            if tx.send(r).is_err() {
                tracing::error!("journal consumer is gone: a change was not stored");
            }
        }
    }

    /// Waits until every record appended before this call is applied.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Record::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// True when records go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }
}
