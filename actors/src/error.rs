//! The one error type of the actor crate.

use crate::journal::{StoreFailure, StoreFault};
use crate::state::{SessionState, TransitionError};

/// What can go wrong when driving sessions. Each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HerdError {
    /// A request or spec field is invalid (400). The message names the field and value.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, as named in the API (`command`, `cwd`, `cols`, ...).
        field: String,
        /// What is wrong with its value.
        message: String,
    },
    /// No session matches (404).
    #[error("no session matches {0:?}")]
    NotFound(String),
    /// An id prefix matches more than one session (400).
    #[error("id prefix {prefix:?} is ambiguous: it matches {count} sessions")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many sessions it matches.
        count: usize,
    },
    /// The action is not possible in the session's state (409).
    #[error("cannot {action} session {id}: it is {state}")]
    Conflict {
        /// The session.
        id: String,
        /// What was asked.
        action: String,
        /// The state it is in.
        state: SessionState,
    },
    /// The session has no message with this id (404).
    #[error("session {session} has no message {message}")]
    MessageNotFound {
        /// The session.
        session: String,
        /// The message id asked for.
        message: String,
    },
    /// The message is past the point where the action is possible (409),
    /// e.g. cancelling one that is being answered.
    #[error("cannot {action} message {message}: it is {state}")]
    MessageConflict {
        /// The message.
        message: String,
        /// What was asked.
        action: String,
        /// The state it is in.
        state: crate::queue::MessageState,
    },
    /// `max_sessions` live sessions exist already (429).
    #[error("session limit reached: {max} live sessions (limits.max_sessions = {max})")]
    LimitReached {
        /// The configured maximum.
        max: usize,
    },
    /// The child's input queue is full: it is not reading (429).
    #[error("input of session {0} is backed up: the program is not reading its input")]
    InputFull(String),
    /// A state transition the table forbids.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The store cannot take the write (507 when the disk is full, else
    /// 503); nothing was changed.
    #[error("the store cannot take this change, nothing was changed: {0}")]
    Storage(StoreFailure),
    /// The actor system did not answer (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl HerdError {
    /// Shorthand for [`HerdError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A short machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_input",
            Self::NotFound(_) | Self::MessageNotFound { .. } => "not_found",
            Self::MessageConflict { .. } => "conflict",
            Self::Ambiguous { .. } => "ambiguous_id",
            Self::Conflict { .. } => "conflict",
            Self::LimitReached { .. } => "session_limit",
            Self::InputFull(_) => "input_backed_up",
            Self::Transition(_) => "illegal_transition",
            Self::Storage(f) if f.fault == StoreFault::Full => "insufficient_storage",
            Self::Storage(_) => "store_unavailable",
            Self::Internal(_) => "internal",
        }
    }
}
