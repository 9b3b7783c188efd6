//! Why a child or a session ended, as a value.
//!
//! Every end has one typed [`EndCause`]: the session actor decides it, events,
//! snapshots, the store and the recordings carry it, and its `Display` is the
//! short human text shown as an event's `reason` (`exited with code 1`,
//! `idle_timeout`, ...). Nobody compares that text to find the cause again.

use crate::policy::ExitStatus;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Who asked for an end that a person or a program requested.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A graceful stop (SIGTERM, grace, SIGKILL).
    Stop,
    /// A forced stop (SIGKILL at once).
    Kill,
    /// A restart: the child is replaced, the session goes on.
    Restart,
}

/// Why a child process or a whole session ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndCause {
    /// The child exited by itself with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal ended the child.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The child ended, and how is unknown (it was reaped by someone else).
    Vanished,
    /// Someone asked for it.
    Requested {
        /// Stop, kill or restart.
        request: Request,
    },
    /// No input or output for `idle_timeout`.
    IdleTimeout,
    /// The session ran for `max_duration`.
    MaxDuration,
    /// The process tree used more than `max_memory`.
    MemoryLimit,
    /// The child could not be started.
    SpawnError {
        /// What the system said.
        message: String,
    },
    /// The child ended too often within the restart window.
    RestartIntensity {
        /// The configured maximum.
        max_restarts: u32,
        /// The window it counts in.
        #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1m"))]
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// The last end before giving up.
        #[cfg_attr(feature = "openapi", schema(no_recursion))]
        last: Box<EndCause>,
    },
    /// The daemon shut down gracefully; the session resumes at its next start.
    DaemonShutdown,
    /// The daemon died while the session ran (or stopped), and recovery did
    /// not bring it back.
    DaemonDied,
    /// The session's actor failed (its child was killed with it); a new
    /// actor takes over.
    ActorFailed {
        /// The failure.
        message: String,
    },
    /// A token or cost budget was spent, and it says to stop the session.
    BudgetSpent {
        /// Which budget, and the spend.
        message: String,
    },
    /// The session's actor failed more often than its restart budget allows.
    ActorFailedTooOften {
        /// The last failure.
        message: String,
    },
    /// This node lost its cluster lease: another node may run the session
    /// now, so this copy was stopped (fencing).
    Fenced,
    /// The session moved to another node of the cluster (drain, leave).
    HandedOver,
}

impl EndCause {
    /// The cause of a child's end as the waiter saw it.
    pub fn from_status(status: &ExitStatus) -> Self {
        match (status.code, status.signal) {
            (_, Some(signal)) => Self::Signaled { signal },
            (Some(code), None) => Self::Exited { code },
            (None, None) => Self::Vanished,
        }
    }

    /// True if the end counts as a failure for the `on-failure` policy: anything
    /// but a clean exit 0 or a request.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            Self::Exited { code: 0 }
                | Self::Requested { .. }
                | Self::DaemonShutdown
                | Self::Fenced
                | Self::HandedOver
        )
    }

    /// True if herd itself ended the child for a limit (counted as a failure
    /// even when the child then exits 0).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::IdleTimeout | Self::MaxDuration | Self::MemoryLimit
        )
    }
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited with code {code}"),
            Self::Signaled { signal } => write!(f, "killed by signal {signal}"),
            Self::Vanished => f.write_str("exited"),
            Self::Requested {
                request: Request::Stop,
            } => f.write_str("stop requested"),
            Self::Requested {
                request: Request::Kill,
            } => f.write_str("kill requested"),
            Self::Requested {
                request: Request::Restart,
            } => f.write_str("restart requested"),
            // The names of the settings, so a reader finds the knob.
            Self::IdleTimeout => f.write_str("idle_timeout"),
            Self::MaxDuration => f.write_str("max_duration"),
            Self::MemoryLimit => f.write_str("max_memory"),
            Self::SpawnError { message } => write!(f, "spawn failed: {message}"),
            Self::RestartIntensity {
                max_restarts,
                window,
                last,
            } => write!(
                f,
                "restart intensity exceeded: more than {max_restarts} restarts within {} (last: {last})",
                humantime::format_duration(*window)
            ),
            Self::DaemonShutdown => f.write_str("daemon shutdown"),
            Self::DaemonDied => f.write_str("the daemon died"),
            Self::ActorFailed { message } => write!(f, "session actor failed: {message}"),
            Self::BudgetSpent { message } => f.write_str(message),
            Self::ActorFailedTooOften { message } => {
                write!(f, "session actor failed too often: {message}")
            }
            Self::Fenced => f.write_str("this node lost its cluster lease (fenced)"),
            Self::HandedOver => f.write_str("handed over to another node"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_the_reasons_users_know() {
        let cases = [
            (EndCause::Exited { code: 3 }, "exited with code 3"),
            (EndCause::Signaled { signal: 9 }, "killed by signal 9"),
            (EndCause::IdleTimeout, "idle_timeout"),
            (EndCause::MaxDuration, "max_duration"),
            (EndCause::MemoryLimit, "max_memory"),
            (
                EndCause::Requested {
                    request: Request::Kill,
                },
                "kill requested",
            ),
            (EndCause::DaemonShutdown, "daemon shutdown"),
            (
                EndCause::RestartIntensity {
                    max_restarts: 3,
                    window: Duration::from_secs(60),
                    last: Box::new(EndCause::Exited { code: 1 }),
                },
                "restart intensity exceeded: more than 3 restarts within 1m (last: exited with code 1)",
            ),
        ];
        for (cause, text) in cases {
            assert_eq!(cause.to_string(), text);
        }
    }

    #[test]
    fn round_trips_as_json() {
        let c = EndCause::RestartIntensity {
            max_restarts: 2,
            window: Duration::from_millis(1500),
            last: Box::new(EndCause::Signaled { signal: 15 }),
        };
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["kind"], "restart_intensity");
        assert_eq!(j["window"], "1s 500ms");
        assert_eq!(j["last"]["kind"], "signaled");
        assert_eq!(serde_json::from_value::<EndCause>(j).unwrap(), c);
    }

    #[test]
    fn failures_and_limits() {
        assert!(!EndCause::Exited { code: 0 }.is_failure());
        assert!(EndCause::Exited { code: 1 }.is_failure());
        assert!(EndCause::MemoryLimit.is_failure() && EndCause::MemoryLimit.is_limit());
        assert!(!EndCause::DaemonShutdown.is_failure());
    }
}
