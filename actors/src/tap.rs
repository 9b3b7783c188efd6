//! The tap: what a recorder sees of every session, in order.
//!
//! Each session sends its events to the tap as they happen, from its actor.
//! An output event carries its chunk's share of the reader's budget, so a
//! recorder that falls behind slows the child's output (backpressure) instead
//! of growing memory or losing bytes.

use crate::pty::CreditToken;
use bytes::Bytes;
use std::time::{Instant, SystemTime};
use uuid::Uuid;

/// One event of a session's life, for recording.
#[derive(Debug)]
pub enum TapEvent {
    /// A child generation started: a new recording begins.
    Start {
        /// Terminal columns.
        cols: u16,
        /// Terminal rows.
        rows: u16,
        /// The argv (secrets are never in it: they travel in the environment).
        command: Vec<String>,
        /// A title (the session's name, else its id).
        title: String,
        /// Wall-clock start, for the recording's header.
        started: SystemTime,
    },
    /// Bytes the child wrote.
    Output {
        /// The bytes.
        data: Bytes,
        /// Released once the recorder has written them.
        credit: Option<CreditToken>,
    },
    /// Bytes written to the child.
    Input(Bytes),
    /// The terminal was resized.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// A state change or another notable moment; the recorder flushes here.
    Marker(String),
    /// The generation ended: the recording is complete.
    End(String),
}

/// A consumer of session events (the daemon's recorder).
pub trait Tap: Send + Sync + 'static {
    /// Takes one event of `session`'s `generation`, which happened at `at`.
    /// Must not block.
    fn send(&self, session: Uuid, generation: u64, at: Instant, event: TapEvent);
}
