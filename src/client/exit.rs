//! Exit codes of every command, in one place (documented in the README).
//!
//! A failing command prints one line to stderr and exits with the code of
//! what went wrong, so scripts can tell "not there" from "not yet" from
//! "cannot reach the daemon" without parsing text.

/// What a command's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything not listed below (a bad file, the daemon refused the input, ...).
    Failure = 1,
    /// 2: bad command-line usage (clap's own code).
    Usage = 2,
    /// 3: no daemon reachable at the URL, or no token where it should be.
    Unreachable = 3,
    /// 4: the daemon refused the token.
    Unauthorized = 4,
    /// 5: no such session (or message, or task).
    NotFound = 5,
    /// 6: not possible in the session's state (e.g. `rm` of a live session,
    /// `wait` for a state the session ended without reaching).
    Conflict = 6,
    /// 7: timed out (`wait`, `send --wait`).
    Timeout = 7,
    /// 8: a message did not complete (interrupted or cancelled).
    MessageFailed = 8,
    /// 9: `doctor` found a problem.
    Unhealthy = 9,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Every code with its meaning, for `--help` and the README.
    pub const TABLE: &'static str =
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 daemon unreachable or no token, \
4 token refused, 5 not found, 6 not possible in this state, 7 timed out, 8 message not completed, \
9 doctor found a problem.";
}

/// An error that carries its exit code; anything else exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// How the process exits.
    pub exit: Exit,
    /// The one line printed.
    pub message: String,
}

impl CliError {
    /// An [`anyhow::Error`] carrying this exit code.
    pub fn error(exit: Exit, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self {
            exit,
            message: message.into(),
        })
    }
}

/// The exit code for an error: the first [`CliError`] in its chain, else 1.
pub fn code_of(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<CliError>())
        .map_or(Exit::Failure.code(), |e| e.exit.code())
}
