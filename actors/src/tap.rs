//! The tap: what a recorder sees of every session, in order.
//!
//! Each session sends its events to the tap as they happen, from its actor.
//! An output event carries its chunk's share of the reader's budget, so a
//! recorder that falls behind slows the child's output (backpressure) instead
//! of growing memory or losing bytes.

use crate::cause::EndCause;
use crate::credits::CreditToken;
use crate::state::SessionState;
use bytes::Bytes;
use std::fmt;
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
    Marker(Marker),
    /// The generation ended (why): the recording is complete.
    End(EndCause),
}

/// A notable moment in a recording: the label of an asciicast `m` event.
///
/// The label is text, so that any asciicast player shows it; this type is the
/// one place that writes it ([`fmt::Display`]) and reads it back
/// ([`Marker::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// The session changed state: `state busy -> ready: output quiet`.
    State {
        /// State before.
        from: SessionState,
        /// State after.
        to: SessionState,
        /// The event's reason.
        reason: String,
    },
    /// A new generation started after the previous one ended: `restart: <why>`.
    Restart {
        /// Why the previous generation ended.
        reason: String,
    },
    /// The generation ended: `exit: <why>`.
    Exit {
        /// Why it ended.
        reason: String,
    },
    /// The recorder could not write for a while (a full disk) and resumed:
    /// `gap: <n> bytes not recorded: <why>`.
    Gap {
        /// Bytes of events (output, input, markers) that were not written.
        bytes: u64,
        /// Why writing failed.
        reason: String,
    },
    /// The generation reached `recording.max_bytes`: nothing but its exit
    /// marker is written after this: `truncated: recording.max_bytes <n> reached`.
    Truncated {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl Marker {
    /// The marker closing a generation that ended for `cause`.
    pub fn exit(cause: &EndCause) -> Self {
        Self::Exit {
            reason: cause.to_string(),
        }
    }

    /// Reads a label written by [`fmt::Display`]; `None` for any other label
    /// (markers a person added, or another tool's).
    pub fn parse(label: &str) -> Option<Self> {
        if let Some(rest) = label.strip_prefix("state ") {
            let (states, reason) = rest.split_once(':').unwrap_or((rest, ""));
            let (from, to) = states.split_once("->")?;
            return Some(Self::State {
                from: from.trim().parse().ok()?,
                to: to.trim().parse().ok()?,
                reason: reason.trim().to_string(),
            });
        }
        if label == "restart" {
            return Some(Self::Restart {
                reason: String::new(),
            });
        }
        if let Some(reason) = label.strip_prefix("restart:") {
            return Some(Self::Restart {
                reason: reason.trim().to_string(),
            });
        }
        if let Some(rest) = label.strip_prefix("gap:") {
            let (bytes, reason) = rest.trim().split_once(" bytes not recorded")?;
            return Some(Self::Gap {
                bytes: bytes.trim().parse().ok()?,
                reason: reason.trim_start_matches(':').trim().to_string(),
            });
        }
        if let Some(rest) = label.strip_prefix("truncated: recording.max_bytes ") {
            return Some(Self::Truncated {
                limit: rest.strip_suffix(" reached")?.trim().parse().ok()?,
            });
        }
        label.strip_prefix("exit:").map(|reason| Self::Exit {
            reason: reason.trim().to_string(),
        })
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State { from, to, reason } if reason.is_empty() => {
                write!(f, "state {from} -> {to}")
            }
            Self::State { from, to, reason } => write!(f, "state {from} -> {to}: {reason}"),
            Self::Restart { reason } => write!(f, "restart: {reason}"),
            Self::Exit { reason } => write!(f, "exit: {reason}"),
            Self::Gap { bytes, reason } => write!(f, "gap: {bytes} bytes not recorded: {reason}"),
            Self::Truncated { limit } => {
                write!(f, "truncated: recording.max_bytes {limit} reached")
            }
        }
    }
}

/// A consumer of session events (the daemon's recorder).
pub trait Tap: Send + Sync + 'static {
    /// Takes one event of `session`'s `generation`, which happened at `at`.
    /// Must not block.
    fn send(&self, session: Uuid, generation: u64, at: Instant, event: TapEvent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_read_back_what_they_write() {
        let cases = [
            Marker::State {
                from: SessionState::Busy,
                to: SessionState::Ready,
                reason: "output quiet".into(),
            },
            Marker::State {
                from: SessionState::Busy,
                to: SessionState::WaitingInput,
                reason: String::new(),
            },
            Marker::Restart {
                reason: "exited with code 1".into(),
            },
            Marker::exit(&EndCause::Signaled { signal: 9 }),
            Marker::Gap {
                bytes: 4096,
                reason: "No space left on device (os error 28)".into(),
            },
            Marker::Truncated { limit: 1 << 20 },
        ];
        for m in cases {
            assert_eq!(Marker::parse(&m.to_string()), Some(m.clone()), "{m}");
        }
        assert_eq!(
            Marker::parse("state busy -> ready: a: b")
                .unwrap()
                .to_string(),
            "state busy -> ready: a: b"
        );
        assert_eq!(Marker::parse("chapter 2"), None);
        assert_eq!(Marker::parse("state nowhere -> ready"), None);
    }
}
