//! The journal: every change a store must keep, in order, off the actors.
//!
//! Actors append records to an unbounded channel (never blocking their
//! mailbox); one consumer (the daemon's SQLite writer) applies them in order,
//! in batches. [`Journal::flush`] waits until everything appended so far is
//! applied, so an API can promise "stored before the response";
//! [`Journal::store`] stores one record now or not at all and says which, so
//! a request the store cannot take is refused and changes nothing.

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
    /// Store `record` in a transaction of its own, or drop it, and answer
    /// which: the caller acts only once it is stored.
    Acked {
        /// What to store.
        record: Box<Record>,
        /// Told whether it was stored.
        done: oneshot::Sender<Result<(), StoreFailure>>,
    },
    /// Answer once every earlier record is applied (or why they are not).
    Flush(oneshot::Sender<Result<(), StoreFailure>>),
}

/// What kind of failure kept the store from taking a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// The disk is full (answered 507).
    Full,
    /// Any other failure to write (answered 503).
    Unavailable,
}

/// Why a write was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreFailure {
    /// Full disk or another failure.
    pub fault: StoreFault,
    /// What the store said.
    pub message: String,
}

impl StoreFailure {
    fn gone() -> Self {
        Self {
            fault: StoreFault::Unavailable,
            message: "the store writer is gone".into(),
        }
    }
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

    /// Waits until every record appended before this call is applied; an
    /// error says some are not (yet) stored, e.g. the disk is full.
    pub async fn flush(&self) -> Result<(), StoreFailure> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done, wait) = oneshot::channel();
        tx.send(Record::Flush(done))
            .map_err(|_| StoreFailure::gone())?;
        wait.await.unwrap_or_else(|_| Err(StoreFailure::gone()))
    }

    /// Stores `record` now, after every record appended before it, or not
    /// at all; without a consumer (no persistence) it is a no-op.
    pub async fn store(&self, record: Record) -> Result<(), StoreFailure> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done, wait) = oneshot::channel();
        tx.send(Record::Acked {
            record: Box::new(record),
            done,
        })
        .map_err(|_| StoreFailure::gone())?;
        wait.await.unwrap_or_else(|_| Err(StoreFailure::gone()))
    }

    /// True when records go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }
}
