//! Session states and the one table of allowed transitions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a session is in its life. `Stopped` and `Failed` are final.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Created, no child spawned yet.
    Pending,
    /// A child was spawned and has not yet settled.
    Starting,
    /// The child is idle, waiting for the next prompt.
    Ready,
    /// The child is producing output or working.
    Busy,
    /// The child asks a question (e.g. a permission dialog).
    WaitingInput,
    /// The child exited and the policy restarts it (possibly after a backoff).
    Restarting,
    /// The child's process group is stopped with SIGSTOP.
    Suspended,
    /// Asked to stop: the child is being terminated.
    Stopping,
    /// Final: the session ended.
    Stopped,
    /// Final: the child could not be (re)started.
    Failed,
}

impl SessionState {
    /// Every state, in lifecycle order (for help texts and validation).
    pub const ALL: [SessionState; 10] = [
        Self::Pending,
        Self::Starting,
        Self::Ready,
        Self::Busy,
        Self::WaitingInput,
        Self::Restarting,
        Self::Suspended,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];

    /// The snake_case name used in the API, the CLI and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Busy => "busy",
            Self::WaitingInput => "waiting_input",
            Self::Restarting => "restarting",
            Self::Suspended => "suspended",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// True for `stopped` and `failed`: nothing leaves these states.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::Failed)
    }

    /// True while a child process is expected to be alive and attached.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Ready | Self::Busy | Self::WaitingInput | Self::Suspended
        )
    }

    /// Whether the table allows `self → to`.
    pub fn can_go(self, to: SessionState) -> bool {
        use SessionState::*;
        let running = |s: SessionState| matches!(s, Starting | Ready | Busy | WaitingInput);
        match (self, to) {
            (a, b) if a.is_final() || a == b => false,
            (Pending, Starting) => true,
            (Starting, Ready | Busy | WaitingInput) => true,
            (Ready, Busy | WaitingInput) => true,
            (Busy, Ready | WaitingInput) => true,
            (WaitingInput, Busy | Ready) => true,
            (a, Restarting) if running(a) || a == Suspended => true,
            (Restarting, Starting) => true,
            (a, Suspended) if running(a) => true,
            // Resuming returns to the state the session had when it was suspended.
            (Suspended, b) if running(b) => true,
            (_, Stopping) => true,
            (Stopping, Stopped) => true,
            (Pending | Starting | Restarting, Failed) => true,
            _ => false,
        }
    }

    /// Checks a transition against the table.
    pub fn check(self, to: SessionState) -> Result<(), TransitionError> {
        if self.can_go(to) {
            Ok(())
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A transition that the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} to {to}")]
pub struct TransitionError {
    /// The state the session was in.
    pub from: SessionState,
    /// The state that was asked for.
    pub to: SessionState,
}

#[cfg(test)]
mod tests {
    use super::SessionState::*;
    use super::*;

    #[test]
    fn final_states_are_final() {
        for to in SessionState::ALL {
            assert!(!Stopped.can_go(to));
            assert!(!Failed.can_go(to));
        }
    }

    #[test]
    fn lifecycle_paths_are_allowed() {
        let path = [Pending, Starting, Ready, Busy, WaitingInput, Busy, Ready];
        for w in path.windows(2) {
            assert!(w[0].can_go(w[1]), "{} -> {}", w[0], w[1]);
        }
        for s in [Starting, Ready, Busy, WaitingInput, Suspended] {
            assert!(s.can_go(Restarting));
            assert!(s.can_go(Stopping));
        }
        assert!(Restarting.can_go(Starting));
        assert!(Restarting.can_go(Failed));
        assert!(Stopping.can_go(Stopped));
        assert!(Busy.can_go(Suspended) && Suspended.can_go(Busy));
    }

    #[test]
    fn illegal_transition_names_both_states() {
        let err = Ready.check(Pending).unwrap_err();
        assert_eq!(err.to_string(), "illegal transition from ready to pending");
        assert!(Ready.check(Failed).is_err());
        assert!(Stopping.check(Ready).is_err());
        assert!(Pending.check(Ready).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in SessionState::ALL {
            assert_eq!(s.as_str().parse::<SessionState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("bogus"
            .parse::<SessionState>()
            .unwrap_err()
            .contains("bogus"));
    }
}
